import { attentionRows } from '../pipeline/attention-rows.js';
import { runPipeline, type RowKind, type RunArgs } from '../pipeline/run.js';
import type { Context } from '../pipeline/context.js';
import { runOptions, type ArgsOf, type CommandBody } from './options.js';
import { INPUTS } from './inputs.js';

const OPTIONS = {
  ...runOptions(['jsonl', 'json', 'csv', 'npy', 'parquet']),
  raw: { type: 'boolean', default: false, describe: 'the softmax attention probabilities [layers][heads][tokens][tokens] (tokens include the class token); Swin: [layers][windows][heads][N][N] within each window' },
  layer: { type: 'string', default: 'all', describe: 'with --raw: a 0-based layer index, or all' },
  head: { type: 'string', default: 'all', describe: 'with --raw: a 0-based head index, mean, or all' },
  distance: { type: 'boolean', default: false, describe: "mean attention distance per layer and head, in input pixels (the paper's figure 7)" },
  summary: { type: 'boolean', default: false, describe: 'with --distance: average over all images and print a per-layer table' },
  json: { type: 'boolean', default: false, describe: 'with --summary: print JSON instead of a table' },
  heatmap: { type: 'string', describe: 'also write DIR/<name>.attention.png: the rollout over each image' },
} as const;

export function attentionCommand(ctx: Context): CommandBody {
  return {
    builder: (y) => y.positional('inputs', INPUTS).options(OPTIONS)
      .example('$0 attention img.jpg --heatmap out/', 'rollout rows on stdout, overlay PNGs in out/')
      .example('$0 attention photos/ --distance --summary', 'attention distance per layer, averaged over the folder')
      .example('$0 attention img.jpg --raw --layer 11 --head mean -f json', "the last layer's head-averaged attention")
      .epilogue(
        'Rollout (Abnar & Zuidema 2020): for each layer l, A_l = mean over heads of the attention probabilities + I, ' +
        'rows renormalised to sum to 1; R = A_L · … · A_1; the output is R[0, prefix:] (class token → patches) on the ' +
        'patch grid, unnormalised. Distance: for patch queries i and keys j, Σ_j P[i,j]·|c_i − c_j| in input pixels, ' +
        'averaged over queries; class/distillation tokens left out, weights not renormalised. Layers and heads count from 0.',
      ),
    handler: async (argv) => {
      const a = argv as unknown as ArgsOf<typeof OPTIONS> & RunArgs;
      await runPipeline(a, ctx, attentionRows(a, ctx) as RowKind<{ path: string }>);
    },
  };
}

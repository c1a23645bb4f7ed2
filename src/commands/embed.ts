import { embedRows, POOLS } from '../pipeline/rows.js';
import { runPipeline, type RunArgs } from '../pipeline/run.js';
import type { Context } from '../pipeline/context.js';
import { runOptions, type ArgsOf, type CommandBody } from './options.js';
import { INPUTS } from './inputs.js';

const OPTIONS = {
  ...runOptions(['csv', 'json', 'jsonl', 'npy']),
  pool: {
    type: 'string', choices: POOLS,
    describe: 'cls: final-norm class token (what a ViT head sees; the default for ViT); avg: mean of patch tokens ' +
      '(the default where there is no class token); pre-logits: after the representation layer',
  },
  normalize: { type: 'boolean', default: false, describe: 'L2-normalise each vector' },
} as const;

export function embedCommand(ctx: Context): CommandBody {
  return {
    builder: (y) => y.positional('inputs', INPUTS).options(OPTIONS)
      .example('$0 embed photos/ -f npy -o feats.npy', 'float32 [N, D] array + feats.paths.txt')
      .example('$0 embed img.jpg --pool avg --normalize -f jsonl', 'one unit vector as JSON'),
    handler: async (argv) => {
      const a = argv as unknown as ArgsOf<typeof OPTIONS> & RunArgs;
      await runPipeline(a, ctx, embedRows(a));
    },
  };
}

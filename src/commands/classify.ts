import { classifyRows } from '../pipeline/rows.js';
import { runPipeline, type RunArgs } from '../pipeline/run.js';
import type { Context } from '../pipeline/context.js';
import { runOptions, type ArgsOf, type CommandBody } from './options.js';
import { INPUTS } from './inputs.js';

const OPTIONS = {
  ...runOptions(['csv', 'json', 'jsonl']),
  'top-k': { alias: 'k', type: 'number', default: 5, describe: 'predictions per image' },
  labels: { type: 'string', describe: 'class names: a file with one per line, or JSON (array or id2label)' },
} as const;

export function classifyCommand(ctx: Context): CommandBody {
  return {
    builder: (y) => y.positional('inputs', INPUTS).options(OPTIONS)
      .example('$0 classify examples/digits', 'the bundled digits model, CSV on stdout')
      .example('$0 classify photos/ -m vit_base_patch16_224 -w vit_b16.safetensors -f jsonl', 'an ImageNet checkpoint')
      .example("find photos -name '*.jpg' | $0 classify - -f jsonl | jq -r .predictions[0].label", 'in a pipeline')
      .epilogue('Scores are softmax probabilities, or per-class sigmoids for multi-label heads (problem_type ' +
        'multi_label_classification) and single-logit heads, as Hugging Face\'s pipeline makes them.'),
    handler: async (argv) => {
      const a = argv as unknown as ArgsOf<typeof OPTIONS> & RunArgs;
      await runPipeline(a, ctx, classifyRows(a));
    },
  };
}

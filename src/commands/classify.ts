import { ModelError, UsageError } from '../errors.js';
import { resolveLabels } from '../io/labels.js';
import type { LoadedModel } from '../io/model-source.js';
import { rowOf } from './batches.js';
import type { CommandBody, Context } from './common.js';
import { CLASSIFY_SCHEMA, type Prediction } from '../io/writers.js';
import { batchOptions, runCommand, type Args } from './run.js';


/** Softmax probabilities (in float64, max-subtracted) and the k best classes by score. */
export function topK(logits: Float32Array, k: number, labels: string[]): Prediction[] {
  let max = -Infinity;
  for (const v of logits) max = Math.max(max, v);
  let sum = 0;
  const exp = new Float64Array(logits.length);
  for (let i = 0; i < logits.length; i++) sum += exp[i] = Math.exp(logits[i] - max);
  // The k best by insertion into a short sorted list: O(C·k), not a sort of all C classes (21,843 for in21k).
  const best: number[] = [];
  const n = Math.min(k, logits.length);
  for (let i = 0; i < logits.length; i++) {
    if (best.length === n && logits[i] <= logits[best[n - 1]]) continue;
    let at = best.length;
    while (at > 0 && logits[i] > logits[best[at - 1]]) at--;
    best.splice(at, 0, i);
    if (best.length > n) best.pop();
  }
  return best.map((i) => ({ index: i, label: labels[i], score: exp[i] / sum, logit: logits[i] }));
}

export function classifyCommand(ctx: Context): CommandBody {
  return {
    builder: (y) => batchOptions(y, ['csv', 'json', 'jsonl'])
      .option('top-k', { alias: 'k', type: 'number', default: 5, describe: 'predictions per image' })
      .option('labels', { type: 'string', describe: 'class names: a file with one per line, or JSON (array or id2label)' })
      .example('$0 classify examples/digits', 'the bundled digits model, CSV on stdout')
      .example('$0 classify photos/ -m vit_base_patch16_224 -w vit_b16.safetensors -f jsonl', 'an ImageNet checkpoint')
      .example("find photos -name '*.jpg' | $0 classify - -f jsonl | jq -r .predictions[0].label", 'in a pipeline'),
    handler: async (argv) => {
      const a = argv as unknown as Args & { topK: number; labels?: string };
      if (!Number.isInteger(a.topK) || a.topK < 1) throw new UsageError(`--top-k must be a positive integer, not ${a.topK}`);
      let labels: string[] = [];
      await runCommand(a, ctx, {
        schema: CLASSIFY_SCHEMA,
        check: (m: LoadedModel) => {
          if (m.config.numClasses === 0) {
            throw new ModelError(`model "${m.source}" has no classifier head; use \`vit embed\` for its features`);
          }
          labels = resolveLabels(m.config, a.labels);
        },
        row: (o) => ({ path: o.path, predictions: topK(rowOf(o.result.logits!, o.row), a.topK, labels) }),
      });
    },
  };
}

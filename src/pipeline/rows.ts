/**
 * The rows of `vit classify` and `vit embed`: how an engine result becomes one row per image.
 */
import { ModelError, UsageError, wholeNumber } from '../errors.js';
import { resolveLabels } from '../io/labels.js';
import { CLASSIFY_SCHEMA, EMBED_SCHEMA, type ClassifyRow, type EmbedRow, type Prediction } from '../io/sinks/rows.js';
import { createHash } from 'node:crypto';
import { readLabelsFile } from '../io/labels.js';
import { archOf, ARCHITECTURES } from '../model/arch/index.js';
import { scoreFunction, type ModelConfig, type ScoreFunction } from '../model/config.js';
import type { HostTensor } from '../model/tensor.js';
import type { RowKind } from './run.js';

/** Row `row` of a [B, ...] result tensor as a fresh Float32Array. */
export function rowOf(t: HostTensor, row: number): Float32Array {
  const n = t.data.length / t.shape[0];
  return t.data.slice(row * n, (row + 1) * n);
}

/**
 * Scores (softmax in float64 after subtracting the max, or a sigmoid per class) and the k best classes by
 * score, ties by index.
 */
export function topK(logits: Float32Array, k: number, labels: string[], score: ScoreFunction = 'softmax'): Prediction[] {
  let max = -Infinity;
  for (const v of logits) max = Math.max(max, v);
  let sum = 0;
  const exp = new Float64Array(logits.length);
  if (score === 'softmax') for (let i = 0; i < logits.length; i++) sum += exp[i] = Math.exp(logits[i] - max);
  const scoreOf = (i: number) => (score === 'softmax' ? exp[i] / sum : 1 / (1 + Math.exp(-logits[i])));
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
  return best.map((i) => ({ index: i, label: labels[i], score: scoreOf(i), logit: logits[i] }));
}

export function classifyRows(opts: { topK: number; labels?: string }): RowKind<ClassifyRow> {
  wholeNumber(String(opts.topK), '--top-k', 1);
  // The names, not the file: the same list in another file writes the same rows.
  const labels = opts.labels === undefined ? null : createHash('sha256').update(JSON.stringify(readLabelsFile(opts.labels))).digest('hex');
  return {
    command: 'classify',
    schema: CLASSIFY_SCHEMA,
    options: (config) => ({ topK: opts.topK, labels, scores: scoreFunction(config) }),
    runOptions: () => ({ pools: [] }),
    prepare(config: ModelConfig) {
      if (config.numClasses === 0) throw new ModelError(`model "${config.name}" has no classifier head; use \`vit embed\` for its features`);
      const labels = resolveLabels(config, opts.labels);
      const score = scoreFunction(config);
      return (r, row, path) => ({ path, predictions: topK(rowOf(r.logits!, row), opts.topK, labels, score) });
    },
  };
}

/** Scale to unit L2 norm (a zero vector stays zero). */
export function l2normalize(v: Float32Array): Float32Array {
  let s = 0;
  for (const x of v) s += x * x;
  const n = Math.sqrt(s);
  if (n > 0) for (let i = 0; i < v.length; i++) v[i] /= n;
  return v;
}

/** Every pool name some architecture has, for `--pool`'s choices. */
export const POOLS = [...new Set(ARCHITECTURES.flatMap((a) => a.pools as string[]))];

export function embedRows(opts: { pool?: string; normalize: boolean }): RowKind<EmbedRow> {
  /** --pool, else the architecture's default. */
  const poolOf = (config: ModelConfig) => opts.pool ?? archOf(config).pools[0];
  return {
    command: 'embed',
    schema: EMBED_SCHEMA,
    options: (config) => ({ pool: poolOf(config), normalize: opts.normalize }),
    runOptions: (config) => ({ pools: [poolOf(config)] }),
    prepare(config: ModelConfig) {
      const pools = archOf(config).pools;
      const pool = poolOf(config);
      if (!pools.includes(pool)) throw new UsageError(`--pool ${pool}: a ${archOf(config).title} model has ${pools.join(', ')}`);
      return (r, row, path) => {
        const v = rowOf(r.features[pool], row);
        return { path, embedding: opts.normalize ? l2normalize(v) : v };
      };
    },
  };
}

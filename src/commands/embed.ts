import type { RunResult } from '../model/engines/engine.js';
import { rowOf } from './batches.js';
import type { CommandBody, Context } from './common.js';
import { EMBED_SCHEMA } from '../io/writers.js';
import { batchOptions, runCommand, type Args } from './run.js';

export const POOLS = ['cls', 'avg', 'pre-logits'] as const;
type Pool = (typeof POOLS)[number];

function pooled(r: RunResult, pool: Pool) {
  return pool === 'cls' ? r.cls : pool === 'avg' ? r.avg : r.preLogits;
}

/** Scale to unit L2 norm (a zero vector stays zero). */
export function l2normalize(v: Float32Array): Float32Array {
  let s = 0;
  for (const x of v) s += x * x;
  const n = Math.sqrt(s);
  if (n > 0) for (let i = 0; i < v.length; i++) v[i] /= n;
  return v;
}

export function embedCommand(ctx: Context): CommandBody {
  return {
    builder: (y) => batchOptions(y, ['csv', 'json', 'jsonl', 'npy'])
      .option('pool', {
        type: 'string', choices: POOLS, default: 'cls',
        describe: 'cls: final-norm class token (what the head sees); avg: mean of patch tokens; pre-logits: after the representation layer',
      })
      .option('normalize', { type: 'boolean', default: false, describe: 'L2-normalise each vector' })
      .example('$0 embed photos/ -f npy -o feats.npy', 'float32 [N, D] array + feats.paths.txt')
      .example('$0 embed img.jpg --pool avg --normalize -f jsonl', 'one unit vector as JSON'),
    handler: async (argv) => {
      const a = argv as unknown as Args & { pool: Pool; normalize: boolean };
      await runCommand(a, ctx, {
        schema: EMBED_SCHEMA,
        row: (o) => {
          const v = rowOf(pooled(o.result, a.pool), o.row);
          return { path: o.path, embedding: a.normalize ? l2normalize(v) : v };
        },
      });
    },
  };
}

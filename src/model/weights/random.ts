import { archOf } from '../arch/index.js';
import type { ModelConfig } from '../config.js';
import { sizeOf, type TensorMap } from '../tensor.js';

/** mulberry32: a small seeded PRNG, so random models are the same on every run. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * Random weights in the spirit of timm's init (normal std 0.02 for projections and embeddings, LayerNorm at
 * identity, zero biases), for benchmarks and tests only. Seeded: the same config gives the same model.
 */
export function randomWeights(cfg: ModelConfig, seed = 0): TensorMap {
  const next = rng(seed);
  const normal = () => {
    const u = Math.max(next(), 1e-12);
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * next());
  };
  const out: TensorMap = new Map();
  for (const [name, shape] of archOf(cfg).params(cfg)) {
    const data = new Float32Array(sizeOf(shape));
    const isNorm = /(^|\.)(norm\d?|fc_norm)\.weight$/.test(name);
    if (isNorm) data.fill(1);
    else if (!name.endsWith('.bias')) for (let i = 0; i < data.length; i++) data[i] = 0.02 * normal();
    out.set(name, { shape, data });
  }
  return out;
}

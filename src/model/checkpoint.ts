/**
 * From a checkpoint's tensors to weights an engine can run: the architecture's naming scheme detected and
 * applied, the config fitted to what the checkpoint holds, every tensor checked, then adapted to the config
 * (e.g. a position grid resampled). Pure: the bytes were read by src/io.
 */
import { archOf } from './arch/index.js';
import type { ModelConfig } from './config.js';
import { LIMITS } from './limits.js';
import type { TensorMap } from './tensor.js';
import { budgetFor, maxFileBytes, type WeightsBudget } from './weights/budget.js';
import { checkWeights } from './weights/check.js';
import { randomWeights } from './weights/random.js';
import { detectScheme } from './weights/schemes.js';

export interface CheckpointOptions {
  /** The config came from a preset, which says nothing of the checkpoint's head. */
  fromPreset: boolean;
  /** The user fixed the class count (--num-classes): the head must have it. */
  fixedClasses: boolean;
  /** Where the tensors came from, for messages. */
  source: string;
}

export interface LoadedWeights {
  config: ModelConfig;
  weights: TensorMap;
  /** The naming scheme the checkpoint used, or "random". */
  scheme: string;
}

export function fromCheckpoint(cfg: ModelConfig, raw: TensorMap, opts: CheckpointOptions): LoadedWeights {
  const arch = archOf(cfg);
  const scheme = detectScheme(arch.schemes, raw);
  const weights = scheme.toCanonical(raw, cfg);
  const config = arch.fitCheckpoint(cfg, weights, { ...opts, scheme: scheme.name });
  // Checked against the checkpoint's own layout; adapted to the requested one only then.
  checkWeights(config, weights, opts.source);
  arch.prepareWeights(config, weights);
  return { config, weights, scheme: scheme.name };
}

/**
 * What a checkpoint for `cfg` may hold (budget.ts), and the most bytes its file can take. `headFromCheckpoint`
 * says the head's size is taken from the weights (a preset without --num-classes), so it may have up to
 * LIMITS.numClasses classes. Layers a checkpoint adds to the config (ViT's pre-logits) fit the slack.
 */
export function weightsBudget(cfg: ModelConfig, headFromCheckpoint: boolean): WeightsBudget & { maxFileBytes: number } {
  const open = headFromCheckpoint ? { ...cfg, numClasses: Math.max(cfg.numClasses, LIMITS.numClasses.max) } : cfg;
  const budget = budgetFor(archOf(cfg).params(open));
  return { ...budget, maxFileBytes: maxFileBytes(budget) };
}

/** Seeded random weights for a config (benchmarks, tests), adapted like a checkpoint's. */
export function fromRandom(cfg: ModelConfig, seed = 0): LoadedWeights {
  const weights = randomWeights(cfg, seed);
  archOf(cfg).prepareWeights(cfg, weights);
  return { config: cfg, weights, scheme: 'random' };
}

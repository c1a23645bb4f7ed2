import { ModelError } from '../../../errors.js';
import { CHANNEL_COUNTS, type ModelConfig } from '../../config.js';
import { collect, fieldProblem, LIMITS, modelConfigProblems, paramsProblems, patchesProblem } from '../../limits.js';
import { scalePreprocess } from '../../preprocess.js';
import { expectedSwinParams } from './params.js';

/**
 * Whose rules decide the windows of a stage whose map does not tile into whole windows. The three
 * implementations agree whenever every stage's map is a multiple of its window and at least as large — true of
 * every released checkpoint at its own resolution — and differ otherwise (see windows.ts for each rule).
 */
export type WindowRule = 'timm' | 'hf' | 'torchvision';
const WINDOW_RULES: readonly WindowRule[] = ['timm', 'hf', 'torchvision'];

/** Everything needed to build a Swin Transformer (Liu et al. 2021); field names follow timm's SwinTransformer. */
export interface SwinConfig extends ModelConfig {
  arch: 'swin';
  patchSize: number;
  /** Channels of stage 0; stage i has embedDim·2^i. */
  embedDim: number;
  /** Blocks per stage. */
  depths: number[];
  /** Attention heads per stage. */
  numHeads: number[];
  /** Window side per stage, before the rule shrinks it to a small map (timm's S3 models vary it by stage). */
  windowSize: number[];
  /** Each block's MLP is int(C · mlpRatio) wide. */
  mlpRatio: number;
  qkvBias: boolean;
  /** eps of the block norms and of the final norm. */
  layerNormEps: number;
  /**
   * eps of the patch-embedding norm and of every patch merging's norm. Hugging Face builds those two with
   * LayerNorm's default (1e-5) whatever its config's layer_norm_eps says; timm and torchvision use one eps.
   */
  patchNormEps: number;
  windowRule: WindowRule;
}

/** Channels of stage i. */
export function stageDim(cfg: SwinConfig, i: number): number {
  return cfg.embedDim * 2 ** i;
}

/** Channels of the final norm, the pooled features and the head's input. */
export function numFeatures(cfg: SwinConfig): number {
  return stageDim(cfg, cfg.depths.length - 1);
}

/** Hidden width of stage i's MLPs: Python's int() of C · mlp_ratio, as all three implementations compute it. */
export function mlpDim(cfg: SwinConfig, i: number): number {
  return Math.trunc(stageDim(cfg, i) * cfg.mlpRatio);
}

/**
 * Every value past the bounds no real model comes near (src/model/limits.ts), as a list of problems; the
 * parameters are counted only once every size is within its bound.
 */
function swinConfigProblems(cfg: SwinConfig): string[] {
  const list = (field: string, values: unknown, bound: typeof LIMITS.depth) =>
    Array.isArray(values) ? values.map((v, i) => fieldProblem(`${field}[${i}]`, v, bound)) : [`${field} is not a list`];
  const fields = collect([
    fieldProblem('patchSize', cfg.patchSize, LIMITS.patchSize),
    fieldProblem('embedDim', cfg.embedDim, LIMITS.embedDim),
    ...list('depths', cfg.depths, LIMITS.depth),
    ...list('numHeads', cfg.numHeads, LIMITS.numHeads),
    ...list('windowSize', cfg.windowSize, LIMITS.windowSize),
    fieldProblem('layerNormEps', cfg.layerNormEps, LIMITS.layerNormEps),
    fieldProblem('patchNormEps', cfg.patchNormEps, LIMITS.layerNormEps),
  ]);
  const common = modelConfigProblems(cfg);
  if (fields.length + common.length > 0) return [...fields, ...common];
  const sizes = collect([
    fieldProblem('blocks in all', cfg.depths.reduce((a, b) => a + b, 0), LIMITS.depth),
    // The last stage is the widest: embedDim · 2^(stages − 1).
    fieldProblem('last stage width', numFeatures(cfg), LIMITS.embedDim),
    fieldProblem('MLP width', mlpDim(cfg, cfg.depths.length - 1), LIMITS.mlpDim),
    patchesProblem(cfg.imgSize, cfg.patchSize, 'image size'),
  ]);
  return sizes;
}

export function validateSwinConfig(cfg: SwinConfig): SwinConfig {
  const limits = swinConfigProblems(cfg);
  if (limits.length > 0) throw new ModelError(`invalid Swin config "${cfg.name}": ${limits.join('; ')}`);
  const bad: string[] = [];
  const posInt = (v: number) => Number.isInteger(v) && v > 0;
  const stages = cfg.depths.length;
  if (stages === 0 || !cfg.depths.every(posInt)) bad.push(`depths [${cfg.depths.join(', ')}]`);
  if (cfg.numHeads.length !== stages || !cfg.numHeads.every(posInt)) {
    bad.push(`numHeads [${cfg.numHeads.join(', ')}] for ${stages} stages`);
  }
  if (cfg.windowSize.length !== stages || !cfg.windowSize.every(posInt)) {
    bad.push(`windowSize [${cfg.windowSize.join(', ')}] for ${stages} stages`);
  }
  if (!posInt(cfg.embedDim)) bad.push(`embedDim ${cfg.embedDim}`);
  else {
    cfg.numHeads.forEach((h, i) => {
      if (posInt(h) && stageDim(cfg, i) % h !== 0) bad.push(`stage ${i} width ${stageDim(cfg, i)} is not divisible by ${h} heads`);
    });
  }
  if (!(cfg.mlpRatio > 0) || (posInt(cfg.embedDim) && !posInt(mlpDim(cfg, 0)))) bad.push(`mlpRatio ${cfg.mlpRatio}`);
  if (!posInt(cfg.patchSize)) bad.push(`patchSize ${cfg.patchSize}`);
  if (!CHANNEL_COUNTS.includes(cfg.inChans)) bad.push(`inChans ${cfg.inChans} (${CHANNEL_COUNTS.join(' or ')})`);
  for (const s of cfg.imgSize) {
    // Every stage but the last halves the map; a map of one patch cannot be merged again.
    if (!posInt(s) || s < cfg.patchSize * 2 ** (stages - 1)) bad.push(`image size ${cfg.imgSize.join('x')} for patch ${cfg.patchSize} and ${stages} stages`);
  }
  // timm and torchvision drop the pixels past the last whole patch (a strided convolution); transformers pads
  // the image up to the next patch instead, which is not done here.
  if (cfg.windowRule === 'hf' && posInt(cfg.patchSize) && cfg.imgSize.some((s) => s % cfg.patchSize !== 0)) {
    bad.push(`image size ${cfg.imgSize.join('x')} is not a multiple of the patch size ${cfg.patchSize} (transformers' Swin pads the image, which this tool does not)`);
  }
  if (!(Number.isInteger(cfg.numClasses) && cfg.numClasses >= 0)) bad.push(`numClasses ${cfg.numClasses}`);
  if (!(cfg.layerNormEps > 0)) bad.push(`layerNormEps ${cfg.layerNormEps}`);
  if (!(cfg.patchNormEps > 0)) bad.push(`patchNormEps ${cfg.patchNormEps}`);
  if (!WINDOW_RULES.includes(cfg.windowRule)) bad.push(`windowRule "${cfg.windowRule}" (one of ${WINDOW_RULES.join(', ')})`);
  if (cfg.labels && cfg.numClasses > 0 && cfg.labels.length !== cfg.numClasses) {
    bad.push(`${cfg.labels.length} labels for ${cfg.numClasses} classes`);
  }
  if (bad.length > 0) throw new ModelError(`invalid Swin config "${cfg.name}": ${bad.join('; ')}`);
  const params = paramsProblems(expectedSwinParams(cfg));
  if (params.length > 0) throw new ModelError(`invalid Swin config "${cfg.name}": ${params.join('; ')}`);
  return cfg;
}

/**
 * Run a config at another input size: the windows are planned again for the new maps (a stage whose window
 * changes then needs a bias table of the new size, which the weight check asks for); preprocessing scales with it.
 */
export function swinWithImageSize(cfg: SwinConfig, size: [number, number]): SwinConfig {
  if (cfg.imgSize[0] === size[0] && cfg.imgSize[1] === size[1]) return cfg;
  return validateSwinConfig({ ...cfg, imgSize: size, preprocess: scalePreprocess(cfg.preprocess, cfg.imgSize, size) });
}

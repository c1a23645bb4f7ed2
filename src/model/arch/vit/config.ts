import { ModelError } from '../../../errors.js';
import type { ModelConfig } from '../../config.js';
import { collect, fieldProblem, LIMITS, modelConfigProblems, paramsProblems, patchesProblem } from '../../limits.js';
import { scalePreprocess } from '../../preprocess.js';
import { vitParams } from './params.js';

/** Everything needed to build a ViT (and DeiT); field names follow timm's VisionTransformer. */
export interface ViTConfig extends ModelConfig {
  arch: 'vit';
  patchSize: number;
  embedDim: number;
  depth: number;
  numHeads: number;
  /** Hidden size of each block's MLP (timm: embed_dim * mlp_ratio). */
  mlpDim: number;
  /** Width of the tanh pre-logits layer of the original in21k checkpoints; null when absent. */
  representationSize: number | null;
  qkvBias: boolean;
  layerNormEps: number;
  classToken: boolean;
  /** DeiT distillation token after the class token. */
  distilled: boolean;
  /**
   * The distillation token has a head of its own and logits are the mean of both heads (timm's distilled
   * DeiTs, transformers' DeiTForImageClassificationWithTeacher); without it the class token's head alone
   * classifies (transformers' DeiTForImageClassification, what fine-tuning a DeiT there gives).
   */
  distilledHead: boolean;
  globalPool: 'token' | 'avg';
  /** timm's fc_norm: a norm after pooling instead of the final norm over all tokens. */
  fcNorm: boolean;
  /**
   * Grid size of the checkpoint's position embedding when it differs from imgSize / patchSize, i.e. when the
   * model runs at another resolution than it was trained for and the grid is resampled on load.
   */
  posEmbedGrid?: [number, number];
}

/** Number of prefix tokens (class and distillation) before the patch tokens. */
export function numPrefixTokens(cfg: ViTConfig): number {
  return (cfg.classToken ? 1 : 0) + (cfg.distilled ? 1 : 0);
}

/** Patch grid [gh, gw] for the configured input size. */
export function patchGrid(cfg: ViTConfig): [number, number] {
  return [Math.floor(cfg.imgSize[0] / cfg.patchSize), Math.floor(cfg.imgSize[1] / cfg.patchSize)];
}

/** Total tokens the encoder sees: prefix tokens plus patches. */
export function numTokens(cfg: ViTConfig): number {
  const [gh, gw] = patchGrid(cfg);
  return numPrefixTokens(cfg) + gh * gw;
}

export function headDim(cfg: ViTConfig): number {
  return cfg.embedDim / cfg.numHeads;
}

/**
 * Every value past the bounds no real model comes near (src/model/limits.ts), as a list of problems. The
 * parameters are counted only once every size is within its bound, so a depth of 1e9 costs nothing.
 */
export function vitConfigProblems(cfg: ViTConfig): string[] {
  const fields = collect([
    fieldProblem('patchSize', cfg.patchSize, LIMITS.patchSize),
    fieldProblem('embedDim', cfg.embedDim, LIMITS.embedDim),
    fieldProblem('depth', cfg.depth, LIMITS.depth),
    fieldProblem('numHeads', cfg.numHeads, LIMITS.numHeads),
    fieldProblem('mlpDim', cfg.mlpDim, LIMITS.mlpDim),
    cfg.representationSize === null ? null : fieldProblem('representationSize', cfg.representationSize, LIMITS.representationSize),
    fieldProblem('layerNormEps', cfg.layerNormEps, LIMITS.layerNormEps),
    ...(cfg.posEmbedGrid ?? []).map((g, i) => fieldProblem(`posEmbedGrid[${i}]`, g, LIMITS.imageSize)),
  ]);
  const common = modelConfigProblems(cfg);
  if (fields.length + common.length > 0) return [...fields, ...common];
  const patches = patchesProblem(cfg.imgSize, cfg.patchSize, 'image size');
  return patches ? [patches] : paramsProblems(vitParams(cfg));
}

/** Reject configs the architecture cannot express, with a message that names the bad field. */
export function validateVitConfig(cfg: ViTConfig): ViTConfig {
  const limits = vitConfigProblems(cfg);
  if (limits.length > 0) throw new ModelError(`invalid model config "${cfg.name}": ${limits.join('; ')}`);
  const bad: string[] = [];
  const posInt = (v: number) => Number.isInteger(v) && v > 0;
  if (!posInt(cfg.embedDim)) bad.push(`embedDim ${cfg.embedDim}`);
  if (!posInt(cfg.depth)) bad.push(`depth ${cfg.depth}`);
  if (!posInt(cfg.numHeads)) bad.push(`numHeads ${cfg.numHeads}`);
  if (posInt(cfg.embedDim) && posInt(cfg.numHeads) && cfg.embedDim % cfg.numHeads !== 0) {
    bad.push(`embedDim ${cfg.embedDim} is not divisible by numHeads ${cfg.numHeads}`);
  }
  if (!posInt(cfg.mlpDim)) bad.push(`mlpDim ${cfg.mlpDim}`);
  if (!posInt(cfg.patchSize)) bad.push(`patchSize ${cfg.patchSize}`);
  for (const s of cfg.imgSize) {
    if (!posInt(s) || s < cfg.patchSize) bad.push(`image size ${cfg.imgSize.join('x')} for patch ${cfg.patchSize}`);
  }
  if (!(Number.isInteger(cfg.numClasses) && cfg.numClasses >= 0)) bad.push(`numClasses ${cfg.numClasses}`);
  if (cfg.representationSize !== null && !posInt(cfg.representationSize)) {
    bad.push(`representationSize ${cfg.representationSize}`);
  }
  if (!(cfg.layerNormEps > 0)) bad.push(`layerNormEps ${cfg.layerNormEps}`);
  if (!cfg.classToken && cfg.globalPool === 'token') bad.push('globalPool "token" needs a class token');
  if (cfg.distilled && !cfg.classToken) bad.push('a distillation token needs a class token');
  if (cfg.distilledHead && !cfg.distilled) bad.push('a distillation head needs a distillation token');
  if (cfg.labels && cfg.numClasses > 0 && cfg.labels.length !== cfg.numClasses) {
    bad.push(`${cfg.labels.length} labels for ${cfg.numClasses} classes`);
  }
  if (bad.length > 0) throw new ModelError(`invalid model config "${cfg.name}": ${bad.join('; ')}`);
  return cfg;
}

/**
 * Run a config at another input size. The checkpoint's position-embedding grid is remembered in posEmbedGrid
 * so the loader can resample it; preprocessing scales its resize with the new size and crops to it.
 */
export function vitWithImageSize(cfg: ViTConfig, size: [number, number]): ViTConfig {
  if (cfg.imgSize[0] === size[0] && cfg.imgSize[1] === size[1]) return cfg;
  const grid = cfg.posEmbedGrid ?? patchGrid(cfg);
  const out: ViTConfig = { ...cfg, imgSize: size, preprocess: scalePreprocess(cfg.preprocess, cfg.imgSize, size) };
  const [gh, gw] = patchGrid(out);
  out.posEmbedGrid = gh === grid[0] && gw === grid[1] ? undefined : grid;
  return validateVitConfig(out);
}

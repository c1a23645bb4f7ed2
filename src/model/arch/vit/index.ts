/** The ViT architecture record (DeiT included: a distillation token and head are config fields). */
import type { Architecture } from '../types.js';
import { numPrefixTokens, numTokens, patchGrid, validateVitConfig, vitWithImageSize, type ViTConfig } from './config.js';
import { VIT_POOLS, vitForward, vitPrefixPools } from './forward.js';
import { hfConfigJson } from './hf-export.js';
import { vitParams } from './params.js';
import { fitPosEmbed } from './pos-embed.js';
import { VIT_PRESETS } from './presets.js';
import { vitFromHf, vitFromTimm } from './readers.js';
import { VIT_SCHEMES } from './schemes.js';

export const vit: Architecture<ViTConfig> = {
  name: 'vit',
  title: 'ViT / DeiT',
  hfModelTypes: ['vit', 'deit'],
  timmPrefixes: ['vit_', 'deit_'],
  presets: VIT_PRESETS,
  fromHf: vitFromHf,
  fromTimm: vitFromTimm,
  validate: validateVitConfig,
  withImageSize: vitWithImageSize,
  params: vitParams,
  schemes: VIT_SCHEMES,
  fitCheckpoint(cfg, w, { fromPreset, fixedClasses }) {
    // A preset says nothing of the checkpoint's head: take its size from the weights (fine-tuned heads,
    // headless feature extractors, in21k pre-logits), unless the user fixed the class count.
    const out = { ...cfg };
    const pre = w.get('pre_logits.fc.weight');
    if (pre && out.representationSize === null) out.representationSize = pre.shape[0];
    if (fromPreset && !fixedClasses) {
      const head = w.get('head.weight');
      out.numClasses = head ? head.shape[0] : w.has('head_dist.weight') ? out.numClasses : 0;
      if (out.numClasses !== cfg.numClasses) out.labels = null;
    }
    return validateVitConfig(out);
  },
  prepareWeights: fitPosEmbed,
  forward: vitForward,
  pools: VIT_POOLS,
  prefixPools: vitPrefixPools,
  attention: {
    layers: (cfg) => cfg.depth,
    heads: (cfg) => cfg.numHeads,
    layout: 'per block [heads, tokens, tokens], tokens = class (and distillation) tokens + the patch grid row by row',
    global: { prefixTokens: numPrefixTokens, grid: patchGrid, patchSize: (cfg) => cfg.patchSize },
  },
  layerOf: (param) => /^blocks\.\d+/.exec(param)?.[0] ?? param.split('.')[0],
  summaryFields: (cfg) => ({
    patchSize: cfg.patchSize, grid: patchGrid(cfg), tokens: numTokens(cfg), embedDim: cfg.embedDim, depth: cfg.depth,
    numHeads: cfg.numHeads, mlpDim: cfg.mlpDim,
  }),
  describe: (cfg) => {
    const [gh, gw] = patchGrid(cfg);
    return `patch ${cfg.patchSize}, ${gh}×${gw} grid, ${numTokens(cfg)} tokens, width ${cfg.embedDim}, depth ${cfg.depth}, ` +
      `${cfg.numHeads} heads, MLP ${cfg.mlpDim}`;
  },
  hfConfig: (cfg) => hfConfigJson(cfg, cfg.labels ?? undefined),
};

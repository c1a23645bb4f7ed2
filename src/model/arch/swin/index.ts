/** The Swin Transformer architecture record (Liu et al. 2021, as timm, transformers and torchvision have it). */
import type { Architecture } from '../types.js';
import { swinWithImageSize, validateSwinConfig, type SwinConfig } from './config.js';
import { SWIN_ATTENTION_LAYOUT, describeSwin, stageOfBlock, swinLayerOf, swinSummaryFields } from './describe.js';
import { SWIN_POOLS, swinForward } from './forward.js';
import { swinHfConfig } from './hf-export.js';
import { expectedSwinParams } from './params.js';
import { SWIN_PRESETS } from './presets.js';
import { swinFromHf, swinFromTimm } from './readers.js';
import { SWIN_SCHEMES, fitSwinCheckpoint } from './schemes.js';
import { blockWindows } from './windows.js';

export const swin: Architecture<SwinConfig> = {
  name: 'swin',
  title: 'Swin',
  hfModelTypes: ['swin'],
  timmPrefixes: ['swin_'],
  presets: SWIN_PRESETS,
  fromHf: swinFromHf,
  fromTimm: swinFromTimm,
  validate: validateSwinConfig,
  withImageSize: swinWithImageSize,
  params: expectedSwinParams,
  schemes: SWIN_SCHEMES,
  fitCheckpoint: fitSwinCheckpoint,
  // Nothing to adapt: the position index and masks are derived from the config at run time.
  prepareWeights: () => undefined,
  forward: swinForward,
  pools: SWIN_POOLS,
  // Its features average every token of the last stage.
  prefixPools: () => null,
  attention: {
    layers: (cfg) => cfg.depths.reduce((a, b) => a + b, 0),
    heads: (cfg, layer) => cfg.numHeads[stageOfBlock(cfg, layer)],
    layout: SWIN_ATTENTION_LAYOUT,
    global: null,
    windows: (cfg, layer) => {
      const w = blockWindows(cfg)[layer];
      return { count: w.numWindows, tokens: w.tokens };
    },
  },
  layerOf: swinLayerOf,
  summaryFields: swinSummaryFields,
  describe: describeSwin,
  hfConfig: swinHfConfig,
};

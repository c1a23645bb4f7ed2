import { numFeatures, stageDim, type SwinConfig } from './config.js';
import { blockWindows, stageMaps } from './windows.js';

/** The summary row a parameter belongs to: a block, a patch merging, or a top-level module. */
export function swinLayerOf(param: string): string {
  return /^layers\.\d+\.(blocks\.\d+|downsample)/.exec(param)?.[0] ?? param.split('.')[0];
}

/** Per stage: its map, width, blocks, heads and windows (after the rule), for `vit summary`. */
function swinStages(cfg: SwinConfig) {
  const maps = stageMaps(cfg);
  const windows = blockWindows(cfg);
  return cfg.depths.map((depth, i) => ({
    map: maps[i], dim: stageDim(cfg, i), depth, numHeads: cfg.numHeads[i],
    windows: [...new Set(windows.filter((w) => w.stage === i).map((w) => `${w.window.join('x')}${w.shift[0] || w.shift[1] ? ` shifted ${w.shift.join(',')}` : ''}`))],
  }));
}

export function swinSummaryFields(cfg: SwinConfig): Record<string, unknown> {
  return {
    patchSize: cfg.patchSize, grid: stageMaps(cfg)[0], embedDim: cfg.embedDim, depths: cfg.depths, numHeads: cfg.numHeads,
    windowSize: cfg.windowSize, mlpRatio: cfg.mlpRatio, numFeatures: numFeatures(cfg), windowRule: cfg.windowRule,
    stages: swinStages(cfg),
  };
}

export function describeSwin(cfg: SwinConfig): string {
  const [gh, gw] = stageMaps(cfg)[0];
  const w = [...new Set(cfg.windowSize)].join('/');
  return `patch ${cfg.patchSize}, ${gh}×${gw} grid, ${cfg.depths.length} stages of ${cfg.depths.join('-')} blocks, ` +
    `width ${cfg.embedDim}→${numFeatures(cfg)}, heads ${cfg.numHeads.join('-')}, window ${w}, MLP ×${cfg.mlpRatio}`;
}

/** Which stage attention layer (block) i of the whole model belongs to. */
export function stageOfBlock(cfg: SwinConfig, layer: number): number {
  let n = layer;
  for (let s = 0; s < cfg.depths.length; s++) {
    if (n < cfg.depths[s]) return s;
    n -= cfg.depths[s];
  }
  throw new RangeError(`block ${layer} of a ${cfg.depths.reduce((a, b) => a + b, 0)}-block Swin`);
}

/** The words `vit attention --raw` and the README use for the layout of Swin's attention. */
export const SWIN_ATTENTION_LAYOUT =
  'per block [windows, heads, N, N]: N = wh·ww tokens of a window row by row, windows row by row over the ' +
  'block\'s padded map; in shifted blocks over the cyclically shifted map';

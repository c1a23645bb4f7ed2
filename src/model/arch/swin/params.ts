import { mlpDim, numFeatures, stageDim, type SwinConfig } from './config.js';
import { biasTableRows, blockWindows } from './windows.js';

/**
 * The canonical parameter names (timm ≥ 0.9's: patch merging at the start of stage i as
 * `layers.i.downsample`, the classifier as `head.fc`) and shapes a config implies. One list drives the weight
 * check, the parameter counts and random initialisation. Buffers (relative_position_index, attn_mask) are not
 * parameters: they are derived from the config (windows.ts).
 */
export function expectedSwinParams(cfg: SwinConfig): Map<string, number[]> {
  const p = new Map<string, number[]>();
  const D = cfg.embedDim;
  p.set('patch_embed.proj.weight', [D, cfg.inChans, cfg.patchSize, cfg.patchSize]);
  p.set('patch_embed.proj.bias', [D]);
  p.set('patch_embed.norm.weight', [D]);
  p.set('patch_embed.norm.bias', [D]);
  const windows = blockWindows(cfg);
  cfg.depths.forEach((_, stage) => {
    const C = stageDim(cfg, stage);
    const M = mlpDim(cfg, stage);
    if (stage > 0) {
      const down = `layers.${stage}.downsample`;
      p.set(`${down}.norm.weight`, [2 * C]);
      p.set(`${down}.norm.bias`, [2 * C]);
      p.set(`${down}.reduction.weight`, [C, 2 * C]);
    }
    for (const w of windows.filter((b) => b.stage === stage)) {
      const b = `layers.${stage}.blocks.${w.block}`;
      p.set(`${b}.norm1.weight`, [C]);
      p.set(`${b}.norm1.bias`, [C]);
      p.set(`${b}.attn.relative_position_bias_table`, [biasTableRows(w.window), cfg.numHeads[stage]]);
      p.set(`${b}.attn.qkv.weight`, [3 * C, C]);
      if (cfg.qkvBias) p.set(`${b}.attn.qkv.bias`, [3 * C]);
      p.set(`${b}.attn.proj.weight`, [C, C]);
      p.set(`${b}.attn.proj.bias`, [C]);
      p.set(`${b}.norm2.weight`, [C]);
      p.set(`${b}.norm2.bias`, [C]);
      p.set(`${b}.mlp.fc1.weight`, [M, C]);
      p.set(`${b}.mlp.fc1.bias`, [M]);
      p.set(`${b}.mlp.fc2.weight`, [C, M]);
      p.set(`${b}.mlp.fc2.bias`, [C]);
    }
  });
  const F = numFeatures(cfg);
  p.set('norm.weight', [F]);
  p.set('norm.bias', [F]);
  if (cfg.numClasses > 0) {
    p.set('head.fc.weight', [cfg.numClasses, F]);
    p.set('head.fc.bias', [cfg.numClasses]);
  }
  return p;
}

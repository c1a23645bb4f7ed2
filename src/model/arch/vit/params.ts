import { numPrefixTokens, patchGrid, type ViTConfig } from './config.js';

/**
 * The canonical parameter names (timm's) and shapes a config implies. This one list drives the weight check,
 * the parameter counts of `vit summary` and random initialisation, so the three can never disagree.
 */
export function vitParams(cfg: ViTConfig): Map<string, number[]> {
  const D = cfg.embedDim;
  const M = cfg.mlpDim;
  const [gh, gw] = cfg.posEmbedGrid ?? patchGrid(cfg);
  const p = new Map<string, number[]>();
  p.set('patch_embed.proj.weight', [D, cfg.inChans, cfg.patchSize, cfg.patchSize]);
  p.set('patch_embed.proj.bias', [D]);
  if (cfg.classToken) p.set('cls_token', [1, 1, D]);
  if (cfg.distilled) p.set('dist_token', [1, 1, D]);
  p.set('pos_embed', [1, numPrefixTokens(cfg) + gh * gw, D]);
  for (let i = 0; i < cfg.depth; i++) {
    const b = `blocks.${i}`;
    p.set(`${b}.norm1.weight`, [D]);
    p.set(`${b}.norm1.bias`, [D]);
    p.set(`${b}.attn.qkv.weight`, [3 * D, D]);
    if (cfg.qkvBias) p.set(`${b}.attn.qkv.bias`, [3 * D]);
    p.set(`${b}.attn.proj.weight`, [D, D]);
    p.set(`${b}.attn.proj.bias`, [D]);
    p.set(`${b}.norm2.weight`, [D]);
    p.set(`${b}.norm2.bias`, [D]);
    p.set(`${b}.mlp.fc1.weight`, [M, D]);
    p.set(`${b}.mlp.fc1.bias`, [M]);
    p.set(`${b}.mlp.fc2.weight`, [D, M]);
    p.set(`${b}.mlp.fc2.bias`, [D]);
  }
  const norm = cfg.fcNorm ? 'fc_norm' : 'norm';
  p.set(`${norm}.weight`, [D]);
  p.set(`${norm}.bias`, [D]);
  let featureDim = D;
  if (cfg.representationSize !== null) {
    p.set('pre_logits.fc.weight', [cfg.representationSize, D]);
    p.set('pre_logits.fc.bias', [cfg.representationSize]);
    featureDim = cfg.representationSize;
  }
  if (cfg.numClasses > 0) {
    p.set('head.weight', [cfg.numClasses, featureDim]);
    p.set('head.bias', [cfg.numClasses]);
    if (cfg.distilledHead) {
      p.set('head_dist.weight', [cfg.numClasses, D]);
      p.set('head_dist.bias', [cfg.numClasses]);
    }
  }
  return p;
}

import { ModelError } from '../../../errors.js';
import { hfHeadFields, type Json } from '../../config-json.js';
import type { SwinConfig } from './config.js';
import { blockWindows } from './windows.js';

/** The eps transformers' Swin gives its patch-embedding and patch-merging norms, whatever layer_norm_eps says. */
const HF_PATCH_NORM_EPS = 1e-5;

/**
 * Whether transformers' Swin, built from the config.json below, partitions every block's map as this config
 * does: the three rules differ only where a stage's map does not tile into whole windows.
 */
function hfWindowsAgree(cfg: SwinConfig): boolean {
  const ours = blockWindows(cfg);
  const theirs = blockWindows({ ...cfg, windowRule: 'hf' });
  return ours.every((w, i) => {
    const t = theirs[i];
    const same = (a: number[], b: number[]) => a[0] === b[0] && a[1] === b[1];
    const padded = !same(w.padded, w.map);
    return same(w.window, t.window) && same(w.shift, t.shift) && same(w.padded, t.padded) && (!padded || w.padFirst === t.padFirst);
  });
}

/**
 * A transformers `config.json` for a Swin classifier (SwinForImageClassification). A Swin that transformers
 * would build otherwise from any such file is refused, naming why: per-stage windows (it has one
 * window_size), patch norms with another eps than its fixed 1e-5, or windows partitioned by another rule at
 * this image size.
 */
export function swinHfConfig(cfg: SwinConfig): Json {
  const problems: string[] = [];
  if (new Set(cfg.windowSize).size > 1) problems.push(`its windows differ by stage (${cfg.windowSize.join(', ')}) and transformers has one window_size`);
  if (cfg.patchNormEps !== HF_PATCH_NORM_EPS) problems.push(`its patch norms have eps ${cfg.patchNormEps} and transformers fixes ${HF_PATCH_NORM_EPS}`);
  if (problems.length === 0 && !hfWindowsAgree(cfg)) {
    problems.push(`at ${cfg.imgSize.join('x')} transformers places windows otherwise than ${cfg.windowRule} does`);
  }
  if (problems.length > 0) {
    throw new ModelError(`${cfg.name}: transformers' Swin cannot describe this model (${problems.join('; ')}), so vit export cannot write its config.json`);
  }
  return {
    model_type: 'swin',
    architectures: [cfg.numClasses > 0 ? 'SwinForImageClassification' : 'SwinModel'],
    image_size: cfg.imgSize[0] === cfg.imgSize[1] ? cfg.imgSize[0] : cfg.imgSize,
    patch_size: cfg.patchSize,
    num_channels: cfg.inChans,
    embed_dim: cfg.embedDim,
    depths: cfg.depths,
    num_heads: cfg.numHeads,
    window_size: cfg.windowSize[0],
    mlp_ratio: cfg.mlpRatio,
    qkv_bias: cfg.qkvBias,
    hidden_act: 'gelu',
    use_absolute_embeddings: false,
    layer_norm_eps: cfg.layerNormEps,
    ...hfHeadFields(cfg.numClasses, cfg.labels, cfg.problemType),
  };
}

import { hfHeadFields, type Json } from '../../config-json.js';
import type { SwinConfig } from './config.js';

/**
 * A transformers `config.json` for a Swin classifier (SwinForImageClassification). Loaders of an exported
 * folder (transformers.js, Optimum) read its model type, labels and sizes; the ONNX graph beside it is what
 * runs. Where transformers' Swin has no field for what this model does, the file says it as timm would:
 * windows that differ by stage as a list (transformers has one window_size); timm's or torchvision's window
 * placement on maps that do not tile into whole windows, and patch norms with another eps than transformers'
 * fixed 1e-5, have no field at all.
 */
export function swinHfConfig(cfg: SwinConfig): Json {
  const windows = new Set(cfg.windowSize).size === 1 ? cfg.windowSize[0] : cfg.windowSize;
  return {
    model_type: 'swin',
    architectures: [cfg.numClasses > 0 ? 'SwinForImageClassification' : 'SwinModel'],
    image_size: cfg.imgSize[0] === cfg.imgSize[1] ? cfg.imgSize[0] : cfg.imgSize,
    patch_size: cfg.patchSize,
    num_channels: cfg.inChans,
    embed_dim: cfg.embedDim,
    depths: cfg.depths,
    num_heads: cfg.numHeads,
    window_size: windows,
    mlp_ratio: cfg.mlpRatio,
    qkv_bias: cfg.qkvBias,
    hidden_act: 'gelu',
    use_absolute_embeddings: false,
    layer_norm_eps: cfg.layerNormEps,
    ...hfHeadFields(cfg.numClasses, cfg.labels, cfg.problemType),
  };
}

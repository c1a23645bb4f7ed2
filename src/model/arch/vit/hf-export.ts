import type { TensorMap } from '../../tensor.js';
import { hfHeadFields } from '../../config-json.js';
import { renameAll } from '../../weights/schemes.js';
import type { ViTConfig } from './config.js';

/** Canonical (timm) names → the names transformers' ViTForImageClassification uses: the hf scheme reversed. */
const HF_NAMES: [RegExp, string][] = [
  [/^patch_embed\.proj\./, 'vit.embeddings.patch_embeddings.projection.'],
  [/^cls_token$/, 'vit.embeddings.cls_token'],
  [/^pos_embed$/, 'vit.embeddings.position_embeddings'],
  [/^blocks\.(\d+)\.norm1\./, 'vit.encoder.layer.$1.layernorm_before.'],
  [/^blocks\.(\d+)\.norm2\./, 'vit.encoder.layer.$1.layernorm_after.'],
  [/^blocks\.(\d+)\.attn\.(query|key|value)\./, 'vit.encoder.layer.$1.attention.attention.$2.'],
  [/^blocks\.(\d+)\.attn\.proj\./, 'vit.encoder.layer.$1.attention.output.dense.'],
  [/^blocks\.(\d+)\.mlp\.fc1\./, 'vit.encoder.layer.$1.intermediate.dense.'],
  [/^blocks\.(\d+)\.mlp\.fc2\./, 'vit.encoder.layer.$1.output.dense.'],
  [/^norm\./, 'vit.layernorm.'],
  [/^head\./, 'classifier.'],
];

/** Canonical weights → Hugging Face ViT names, with the fused qkv split back into query, key and value. */
export function toHfWeights(canonical: TensorMap): TensorMap {
  const split: TensorMap = new Map();
  for (const [name, t] of canonical) {
    const m = /^(blocks\.\d+\.attn)\.qkv\.(weight|bias)$/.exec(name);
    if (!m) {
      split.set(name, t);
      continue;
    }
    // Fused rows are [q; k; v]: [3D, ...] → three [D, ...].
    const part = t.data.length / 3;
    (['query', 'key', 'value'] as const).forEach((p, i) => {
      split.set(`${m[1]}.${p}.${m[2]}`, { shape: [t.shape[0] / 3, ...t.shape.slice(1)], data: t.data.subarray(i * part, (i + 1) * part) });
    });
  }
  return renameAll(split, HF_NAMES);
}

/**
 * A transformers `config.json` for a ViT classifier (labels and problem type: hfHeadFields); a DeiT with a
 * distillation token is transformers' DeiT, whose classifier with teacher also averages the two heads.
 * Loaders of an exported folder read its model type, labels and sizes; the ONNX graph beside it is what runs
 * (transformers' ViT has no field for timm's average pooling, fc_norm or pre-logits layer).
 */
export function hfConfigJson(cfg: ViTConfig, labels?: string[]): Record<string, unknown> {
  const [type, classifier, base] = cfg.distilled
    ? ['deit', cfg.distilledHead ? 'DeiTForImageClassificationWithTeacher' : 'DeiTForImageClassification', 'DeiTModel']
    : ['vit', 'ViTForImageClassification', 'ViTModel'];
  return {
    model_type: type,
    architectures: [cfg.numClasses > 0 ? classifier : base],
    hidden_size: cfg.embedDim,
    num_hidden_layers: cfg.depth,
    num_attention_heads: cfg.numHeads,
    intermediate_size: cfg.mlpDim,
    hidden_act: 'gelu',
    image_size: cfg.imgSize[0] === cfg.imgSize[1] ? cfg.imgSize[0] : cfg.imgSize,
    patch_size: cfg.patchSize,
    num_channels: cfg.inChans,
    layer_norm_eps: cfg.layerNormEps,
    qkv_bias: cfg.qkvBias,
    ...hfHeadFields(cfg.numClasses, labels, cfg.problemType),
  };
}

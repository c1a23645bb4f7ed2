import type { Scheme } from '../types.js';
import { fuseQkv, renameAll, stripCommonPrefix } from '../../weights/schemes.js';
import type { ViTConfig } from './config.js';
import { googleScheme } from './google-names.js';
import { QKV_NAMES } from './qkv-names.js';
import { torchvisionScheme } from './torchvision-names.js';

const timm: Scheme<ViTConfig> = {
  name: 'timm',
  detect: (keys) => keys.includes('patch_embed.proj.weight'),
  // Older timm releases and some fine-tuning repos name the in21k representation layer `head.pre_logits`.
  toCanonical: (src) => renameAll(src, [[/^head\.pre_logits\.fc\./, 'pre_logits.fc.'], [/^head\.fc\./, 'head.']]),
};

/** Hugging Face transformers: ViT (`vit.`), DeiT (`deit.`) and headless ViTModel (no prefix). */
const hf: Scheme<ViTConfig> = {
  name: 'hf',
  detect: (keys) => keys.some((k) => /(^|\.)embeddings\.patch_embeddings\.projection\.weight$/.test(k)),
  toCanonical: (src, cfg) => {
    const m = renameAll(stripCommonPrefix(src, ['module.']), [
      [/^(vit|deit)\./, ''],
    ]);
    const enc = 'encoder.layer.';
    const renamed = renameAll(m, [
      [/^embeddings\.patch_embeddings\.projection\./, 'patch_embed.proj.'],
      [/^embeddings\.cls_token$/, 'cls_token'],
      [/^embeddings\.distillation_token$/, 'dist_token'],
      [/^embeddings\.position_embeddings$/, 'pos_embed'],
      [new RegExp(`^${enc}(\\d+)\\.layernorm_before\\.`), 'blocks.$1.norm1.'],
      [new RegExp(`^${enc}(\\d+)\\.layernorm_after\\.`), 'blocks.$1.norm2.'],
      [new RegExp(`^${enc}(\\d+)\\.attention\\.attention\\.(query|key|value)\\.`), 'blocks.$1.attn.$2.'],
      [new RegExp(`^${enc}(\\d+)\\.attention\\.output\\.dense\\.`), 'blocks.$1.attn.proj.'],
      [new RegExp(`^${enc}(\\d+)\\.intermediate\\.dense\\.`), 'blocks.$1.mlp.fc1.'],
      [new RegExp(`^${enc}(\\d+)\\.output\\.dense\\.`), 'blocks.$1.mlp.fc2.'],
      [/^layernorm\./, 'norm.'],
      // The in21k ViTModel checkpoints keep the tanh representation layer as the pooler.
      [/^pooler\.dense\./, 'pre_logits.fc.'],
      [/^(classifier|cls_classifier)\./, 'head.'],
      [/^distillation_classifier\./, 'head_dist.'],
    ]);
    fuseQkv(renamed, cfg.depth, (i, part, kind) => `blocks.${i}.attn.${QKV_NAMES[part]}.${kind}`);
    return renamed;
  },
};

/** The naming schemes of ViT checkpoints, in detection order; the canonical names are timm's. */
export const VIT_SCHEMES: readonly Scheme<ViTConfig>[] = [timm, hf, torchvisionScheme, googleScheme];

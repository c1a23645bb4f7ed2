import { renameAll } from '../../weights/schemes.js';
import type { Scheme } from '../types.js';
import type { ViTConfig } from './config.js';

const LAYER = String.raw`^encoder\.layers\.encoder_layer_(\d+)\.`;

/**
 * torchvision's VisionTransformer. Its nn.MultiheadAttention already keeps q, k and v fused as in_proj rows
 * (q | k | v), exactly timm's qkv layout, so every tensor is only renamed. Older torchvision releases named
 * the MLP layers linear_1 / linear_2 instead of 0 / 3.
 */
export const torchvisionScheme: Scheme<ViTConfig> = {
  name: 'torchvision',
  detect: (keys) => keys.includes('conv_proj.weight') || keys.includes('class_token') || keys.some((k) => /^encoder\.layers\.encoder_layer_\d+\./.test(k)),
  toCanonical: (src) => renameAll(src, [
    [/^conv_proj\./, 'patch_embed.proj.'],
    [/^class_token$/, 'cls_token'],
    [/^encoder\.pos_embedding$/, 'pos_embed'],
    [new RegExp(`${LAYER}ln_1\\.`), 'blocks.$1.norm1.'],
    [new RegExp(`${LAYER}ln_2\\.`), 'blocks.$1.norm2.'],
    [new RegExp(`${LAYER}self_attention\\.in_proj_(weight|bias)$`), 'blocks.$1.attn.qkv.$2'],
    [new RegExp(`${LAYER}self_attention\\.out_proj\\.`), 'blocks.$1.attn.proj.'],
    [new RegExp(`${LAYER}mlp\\.(0|linear_1)\\.`), 'blocks.$1.mlp.fc1.'],
    [new RegExp(`${LAYER}mlp\\.(3|linear_2)\\.`), 'blocks.$1.mlp.fc2.'],
    [/^encoder\.ln\./, 'norm.'],
    [/^heads\.head\./, 'head.'],
    [/^heads\.pre_logits\./, 'pre_logits.fc.'],
  ]),
};

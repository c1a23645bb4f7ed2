import { WeightsError } from '../../../errors.js';
import { shapeStr, sizeOf, type HostTensor, type TensorMap } from '../../tensor.js';
import { fuseQkv, stripCommonPrefix } from '../../weights/schemes.js';
import type { Scheme } from '../types.js';
import type { ViTConfig } from './config.js';
import { QKV_NAMES } from './qkv-names.js';

/** Reorder the axes of a row-major tensor: out.shape[i] = t.shape[axes[i]]. */
export function permute(t: HostTensor, axes: number[]): HostTensor {
  const rank = t.shape.length;
  const shape = axes.map((a) => t.shape[a]);
  const inStride = new Array<number>(rank);
  let acc = 1;
  for (let d = rank - 1; d >= 0; d--) {
    inStride[d] = acc;
    acc *= t.shape[d];
  }
  const step = axes.map((a) => inStride[a]); // input stride of each output axis
  const data = new Float32Array(t.data.length);
  const idx = new Array<number>(rank).fill(0);
  let src = 0;
  for (let i = 0; i < data.length; i++) {
    data[i] = t.data[src];
    for (let d = rank - 1; d >= 0; d--) {
      if (++idx[d] < shape[d]) {
        src += step[d];
        break;
      }
      src -= (shape[d] - 1) * step[d];
      idx[d] = 0;
    }
  }
  return { shape, data };
}

function reshape(t: HostTensor, shape: number[], name: string): HostTensor {
  if (sizeOf(shape) !== t.data.length) throw new WeightsError(`google npz: "${name}" has shape ${shapeStr(t.shape)}, cannot view as ${shapeStr(shape)}`);
  return { shape, data: t.data };
}

/** Flax Dense kernels are [in, out]; torch Linear weights are [out, in]. */
function denseToLinear(t: HostTensor, name: string): HostTensor {
  const [inDim, outDim] = [t.shape[0], sizeOf(t.shape.slice(1))];
  return permute(reshape(t, [inDim, outDim], name), [1, 0]);
}

type Convert = (t: HostTensor, name: string) => HostTensor;
const same: Convert = (t) => t;
const flat: Convert = (t, name) => reshape(t, [t.data.length], name);

const BLOCK = String.raw`^Transformer/encoderblock_(\d+)/`;
// The original release numbers sub-modules MultiHeadDotProductAttention_1, LayerNorm_2, MlpBlock_3;
// big_vision's exports number them _0, _1, _0. Both mean the same layers.
const MHA = String.raw`${BLOCK}MultiHeadDotProductAttention_[01]/`;

/** Each rule: Google name pattern → canonical name (with $1 = block index) and a layout conversion. */
const RULES: [RegExp, string, Convert][] = [
  // HWIO [P, P, C, D] → OIHW [D, C, P, P]
  [/^embedding\/kernel$/, 'patch_embed.proj.weight', (t) => permute(t, [3, 2, 0, 1])],
  [/^embedding\/bias$/, 'patch_embed.proj.bias', same],
  [/^cls$/, 'cls_token', same],
  [/^Transformer\/posembed_input\/pos_embedding$/, 'pos_embed', same],
  [new RegExp(`${BLOCK}LayerNorm_0/scale$`), 'blocks.$1.norm1.weight', same],
  [new RegExp(`${BLOCK}LayerNorm_0/bias$`), 'blocks.$1.norm1.bias', same],
  [new RegExp(`${BLOCK}LayerNorm_[12]/scale$`), 'blocks.$1.norm2.weight', same],
  [new RegExp(`${BLOCK}LayerNorm_[12]/bias$`), 'blocks.$1.norm2.bias', same],
  // q/k/v kernels [D, heads, hd] → [D, heads·hd] → Linear [heads·hd, D]; biases [heads, hd] → [heads·hd]
  [new RegExp(`${MHA}(query|key|value)/kernel$`), 'blocks.$1.attn.$2.weight', denseToLinear],
  [new RegExp(`${MHA}(query|key|value)/bias$`), 'blocks.$1.attn.$2.bias', flat],
  // out kernel [heads, hd, D] → [heads·hd, D] → Linear [D, heads·hd]
  [new RegExp(`${MHA}out/kernel$`), 'blocks.$1.attn.proj.weight', (t, n) => denseToLinear(reshape(t, [sizeOf(t.shape.slice(0, -1)), t.shape[t.shape.length - 1]], n), n)],
  [new RegExp(`${MHA}out/bias$`), 'blocks.$1.attn.proj.bias', same],
  [new RegExp(`${BLOCK}MlpBlock_[03]/Dense_0/kernel$`), 'blocks.$1.mlp.fc1.weight', denseToLinear],
  [new RegExp(`${BLOCK}MlpBlock_[03]/Dense_0/bias$`), 'blocks.$1.mlp.fc1.bias', same],
  [new RegExp(`${BLOCK}MlpBlock_[03]/Dense_1/kernel$`), 'blocks.$1.mlp.fc2.weight', denseToLinear],
  [new RegExp(`${BLOCK}MlpBlock_[03]/Dense_1/bias$`), 'blocks.$1.mlp.fc2.bias', same],
  [/^Transformer\/encoder_norm\/scale$/, 'norm.weight', same],
  [/^Transformer\/encoder_norm\/bias$/, 'norm.bias', same],
  [/^pre_logits\/kernel$/, 'pre_logits.fc.weight', denseToLinear],
  [/^pre_logits\/bias$/, 'pre_logits.fc.bias', same],
  [/^head\/kernel$/, 'head.weight', denseToLinear],
  [/^head\/bias$/, 'head.bias', same],
];

/**
 * The original Google (Flax) release as .npz: slash-separated names, Dense kernels [in, out], attention
 * kernels split per head. Training checkpoints prefix every name with `opt/target/`.
 */
export const googleScheme: Scheme<ViTConfig> = {
  name: 'google',
  detect: (keys) => keys.some((k) => /^(opt\/target\/)?(embedding\/kernel|Transformer\/encoderblock_\d+\/)/.test(k)),
  toCanonical: (src, cfg) => {
    const out: TensorMap = new Map();
    for (const [k, t] of stripCommonPrefix(src, ['opt/target/'])) {
      const rule = RULES.find(([re]) => re.test(k));
      // Unknown names are kept so the strict weight check lists them as unexpected.
      out.set(rule ? k.replace(rule[0], rule[1]) : k, rule ? rule[2](t, k) : t);
    }
    fuseQkv(out, cfg.depth, (i, part, kind) => `blocks.${i}.attn.${QKV_NAMES[part]}.${kind}`);
    return out;
  },
};

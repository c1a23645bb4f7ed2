import type { Ops } from '../../ops.js';
import type { ForwardOptions, ModelOutputs } from '../types.js';
import { headDim, numPrefixTokens, numTokens, patchGrid, type ViTConfig } from './config.js';

/**
 * The pooled features a ViT forward returns, by `vit embed --pool` name:
 * - cls: [B, D] the class token after the final norm, what the head sees for token-pooled models;
 * - avg: [B, D] mean of the patch tokens (after the final norm, or through fc_norm where the model has one);
 * - pre-logits: [B, R or D] the pooled features after the representation layer: the head's input.
 */
export const VIT_POOLS = ['cls', 'avg', 'pre-logits'] as const;

/** x [B, T, D] → the heads' merged context [B, T, D], spelled out op by op (the probabilities are values). */
function headsAttention<T>(ops: Ops<T>, cfg: ViTConfig, qkv: T, probsOut: T[] | null): T {
  const D = cfg.embedDim;
  const H = cfg.numHeads;
  const hd = headDim(cfg);
  const T_ = numTokens(cfg);
  const heads = (part: number) => {
    const t = ops.slice(qkv, 2, part * D, (part + 1) * D); // [B, T, 3D] → [B, T, D]
    const split = ops.reshape(t, [0, T_, H, hd]); // [B, T, D] → [B, T, H, hd]
    return ops.transpose(split, [0, 2, 1, 3]); // [B, T, H, hd] → [B, H, T, hd]
  };
  const q = ops.scale(heads(0), 1 / Math.sqrt(hd));
  const k = heads(1);
  const v = heads(2);
  const probs = ops.softmax(ops.matMul(q, k, true)); // [B, H, T, T]
  if (probsOut) probsOut.push(probs);
  const ctx = ops.transpose(ops.matMul(probs, v), [0, 2, 1, 3]); // [B, H, T, hd] → [B, T, H, hd]
  return ops.reshape(ctx, [0, T_, D]); // [B, T, H, hd] → [B, T, D]
}

function attention<T>(ops: Ops<T>, cfg: ViTConfig, x: T, i: number, probsOut: T[] | null): T {
  const p = (n: string) => ops.param(`blocks.${i}.attn.${n}`);
  const w = p('qkv.weight');
  const b = cfg.qkvBias ? p('qkv.bias') : undefined;
  const merged = ops.selfAttention && !probsOut
    ? ops.selfAttention(x, w, b, cfg.numHeads)
    : headsAttention(ops, cfg, ops.linear(x, w, b), probsOut); // [B, T, D] → [B, T, 3D] → [B, T, D]
  return ops.linear(merged, p('proj.weight'), p('proj.bias'));
}

function block<T>(ops: Ops<T>, cfg: ViTConfig, x: T, i: number, probsOut: T[] | null): T {
  const p = (n: string) => ops.param(`blocks.${i}.${n}`);
  const eps = cfg.layerNormEps;
  const a = attention(ops, cfg, ops.layerNorm(x, p('norm1.weight'), p('norm1.bias'), eps), i, probsOut);
  x = ops.add(x, a);
  const h = ops.layerNorm(x, p('norm2.weight'), p('norm2.bias'), eps);
  const m = ops.linear(ops.gelu(ops.linear(h, p('mlp.fc1.weight'), p('mlp.fc1.bias'))), p('mlp.fc2.weight'), p('mlp.fc2.bias'));
  return ops.add(x, m);
}

/** The encoder up to (and including) the final norm: [B, C, H, W] → [B, tokens, D]. */
export function encode<T>(ops: Ops<T>, cfg: ViTConfig, images: T, probsOut: T[] | null): T {
  const [gh, gw] = patchGrid(cfg);
  const D = cfg.embedDim;
  const grid = ops.patchEmbed(images, ops.param('patch_embed.proj.weight'), ops.param('patch_embed.proj.bias'), cfg.patchSize); // [B, D, gh, gw]
  const flat = ops.reshape(grid, [0, D, gh * gw]); // [B, D, gh, gw] → [B, D, N]
  let x = ops.transpose(flat, [0, 2, 1]); // [B, D, N] → [B, N, D]
  if (cfg.distilled) x = ops.prependTokens(x, ops.param('dist_token')); // [B, N, D] → [B, 1+N, D]
  if (cfg.classToken) x = ops.prependTokens(x, ops.param('cls_token')); // → [B, prefix+N, D]
  x = ops.add(x, ops.param('pos_embed'));
  for (let i = 0; i < cfg.depth; i++) {
    const input = x;
    const step = () => {
      const probs: T[] = [];
      return [block(ops, cfg, input, i, probsOut ? probs : null), ...probs];
    };
    const [out, probs] = ops.scope ? ops.scope(step) : step();
    x = out;
    if (probsOut) probsOut.push(probs);
  }
  return cfg.fcNorm ? x : ops.layerNorm(x, ops.param('norm.weight'), ops.param('norm.bias'), cfg.layerNormEps);
}

/** token i of x [B, T, D] → [B, D] */
function token<T>(ops: Ops<T>, cfg: ViTConfig, x: T, i: number): T {
  return ops.reshape(ops.slice(x, 1, i, i + 1), [0, cfg.embedDim]); // [B, 1, D] → [B, D]
}

/**
 * The ViT of Dosovitskiy et al. as timm defines it, from pixels to every output a command may want. Logits
 * of a distilled model are the mean of both heads; attentions are per layer [B, heads, tokens, tokens].
 */
export function vitForward<T>(ops: Ops<T>, cfg: ViTConfig, images: T, opts: ForwardOptions = {}): ModelOutputs<T> {
  const attentions: T[] = [];
  const x = encode(ops, cfg, images, opts.attentions ? attentions : null);
  const prefix = numPrefixTokens(cfg);
  const patches = ops.slice(x, 1, prefix, numTokens(cfg)); // [B, T, D] → [B, N, D]
  let avg = ops.mean(patches, 1); // [B, N, D] → [B, D]
  if (cfg.fcNorm) avg = ops.layerNorm(avg, ops.param('fc_norm.weight'), ops.param('fc_norm.bias'), cfg.layerNormEps);
  const cls = cfg.classToken ? token(ops, cfg, x, 0) : avg;
  const pooled = cfg.globalPool === 'token' ? cls : avg;
  const preLogits = cfg.representationSize !== null
    ? ops.tanh(ops.linear(pooled, ops.param('pre_logits.fc.weight'), ops.param('pre_logits.fc.bias')))
    : pooled;
  let logits: T | null = null;
  if (cfg.numClasses > 0) {
    logits = ops.linear(preLogits, ops.param('head.weight'), ops.param('head.bias'));
    if (cfg.distilled) {
      const dist = ops.linear(token(ops, cfg, x, 1), ops.param('head_dist.weight'), ops.param('head_dist.bias'));
      logits = ops.scale(ops.add(logits, dist), 0.5);
    }
  }
  return { logits, features: { cls, avg, 'pre-logits': preLogits }, attentions };
}

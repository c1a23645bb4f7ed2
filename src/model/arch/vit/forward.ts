import type { Ops } from '../../ops.js';
import type { ForwardOptions, ModelOutputs } from '../types.js';
import { headDim, numPrefixTokens, numTokens, patchGrid, type ViTConfig } from './config.js';

/**
 * The pooled features a ViT forward returns, by `vit embed --pool` name:
 * - cls: [B, D] the class token after the final norm (or fc_norm), what the head sees for token-pooled models;
 * - avg: [B, D] mean of the patch tokens (after the final norm, or through fc_norm where the model has one);
 * - pre-logits: [B, R or D] the pooled features after the representation layer: the head's input.
 */
export const VIT_POOLS = ['cls', 'avg', 'pre-logits'] as const;

/**
 * qkv [B, T, 3D] → the heads' merged context [B, Q, D] of the first Q tokens' queries (all T by default)
 * against every token's keys and values, spelled out op by op (the probabilities are values).
 */
function headsAttention<T>(ops: Ops<T>, cfg: ViTConfig, qkv: T, probsOut: T[] | null, queries = numTokens(cfg)): T {
  const D = cfg.embedDim;
  const H = cfg.numHeads;
  const hd = headDim(cfg);
  const heads = (part: number, n: number) => {
    let t = ops.slice(qkv, 2, part * D, (part + 1) * D); // [B, T, 3D] → [B, T, D]
    if (n !== numTokens(cfg)) t = ops.slice(t, 1, 0, n); // → [B, n, D]
    const split = ops.reshape(t, [0, n, H, hd]); // [B, n, D] → [B, n, H, hd]
    return ops.transpose(split, [0, 2, 1, 3]); // [B, n, H, hd] → [B, H, n, hd]
  };
  const q = ops.scale(heads(0, queries), 1 / Math.sqrt(hd));
  const k = heads(1, numTokens(cfg));
  const v = heads(2, numTokens(cfg));
  const probs = ops.softmax(ops.matMul(q, k, true)); // [B, H, Q, T]
  if (probsOut) probsOut.push(probs);
  const ctx = ops.transpose(ops.matMul(probs, v), [0, 2, 1, 3]); // [B, H, Q, hd] → [B, Q, H, hd]
  return ops.reshape(ctx, [0, queries, D]); // [B, Q, H, hd] → [B, Q, D]
}

/** x [B, T, D] → [B, Q, D]: the attention output of the first Q tokens (all T by default). */
function attention<T>(ops: Ops<T>, cfg: ViTConfig, x: T, i: number, probsOut: T[] | null, queries = numTokens(cfg)): T {
  const p = (n: string) => ops.param(`blocks.${i}.attn.${n}`);
  const w = p('qkv.weight');
  const b = cfg.qkvBias ? p('qkv.bias') : undefined;
  const merged = ops.selfAttention && !probsOut && queries === numTokens(cfg)
    ? ops.selfAttention(x, w, b, cfg.numHeads)
    : headsAttention(ops, cfg, ops.linear(x, w, b), probsOut, queries); // [B, T, D] → [B, T, 3D] → [B, Q, D]
  return ops.linear(merged, p('proj.weight'), p('proj.bias'));
}

/** Block i: x [B, T, D] → [B, Q, D], the first Q tokens' outputs (all T by default). */
function block<T>(ops: Ops<T>, cfg: ViTConfig, x: T, i: number, probsOut: T[] | null, queries = numTokens(cfg)): T {
  const p = (n: string) => ops.param(`blocks.${i}.${n}`);
  const eps = cfg.layerNormEps;
  const a = attention(ops, cfg, ops.layerNorm(x, p('norm1.weight'), p('norm1.bias'), eps), i, probsOut, queries);
  x = ops.add(queries === numTokens(cfg) ? x : ops.slice(x, 1, 0, queries), a);
  const h = ops.layerNorm(x, p('norm2.weight'), p('norm2.bias'), eps);
  const m = ops.linear(ops.gelu(ops.linear(h, p('mlp.fc1.weight'), p('mlp.fc1.bias'))), p('mlp.fc2.weight'), p('mlp.fc2.bias'));
  return ops.add(x, m);
}

/**
 * The encoder up to (and including) the final norm: [B, C, H, W] → [B, tokens, D], or with `prefixOnly`
 * [B, prefix tokens, D]: the last block then computes only the prefix tokens' rows (their queries against every
 * token's keys and values, their MLP), since every later step works on each token alone.
 */
export function encode<T>(ops: Ops<T>, cfg: ViTConfig, images: T, probsOut: T[] | null, prefixOnly = false): T {
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
      const queries = prefixOnly && i === cfg.depth - 1 ? numPrefixTokens(cfg) : numTokens(cfg);
      return [block(ops, cfg, input, i, probsOut ? probs : null, queries), ...probs];
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

/** A pooled feature [B, D] through fc_norm where the model has one (timm normalises after pooling, whatever the pool). */
function fcNorm<T>(ops: Ops<T>, cfg: ViTConfig, pooled: T): T {
  return cfg.fcNorm ? ops.layerNorm(pooled, ops.param('fc_norm.weight'), ops.param('fc_norm.bias'), cfg.layerNormEps) : pooled;
}

/**
 * The features a forward with `prefixOnly` still gives (ForwardOptions.prefixOnly), or null where it would
 * skip nothing: a class-token-pooled model's logits, cls and pre-logits read the prefix tokens alone.
 */
export function vitPrefixPools(cfg: ViTConfig): readonly string[] | null {
  return cfg.globalPool === 'token' && cfg.classToken ? ['cls', 'pre-logits'] : null;
}

/** From the pooled features on: pre-logits and logits (a distillation head reads token 1 of x). */
function head<T>(ops: Ops<T>, cfg: ViTConfig, pooled: T, x: T, features: Record<string, T>): Omit<ModelOutputs<T>, 'attentions'> {
  const preLogits = cfg.representationSize !== null
    ? ops.tanh(ops.linear(pooled, ops.param('pre_logits.fc.weight'), ops.param('pre_logits.fc.bias')))
    : pooled;
  let logits: T | null = null;
  if (cfg.numClasses > 0) {
    logits = ops.linear(preLogits, ops.param('head.weight'), ops.param('head.bias'));
    if (cfg.distilledHead) {
      const dist = ops.linear(token(ops, cfg, x, 1), ops.param('head_dist.weight'), ops.param('head_dist.bias'));
      logits = ops.scale(ops.add(logits, dist), 0.5);
    }
  }
  return { logits, features: { ...features, 'pre-logits': preLogits } };
}

/**
 * The ViT of Dosovitskiy et al. as timm defines it, from pixels to every output a command may want. Logits
 * of a model with a distillation head are the mean of both heads; attentions are per layer [B, heads, tokens, tokens].
 */
export function vitForward<T>(ops: Ops<T>, cfg: ViTConfig, images: T, opts: ForwardOptions = {}): ModelOutputs<T> {
  const attentions: T[] = [];
  if (opts.prefixOnly && !opts.attentions && vitPrefixPools(cfg) !== null) {
    const x = encode(ops, cfg, images, null, true); // [B, prefix, D]
    const cls = fcNorm(ops, cfg, token(ops, cfg, x, 0));
    return { ...head(ops, cfg, cls, x, { cls }), attentions };
  }
  const x = encode(ops, cfg, images, opts.attentions ? attentions : null);
  const prefix = numPrefixTokens(cfg);
  const patches = ops.slice(x, 1, prefix, numTokens(cfg)); // [B, T, D] → [B, N, D]
  const avg = fcNorm(ops, cfg, ops.mean(patches, 1)); // [B, N, D] → [B, D]
  const cls = cfg.classToken ? fcNorm(ops, cfg, token(ops, cfg, x, 0)) : avg;
  const pooled = cfg.globalPool === 'token' ? cls : avg;
  return { ...head(ops, cfg, pooled, x, { cls, avg }), attentions };
}

import type { Ops } from '../../ops.js';
import type { ForwardOptions, ModelOutputs } from '../types.js';
import { stageDim, type SwinConfig } from './config.js';
import { blockWindows, relativePositionIndex, shiftMask, stageMaps, type BlockWindows } from './windows.js';

/**
 * The pooled features a Swin forward returns, by `vit embed --pool` name: avg, [B, C] the mean of the final-norm
 * tokens, the head's input.
 *
 * Its attentions (only when asked for) are per block, stage by stage, the softmax window attention
 * [B, nW, heads, N, N]. A window holds N = wh·ww tokens in row-major order; the nW windows tile the block's
 * padded map [Hp, Wp] in row-major order. Token t of window (i, j) sits at y = i·wh + ⌊t/ww⌋, x = j·ww + (t mod
 * ww) of the shifted, padded map: for torchvision's and HF's rule (pad, then shift) that is padded-map position
 * ((y + sh) mod Hp, (x + sw) mod Wp); for timm's (shift, then pad) it is map position ((y + sh) mod H,
 * (x + sw) mod W) when y < H and x < W, padding otherwise. Padding positions are zeros that take part in
 * attention, as in all three implementations.
 */
export const SWIN_POOLS = ['avg'] as const;

/** torch.roll(x, shift, axis) for an axis of `size`: out[i] = x[(i − shift) mod size]. */
function roll<T>(ops: Ops<T>, x: T, axis: number, shift: number, size: number): T {
  const k = (((-shift) % size) + size) % size;
  if (k === 0) return x;
  return ops.concat([ops.slice(x, axis, k, size), ops.slice(x, axis, 0, k)], axis);
}

/** Both cyclic shifts of a [B, H, W, C] map, by sign·shift. */
function rollMap<T>(ops: Ops<T>, x: T, w: BlockWindows, sign: 1 | -1, size: [number, number]): T {
  return roll(ops, roll(ops, x, 1, sign * w.shift[0], size[0]), 2, sign * w.shift[1], size[1]);
}

/** Zero-pad a [B, H, W, C] map at the bottom and right to [B, Hp, Wp, C]. */
function padMap<T>(ops: Ops<T>, x: T, from: [number, number], to: [number, number]): T {
  let y = x;
  if (to[0] > from[0]) y = ops.padEnd(y, 1, to[0] - from[0]);
  if (to[1] > from[1]) y = ops.padEnd(y, 2, to[1] - from[1]);
  return y;
}

/** Keep the top-left [H, W] of a [B, Hp, Wp, C] map. */
function cropMap<T>(ops: Ops<T>, x: T, from: [number, number], to: [number, number]): T {
  let y = x;
  if (from[0] > to[0]) y = ops.slice(y, 1, 0, to[0]);
  if (from[1] > to[1]) y = ops.slice(y, 2, 0, to[1]);
  return y;
}

/** Multi-head self-attention inside each window, with relative position bias and, when shifted, the band mask. */
function windowAttention<T>(ops: Ops<T>, cfg: SwinConfig, x: T, w: BlockWindows, p: (n: string) => T, probsOut: T[] | null): T {
  const C = stageDim(cfg, w.stage);
  const H = cfg.numHeads[w.stage];
  const hd = C / H;
  const N = w.tokens;
  const nW = w.numWindows;
  const qkv = ops.linear(x, p('attn.qkv.weight'), cfg.qkvBias ? p('attn.qkv.bias') : undefined); // [B, nW, N, 3C]
  const heads = (part: number) => {
    const t = ops.slice(qkv, 3, part * C, (part + 1) * C); // [B, nW, N, 3C] → [B, nW, N, C]
    const split = ops.reshape(t, [0, nW, N, H, hd]); // [B, nW, N, C] → [B, nW, N, H, hd]
    return ops.transpose(split, [0, 1, 3, 2, 4]); // → [B, nW, H, N, hd]
  };
  const q = ops.scale(heads(0), 1 / Math.sqrt(hd));
  const table = ops.gather(p('attn.relative_position_bias_table'), relativePositionIndex(w.window)); // [(2wh-1)(2ww-1), H] → [N·N, H]
  const bias = ops.transpose(ops.reshape(table, [N, N, H]), [2, 0, 1]); // [N·N, H] → [N, N, H] → [H, N, N]
  let scores = ops.add(ops.matMul(q, heads(1), true), bias); // [B, nW, H, N, N]
  if (w.shift[0] > 0 || w.shift[1] > 0) scores = ops.add(scores, ops.tensor(shiftMask(w), [nW, 1, N, N]));
  const probs = ops.softmax(scores);
  if (probsOut) probsOut.push(probs);
  const ctx = ops.transpose(ops.matMul(probs, heads(2)), [0, 1, 3, 2, 4]); // [B, nW, H, N, hd] → [B, nW, N, H, hd]
  const merged = ops.reshape(ctx, [0, nW, N, C]); // → [B, nW, N, C]
  return ops.linear(merged, p('attn.proj.weight'), p('attn.proj.bias'));
}

/** W-MSA or SW-MSA on a [B, H, W, C] map, in the order of the config's rule; returns [B, H, W, C]. */
function shiftedWindowAttention<T>(ops: Ops<T>, cfg: SwinConfig, x: T, w: BlockWindows, p: (n: string) => T, probsOut: T[] | null): T {
  const C = stageDim(cfg, w.stage);
  const [wh, ww] = w.window;
  const [hp, wp] = w.padded;
  const [gh, gw] = [hp / wh, wp / ww];
  const shifted = w.shift[0] > 0 || w.shift[1] > 0;
  let y = x;
  if (shifted && !w.padFirst) y = rollMap(ops, y, w, -1, w.map);
  y = padMap(ops, y, w.map, w.padded);
  if (shifted && w.padFirst) y = rollMap(ops, y, w, -1, w.padded);
  const grid = ops.reshape(y, [0, gh, wh, gw, ww, C]); // [B, Hp, Wp, C] → [B, gh, wh, gw, ww, C]
  const windows = ops.reshape(ops.transpose(grid, [0, 1, 3, 2, 4, 5]), [0, w.numWindows, w.tokens, C]); // → [B, gh, gw, wh, ww, C] → [B, nW, N, C]
  const attended = windowAttention(ops, cfg, windows, w, p, probsOut);
  const back = ops.reshape(attended, [0, gh, gw, wh, ww, C]); // [B, nW, N, C] → [B, gh, gw, wh, ww, C]
  y = ops.reshape(ops.transpose(back, [0, 1, 3, 2, 4, 5]), [0, hp, wp, C]); // → [B, gh, wh, gw, ww, C] → [B, Hp, Wp, C]
  if (shifted && w.padFirst) y = rollMap(ops, y, w, 1, w.padded);
  y = cropMap(ops, y, w.padded, w.map);
  if (shifted && !w.padFirst) y = rollMap(ops, y, w, 1, w.map);
  return y;
}

function block<T>(ops: Ops<T>, cfg: SwinConfig, x: T, w: BlockWindows, probsOut: T[] | null): T {
  const p = (n: string) => ops.param(`layers.${w.stage}.blocks.${w.block}.${n}`);
  const eps = cfg.layerNormEps;
  const a = shiftedWindowAttention(ops, cfg, ops.layerNorm(x, p('norm1.weight'), p('norm1.bias'), eps), w, p, probsOut);
  const h = ops.add(x, a);
  const m = ops.linear(ops.gelu(ops.linear(ops.layerNorm(h, p('norm2.weight'), p('norm2.bias'), eps), p('mlp.fc1.weight'), p('mlp.fc1.bias'))),
    p('mlp.fc2.weight'), p('mlp.fc2.bias'));
  return ops.add(h, m);
}

/** Patch merging at the start of stage i: [B, H, W, C] → [B, ⌈H/2⌉, ⌈W/2⌉, 2C]. */
function patchMerging<T>(ops: Ops<T>, cfg: SwinConfig, x: T, stage: number, map: [number, number]): T {
  const C = stageDim(cfg, stage - 1);
  const [h, w] = [Math.ceil(map[0] / 2), Math.ceil(map[1] / 2)];
  const padded = padMap(ops, x, map, [2 * h, 2 * w]);
  const pairs = ops.reshape(padded, [0, h, 2, w, 2, C]); // [B, 2h, 2w, C] → [B, h, 2 (row), w, 2 (col), C]
  // [B, h, w, col, row, C]: the four neighbours in the order x0 (0,0), x1 (1,0), x2 (0,1), x3 (1,1) as (row, col).
  const merged = ops.reshape(ops.transpose(pairs, [0, 1, 3, 4, 2, 5]), [0, h, w, 4 * C]); // → [B, h, w, 4C]
  const p = (n: string) => ops.param(`layers.${stage}.downsample.${n}`);
  return ops.linear(ops.layerNorm(merged, p('norm.weight'), p('norm.bias'), cfg.patchNormEps), p('reduction.weight'));
}

/** Run fn as a unit the engine may free the intermediates of (Ops.scope). */
function scoped<T>(ops: Ops<T>, fn: () => T[]): T[] {
  return ops.scope ? ops.scope(fn) : fn();
}

/** The Swin Transformer as timm defines it, from pixels [B, C, H, W] to every output a command may want. */
export function swinForward<T>(ops: Ops<T>, cfg: SwinConfig, images: T, opts: ForwardOptions = {}): ModelOutputs<T> {
  const maps = stageMaps(cfg);
  const plans = blockWindows(cfg);
  const attentions: T[] = [];
  const grid = ops.patchEmbed(images, ops.param('patch_embed.proj.weight'), ops.param('patch_embed.proj.bias'), cfg.patchSize); // [B, D, gh, gw]
  let x = ops.transpose(grid, [0, 2, 3, 1]); // [B, D, gh, gw] → [B, gh, gw, D]
  x = ops.layerNorm(x, ops.param('patch_embed.norm.weight'), ops.param('patch_embed.norm.bias'), cfg.patchNormEps);
  for (let stage = 0; stage < cfg.depths.length; stage++) {
    if (stage > 0) {
      const input = x;
      [x] = scoped(ops, () => [patchMerging(ops, cfg, input, stage, maps[stage - 1])]);
    }
    for (const w of plans.filter((b) => b.stage === stage)) {
      const input = x;
      const [out, probs] = scoped(ops, () => {
        const probsOut: T[] = [];
        return [block(ops, cfg, input, w, opts.attentions ? probsOut : null), ...probsOut];
      });
      x = out;
      if (opts.attentions) attentions.push(probs);
    }
  }
  const [h, w] = maps[maps.length - 1];
  const C = stageDim(cfg, cfg.depths.length - 1);
  const normed = ops.layerNorm(x, ops.param('norm.weight'), ops.param('norm.bias'), cfg.layerNormEps);
  const avg = ops.mean(ops.reshape(normed, [0, h * w, C]), 1); // [B, H, W, C] → [B, H·W, C] → [B, C]
  const logits = cfg.numClasses > 0 ? ops.linear(avg, ops.param('head.fc.weight'), ops.param('head.fc.bias')) : null;
  return { logits, features: { avg }, attentions };
}

import { WeightsError } from '../../../errors.js';
import { shapeStr, type HostTensor, type TensorMap } from '../../tensor.js';
import { numPrefixTokens, patchGrid, type ViTConfig } from './config.js';

/**
 * The cubic convolution kernel with a = -0.5 (Keys; PIL's and torch's antialiased bicubic). Plain
 * `F.interpolate(mode="bicubic")` without antialias uses a = -0.75 instead; timm asks for antialias=True.
 */
function cubic(x: number): number {
  const a = -0.5;
  const t = Math.abs(x);
  if (t < 1) return ((a + 2) * t - (a + 3)) * t * t + 1;
  if (t < 2) return (((t - 5) * t + 8) * t - 4) * a;
  return 0;
}

interface Taps { start: number; weights: Float64Array }

/**
 * One axis of torch's antialiased resampling (align_corners=False): output pixel i is centred at
 * (i + 0.5)·in/out in input coordinates; when shrinking, the kernel is stretched by the scale so every input
 * pixel contributes; taps falling outside the input are dropped and the rest renormalised to sum to 1.
 */
function axisTaps(inSize: number, outSize: number): Taps[] {
  const scale = inSize / outSize;
  const stretch = Math.max(scale, 1);
  const support = 2 * stretch;
  const taps: Taps[] = [];
  for (let i = 0; i < outSize; i++) {
    const center = scale * (i + 0.5);
    const start = Math.max(Math.trunc(center - support + 0.5), 0);
    const end = Math.min(Math.trunc(center + support + 0.5), inSize);
    const weights = new Float64Array(end - start);
    let total = 0;
    for (let j = start; j < end; j++) total += weights[j - start] = cubic((j - center + 0.5) / stretch);
    if (total !== 0) for (let k = 0; k < weights.length; k++) weights[k] /= total;
    taps.push({ start, weights });
  }
  return taps;
}

/**
 * Resample a position embedding [1, prefix + gh·gw, D] to another grid as timm's resample_abs_pos_embed does:
 * the prefix (class, distillation) tokens are kept; the grid is treated as a [1, D, gh, gw] image and resized
 * with F.interpolate(size=(h, w), mode="bicubic", antialias=True, align_corners=False). Computed separably in
 * float64.
 */
export function resamplePosEmbed(pos: HostTensor, prefix: number, from: [number, number], to: [number, number]): HostTensor {
  const [gh, gw] = from;
  const [h, w] = to;
  const D = pos.shape[2];
  if (pos.shape.length !== 3 || pos.shape[0] !== 1 || pos.shape[1] !== prefix + gh * gw) {
    throw new WeightsError(`pos_embed ${shapeStr(pos.shape)} does not hold ${prefix} prefix tokens and a ${gh}×${gw} grid`);
  }
  const out = new Float32Array((prefix + h * w) * D);
  out.set(pos.data.subarray(0, prefix * D));
  const grid = pos.data.subarray(prefix * D);
  const rows = axisTaps(gh, h);
  const cols = axisTaps(gw, w);
  // Width pass: [gh, gw, D] → [gh, w, D]
  const tmp = new Float64Array(gh * w * D);
  for (let y = 0; y < gh; y++) {
    for (let x = 0; x < w; x++) {
      const { start, weights } = cols[x];
      const dst = (y * w + x) * D;
      for (let k = 0; k < weights.length; k++) {
        const src = (y * gw + start + k) * D;
        for (let d = 0; d < D; d++) tmp[dst + d] += weights[k] * grid[src + d];
      }
    }
  }
  // Height pass: [gh, w, D] → [h, w, D], written after the prefix tokens.
  for (let y = 0; y < h; y++) {
    const { start, weights } = rows[y];
    for (let x = 0; x < w; x++) {
      const dst = (prefix + y * w + x) * D;
      for (let d = 0; d < D; d++) {
        let acc = 0;
        for (let k = 0; k < weights.length; k++) acc += weights[k] * tmp[((start + k) * w + x) * D + d];
        out[dst + d] = acc;
      }
    }
  }
  return { shape: [1, prefix + h * w, D], data: out };
}

/**
 * When a config runs at another resolution than its checkpoint (posEmbedGrid set), replace the checkpoint's
 * pos_embed by one resampled to the config's patch grid. Call after the weights were checked against the
 * checkpoint's own grid.
 */
export function fitPosEmbed(cfg: ViTConfig, weights: TensorMap): void {
  const pos = weights.get('pos_embed');
  if (!cfg.posEmbedGrid || !pos) return;
  weights.set('pos_embed', resamplePosEmbed(pos, numPrefixTokens(cfg), cfg.posEmbedGrid, patchGrid(cfg)));
}

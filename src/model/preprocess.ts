/**
 * Preprocessing configs as the two reference pipelines describe them — Hugging Face image processors
 * (`preprocessor_config.json`) and timm's eval transform (`pretrained_cfg`) — for any architecture.
 */
import { ModelError } from '../errors.js';
import { INCEPTION_MEAN, INCEPTION_STD, perChannel, type Channels, type Interpolation, type Preprocess } from './config.js';
import { num, numbers, type Json } from './config-json.js';
import { fieldProblem, LIMITS, type Bound } from './limits.js';

const PIL_RESAMPLE: Record<number, Interpolation> = { 0: 'nearest', 1: 'lanczos', 2: 'bilinear', 3: 'bicubic', 4: 'bilinear', 5: 'bicubic' };
export const INTERPOLATIONS: readonly Interpolation[] = ['nearest', 'bilinear', 'bicubic', 'lanczos'];

/** timm's eval transform for a square model: resize the short side to floor(res / crop_pct), crop res. */
export function timmPreprocess(
  res: [number, number], cropPct: number, interpolation: Interpolation,
  mean: number[], std: number[], cropMode: 'center' | 'squash' = 'center',
): Preprocess {
  const scaled: [number, number] = [Math.floor(res[0] / cropPct), Math.floor(res[1] / cropPct)];
  const resize = cropMode === 'squash' || res[0] !== res[1]
    ? { height: scaled[0], width: scaled[1] }
    : { shortestEdge: scaled[0] };
  return { resize, crop: { height: res[0], width: res[1] }, interpolation, rescale: 1 / 255, mean, std };
}

/**
 * A number within `bound` (src/model/limits.ts), or one error naming the field where it was read: a resize
 * to 1e9 pixels or a zero std is a broken config, refused before any image is decoded.
 */
function bounded(v: unknown, what: string, bound: Bound, where: string): number {
  const n = num(v, what);
  const problem = fieldProblem(what, n, bound);
  if (problem !== null) throw new ModelError(`${where}: ${problem}`);
  return n;
}

/** Per-channel statistics, each within `bound`. */
function boundedStats(values: number[], what: string, bound: Bound, where: string): number[] {
  values.forEach((v, c) => bounded(v, `${what}[${c}]`, bound, where));
  return values;
}

/**
 * A Hugging Face image processor config → our preprocessing. `imgSize` supplies the defaults of
 * ViTImageProcessor (resize to the model size, bilinear, mean = std = 0.5) for missing fields.
 */
export function preprocessFromHf(pp: Json | null, imgSize: [number, number], channels: Channels): Preprocess {
  const p = pp ?? {};
  const where = 'preprocessor config';
  const edge = (v: unknown, what: string) => bounded(v, what, LIMITS.resizeEdge, where);
  const size = p.size as Json | number | undefined;
  let resize: Preprocess['resize'] = { height: imgSize[0], width: imgSize[1] };
  if (typeof size === 'number') resize = { shortestEdge: edge(size, 'size') };
  else if (size && typeof size === 'object') {
    if ('shortest_edge' in size) resize = { shortestEdge: edge(size.shortest_edge, 'size.shortest_edge') };
    else resize = { height: edge(size.height, 'size.height'), width: edge(size.width, 'size.width') };
  }
  if (p.do_resize === false) resize = null;
  let crop: Preprocess['crop'] = null;
  if (p.do_center_crop === true) {
    const cs = p.crop_size as Json | number | undefined;
    const crops = (v: unknown, what: string) => bounded(v, what, LIMITS.cropSize, where);
    const [h, w] = typeof cs === 'number' ? [crops(cs, 'crop_size'), crops(cs, 'crop_size')]
      : cs && typeof cs === 'object' ? [crops(cs.height, 'crop_size.height'), crops(cs.width, 'crop_size.width')]
        : imgSize;
    crop = { height: h, width: w };
  }
  const resample = p.resample === undefined ? 2 : num(p.resample, 'resample');
  const interpolation = PIL_RESAMPLE[resample];
  if (!interpolation) throw new ModelError(`preprocessor config: unknown resample ${resample}`);
  const normalize = p.do_normalize !== false;
  const stats = (v: unknown, fallback: number[], neutral: number, what: string, bound: Bound) => boundedStats(
    perChannel(normalize ? (v === undefined ? fallback : numbers(v, what)) : [neutral], channels, `${where}: ${what}`), what, bound, where);
  return {
    resize,
    crop,
    interpolation,
    rescale: p.do_rescale === false ? 1 : p.rescale_factor === undefined ? 1 / 255 : bounded(p.rescale_factor, 'rescale_factor', LIMITS.rescale, where),
    mean: stats(p.image_mean, INCEPTION_MEAN, 0, 'image_mean', LIMITS.mean),
    std: stats(p.image_std, INCEPTION_STD, 1, 'image_std', LIMITS.std),
  };
}

/**
 * Our preprocessing as a Hugging Face image processor config (`preprocessor_config.json`), which
 * preprocessFromHf reads back to the same Preprocess and transformers(.js) apply as the same steps. A resize to
 * a fixed size alone is ViT's own ViTImageProcessor; a shortest-edge resize or a centre crop (timm's
 * preprocessing) is a BitImageProcessor, since transformers' ViTImageProcessor takes neither (it refuses a
 * shortest_edge size and has no crop).
 */
export function preprocessToHf(pp: Preprocess): Json {
  const resample = Number(Object.entries(PIL_RESAMPLE).find(([, v]) => v === pp.interpolation)![0]);
  const size = pp.resize === null ? null : 'shortestEdge' in pp.resize ? { shortest_edge: pp.resize.shortestEdge } : { height: pp.resize.height, width: pp.resize.width };
  return {
    image_processor_type: pp.crop === null && !(size && 'shortest_edge' in size) ? 'ViTImageProcessor' : 'BitImageProcessor',
    do_resize: size !== null,
    ...(size ? { size } : {}),
    resample,
    do_center_crop: pp.crop !== null,
    ...(pp.crop ? { crop_size: { height: pp.crop.height, width: pp.crop.width } } : {}),
    do_rescale: pp.rescale !== 1,
    rescale_factor: pp.rescale,
    do_normalize: true,
    image_mean: pp.mean,
    image_std: pp.std,
  };
}

/** timm's pretrained_cfg preprocessing over a base (the preset's, or the defaults). */
export function preprocessFromTimm(pre: Json, imgSize: [number, number], base: Preprocess, channels: Channels, name: string): Preprocess {
  const interp = String(pre.interpolation ?? 'bicubic') as Interpolation;
  if (!INTERPOLATIONS.includes(interp)) throw new ModelError(`${name}: interpolation "${interp}" is not supported`);
  const cropMode = String(pre.crop_mode ?? 'center');
  if (cropMode !== 'center' && cropMode !== 'squash') throw new ModelError(`${name}: crop_mode "${cropMode}" is not supported (center, squash)`);
  const where = `${name}: pretrained_cfg`;
  const stats = (v: unknown, fallback: number[], what: string, bound: Bound) =>
    boundedStats(perChannel(v === undefined ? fallback : numbers(v, what), channels, `${where}.${what}`), what, bound, where);
  // Before it divides the size: 224 / 1e-6 would be a resize to a 224-megapixel edge.
  const cropPct = pre.crop_pct === undefined ? 0.9 : bounded(pre.crop_pct, 'crop_pct', LIMITS.cropPct, where);
  return timmPreprocess(imgSize, cropPct, interp, stats(pre.mean, base.mean, 'mean', LIMITS.mean), stats(pre.std, base.std, 'std', LIMITS.std), cropMode);
}

/** Preprocessing for another input size: the resize keeps its ratio to the crop, the crop becomes the size. */
export function scalePreprocess(pp: Preprocess, from: [number, number], size: [number, number]): Preprocess {
  const ratio = pp.crop ? pp.crop.height / from[0] : 1;
  const resize: Preprocess['resize'] = pp.resize === null ? null
    : 'shortestEdge' in pp.resize && size[0] === size[1] ? { shortestEdge: Math.floor(size[0] / ratio) }
      : { height: Math.floor(size[0] / ratio), width: Math.floor(size[1] / ratio) };
  return { ...pp, resize, crop: pp.crop ? { height: size[0], width: size[1] } : null };
}

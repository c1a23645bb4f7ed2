/**
 * Preprocessing configs as the two reference pipelines describe them — Hugging Face image processors
 * (`preprocessor_config.json`) and timm's eval transform (`pretrained_cfg`) — for any architecture.
 */
import { ModelError } from '../errors.js';
import { IMAGENET_MEAN, IMAGENET_STD, INCEPTION_MEAN, INCEPTION_STD, perChannel, type Channels, type Interpolation, type Preprocess } from './config.js';
import { num, numbers, type Json } from './config-json.js';
import { fieldProblem, LIMITS, type Bound } from './limits.js';

/** PIL's resampling filter numbers (Image.Resampling) this tool implements; 4 (BOX) and 5 (HAMMING) it does not. */
const PIL_RESAMPLE: Record<number, Interpolation> = { 0: 'nearest', 1: 'lanczos', 2: 'bilinear', 3: 'bicubic' };
export const INTERPOLATIONS: readonly Interpolation[] = ['nearest', 'bilinear', 'bicubic', 'lanczos'];

/**
 * timm's eval transform (timm/data/transforms_factory.py): scale = ⌊res / crop_pct⌋ per side, then a res crop
 * of the centre. The resize: in 'squash' mode to exactly the scale; else the short side to it when it is
 * square, and for a non-square scale timm's ResizeKeepRatio, which covers it keeping the aspect and, being
 * built there without an interpolation, always resizes bilinearly.
 */
export function timmPreprocess(
  res: [number, number], cropPct: number, interpolation: Interpolation,
  mean: number[], std: number[], cropMode: 'center' | 'squash' = 'center',
): Preprocess {
  const [sh, sw] = [Math.floor(res[0] / cropPct), Math.floor(res[1] / cropPct)];
  const common = { crop: { height: res[0], width: res[1] }, rescale: 1 / 255, mean, std, timm: { cropPct, cropMode, interpolation } };
  if (cropMode === 'squash') return { resize: { height: sh, width: sw }, interpolation, ...common };
  if (sh !== sw) return { resize: { keepRatio: { height: sh, width: sw } }, interpolation: 'bilinear', ...common };
  return { resize: { shortestEdge: sh }, interpolation, ...common };
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
 * How the transformers image processors that ViT, DeiT and Swin checkpoints ship with read their config, each
 * as its class does (transformers' image_processing_*.py): what an integer `size` means (get_size_dict's
 * default_to_square), which size forms its resize takes, and its defaults for missing fields.
 * - square: ViTImageProcessor (no crop step), DeiTImageProcessor and BeitImageProcessor (crop by default):
 *   `size` N is N×N, and only {height, width} is taken.
 * - convnext: ConvNextImageProcessor: `size` is the shortest edge S; below 384 the short side goes to
 *   ⌊S / crop_pct⌋ and an S×S centre crop follows, from 384 on the image is resized to S×S.
 * - clip: BitImageProcessor and CLIPImageProcessor: `size` N is the shortest edge, {height, width} exact.
 */
type HfProcessorKind = 'vit' | 'deit' | 'convnext' | 'clip';

const HF_PROCESSORS: Record<string, HfProcessorKind> = {
  ViTImageProcessor: 'vit',
  DeiTImageProcessor: 'deit',
  BeitImageProcessor: 'deit',
  ConvNextImageProcessor: 'convnext',
  BitImageProcessor: 'clip',
  CLIPImageProcessor: 'clip',
};

/** What AutoImageProcessor picks for a config that names no class, by the model's `model_type`. */
const HF_PROCESSOR_OF_MODEL: Record<string, string> = { vit: 'ViTImageProcessor', deit: 'DeiTImageProcessor', swin: 'ViTImageProcessor' };

const CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073];
const CLIP_STD = [0.26862954, 0.26130258, 0.27577711];

/**
 * The processor class a config names (`image_processor_type`, or the older `feature_extractor_type`, whose
 * FooFeatureExtractor is FooImageProcessor; a Fast variant reads its config the same way), else the one
 * transformers picks for the model type.
 */
function hfProcessorKind(p: Json, modelType: string): { name: string; kind: HfProcessorKind } {
  const given = p.image_processor_type ?? p.feature_extractor_type;
  const name = given === undefined || given === null
    ? HF_PROCESSOR_OF_MODEL[modelType] ?? 'ViTImageProcessor'
    : String(given).replace(/FeatureExtractor$/, 'ImageProcessor').replace(/Fast$/, '');
  const kind = HF_PROCESSORS[name];
  if (!kind) {
    throw new ModelError(`preprocessor config: image processor "${String(given)}" is not one this tool reads (${Object.keys(HF_PROCESSORS).join(', ')})`);
  }
  return { name, kind };
}

/**
 * A Hugging Face image processor config → our preprocessing, read as its processor class reads it (see
 * HfProcessorKind). `modelType` (config.json's model_type) names the class when the config does not.
 * One deviation: ViTImageProcessor without a `size` resizes to the model's input rather than 224×224, which
 * in transformers only works for 224 models.
 */
export function preprocessFromHf(pp: Json | null, imgSize: [number, number], channels: Channels, modelType: string): Preprocess {
  const p = pp ?? {};
  const where = 'preprocessor config';
  const { name, kind } = hfProcessorKind(p, modelType);
  const edge = (v: unknown, what: string) => bounded(v, what, LIMITS.resizeEdge, where);
  const crops = (v: unknown, what: string) => bounded(v, what, LIMITS.cropSize, where);
  const shortest = kind === 'convnext' || kind === 'clip';
  // The size as the class's get_size_dict leaves it.
  const size = p.size as Json | number | undefined | null;
  let resize: { shortestEdge: number } | { height: number; width: number };
  if (size === undefined || size === null) {
    resize = kind === 'vit' ? { height: imgSize[0], width: imgSize[1] }
      : kind === 'deit' ? { height: 256, width: 256 }
        : { shortestEdge: kind === 'convnext' ? 384 : 224 };
  } else if (typeof size === 'number') {
    resize = shortest ? { shortestEdge: edge(size, 'size') } : { height: edge(size, 'size'), width: edge(size, 'size') };
  } else if (typeof size === 'object' && 'shortest_edge' in size && !('longest_edge' in size)) {
    if (!shortest) throw new ModelError(`${where}: ${name} resizes to size {height, width}, not {shortest_edge}`);
    resize = { shortestEdge: edge(size.shortest_edge, 'size.shortest_edge') };
  } else if (typeof size === 'object' && 'height' in size && 'width' in size) {
    if (kind === 'convnext') throw new ModelError(`${where}: ${name} resizes to size {shortest_edge}, not {height, width}`);
    resize = { height: edge(size.height, 'size.height'), width: edge(size.width, 'size.width') };
  } else {
    throw new ModelError(`${where}: size ${JSON.stringify(size)} is not one this tool reads (a number, {height, width} or {shortest_edge})`);
  }
  let crop: Preprocess['crop'] = null;
  if (kind === 'convnext') {
    // ConvNext's own resize: the crop (or the warp from 384 on) is part of it, whatever do_center_crop says.
    const s = (resize as { shortestEdge: number }).shortestEdge;
    if (s < 384) {
      const cropPct = p.crop_pct === undefined || p.crop_pct === null ? 224 / 256 : bounded(p.crop_pct, 'crop_pct', LIMITS.cropPct, where);
      resize = { shortestEdge: edge(Math.floor(s / cropPct), 'size.shortest_edge / crop_pct') };
      crop = { height: s, width: s };
    } else {
      resize = { height: s, width: s };
    }
  } else if (kind !== 'vit' && (p.do_center_crop ?? true) === true) {
    const cs = p.crop_size as Json | number | undefined | null;
    const [h, w] = typeof cs === 'number' ? [crops(cs, 'crop_size'), crops(cs, 'crop_size')]
      : cs && typeof cs === 'object' ? [crops(cs.height, 'crop_size.height'), crops(cs.width, 'crop_size.width')]
        : [224, 224];
    crop = { height: h, width: w };
  }
  const resample = p.resample === undefined || p.resample === null ? (kind === 'vit' ? 2 : 3) : num(p.resample, 'resample');
  const interpolation = PIL_RESAMPLE[resample];
  if (!interpolation) {
    throw new ModelError(`${where}: resample ${resample} is not one this tool reads (${Object.entries(PIL_RESAMPLE).map(([k, v]) => `${k} ${v}`).join(', ')})`);
  }
  const normalize = p.do_normalize !== false;
  const [defaultMean, defaultStd] = kind === 'clip' ? [CLIP_MEAN, CLIP_STD] : [INCEPTION_MEAN, INCEPTION_STD];
  const stats = (v: unknown, fallback: number[], neutral: number, what: string, bound: Bound) => boundedStats(
    perChannel(normalize ? (v === undefined || v === null ? fallback : numbers(v, what)) : [neutral], channels, `${where}: ${what}`), what, bound, where);
  return {
    resize: p.do_resize === false ? null : resize,
    crop,
    interpolation,
    rescale: p.do_rescale === false ? 1 : p.rescale_factor === undefined ? 1 / 255 : bounded(p.rescale_factor, 'rescale_factor', LIMITS.rescale, where),
    mean: stats(p.image_mean, defaultMean, 0, 'image_mean', LIMITS.mean),
    std: stats(p.image_std, defaultStd, 1, 'image_std', LIMITS.std),
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
  if (pp.resize !== null && 'keepRatio' in pp.resize) {
    throw new ModelError('timm\'s keep-ratio resize of a non-square input has no transformers image processor to write it as');
  }
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

/**
 * timm's pretrained_cfg preprocessing. timm makes a PretrainedCfg of the hub's dict, so a missing field takes
 * that dataclass's default (bicubic, crop_pct 0.875, centre crop, ImageNet mean and std), not the
 * architecture's own.
 */
export function preprocessFromTimm(pre: Json, imgSize: [number, number], channels: Channels, name: string): Preprocess {
  const interp = String(pre.interpolation ?? 'bicubic') as Interpolation;
  if (!INTERPOLATIONS.includes(interp)) throw new ModelError(`${name}: interpolation "${interp}" is not supported`);
  const cropMode = String(pre.crop_mode ?? 'center');
  if (cropMode !== 'center' && cropMode !== 'squash') throw new ModelError(`${name}: crop_mode "${cropMode}" is not supported (center, squash)`);
  const where = `${name}: pretrained_cfg`;
  const stats = (v: unknown, fallback: number[], what: string, bound: Bound) =>
    boundedStats(perChannel(v === undefined ? fallback : numbers(v, what), channels, `${where}.${what}`), what, bound, where);
  // Before it divides the size: 224 / 1e-6 would be a resize to a 224-megapixel edge.
  const cropPct = pre.crop_pct === undefined || pre.crop_pct === null ? 0.875 : bounded(pre.crop_pct, 'crop_pct', LIMITS.cropPct, where);
  return timmPreprocess(imgSize, cropPct, interp, stats(pre.mean, IMAGENET_MEAN, 'mean', LIMITS.mean), stats(pre.std, IMAGENET_STD, 'std', LIMITS.std), cropMode);
}

/**
 * Preprocessing for another input size. timm's is made again at the size from its crop_pct (as timm's
 * validate.py --img-size does); any other keeps its resize's ratio to the crop along each side (an exact
 * resize to the model's size, Hugging Face's usual, becomes one to the new size), and the crop becomes the size.
 */
export function scalePreprocess(pp: Preprocess, from: [number, number], size: [number, number]): Preprocess {
  if (pp.timm && pp.crop) return timmPreprocess(size, pp.timm.cropPct, pp.timm.interpolation, pp.mean, pp.std, pp.timm.cropMode);
  const r = pp.resize;
  if (r === null || 'keepRatio' in r) return { ...pp, crop: pp.crop ? { height: size[0], width: size[1] } : null };
  // Resized pixels per model pixel, along each side.
  const [fh, fw] = 'shortestEdge' in r
    ? [r.shortestEdge / (pp.crop ? pp.crop.height : from[0]), r.shortestEdge / (pp.crop ? pp.crop.width : from[1])]
    : [r.height / (pp.crop ? pp.crop.height : from[0]), r.width / (pp.crop ? pp.crop.width : from[1])];
  const resize: Preprocess['resize'] = 'shortestEdge' in r && size[0] === size[1]
    ? { shortestEdge: Math.floor(size[0] * fh) }
    : { height: Math.floor(size[0] * fh), width: Math.floor(size[1] * fw) };
  return { ...pp, resize, crop: pp.crop ? { height: size[0], width: size[1] } : null };
}

import { ModelError } from '../errors.js';

export type Interpolation = 'nearest' | 'bilinear' | 'bicubic' | 'lanczos';

/**
 * Colour planes a model reads: 3 is RGB; 1 is PIL's `convert('L')` of the RGB image (ITU-R 601-2 luma,
 * L = R·299/1000 + G·587/1000 + B·114/1000, in PIL's fixed-point form). This one field decides how images are
 * decoded, how many mean/std values preprocessing has and the patch embedding's input width.
 */
export type Channels = 1 | 3;
export const CHANNEL_COUNTS: readonly Channels[] = [1, 3];

/**
 * How pixels are prepared for the model, in the vocabulary both Hugging Face image processors and timm's
 * eval transforms reduce to: an optional resize (shortest edge, keeping aspect, or to an exact size, or
 * keeping aspect to cover a height × width: timm's ResizeKeepRatio for non-square inputs, each side
 * round(side / min(h / height, w / width))), an optional centre crop, then rescale (usually 1/255) and
 * per-channel normalisation.
 */
export interface Preprocess {
  resize: { shortestEdge: number } | { height: number; width: number } | { keepRatio: { height: number; width: number } } | null;
  crop: { height: number; width: number } | null;
  interpolation: Interpolation;
  rescale: number;
  /** One value per channel (see Channels). */
  mean: number[];
  std: number[];
  /**
   * The timm eval settings resize, crop and interpolation were made from (timmPreprocess), kept so that another
   * input size (--image-size) is prepared as timm's eval transform prepares it: ⌊size / crop_pct⌋ and so on.
   */
  timm?: { cropPct: number; cropMode: 'center' | 'squash'; interpolation: Interpolation };
}

/**
 * How scores are made from logits, as Hugging Face's image-classification pipeline decides: sigmoid for
 * multi-label heads (`problem_type: multi_label_classification`) and single-logit heads, softmax otherwise.
 */
export type ScoreFunction = 'softmax' | 'sigmoid';

/**
 * What every architecture's config has: the fields the pipeline, the sinks and the engines read without
 * knowing the architecture. `arch` keys the architecture record (src/model/arch/index.ts).
 */
export interface ModelConfig {
  arch: string;
  name: string;
  /** [H, W] the model takes. */
  imgSize: [number, number];
  inChans: Channels;
  /** 0 means the checkpoint has no classifier head. */
  numClasses: number;
  /** Class names from the checkpoint (id2label, label_names), index-aligned; null when it has none. */
  labels: string[] | null;
  /** Set by configs that say how scores are made (HF problem_type); null = the default for the head. */
  problemType: 'single_label_classification' | 'multi_label_classification' | null;
  preprocess: Preprocess;
}

export const IMAGENET_MEAN = [0.485, 0.456, 0.406];
export const IMAGENET_STD = [0.229, 0.224, 0.225];
export const INCEPTION_MEAN = [0.5, 0.5, 0.5];
export const INCEPTION_STD = [0.5, 0.5, 0.5];

/** The score function of a config's head (see ScoreFunction). */
export function scoreFunction(cfg: ModelConfig): ScoreFunction {
  if (cfg.problemType === 'multi_label_classification' || cfg.numClasses === 1) return 'sigmoid';
  return 'softmax';
}

/** Mean/std values for a model of `channels` planes: a per-channel list kept, a single value repeated. */
export function perChannel(values: number[], channels: Channels, what: string): number[] {
  if (values.length === channels) return values;
  if (values.length === 1) return Array(channels).fill(values[0]);
  // Three equal values (the common 0.5/0.5/0.5) describe a grey model as well as an RGB one.
  if (channels === 1 && values.every((v) => v === values[0])) return [values[0]];
  throw new ModelError(`${what} has ${values.length} values for a model of ${channels} channel${channels === 1 ? '' : 's'}`);
}

/** A checked channel count: 1 (grayscale) or 3 (RGB); anything else is refused at load. */
export function channelsOf(v: number, what: string): Channels {
  if (v === 1 || v === 3) return v;
  throw new ModelError(`${what} is ${v}: this tool runs grayscale (1) and RGB (3) models`);
}

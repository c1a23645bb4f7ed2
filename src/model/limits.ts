/**
 * Bounds that no real Vision Transformer comes near, for every number a config, a preprocessor config or the
 * command line can set. Values past them are not models anyone trained: they are typos or hostile files, and
 * taken at their word they hang (depth 1e9), exhaust memory (shortest_edge 1e9) or give NaN (std 0). Checking
 * them first turns each into one error naming the field, before any image is decoded or weight allocated.
 * Pure: no file system, no engines, so every reader and option parser can use it. Each architecture checks
 * its own fields against the table in its validate (ViT: arch/vit/config.ts), the common ones with
 * modelConfigProblems and the parameter count with paramsProblems.
 */
import type { ModelConfig, Preprocess } from './config.js';
export interface Bound {
  min: number;
  max: number;
  /** Whole numbers only. */
  integer: boolean;
  /** `min` itself is not allowed (std, eps, rescale: only their sign is bounded below). */
  minExclusive?: boolean;
  /** The largest real value, for the documentation: why the bound is safe. */
  real: string;
}

const whole = (min: number, max: number, real: string): Bound => ({ min, max, integer: true, real });

/** The table. README's "Limits" section is written from it. */
export const LIMITS = {
  /** Each side of the model's input, in pixels. */
  imageSize: whole(1, 8192, '1024 (SAM, ViTDet); 518 (DINOv2)'),
  /** Patches per image (the attention matrix grows with its square). */
  patches: whole(1, 16384, '5,329 (1022 px at patch 14); 4,096 (SAM)'),
  patchSize: whole(1, 256, '32'),
  embedDim: whole(1, 16384, '6,144 (ViT-22B)'),
  depth: whole(1, 1000, '48 (ViT-22B), 56 (ViT-e)'),
  numHeads: whole(1, 256, '48 (ViT-22B)'),
  /** A Swin window's side (its mask and position index grow with the side's fourth power). */
  windowSize: whole(1, 32, '24 (Swin V2 at 384); 12 (Swin at 384)'),
  mlpDim: whole(1, 65536, '24,576 (ViT-22B)'),
  numClasses: whole(0, 100_000, '21,843 (ImageNet-21k)'),
  representationSize: whole(1, 16384, '1,280 (H/14 in21k)'),
  /** Parameters in all (float32 on the host: 4 bytes each). */
  params: whole(1, 2 ** 35, '21.7 billion (ViT-22B); 632 million (H/14)'),
  layerNormEps: { min: 0, max: 0.1, integer: false, minExclusive: true, real: '1e-12 to 1e-5' },
  /** Target of the resize: shortest_edge, or height and width. */
  resizeEdge: whole(1, 8192, '1,024; 438 (crop_pct 0.875 of 384)'),
  cropSize: whole(1, 8192, '1,024'),
  /** timm's crop_pct: the crop's share of the resized image. */
  cropPct: { min: 0.05, max: 1, integer: false, real: '0.875 to 1.0' },
  rescale: { min: 0, max: Number.MAX_VALUE, integer: false, minExclusive: true, real: '1/255' },
  std: { min: 0, max: Number.MAX_VALUE, integer: false, minExclusive: true, real: '0.229 to 0.5' },
  mean: { min: -Number.MAX_VALUE, max: Number.MAX_VALUE, integer: false, real: '0.406 to 0.5' },
  batchSize: whole(1, 1024, '256 (throughput runs on big GPUs)'),
  /** --threads, VIT_THREADS: each is an OS thread with its stack (100,000 took 16 GB and ignored SIGTERM). */
  threads: whole(1, 1024, '768 (two 192-core CPUs, two threads a core)'),
} as const satisfies Record<string, Bound>;

function show(v: unknown): string {
  return typeof v === 'number' ? String(v) : JSON.stringify(v) ?? String(v);
}

/** What is wrong with `value` for `bound` (e.g. "is more than 1000"), or null when it is within. */
export function outOfBound(value: unknown, bound: Bound): string | null {
  if (typeof value !== 'number' || !Number.isFinite(value)) return 'is not a finite number';
  if (bound.integer && !Number.isInteger(value)) return 'is not a whole number';
  if (bound.minExclusive ? value <= bound.min : value < bound.min) return bound.minExclusive ? `must be more than ${bound.min}` : `is less than ${bound.min}`;
  if (value > bound.max) return `is more than ${bound.max}`;
  return null;
}

/** `field value problem` for one field, or null: the phrase every message below is made of. */
export function fieldProblem(field: string, value: unknown, bound: Bound): string | null {
  const why = outOfBound(value, bound);
  return why === null ? null : `${field} ${show(value)} ${why}`;
}

/** The problems among checks that each gave one or null. */
export function collect(problems: (string | null)[]): string[] {
  return problems.filter((p): p is string => p !== null);
}

/**
 * Patches of an input at a patch size, when more than LIMITS.patches allows, as a problem; shared by the
 * architectures that cut images into patches and by --image-size.
 */
export function patchesProblem(size: readonly [number, number], patchSize: number, field: string): string | null {
  const n = Math.floor(size[0] / patchSize) * Math.floor(size[1] / patchSize);
  return n > LIMITS.patches.max
    ? `${field} ${size.join('x')} at patch ${patchSize} gives ${n} patches, more than ${LIMITS.patches.max}`
    : null;
}

/**
 * The preprocessing must end at the model's input size, or every image would fail on its own (exit 3) for
 * what is one mistake in the model: a crop of another size, an exact resize to another size, non-finite or
 * zero statistics.
 */
export function preprocessProblems(pp: Preprocess, imgSize: readonly [number, number]): string[] {
  const problems: (string | null)[] = [];
  const [h, w] = imgSize;
  if (pp.resize !== null) {
    if ('shortestEdge' in pp.resize) problems.push(fieldProblem('resize shortest edge', pp.resize.shortestEdge, LIMITS.resizeEdge));
    else if ('keepRatio' in pp.resize) {
      problems.push(fieldProblem('resize height', pp.resize.keepRatio.height, LIMITS.resizeEdge), fieldProblem('resize width', pp.resize.keepRatio.width, LIMITS.resizeEdge));
    } else problems.push(fieldProblem('resize height', pp.resize.height, LIMITS.resizeEdge), fieldProblem('resize width', pp.resize.width, LIMITS.resizeEdge));
  }
  if (pp.crop !== null) {
    problems.push(fieldProblem('crop height', pp.crop.height, LIMITS.cropSize), fieldProblem('crop width', pp.crop.width, LIMITS.cropSize));
    if (pp.crop.height !== h || pp.crop.width !== w) problems.push(`crop ${pp.crop.height}x${pp.crop.width} is not the model's input size ${h}x${w}`);
  } else if (pp.resize !== null) {
    // A keep-ratio resize ends at its target only for images of the target's shape: it needs a crop.
    const ends = 'shortestEdge' in pp.resize ? pp.resize.shortestEdge === Math.min(h, w)
      : 'keepRatio' in pp.resize ? false : pp.resize.height === h && pp.resize.width === w;
    if (!ends) problems.push(`resize to ${describeResize(pp.resize)} without a crop cannot give the model's input size ${h}x${w}`);
  }
  problems.push(fieldProblem('rescale', pp.rescale, LIMITS.rescale));
  pp.mean.forEach((m, c) => problems.push(fieldProblem(`mean[${c}]`, m, LIMITS.mean)));
  pp.std.forEach((s, c) => problems.push(fieldProblem(`std[${c}]`, s, LIMITS.std)));
  return collect(problems);
}

function describeResize(r: NonNullable<Preprocess['resize']>): string {
  if ('shortestEdge' in r) return `shortest edge ${r.shortestEdge}`;
  return 'keepRatio' in r ? `cover ${r.keepRatio.height}x${r.keepRatio.width}` : `${r.height}x${r.width}`;
}

/** The bounds of the fields every architecture's config has (ModelConfig): input size, head, preprocessing. */
export function modelConfigProblems(cfg: ModelConfig): string[] {
  const sizes = collect([
    ...cfg.imgSize.map((s, i) => fieldProblem(`image size[${i}]`, s, LIMITS.imageSize)),
    fieldProblem('numClasses', cfg.numClasses, LIMITS.numClasses),
  ]);
  return sizes.length > 0 ? sizes : preprocessProblems(cfg.preprocess, cfg.imgSize);
}

/** The largest tensor a Float32Array can hold. */
const MAX_TENSOR_ELEMENTS = 2 ** 32 - 1;

/**
 * The parameters of a config (its architecture's canonical shapes) in all and per tensor. Call it once the
 * sizes are within their bounds, so the list is at most a few thousand entries.
 */
export function paramsProblems(params: Map<string, number[]>): string[] {
  let total = 0;
  const problems: string[] = [];
  for (const [name, shape] of params) {
    const n = shape.reduce((a, d) => a * d, 1);
    total += n;
    if (n > MAX_TENSOR_ELEMENTS) problems.push(`${name} would have ${n} elements, more than ${MAX_TENSOR_ELEMENTS}`);
  }
  const p = fieldProblem('parameter count', total, LIMITS.params);
  return p === null ? problems : [p, ...problems];
}

/** Parameters in all of a list of shapes. */
export function paramCount(params: Map<string, number[]>): number {
  let total = 0;
  for (const shape of params.values()) total += shape.reduce((a, d) => a * d, 1);
  return total;
}

/** `-b/--batch-size`. */
export function batchSizeProblem(n: unknown): string | null {
  return rangeProblem('--batch-size', n, LIMITS.batchSize);
}

/** An option's value outside its bound, with the bound in words (`--threads`, `VIT_THREADS`, `--batch-size`). */
export function rangeProblem(field: string, value: unknown, bound: Bound): string | null {
  const p = fieldProblem(field, value, bound);
  return p === null ? null : `${p} (the limit is ${bound.min} to ${bound.max})`;
}

/** `--image-size H[xW]`: each side (the patch count is the architecture's to check, see patchesProblem). */
export function imageSizeProblem(size: readonly [number, number]): string | null {
  for (const s of size) {
    const p = fieldProblem('--image-size', s, LIMITS.imageSize);
    if (p !== null) return `${p} (each side must be ${LIMITS.imageSize.min} to ${LIMITS.imageSize.max} pixels)`;
  }
  return null;
}

/**
 * Bounds that no real Vision Transformer comes near, for every number a config, a preprocessor config or the
 * command line can set. Values past them are not models anyone trained: they are typos or hostile files, and
 * taken at their word they hang (depth 1e9), exhaust memory (shortest_edge 1e9) or give NaN (std 0). Checking
 * them first turns each into one error naming the field, before any image is decoded or weight allocated.
 * Pure: no file system, no engines, so every reader and option parser can use it.
 */
import type { Preprocess, ViTConfig } from './config.js';
import { expectedParams } from './params.js';

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
  inChans: whole(1, 64, '3 (13 for Sentinel-2 models)'),
  embedDim: whole(1, 16384, '6,144 (ViT-22B)'),
  depth: whole(1, 1000, '48 (ViT-22B), 56 (ViT-e)'),
  numHeads: whole(1, 256, '48 (ViT-22B)'),
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
} as const satisfies Record<string, Bound>;

export type LimitName = keyof typeof LIMITS;

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

function collect(problems: (string | null)[]): string[] {
  return problems.filter((p): p is string => p !== null);
}

/** Patch count of a size at a patch size, or a problem; shared by the config check and --image-size. */
function patchesProblem(size: readonly [number, number], patchSize: number, field: string): string | null {
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
    else problems.push(fieldProblem('resize height', pp.resize.height, LIMITS.resizeEdge), fieldProblem('resize width', pp.resize.width, LIMITS.resizeEdge));
  }
  if (pp.crop !== null) {
    problems.push(fieldProblem('crop height', pp.crop.height, LIMITS.cropSize), fieldProblem('crop width', pp.crop.width, LIMITS.cropSize));
    if (pp.crop.height !== h || pp.crop.width !== w) problems.push(`crop ${pp.crop.height}x${pp.crop.width} is not the model's input size ${h}x${w}`);
  } else if (pp.resize !== null) {
    const ends = 'shortestEdge' in pp.resize ? pp.resize.shortestEdge === Math.min(h, w) : pp.resize.height === h && pp.resize.width === w;
    if (!ends) problems.push(`resize to ${describeResize(pp.resize)} without a crop cannot give the model's input size ${h}x${w}`);
  }
  problems.push(fieldProblem('rescale', pp.rescale, LIMITS.rescale));
  pp.mean.forEach((m, c) => problems.push(fieldProblem(`mean[${c}]`, m, LIMITS.mean)));
  pp.std.forEach((s, c) => problems.push(fieldProblem(`std[${c}]`, s, LIMITS.std)));
  return collect(problems);
}

function describeResize(r: NonNullable<Preprocess['resize']>): string {
  return 'shortestEdge' in r ? `shortest edge ${r.shortestEdge}` : `${r.height}x${r.width}`;
}

/**
 * Every bound a config must keep, as one list of problems (empty when it is fine). The parameter count is
 * worked out only once the sizes are known to be small, so a depth of 1e9 costs nothing.
 */
export function configProblems(cfg: ViTConfig): string[] {
  const problems = collect([
    ...cfg.imgSize.map((s, i) => fieldProblem(`image size[${i}]`, s, LIMITS.imageSize)),
    fieldProblem('patchSize', cfg.patchSize, LIMITS.patchSize),
    fieldProblem('inChans', cfg.inChans, LIMITS.inChans),
    fieldProblem('embedDim', cfg.embedDim, LIMITS.embedDim),
    fieldProblem('depth', cfg.depth, LIMITS.depth),
    fieldProblem('numHeads', cfg.numHeads, LIMITS.numHeads),
    fieldProblem('mlpDim', cfg.mlpDim, LIMITS.mlpDim),
    fieldProblem('numClasses', cfg.numClasses, LIMITS.numClasses),
    cfg.representationSize === null ? null : fieldProblem('representationSize', cfg.representationSize, LIMITS.representationSize),
    fieldProblem('layerNormEps', cfg.layerNormEps, LIMITS.layerNormEps),
    ...(cfg.posEmbedGrid ?? []).map((g, i) => fieldProblem(`posEmbedGrid[${i}]`, g, LIMITS.imageSize)),
  ]);
  if (problems.length > 0) return problems;
  const patches = patchesProblem(cfg.imgSize, cfg.patchSize, 'image size');
  if (patches) return [patches];
  const total = paramCount(cfg);
  const params = fieldProblem('parameter count', total, LIMITS.params);
  return collect([params, ...preprocessProblems(cfg.preprocess, cfg.imgSize)]);
}

/** Parameters of a config whose sizes are within LIMITS (so the list is at most a few thousand entries). */
export function paramCount(cfg: ViTConfig): number {
  let total = 0;
  for (const shape of expectedParams(cfg).values()) total += shape.reduce((a, d) => a * d, 1);
  return total;
}

/** timm's crop_pct, before it becomes a resize (224 / 1e-6 would be a 224-megapixel edge). */
export function cropPctProblem(v: unknown, field = 'crop_pct'): string | null {
  return fieldProblem(field, v, LIMITS.cropPct);
}

/** `-b/--batch-size`. */
export function batchSizeProblem(n: unknown): string | null {
  const p = fieldProblem('--batch-size', n, LIMITS.batchSize);
  return p === null ? null : `${p} (the limit is ${LIMITS.batchSize.min} to ${LIMITS.batchSize.max})`;
}

/** `--image-size H[xW]` for a model with this patch size. */
export function imageSizeProblem(size: readonly [number, number], patchSize: number): string | null {
  for (const s of size) {
    const p = fieldProblem('--image-size', s, LIMITS.imageSize);
    if (p !== null) return `${p} (each side must be ${LIMITS.imageSize.min} to ${LIMITS.imageSize.max} pixels)`;
  }
  const p = patchesProblem(size, patchSize, '--image-size');
  return p === null ? null : `${p} (the limit on patches per image)`;
}

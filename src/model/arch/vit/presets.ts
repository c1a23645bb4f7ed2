import { UsageError } from '../../../errors.js';
import { IMAGENET_MEAN, IMAGENET_STD, INCEPTION_MEAN, INCEPTION_STD } from '../../config.js';
import { timmPreprocess } from '../../preprocess.js';
import type { PresetTable } from '../types.js';
import { validateVitConfig, type ViTConfig } from './config.js';

/** The sizes of the paper (Ti and S from DeiT / "How to train your ViT"). */
const SIZES = {
  Ti: { embedDim: 192, depth: 12, numHeads: 3, mlpDim: 768, word: 'tiny' },
  S: { embedDim: 384, depth: 12, numHeads: 6, mlpDim: 1536, word: 'small' },
  B: { embedDim: 768, depth: 12, numHeads: 12, mlpDim: 3072, word: 'base' },
  L: { embedDim: 1024, depth: 24, numHeads: 16, mlpDim: 4096, word: 'large' },
  H: { embedDim: 1280, depth: 32, numHeads: 16, mlpDim: 5120, word: 'huge' },
} as const;
type Size = keyof typeof SIZES;

interface PresetRow {
  /** timm's model name, the canonical key. */
  timm: string;
  size: Size;
  patch: number;
  res: number;
  classes: number;
  /** Pre-logits width of the original in21k release. */
  repr?: boolean;
  distilled?: boolean;
  /** mean/std family and timm's crop_pct. */
  norm: 'inception' | 'imagenet';
  cropPct: number;
  /** Extra names this preset answers to besides the paper's `B/16` (and `B/16@384`) forms. */
  aliases?: string[];
}

/**
 * The table. One row is one preset; the paper's names (`B/16`, `ViT-B/16`, `B/16@384`) are derived from the
 * size, patch and resolution of the ImageNet-1k rows, timm's names are the keys.
 */
const ROWS: PresetRow[] = [
  { timm: 'vit_tiny_patch16_224', size: 'Ti', patch: 16, res: 224, classes: 1000, norm: 'inception', cropPct: 0.9 },
  { timm: 'vit_tiny_patch16_384', size: 'Ti', patch: 16, res: 384, classes: 1000, norm: 'inception', cropPct: 1.0 },
  { timm: 'vit_small_patch16_224', size: 'S', patch: 16, res: 224, classes: 1000, norm: 'inception', cropPct: 0.9 },
  { timm: 'vit_small_patch16_384', size: 'S', patch: 16, res: 384, classes: 1000, norm: 'inception', cropPct: 1.0 },
  { timm: 'vit_small_patch32_224', size: 'S', patch: 32, res: 224, classes: 1000, norm: 'inception', cropPct: 0.9 },
  { timm: 'vit_small_patch32_384', size: 'S', patch: 32, res: 384, classes: 1000, norm: 'inception', cropPct: 1.0 },
  { timm: 'vit_base_patch16_224', size: 'B', patch: 16, res: 224, classes: 1000, norm: 'inception', cropPct: 0.9 },
  { timm: 'vit_base_patch16_384', size: 'B', patch: 16, res: 384, classes: 1000, norm: 'inception', cropPct: 1.0 },
  { timm: 'vit_base_patch32_224', size: 'B', patch: 32, res: 224, classes: 1000, norm: 'inception', cropPct: 0.9 },
  { timm: 'vit_base_patch32_384', size: 'B', patch: 32, res: 384, classes: 1000, norm: 'inception', cropPct: 1.0 },
  { timm: 'vit_large_patch16_224', size: 'L', patch: 16, res: 224, classes: 1000, norm: 'inception', cropPct: 0.9 },
  { timm: 'vit_large_patch16_384', size: 'L', patch: 16, res: 384, classes: 1000, norm: 'inception', cropPct: 1.0 },
  { timm: 'vit_large_patch32_224', size: 'L', patch: 32, res: 224, classes: 1000, norm: 'inception', cropPct: 0.9 },
  { timm: 'vit_large_patch32_384', size: 'L', patch: 32, res: 384, classes: 1000, norm: 'inception', cropPct: 1.0 },
  { timm: 'vit_huge_patch14_224', size: 'H', patch: 14, res: 224, classes: 1000, norm: 'inception', cropPct: 0.9 },
  // The original ImageNet-21k release: 21,843 classes and a tanh pre-logits layer as wide as the model.
  { timm: 'vit_base_patch16_224_in21k', size: 'B', patch: 16, res: 224, classes: 21843, repr: true, norm: 'inception', cropPct: 0.9 },
  { timm: 'vit_base_patch32_224_in21k', size: 'B', patch: 32, res: 224, classes: 21843, repr: true, norm: 'inception', cropPct: 0.9 },
  { timm: 'vit_large_patch16_224_in21k', size: 'L', patch: 16, res: 224, classes: 21843, repr: true, norm: 'inception', cropPct: 0.9 },
  { timm: 'vit_large_patch32_224_in21k', size: 'L', patch: 32, res: 224, classes: 21843, repr: true, norm: 'inception', cropPct: 0.9 },
  { timm: 'vit_huge_patch14_224_in21k', size: 'H', patch: 14, res: 224, classes: 21843, repr: true, norm: 'inception', cropPct: 0.9 },
  // DeiT (Touvron et al.): ImageNet statistics, crop 0.875; the distilled ones carry a second token and head.
  { timm: 'deit_tiny_patch16_224', size: 'Ti', patch: 16, res: 224, classes: 1000, norm: 'imagenet', cropPct: 0.875 },
  { timm: 'deit_small_patch16_224', size: 'S', patch: 16, res: 224, classes: 1000, norm: 'imagenet', cropPct: 0.875 },
  { timm: 'deit_base_patch16_224', size: 'B', patch: 16, res: 224, classes: 1000, norm: 'imagenet', cropPct: 0.875 },
  { timm: 'deit_tiny_distilled_patch16_224', size: 'Ti', patch: 16, res: 224, classes: 1000, distilled: true, norm: 'imagenet', cropPct: 0.875 },
  { timm: 'deit_small_distilled_patch16_224', size: 'S', patch: 16, res: 224, classes: 1000, distilled: true, norm: 'imagenet', cropPct: 0.875 },
  { timm: 'deit_base_distilled_patch16_224', size: 'B', patch: 16, res: 224, classes: 1000, distilled: true, norm: 'imagenet', cropPct: 0.875 },
];

function rowConfig(row: PresetRow): ViTConfig {
  const s = SIZES[row.size];
  const inception = row.norm === 'inception';
  return validateVitConfig({
    arch: 'vit',
    name: row.timm,
    imgSize: [row.res, row.res],
    patchSize: row.patch,
    inChans: 3,
    embedDim: s.embedDim,
    depth: s.depth,
    numHeads: s.numHeads,
    mlpDim: s.mlpDim,
    numClasses: row.classes,
    representationSize: row.repr ? s.embedDim : null,
    qkvBias: true,
    layerNormEps: 1e-6,
    classToken: true,
    distilled: row.distilled ?? false,
    distilledHead: row.distilled ?? false,
    globalPool: 'token',
    fcNorm: false,
    preprocess: timmPreprocess([row.res, row.res], row.cropPct, 'bicubic',
      inception ? INCEPTION_MEAN : IMAGENET_MEAN, inception ? INCEPTION_STD : IMAGENET_STD),
    labels: null,
    problemType: null,
  });
}

/** Names a row answers to, lower-cased: timm's, and for ViT rows the paper's. */
function rowNames(row: PresetRow): string[] {
  const names = [row.timm, ...(row.aliases ?? [])];
  if (row.timm.startsWith('vit_')) {
    const paper = `${row.size}/${row.patch}`;
    const suffix = row.classes === 21843 ? '-in21k' : '';
    const forms = row.res === 224 ? [paper, `${paper}@224`] : [`${paper}@${row.res}`, `${paper}-${row.res}`];
    for (const f of forms) names.push(f + suffix, `ViT-${f}${suffix}`);
  }
  return names.map((n) => n.toLowerCase());
}

const BY_NAME = new Map<string, PresetRow>();
for (const row of ROWS) for (const n of rowNames(row)) BY_NAME.set(n, row);

/** The ViT and DeiT presets, by timm's names and the paper's (`B/16`, `ViT-B/16`, `B/16@384`). */
export const VIT_PRESETS: PresetTable<ViTConfig> = {
  names: () => ROWS.map((r) => r.timm),
  shortNames: () => ROWS.filter((r) => r.timm.startsWith('vit_')).map(displayPaper),
  lookup: (name) => {
    const row = BY_NAME.get(name.trim().toLowerCase());
    return row ? rowConfig(row) : null;
  },
};

function displayPaper(r: PresetRow): string {
  const base = `${r.size}/${r.patch}`;
  return (r.res === 224 ? base : `${base}@${r.res}`) + (r.classes === 21843 ? '-in21k' : '');
}

/** A ViT preset's config by any of its names; an unknown name is a usage error. */
export function vitPreset(name: string): ViTConfig {
  const c = VIT_PRESETS.lookup(name);
  if (!c) throw new UsageError(`unknown ViT preset "${name}"; presets: ${VIT_PRESETS.shortNames().join(', ')}`);
  return c;
}

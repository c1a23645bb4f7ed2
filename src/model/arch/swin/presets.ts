import { IMAGENET_MEAN, IMAGENET_STD } from '../../config.js';
import { timmPreprocess } from '../../preprocess.js';
import type { PresetTable } from '../types.js';
import { validateSwinConfig, type SwinConfig } from './config.js';

/** The sizes of the paper (Liu et al. 2021, table 1 and section 3.3). */
const SIZES = {
  T: { embedDim: 96, depths: [2, 2, 6, 2], numHeads: [3, 6, 12, 24], word: 'tiny' },
  S: { embedDim: 96, depths: [2, 2, 18, 2], numHeads: [3, 6, 12, 24], word: 'small' },
  B: { embedDim: 128, depths: [2, 2, 18, 2], numHeads: [4, 8, 16, 32], word: 'base' },
  L: { embedDim: 192, depths: [2, 2, 18, 2], numHeads: [6, 12, 24, 48], word: 'large' },
} as const;
type Size = keyof typeof SIZES;

interface SwinPresetRow {
  size: Size;
  res: number;
  window: number;
  /** timm's crop_pct for the release. */
  cropPct: number;
  /** Extra names besides timm's and the paper's (`Swin-T`, `Swin-B@384`). */
  aliases?: string[];
}

/** One row per preset; timm's name (swin_<word>_patch4_window<w>_<res>) is derived and is the canonical key. */
const ROWS: SwinPresetRow[] = [
  { size: 'T', res: 224, window: 7, cropPct: 0.9, aliases: ['swin_t'] },
  { size: 'S', res: 224, window: 7, cropPct: 0.9, aliases: ['swin_s'] },
  { size: 'B', res: 224, window: 7, cropPct: 0.9, aliases: ['swin_b'] },
  { size: 'B', res: 384, window: 12, cropPct: 1.0 },
  { size: 'L', res: 224, window: 7, cropPct: 0.9 },
  { size: 'L', res: 384, window: 12, cropPct: 1.0 },
];

const timmName = (r: SwinPresetRow) => `swin_${SIZES[r.size].word}_patch4_window${r.window}_${r.res}`;

function rowNames(r: SwinPresetRow): string[] {
  const paper = `Swin-${r.size}`;
  const forms = r.res === 224 ? [paper, `${paper}@224`] : [`${paper}@${r.res}`, `${paper}-${r.res}`];
  return [timmName(r), ...forms, ...(r.aliases ?? [])].map((n) => n.toLowerCase());
}

const BY_NAME = new Map<string, SwinPresetRow>();
for (const r of ROWS) for (const n of rowNames(r)) BY_NAME.set(n, r);

function rowConfig(r: SwinPresetRow): SwinConfig {
  const s = SIZES[r.size];
  const stages = s.depths.length;
  return validateSwinConfig({
    arch: 'swin',
    name: timmName(r),
    imgSize: [r.res, r.res],
    patchSize: 4,
    inChans: 3,
    embedDim: s.embedDim,
    depths: [...s.depths],
    numHeads: [...s.numHeads],
    windowSize: Array(stages).fill(r.window),
    mlpRatio: 4,
    qkvBias: true,
    layerNormEps: 1e-5,
    patchNormEps: 1e-5,
    numClasses: 1000,
    windowRule: 'timm',
    preprocess: timmPreprocess([r.res, r.res], r.cropPct, 'bicubic', IMAGENET_MEAN, IMAGENET_STD),
    labels: null,
    problemType: null,
  });
}

/** The Swin presets by timm's names (canonical), the paper's (Swin-T … Swin-L@384) and torchvision's (swin_t …). */
export const SWIN_PRESETS: PresetTable<SwinConfig> = {
  names: () => ROWS.map(timmName),
  shortNames: () => ROWS.map((r) => (r.res === 224 ? `Swin-${r.size}` : `Swin-${r.size}@${r.res}`)),
  lookup: (name) => {
    const row = BY_NAME.get(name.trim().toLowerCase());
    return row ? rowConfig(row) : null;
  },
};

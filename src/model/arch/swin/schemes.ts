import type { TensorMap } from '../../tensor.js';
import { fuseQkv, renameAll, stripCommonPrefix, type Renamer } from '../../weights/schemes.js';
import type { Scheme } from '../types.js';
import { validateSwinConfig, type SwinConfig, type WindowRule } from './config.js';

/** A Swin checkpoint naming scheme, with the window rule of the implementation that writes such checkpoints. */
interface SwinScheme extends Scheme<SwinConfig> {
  windowRule: WindowRule;
}

/**
 * Buffers every implementation derives from the config (windows.ts); checkpoints may carry them, none needs
 * them. relative_coords_table is Swin V2's, whose other parameters then show up as unexpected.
 */
const DERIVED = /(^|\.)(relative_position_index|attn_mask|relative_coords_table)$/;

function withoutBuffers(src: TensorMap): TensorMap {
  return new Map([...stripCommonPrefix(src, ['module.'])].filter(([k]) => !DERIVED.test(k)));
}

const hasBlocks = (keys: string[], prefix: string) => keys.some((k) => k.startsWith(prefix) && /\.blocks\.\d+\./.test(k));

/** Patch merging named after the stage it closes (`layers.S.downsample`) → after the stage it opens (S + 1). */
const nextStage: Renamer = (_m, stage) => `layers.${Number(stage) + 1}.downsample.`;

/** timm ≥ 0.9: patch merging opens stage S as layers.S.downsample; the classifier is head.fc. */
const timm: SwinScheme = {
  name: 'timm',
  windowRule: 'timm',
  detect: (keys) => keys.includes('patch_embed.proj.weight') && hasBlocks(keys, 'layers.'),
  toCanonical: (src) => withoutBuffers(src),
};

/**
 * The original Microsoft release and timm before 0.9 (its checkpoint_filter_fn converts them): patch merging
 * closes stage S as layers.S.downsample, the classifier is `head`. Told from timm ≥ 0.9 by either: stage 0
 * never opens with a merging, and a classifier named `head.weight` is the old one.
 */
const microsoft: SwinScheme = {
  name: 'microsoft',
  windowRule: 'timm',
  detect: (keys) => timm.detect(keys) && keys.some((k) => k.startsWith('layers.0.downsample.') || k === 'head.weight'),
  toCanonical: (src) => renameAll(withoutBuffers(src), [
    [/^layers\.(\d+)\.downsample\./, nextStage],
    [/^head\.(weight|bias)$/, 'head.fc.$1'],
  ]),
};

const HF_BLOCK = String.raw`^encoder\.layers\.(\d+)\.blocks\.(\d+)\.`;

/**
 * Hugging Face transformers (model_type swin): `swin.` before everything in SwinForImageClassification (not
 * in a bare SwinModel), patch merging closing stage S, query/key/value as three projections, `classifier`.
 */
const hf: SwinScheme = {
  name: 'hf',
  windowRule: 'hf',
  detect: (keys) => keys.some((k) => /(^|\.)embeddings\.patch_embeddings\.projection\.weight$/.test(k)) &&
    keys.some((k) => /(^|\.)encoder\.layers\.\d+\.blocks\.\d+\./.test(k)),
  toCanonical: (src, cfg) => {
    const m = renameAll(withoutBuffers(src), [[/^swin\./, '']]);
    const renamed = renameAll(m, [
      [/^embeddings\.patch_embeddings\.projection\./, 'patch_embed.proj.'],
      [/^embeddings\.norm\./, 'patch_embed.norm.'],
      [new RegExp(`${HF_BLOCK}layernorm_before\\.`), 'layers.$1.blocks.$2.norm1.'],
      [new RegExp(`${HF_BLOCK}layernorm_after\\.`), 'layers.$1.blocks.$2.norm2.'],
      [new RegExp(`${HF_BLOCK}attention\\.self\\.relative_position_bias_table$`), 'layers.$1.blocks.$2.attn.relative_position_bias_table'],
      [new RegExp(`${HF_BLOCK}attention\\.self\\.(query|key|value)\\.`), 'layers.$1.blocks.$2.attn.$3.'],
      [new RegExp(`${HF_BLOCK}attention\\.output\\.dense\\.`), 'layers.$1.blocks.$2.attn.proj.'],
      [new RegExp(`${HF_BLOCK}intermediate\\.dense\\.`), 'layers.$1.blocks.$2.mlp.fc1.'],
      [new RegExp(`${HF_BLOCK}output\\.dense\\.`), 'layers.$1.blocks.$2.mlp.fc2.'],
      [/^encoder\.layers\.(\d+)\.downsample\./, nextStage],
      [/^layernorm\./, 'norm.'],
      [/^classifier\./, 'head.fc.'],
    ]);
    fuseBlockQkv(renamed, cfg);
    return renamed;
  },
};

/** Every block's separate query, key and value projections → one qkv (rows q | k | v), removing the parts. */
function fuseBlockQkv(m: TensorMap, cfg: SwinConfig): void {
  const blocks = cfg.depths.flatMap((depth, stage) => Array.from({ length: depth }, (_, b) => `layers.${stage}.blocks.${b}.attn`));
  const part = { q: 'query', k: 'key', v: 'value', qkv: 'qkv' };
  fuseQkv(m, blocks.length, (i, p, kind) => `${blocks[i]}.${part[p]}.${kind}`);
}

/**
 * torchvision's SwinTransformer: one `features` sequence of the patch embedding (conv, permute, norm), then
 * stage 0, merging, stage 1, merging, …: stage S at features.(2S+1), the merging that opens it at features.(2S).
 */
const torchvision: SwinScheme = {
  name: 'torchvision',
  windowRule: 'torchvision',
  detect: (keys) => keys.includes('features.0.0.weight') && keys.some((k) => /^features\.\d+\.\d+\.attn\.qkv\.weight$/.test(k)),
  toCanonical: (src) => renameAll(withoutBuffers(src), [
    [/^features\.0\.0\./, 'patch_embed.proj.'],
    [/^features\.0\.2\./, 'patch_embed.norm.'],
    [/^features\.(\d+)\.(\d+)\.mlp\.([03])\./, (_m, f, b, l) => `layers.${(Number(f) - 1) / 2}.blocks.${b}.mlp.fc${l === '0' ? 1 : 2}.`],
    [/^features\.(\d+)\.(\d+)\./, (_m, f, b) => `layers.${(Number(f) - 1) / 2}.blocks.${b}.`],
    [/^features\.(\d+)\.(reduction|norm)\./, (_m, f, leaf) => `layers.${Number(f) / 2}.downsample.${leaf}.`],
    [/^head\./, 'head.fc.'],
  ]),
};

/** The naming schemes of Swin checkpoints in detection order (the Microsoft layout's keys also pass timm's test). */
export const SWIN_SCHEMES: readonly SwinScheme[] = [microsoft, timm, hf, torchvision];

/**
 * What the checkpoint says about the model beyond its config: windows follow the rule of the implementation
 * that wrote it (its scheme's), and a preset (which knows nothing of the checkpoint's head) takes its class
 * count from the canonical weights unless the user fixed it.
 */
export function fitSwinCheckpoint(cfg: SwinConfig, canonical: TensorMap, opts: { fromPreset: boolean; fixedClasses: boolean; scheme?: string }): SwinConfig {
  const rule = SWIN_SCHEMES.find((s) => s.name === opts.scheme)?.windowRule ?? cfg.windowRule;
  const out: SwinConfig = { ...cfg, windowRule: rule };
  if (opts.fromPreset && !opts.fixedClasses) {
    out.numClasses = canonical.get('head.fc.weight')?.shape[0] ?? 0;
    if (out.numClasses !== cfg.numClasses) out.labels = null;
  }
  return validateSwinConfig(out);
}

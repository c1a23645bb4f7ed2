import { WeightsError } from '../../../errors.js';
import type { HostTensor, TensorMap } from '../../tensor.js';
import { concat0, renameAll, stripCommonPrefix, type Renamer } from '../../weights/schemes.js';
import { validateSwinConfig, type SwinConfig, type WindowRule } from './config.js';

/**
 * A Swin checkpoint naming scheme: how to recognise its keys, how to map them to the canonical (timm ≥ 0.9)
 * names, and whose window rule the implementation that writes these checkpoints follows.
 */
export interface SwinScheme {
  name: string;
  windowRule: WindowRule;
  detect(keys: string[]): boolean;
  toCanonical(src: TensorMap, cfg: SwinConfig): TensorMap;
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
    fuseQkv(renamed, cfg);
    return renamed;
  },
};

/** Every block's separate query, key and value projections → one qkv (rows q | k | v), removing the parts. */
function fuseQkv(m: TensorMap, cfg: SwinConfig): void {
  cfg.depths.forEach((depth, stage) => {
    for (let b = 0; b < depth; b++) {
      for (const kind of ['weight', 'bias']) {
        const keys = ['query', 'key', 'value'].map((part) => `layers.${stage}.blocks.${b}.attn.${part}.${kind}`);
        const parts = keys.map((k) => m.get(k));
        if (parts.every((p) => p !== undefined)) {
          for (const k of keys) m.delete(k);
          m.set(`layers.${stage}.blocks.${b}.attn.qkv.${kind}`, concat0(parts as HostTensor[]));
        }
      }
    }
  });
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

/** Most specific first: the Microsoft layout's keys also pass timm's test. */
const SCHEMES: SwinScheme[] = [microsoft, timm, hf, torchvision];

export function detectSwinScheme(src: TensorMap): SwinScheme {
  const keys = [...src.keys()];
  const s = SCHEMES.find((x) => x.detect(keys));
  if (!s) {
    const sample = keys.slice(0, 5).join(', ');
    throw new WeightsError(
      `cannot tell which Swin naming scheme this checkpoint uses (${keys.length} tensors, e.g. ${sample || 'none'}); ` +
      `known: ${SCHEMES.map((x) => x.name).join(', ')}`,
    );
  }
  return s;
}

export function swinSchemeNames(): string[] {
  return SCHEMES.map((s) => s.name);
}

/**
 * What the checkpoint says about the model beyond its config: windows follow the rule of the implementation
 * that wrote it, and a preset (which knows nothing of the checkpoint's head) takes its class count from the
 * canonical weights unless the user fixed it.
 */
export function adaptSwinToCheckpoint(cfg: SwinConfig, canonical: TensorMap, scheme: SwinScheme, opts: { fromPreset: boolean; fixedClasses: boolean }): SwinConfig {
  const out: SwinConfig = { ...cfg, windowRule: scheme.windowRule };
  if (opts.fromPreset && !opts.fixedClasses) {
    out.numClasses = canonical.get('head.fc.weight')?.shape[0] ?? 0;
    if (out.numClasses !== cfg.numClasses) out.labels = null;
  }
  return validateSwinConfig(out);
}

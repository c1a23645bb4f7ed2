import { WeightsError } from '../../errors.js';
import type { ViTConfig } from '../config.js';
import type { HostTensor, TensorMap } from '../tensor.js';

/**
 * A naming scheme maps a checkpoint's own tensor names (and layouts) to the canonical timm names. Each
 * scheme is data plus a small conversion; detection looks only at the keys.
 */
export interface Scheme {
  name: string;
  /** True when the keys look like this scheme's. */
  detect(keys: string[]): boolean;
  toCanonical(src: TensorMap, cfg: ViTConfig): TensorMap;
}

/** Concatenate tensors along axis 0 (e.g. separate q, k, v projections into one qkv). */
export function concat0(parts: HostTensor[]): HostTensor {
  const total = parts.reduce((n, p) => n + p.data.length, 0);
  const data = new Float32Array(total);
  let off = 0;
  for (const p of parts) {
    data.set(p.data, off);
    off += p.data.length;
  }
  const rows = parts.reduce((n, p) => n + p.shape[0], 0);
  return { shape: [rows, ...parts[0].shape.slice(1)], data };
}

/**
 * Rename tensors by a list of [pattern, replacement] rules (first match wins); keys no rule matches are kept
 * as they are, so the strict check later reports them as unexpected rather than losing them silently.
 */
export function renameAll(src: TensorMap, rules: [RegExp, string | Renamer][]): TensorMap {
  const out: TensorMap = new Map();
  for (const [k, v] of src) {
    const rule = rules.find(([re]) => re.test(k));
    if (!rule) {
      out.set(k, v);
      continue;
    }
    const [re, to] = rule;
    out.set(typeof to === 'string' ? k.replace(re, to) : k.replace(re, to), v);
  }
  return out;
}

/** A replacement computed from the match (e.g. a stage index moved by one): the match, then its groups. */
export type Renamer = (match: string, ...groups: string[]) => string;

/** Fuse `<prefix>{q,k,v}<suffix>` triples into one canonical qkv tensor per layer, removing the parts. */
export function fuseQkv(m: TensorMap, names: (i: number, part: 'q' | 'k' | 'v', kind: 'weight' | 'bias') => string, depth: number): void {
  for (let i = 0; i < depth; i++) {
    for (const kind of ['weight', 'bias'] as const) {
      const keys = (['q', 'k', 'v'] as const).map((part) => names(i, part, kind));
      const parts = keys.map((k) => m.get(k));
      if (parts.every((p) => p !== undefined)) {
        for (const k of keys) m.delete(k);
        m.set(`blocks.${i}.attn.qkv.${kind}`, concat0(parts as HostTensor[]));
      }
    }
  }
}

/** Strip wrappers' prefixes (`module.`, `model.`) when every key carries them. */
export function stripCommonPrefix(src: TensorMap, prefixes: string[]): TensorMap {
  for (const p of prefixes) {
    const keys = [...src.keys()];
    if (keys.length > 0 && keys.every((k) => k.startsWith(p))) {
      return new Map(keys.map((k) => [k.slice(p.length), src.get(k)!]));
    }
  }
  return src;
}

const timm: Scheme = {
  name: 'timm',
  detect: (keys) => keys.includes('patch_embed.proj.weight'),
  // Older timm releases and some fine-tuning repos name the in21k representation layer `head.pre_logits`.
  toCanonical: (src) => renameAll(src, [[/^head\.pre_logits\.fc\./, 'pre_logits.fc.'], [/^head\.fc\./, 'head.']]),
};

/** Hugging Face transformers: ViT (`vit.`), DeiT (`deit.`) and headless ViTModel (no prefix). */
const hf: Scheme = {
  name: 'hf',
  detect: (keys) => keys.some((k) => /(^|\.)embeddings\.patch_embeddings\.projection\.weight$/.test(k)),
  toCanonical: (src, cfg) => {
    const m = renameAll(stripCommonPrefix(src, ['module.']), [
      [/^(vit|deit)\./, ''],
    ]);
    const enc = 'encoder.layer.';
    const renamed = renameAll(m, [
      [/^embeddings\.patch_embeddings\.projection\./, 'patch_embed.proj.'],
      [/^embeddings\.cls_token$/, 'cls_token'],
      [/^embeddings\.distillation_token$/, 'dist_token'],
      [/^embeddings\.position_embeddings$/, 'pos_embed'],
      [new RegExp(`^${enc}(\\d+)\\.layernorm_before\\.`), 'blocks.$1.norm1.'],
      [new RegExp(`^${enc}(\\d+)\\.layernorm_after\\.`), 'blocks.$1.norm2.'],
      [new RegExp(`^${enc}(\\d+)\\.attention\\.attention\\.(query|key|value)\\.`), 'blocks.$1.attn.$2.'],
      [new RegExp(`^${enc}(\\d+)\\.attention\\.output\\.dense\\.`), 'blocks.$1.attn.proj.'],
      [new RegExp(`^${enc}(\\d+)\\.intermediate\\.dense\\.`), 'blocks.$1.mlp.fc1.'],
      [new RegExp(`^${enc}(\\d+)\\.output\\.dense\\.`), 'blocks.$1.mlp.fc2.'],
      [/^layernorm\./, 'norm.'],
      // The in21k ViTModel checkpoints keep the tanh representation layer as the pooler.
      [/^pooler\.dense\./, 'pre_logits.fc.'],
      [/^(classifier|cls_classifier)\./, 'head.'],
      [/^distillation_classifier\./, 'head_dist.'],
    ]);
    const qkvName = { q: 'query', k: 'key', v: 'value' };
    fuseQkv(renamed, (i, part, kind) => `blocks.${i}.attn.${qkvName[part]}.${kind}`, cfg.depth);
    return renamed;
  },
};

const SCHEMES: Scheme[] = [timm, hf];

/** Add a naming scheme (the pickle/npz/torchvision readers register theirs here). */
export function registerScheme(s: Scheme): void {
  if (!SCHEMES.some((x) => x.name === s.name)) SCHEMES.push(s);
}

export function detectScheme(src: TensorMap): Scheme {
  const keys = [...src.keys()];
  const s = SCHEMES.find((x) => x.detect(keys));
  if (!s) {
    const sample = keys.slice(0, 5).join(', ');
    throw new WeightsError(
      `cannot tell which naming scheme this checkpoint uses (${keys.length} tensors, e.g. ${sample || 'none'}); ` +
      `known: ${SCHEMES.map((x) => x.name).join(', ')}`,
    );
  }
  return s;
}

export function schemeNames(): string[] {
  return SCHEMES.map((s) => s.name);
}

/**
 * What naming schemes (src/model/arch/<name>/schemes.ts) share: renaming by rules, fusing split tensors, and
 * telling which of an architecture's schemes a checkpoint uses.
 */
import { WeightsError } from '../../errors.js';
import type { Scheme } from '../arch/types.js';
import type { HostTensor, TensorMap } from '../tensor.js';

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

/**
 * Fuse separate query, key and value tensors of each of `count` layers into one qkv tensor (rows q | k | v),
 * removing the parts. `name(i, part, kind)` names layer i's tensors, with part 'qkv' for the fused one.
 */
export function fuseQkv(m: TensorMap, count: number, name: (i: number, part: 'q' | 'k' | 'v' | 'qkv', kind: 'weight' | 'bias') => string): void {
  for (let i = 0; i < count; i++) {
    for (const kind of ['weight', 'bias'] as const) {
      const keys = (['q', 'k', 'v'] as const).map((part) => name(i, part, kind));
      const parts = keys.map((k) => m.get(k));
      if (parts.every((p) => p !== undefined)) {
        for (const k of keys) m.delete(k);
        m.set(name(i, 'qkv', kind), concat0(parts as HostTensor[]));
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

/** The scheme of `schemes` whose keys a checkpoint has; none is an error listing what is known. */
export function detectScheme<C>(schemes: readonly Scheme<C>[], src: TensorMap): Scheme<C> {
  const keys = [...src.keys()];
  const s = schemes.find((x) => x.detect(keys));
  if (!s) {
    const sample = keys.slice(0, 5).join(', ');
    throw new WeightsError(
      `cannot tell which naming scheme this checkpoint uses (${keys.length} tensors, e.g. ${sample || 'none'}); ` +
      `known: ${schemes.map((x) => x.name).join(', ')}`,
    );
  }
  return s;
}

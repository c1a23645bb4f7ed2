/**
 * The table of architectures, keyed by ModelConfig.arch. Config files find their record by Hugging Face
 * `model_type` or timm `architecture` prefix, preset names by lookup in each record's presets.
 */
import { ModelError, UsageError } from '../../errors.js';
import type { ModelConfig } from '../config.js';
import { dialectOf, type Json } from '../config-json.js';
import { swin } from './swin/index.js';
import type { Architecture } from './types.js';
import { vit } from './vit/index.js';

/** Each row is typed by its own config; the table holds them all. */
export const ARCHITECTURES: readonly Architecture<any>[] = [vit, swin];

/** The record of a config's architecture. */
export function archOf<C extends ModelConfig>(cfg: C): Architecture<C> {
  const a = ARCHITECTURES.find((x) => x.name === cfg.arch);
  if (!a) throw new ModelError(`${cfg.name}: unknown architecture "${cfg.arch}"`);
  return a as Architecture<C>;
}

/**
 * Whether a run that reads only these outputs can use the forward with `prefixOnly`: no attentions, and the
 * features it names (none for logits alone) all among those that forward still gives.
 */
export function prefixOnlyRun(cfg: ModelConfig, run: { attentions?: boolean; pools?: readonly string[] }): boolean {
  const kept = archOf(cfg).prefixPools(cfg);
  return !run.attentions && kept !== null && run.pools !== undefined && run.pools.every((p) => kept.includes(p));
}

/** A config.json (either dialect) with its optional preprocessor config, read by its architecture's record. */
export function configFromJson(cfg: Json, preprocessor: Json | null, name: string): ModelConfig {
  const { dialect, key } = dialectOf(cfg, name);
  if (dialect === 'hf') {
    const a = ARCHITECTURES.find((x) => x.hfModelTypes.includes(key));
    if (!a) throw new ModelError(`${name}: model_type "${key}" is not an architecture this tool runs (${ARCHITECTURES.flatMap((x) => x.hfModelTypes).join(', ')})`);
    return a.fromHf(cfg, preprocessor, name);
  }
  const a = ARCHITECTURES.find((x) => x.presets.lookup(key) !== null || x.timmPrefixes.some((p) => key.startsWith(p)));
  if (!a) throw new ModelError(`${name}: timm architecture "${key}" is not one this tool runs (${ARCHITECTURES.flatMap((x) => x.timmPrefixes.map((p) => `${p}*`)).join(', ')})`);
  return a.fromTimm(cfg, name);
}

/** The config of a preset of any architecture, or null. */
export function findPreset(name: string): ModelConfig | null {
  for (const a of ARCHITECTURES) {
    const c = a.presets.lookup(name);
    if (c) return c;
  }
  return null;
}

/** Edits (insertions, deletions, substitutions) from one string to another. */
function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) cur[j] = Math.min(prev[j]! + 1, cur[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    prev = cur;
  }
  return prev[b.length]!;
}

/**
 * The preset a mistyped name most likely meant, compared by letters and digits alone ("b16" is B/16, "swint"
 * Swin-T): the same ones, or one edit away (two for names of more than 4), else (or when two are as near) null.
 */
export function nearestPreset(name: string): string | null {
  const fold = (s: string) => s.toLowerCase().replace(/[^a-z0-9]/g, '');
  const want = fold(name);
  let best: string | null = null;
  let bestEdits = want.length > 4 ? 3 : 2;
  let tied = false; // two names as near: no guess
  for (const a of ARCHITECTURES) {
    for (const n of [...a.presets.shortNames(), ...a.presets.names()]) {
      const edits = editDistance(want, fold(n));
      if (edits < bestEdits) [best, bestEdits, tied] = [n, edits, false];
      else if (edits === bestEdits) tied = true;
    }
  }
  return tied ? null : best;
}

/** The config of a preset; an unknown name is a usage error listing the valid ones. */
export function presetConfig(name: string): ModelConfig {
  const c = findPreset(name);
  if (c) return c;
  const near = nearestPreset(name);
  const lists = ARCHITECTURES.map((a) => `${a.title}: ${a.presets.shortNames().join(', ')}; timm names: ${a.presets.names().join(', ')}`);
  throw new UsageError(`unknown model "${name}"${near === null ? '' : ` (did you mean ${near}?)`}. Presets — ${lists.join(' — ')}; or a model directory (config.json + weights)`);
}

import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { UsageError } from '../errors.js';
import type { ModelConfig } from '../model/config.js';
import { labelsFromId2label } from '../model/config-json.js';
import { DATA_DIR } from './paths.js';
import { FILE_LIMITS, readFailure, readRegularText } from './regular-file.js';

/** Bundled label sets, by the class count of the checkpoints that use them. */
const BUNDLED: Record<number, string> = { 1000: 'imagenet-1k.json', 21843: 'imagenet-21k.json' };

/** A labels file: a JSON array, a JSON {index: name} object (id2label), or one name per line. */
export function readLabelsFile(path: string): string[] {
  let text: string;
  try {
    text = readRegularText(path, FILE_LIMITS.labels);
  } catch (e) {
    throw new UsageError(`--labels ${path}: ${readFailure(e)}`);
  }
  const trimmed = text.trim();
  if (trimmed.startsWith('[') || trimmed.startsWith('{')) {
    let v: unknown;
    try {
      v = JSON.parse(trimmed);
    } catch (e) {
      throw new UsageError(`--labels ${path}: invalid JSON (${(e as Error).message})`);
    }
    if (Array.isArray(v)) return v.map(String);
    const obj = v as Record<string, unknown>;
    try {
      return labelsFromId2label(obj.id2label ?? obj) ?? [];
    } catch (e) {
      throw new UsageError(`--labels ${path}: ${(e as Error).message.replace(/^config: /, '')}`);
    }
  }
  return text.split(/\r?\n/).filter((l, i, all) => l !== '' || i < all.length - 1);
}

/**
 * Class names for a model: --labels FILE, else the checkpoint's own, else a bundled set when the class count
 * is ImageNet's (1000 or 21,843), else class_<i>.
 */
export function resolveLabels(cfg: ModelConfig, file?: string): string[] {
  const n = cfg.numClasses;
  let labels: string[] | null = null;
  if (file) {
    labels = readLabelsFile(file);
    if (labels.length !== n) throw new UsageError(`--labels ${file}: ${labels.length} labels for a model with ${n} classes`);
  } else if (cfg.labels && cfg.labels.length === n) labels = cfg.labels;
  else if (BUNDLED[n]) labels = JSON.parse(readFileSync(join(DATA_DIR, BUNDLED[n]), 'utf8')) as string[];
  return labels ?? Array.from({ length: n }, (_, i) => `class_${i}`);
}

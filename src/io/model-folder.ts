import { mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { StoreFile } from '../model/engines/engine.js';
import { replaceFile } from './atomic-file.js';
import { FILE_LIMITS, readRegularText } from './regular-file.js';
import { writeError } from './sinks/target.js';

/**
 * Write files (named relative to dir, e.g. `onnx/model.onnx`) into a model folder, creating it as needed. Each
 * replaces its path whole (atomic-file.ts), so a reader never loads half a file; other files already there (an
 * export of the other dtype) are kept.
 */
export function writeModelFolder(dir: string, files: StoreFile[]): string[] {
  const written: string[] = [];
  for (const f of files) {
    const path = join(dir, f.name);
    try {
      mkdirSync(dirname(path), { recursive: true });
      replaceFile(path, f);
    } catch (e) {
      throw writeError(path, e);
    }
    written.push(path);
  }
  return written;
}

/**
 * A JSON file of the folder as an object, or null when there is none, or it is not JSON, or not a regular file
 * of a config's size (a FIFO or device in its place would block or never end; the export replaces it).
 */
export function readFolderJson(dir: string, name: string): Record<string, unknown> | null {
  try {
    const v = JSON.parse(readRegularText(join(dir, name), FILE_LIMITS.config));
    return v && typeof v === 'object' && !Array.isArray(v) ? v : null;
  } catch {
    return null;
  }
}

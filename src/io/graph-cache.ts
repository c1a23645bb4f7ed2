/**
 * The ONNX graph cache on disk, injected into the onnx engine as its GraphStore (src/model/engines/engine.ts).
 * Entries are keyed by the engine (the model's content identity and the execution settings); this module only
 * keeps them: one directory per key (model.onnx, model-attn.onnx, weights.bin, entry.json).
 */
import { existsSync, mkdirSync, readdirSync, renameSync, rmSync, statSync, utimesSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { OutputError } from '../errors.js';
import type { ModelConfig } from '../model/config.js';
import type { GraphStore, StoreFile } from '../model/engines/engine.js';
import { writeNewFile } from './atomic-file.js';
import { FILE_LIMITS, readRegularText } from './regular-file.js';

/** Lists every file of an entry with its size and the config built; written last, so an entry without it is incomplete. */
const MANIFEST = 'entry.json';
const DAY_MS = 24 * 3600 * 1000;

/** $VIT_GRAPH_CACHE, else $XDG_CACHE_HOME/vit/onnx, else ~/.cache/vit/onnx. */
export function defaultGraphCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env.VIT_GRAPH_CACHE) return env.VIT_GRAPH_CACHE;
  return join(env.XDG_CACHE_HOME || join(homedir(), '.cache'), 'vit', 'onnx');
}

function removeQuietly(dir: string): void {
  try {
    rmSync(dir, { recursive: true, force: true });
  } catch {
    // Nothing was made there (e.g. the cache root is not a directory).
  }
}

interface Manifest { key: string; files: Record<string, number>; config: ModelConfig; created: string }

/** The manifest of a complete entry (every file there with its recorded size), else null. */
function completeEntry(dir: string): Manifest | null {
  try {
    const m = JSON.parse(readRegularText(join(dir, MANIFEST), FILE_LIMITS.index)) as Manifest;
    return Object.entries(m.files).every(([name, size]) => statSync(join(dir, name)).size === size) ? m : null;
  } catch {
    return null;
  }
}

export interface GraphCacheOptions {
  /** Entries unused for this many days are removed when a new entry is written. */
  maxAgeDays?: number;
}

/**
 * Built ONNX graphs on disk: one directory per key (model.onnx, model-attn.onnx, weights.bin, entry.json).
 * An entry is written in a temporary directory and renamed into place, so a reader never sees half of one and
 * two processes building the same model do not clash. Using an entry refreshes its time; writing a new one
 * removes entries unused for maxAgeDays, so old weights do not pile up.
 */
export function openGraphCache(root: string = defaultGraphCacheDir(), opts: GraphCacheOptions = {}): GraphStore {
  const maxAge = (opts.maxAgeDays ?? 30) * DAY_MS;

  function prune(keep: string): void {
    let names: string[];
    try {
      names = readdirSync(root);
    } catch {
      return;
    }
    const now = Date.now();
    for (const name of names) {
      if (name === keep) continue;
      const dir = join(root, name);
      try {
        // A temporary directory is only in use while its writer runs; a day-old one was left by a crash.
        const temporary = name.startsWith('.tmp-');
        const age = now - statSync(temporary ? dir : join(dir, MANIFEST)).mtimeMs;
        if (age > (temporary ? DAY_MS : maxAge)) rmSync(dir, { recursive: true, force: true });
      } catch {
        // Not an entry of ours, or removed meanwhile by another process: leave it.
      }
    }
  }

  return {
    async find(key) {
      const dir = join(root, key);
      const entry = completeEntry(dir);
      if (!entry) return null;
      const now = new Date();
      try {
        utimesSync(join(dir, MANIFEST), now, now);
      } catch {
        // A read-only cache still serves its entries; they just age.
      }
      return { dir, config: entry.config };
    },

    discard(dir) {
      removeQuietly(dir);
    },

    async save(key, config, files) {
      const dir = join(root, key);
      const tmp = join(root, `.tmp-${key}-${process.pid}-${Date.now()}`);
      try {
        mkdirSync(tmp, { recursive: true });
        const sizes: Record<string, number> = {};
        // Each file created anew (atomic-file.ts), in a directory of this process's own.
        for (const f of files) sizes[f.name] = writeNewFile(join(tmp, f.name), f);
        writeNewFile(join(tmp, MANIFEST), { bytes: JSON.stringify({ key, files: sizes, config, created: new Date().toISOString() } satisfies Manifest) });
        if (completeEntry(dir)) {
          // Another process finished the same entry meanwhile, and may be using it: keep theirs.
          removeQuietly(tmp);
          return dir;
        }
        if (existsSync(dir)) rmSync(dir, { recursive: true, force: true }); // a broken entry find() turned down
        renameSync(tmp, dir);
      } catch (e) {
        removeQuietly(tmp);
        // Another process finished the same entry first: theirs is as good as ours.
        if (completeEntry(dir)) return dir;
        throw new OutputError(`cannot write the ONNX model cache in ${root}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
      }
      prune(key);
      return dir;
    },
  };
}

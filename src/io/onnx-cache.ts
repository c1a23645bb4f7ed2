import { createHash } from 'node:crypto';
import {
  closeSync, existsSync, ftruncateSync, mkdirSync, openSync, readdirSync, readFileSync, renameSync, rmSync, statSync,
  utimesSync, writeFileSync, writeSync,
} from 'node:fs';
import { homedir } from 'node:os';
import { basename, join } from 'node:path';
import { OutputError } from '../errors.js';
import type { OnnxStore, StoreFile } from '../model/engines/onnx.js';
import type { ViTConfig } from '../model/config.js';
import type { TensorMap } from '../model/tensor.js';
import { toolVersion } from './paths.js';

/** Lists every file of an entry with its size; written last, so an entry without it is incomplete. */
const MANIFEST = 'entry.json';
const DAY_MS = 24 * 3600 * 1000;

/** $XDG_CACHE_HOME/vit/onnx, or ~/.cache/vit/onnx. */
export function defaultOnnxCacheDir(): string {
  const base = process.env.XDG_CACHE_HOME || join(homedir(), '.cache');
  return join(base, 'vit', 'onnx');
}

/**
 * sha256 of everything a built graph depends on: tool version, graph format and dtype, the architecture part of the config
 * and every weight's bytes. Labels and preprocessing never reach the graph, so they do not split entries.
 */
export function onnxCacheKey(config: ViTConfig, weights: TensorMap, graph: string): string {
  const { name: _name, labels: _labels, preprocess: _preprocess, ...architecture } = config;
  const h = createHash('sha256');
  h.update(`vit ${toolVersion()} graph ${graph}\n${JSON.stringify(architecture)}\n`);
  for (const name of [...weights.keys()].sort()) {
    const t = weights.get(name)!;
    h.update(`${name} ${t.shape.join('x')}\n`);
    h.update(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength));
  }
  return h.digest('hex').slice(0, 32);
}

function writeEntryFile(dir: string, f: StoreFile): number {
  const path = join(dir, f.name);
  if ('bytes' in f) {
    writeFileSync(path, f.bytes);
    return f.bytes.length;
  }
  // Chunk by chunk at their offsets, so the whole file is never in memory at once.
  const fd = openSync(path, 'w');
  try {
    for (const c of f.chunks) writeSync(fd, c.bytes, 0, c.bytes.length, c.offset);
    ftruncateSync(fd, f.size);
  } finally {
    closeSync(fd);
  }
  return f.size;
}

function removeQuietly(dir: string): void {
  try {
    rmSync(dir, { recursive: true, force: true });
  } catch {
    // Nothing was made there (e.g. the cache root is not a directory).
  }
}

function isComplete(dir: string): boolean {
  try {
    const files = (JSON.parse(readFileSync(join(dir, MANIFEST), 'utf8')) as { files: Record<string, number> }).files;
    return Object.entries(files).every(([name, size]) => statSync(join(dir, name)).size === size);
  } catch {
    return false;
  }
}

/**
 * Aliases from a weights file's identity (path, size, modification time, and what the model was asked to be)
 * to the entry built from it, with the config loading produced: a run that finds one starts onnxruntime on the
 * entry straight away, without reading, converting or hashing the checkpoint. Writing the file (new mtime)
 * changes the identity, so a changed checkpoint is read and hashed again.
 */
interface Alias { entry: string; config: ViTConfig }

function aliasPath(root: string, fileKey: string): string {
  return join(root, 'files', `${fileKey}.json`);
}

/** The complete entry and config recorded for a weights file identity, or null. */
export function readAlias(fileKey: string, root: string = defaultOnnxCacheDir()): { dir: string; config: ViTConfig } | null {
  try {
    const a = JSON.parse(readFileSync(aliasPath(root, fileKey), 'utf8')) as Alias;
    const dir = join(root, a.entry);
    return /^[0-9a-f]+$/.test(a.entry) && isComplete(dir) ? { dir, config: a.config } : null;
  } catch {
    return null;
  }
}

/**
 * Remove an entry onnxruntime could not load (damaged on disk), so that the next build writes it afresh
 * instead of finding it again. Best effort, like every cache write.
 */
export function discardEntry(entryDir: string): void {
  removeQuietly(entryDir);
}

/** Record which entry a weights file identity built (best effort: a cache that cannot be written is no error). */
export function writeAlias(fileKey: string, entryDir: string, config: ViTConfig, root: string = defaultOnnxCacheDir()): void {
  const path = aliasPath(root, fileKey);
  const tmp = `${path}.${process.pid}.tmp`;
  try {
    mkdirSync(join(root, 'files'), { recursive: true });
    writeFileSync(tmp, JSON.stringify({ entry: basename(entryDir), config } satisfies Alias));
    renameSync(tmp, path);
  } catch {
    removeQuietly(tmp);
  }
}

export interface OnnxCacheOptions {
  /** Entries unused for this many days are removed when a new entry is written. */
  maxAgeDays?: number;
}

/**
 * Built ONNX graphs on disk: one directory per key (model.onnx, model-attn.onnx, weights.bin, entry.json).
 * An entry is written in a temporary directory and renamed into place, so a reader never sees half of one and
 * two processes building the same model do not clash. Using an entry refreshes its time; writing a new one
 * removes entries unused for maxAgeDays, so old weights do not pile up.
 */
export function openOnnxCache(root: string = defaultOnnxCacheDir(), opts: OnnxCacheOptions = {}): OnnxStore {
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
    key: onnxCacheKey,

    async find(key) {
      const dir = join(root, key);
      if (!isComplete(dir)) return null;
      const now = new Date();
      try {
        utimesSync(join(dir, MANIFEST), now, now);
      } catch {
        // A read-only cache still serves its entries; they just age.
      }
      return dir;
    },

    async save(key, files) {
      const dir = join(root, key);
      const tmp = join(root, `.tmp-${key}-${process.pid}-${Date.now()}`);
      try {
        mkdirSync(tmp, { recursive: true });
        const sizes: Record<string, number> = {};
        for (const f of files) sizes[f.name] = writeEntryFile(tmp, f);
        writeFileSync(join(tmp, MANIFEST), JSON.stringify({ key, files: sizes, created: new Date().toISOString() }));
        if (isComplete(dir)) {
          // Another process finished the same entry meanwhile, and may be using it: keep theirs.
          removeQuietly(tmp);
          return dir;
        }
        if (existsSync(dir)) rmSync(dir, { recursive: true, force: true }); // a broken entry find() turned down
        renameSync(tmp, dir);
      } catch (e) {
        removeQuietly(tmp);
        // Another process finished the same entry first: theirs is as good as ours.
        if (isComplete(dir)) return dir;
        throw new OutputError(`cannot write the ONNX model cache in ${root}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
      }
      prune(key);
      return dir;
    },
  };
}

/**
 * The files a checkpoint is made of — one weights file, or the shards a `*.index.json` names — shared by
 * model directories and the hub, and the content hash that identifies them. The hash is what caches and
 * provenance key on: a copy with its modification time kept (`cp -p`, `rsync -t`) is still the same model,
 * and other weights of the same size are not.
 */
import { createHash } from 'node:crypto';
import { closeSync, mkdirSync, openSync, readFileSync, readSync, realpathSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { WeightsError } from '../errors.js';
import type { TensorMap } from '../model/tensor.js';
import { readFileBytes } from './streams.js';

/** Weights files a model directory or hub repository may hold, in order of preference. */
export const WEIGHT_FILES = [
  'model.safetensors', 'model.safetensors.index.json', 'pytorch_model.bin', 'pytorch_model.bin.index.json',
  'model.pth', 'model.pt', 'model.bin', 'model.npz',
];

export function isShardIndex(file: string): boolean {
  return file.endsWith('.index.json');
}

/**
 * The shard files a sharded checkpoint's index names (`weight_map`: tensor → file), in first-use order.
 * Shards live beside their index: a name with a directory in it is refused.
 */
export function shardsOf(indexJson: string, where: string): string[] {
  let map: unknown;
  try {
    map = (JSON.parse(indexJson) as { weight_map?: unknown } | null)?.weight_map;
  } catch (e) {
    throw new WeightsError(`${where}: not JSON (${(e as Error).message})`);
  }
  if (typeof map !== 'object' || map === null) throw new WeightsError(`${where}: a sharded checkpoint index needs a "weight_map" object of tensor name → shard file`);
  const shards = [...new Set(Object.values(map).map(String))];
  for (const s of shards) {
    if (s === '' || s === '.' || s === '..' || s.includes('/') || s.includes('\\')) throw new WeightsError(`${where}: shard "${s}" is not a file beside the index`);
  }
  return shards;
}

/** The files holding a checkpoint: the file itself, or every shard its index names. */
export function checkpointFiles(path: string): string[] {
  if (!isShardIndex(path)) return [path];
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new WeightsError(`cannot read weights ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  return shardsOf(text, path).map((s) => join(dirname(path), s));
}

export type ReadWeights = (bytes: Uint8Array, fileName: string) => TensorMap;

/** Every tensor of a checkpoint (all its shards), read with `read`. */
export function readCheckpoint(path: string, read: ReadWeights): TensorMap {
  const out: TensorMap = new Map();
  for (const file of checkpointFiles(path)) {
    let bytes: Uint8Array;
    try {
      bytes = readFileBytes(file);
    } catch (e) {
      throw new WeightsError(`cannot read weights ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
    }
    for (const [k, v] of read(bytes, file)) out.set(k, v);
  }
  return out;
}

/**
 * What a file's identity cannot fake without its contents being the same: device, inode, size and the
 * modification and change times in nanoseconds. Writing the file changes mtime or ctime; a copy is another
 * inode (or a new ctime); restoring an mtime (`touch -r`, `cp -p`) changes the ctime.
 */
function statIdentity(path: string): string {
  const st = statSync(path, { bigint: true });
  return [realpathSync(path), st.dev, st.ino, st.size, st.mtimeNs, st.ctimeNs].join(' ');
}

/** sha256 of a file, read in chunks so a checkpoint of any size is hashed in little memory. */
function hashFile(path: string): string {
  const h = createHash('sha256');
  const fd = openSync(path, 'r');
  try {
    const buf = Buffer.allocUnsafe(16 * 2 ** 20);
    for (let n; (n = readSync(fd, buf, 0, buf.length, null)) > 0;) h.update(buf.subarray(0, n));
  } finally {
    closeSync(fd);
  }
  return h.digest('hex');
}

/**
 * The sha256 of a checkpoint's contents (the shards' hashes, hashed in order). A file's hash is remembered in
 * `memoDir` under its identity (statIdentity), so a checkpoint is hashed once, not on every run; without a
 * writable memoDir it is hashed every time.
 */
export function checkpointHash(path: string, memoDir: string | null): string {
  const h = createHash('sha256');
  for (const file of checkpointFiles(path)) {
    let identity: string;
    try {
      identity = statIdentity(file);
    } catch (e) {
      throw new WeightsError(`cannot read weights ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
    }
    const memo = memoDir === null ? null : join(memoDir, `${createHash('sha256').update(identity).digest('hex').slice(0, 40)}.sha256`);
    let digest: string | null = null;
    try {
      if (memo) digest = /^[0-9a-f]{64}$/.exec(readFileSync(memo, 'utf8').trim())?.[0] ?? null;
    } catch {
      // Not hashed before.
    }
    if (digest === null) {
      digest = hashFile(file);
      if (memo) writeMemo(memo, digest);
    }
    h.update(`${basename(file)} ${digest}\n`);
  }
  return h.digest('hex');
}

/** Best effort: a cache that cannot be written only costs hashing again next time. */
function writeMemo(path: string, digest: string): void {
  const tmp = `${path}.${process.pid}.tmp`;
  try {
    mkdirSync(dirname(path), { recursive: true });
    writeFileSync(tmp, `${digest}\n`);
    renameSync(tmp, path);
  } catch {
    // Left unwritten.
  }
}

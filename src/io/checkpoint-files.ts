/**
 * The files a checkpoint is made of — one weights file, or the shards a `*.index.json` names — shared by
 * model directories and the hub, and the content hash that identifies them. The hash is what caches and
 * provenance key on: a copy with its modification time kept (`cp -p`, `rsync -t`) is still the same model,
 * and other weights of the same size are not.
 */
import { createHash } from 'node:crypto';
import { closeSync, constants, fstatSync, mkdirSync, openSync, readSync, realpathSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { WeightsError } from '../errors.js';
import type { TensorMap } from '../model/tensor.js';
import type { WeightsBudget } from '../model/weights/budget.js';
import { replaceFile } from './atomic-file.js';
import { FILE_LIMITS, notRegular, readFailure, readRegularText } from './regular-file.js';
import { readFileBytes } from './streams.js';

/** Weights files a model directory or hub repository may hold, in order of preference. */
export const WEIGHT_FILES = [
  'model.safetensors', 'model.safetensors.index.json', 'pytorch_model.bin', 'pytorch_model.bin.index.json',
  'model.pth', 'model.pt', 'model.bin', 'model.npz',
];

/** Where an ONNX export keeps its graph in a model folder or repository (`vit export`, transformers.js's layout). */
const ONNX_EXPORT_FILES = ['onnx/model.onnx', 'onnx/model_quantized.onnx', 'model.onnx'];

/**
 * For a model without a checkpoint (`has`: whether a file of its folder or repository is there): words that name
 * its ONNX export, if it has one, or ''. vit builds its own graph from weights; it does not run another's.
 */
export function onnxExportNote(has: (file: string) => boolean): string {
  const graph = ONNX_EXPORT_FILES.find(has);
  return graph ? ` (${graph} is an ONNX export; vit builds its own graph from a checkpoint and does not run one)` : '';
}

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
    text = readRegularText(path, FILE_LIMITS.index);
  } catch (e) {
    throw new WeightsError(`cannot read weights ${path}: ${readFailure(e)}`);
  }
  return shardsOf(text, path).map((s) => join(dirname(path), s));
}

export type ReadWeights = (bytes: Uint8Array, fileName: string, budget: WeightsBudget) => TensorMap;

/**
 * Every tensor of a checkpoint (all its shards), read with `read`. Each file must be a regular file within
 * the budget's size (checkpoint.ts: weightsBudget), and every size inside it is checked against the budget.
 */
export function readCheckpoint(path: string, read: ReadWeights, budget: WeightsBudget & { maxFileBytes: number }): TensorMap {
  const out: TensorMap = new Map();
  for (const file of checkpointFiles(path)) {
    let bytes: Uint8Array;
    try {
      bytes = readFileBytes(file, budget.maxFileBytes);
    } catch (e) {
      throw new WeightsError(`cannot read weights ${file}: ${readFailure(e)}`);
    }
    for (const [k, v] of read(bytes, file, budget)) out.set(k, v);
  }
  return out;
}

/**
 * What a file's identity cannot fake without its contents being the same: device, inode, size and the
 * modification and change times in nanoseconds. Writing the file changes mtime or ctime; a copy is another
 * inode (or a new ctime); restoring an mtime (`touch -r`, `cp -p`) changes the ctime.
 */
function statIdentity(path: string, fd: number): string {
  const st = fstatSync(fd, { bigint: true });
  const kind = notRegular(st);
  if (kind !== null) throw new WeightsError(`cannot read weights ${path}: ${kind}`);
  return [realpathSync(path), st.dev, st.ino, st.size, st.mtimeNs, st.ctimeNs].join(' ');
}

/**
 * A checkpoint file opened for its identity and hash. Non-blocking, so a FIFO given as weights is refused by
 * statIdentity at once instead of waiting for a writer.
 */
function openCheckpointFile(path: string): number {
  try {
    return openSync(path, constants.O_RDONLY | constants.O_NONBLOCK);
  } catch (e) {
    throw new WeightsError(`cannot read weights ${path}: ${readFailure(e)}`);
  }
}

/** sha256 of an open file, read in chunks so a checkpoint of any size is hashed in little memory. */
function hashFile(fd: number): string {
  const h = createHash('sha256');
  const buf = Buffer.allocUnsafe(16 * 2 ** 20);
  for (let n; (n = readSync(fd, buf, 0, buf.length, null)) > 0;) h.update(buf.subarray(0, n));
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
    const fd = openCheckpointFile(file);
    try {
      const identity = statIdentity(file, fd);
      const memo = memoDir === null ? null : join(memoDir, `${createHash('sha256').update(identity).digest('hex').slice(0, 40)}.sha256`);
      let digest: string | null = null;
      try {
        if (memo) digest = /^[0-9a-f]{64}$/.exec(readRegularText(memo, FILE_LIMITS.small).trim())?.[0] ?? null;
      } catch {
        // Not hashed before.
      }
      if (digest === null) {
        digest = hashFile(fd);
        if (memo) writeMemo(memo, digest);
      }
      h.update(`${basename(file)} ${digest}\n`);
    } finally {
      closeSync(fd);
    }
  }
  return h.digest('hex');
}

/** Best effort: a cache that cannot be written only costs hashing again next time. */
function writeMemo(path: string, digest: string): void {
  try {
    mkdirSync(dirname(path), { recursive: true });
    replaceFile(path, { bytes: `${digest}\n` });
  } catch {
    // Left unwritten.
  }
}

/**
 * Provenance: every file output has a sidecar `OUT.vit.json` saying what produced it — the command, the
 * model's identity (a content hash of its weights with its config, never a path or a modification time),
 * every option that shapes the rows, and the shard K/N. `--resume` continues only a file made the same way;
 * `vit merge` joins only parts made the same way and knows from them how many shards there must be.
 */
import { basename, dirname } from 'node:path';
import { OutputError, UsageError } from '../../errors.js';
import { replaceFile } from '../atomic-file.js';
import { toolVersion } from '../paths.js';
import { FileRefusedError, readFailure, readRegularText } from '../regular-file.js';
import type { Format } from './rows.js';
import { removeStaleTempFiles, writeError } from './target.js';

export interface Provenance {
  command: string;
  format: Format;
  model: { name: string; id: string };
  /** The options that shape rows (top-k, labels, pool, normalize, image size, dtype, …), by name. */
  options: Record<string, unknown>;
  shard: { index: number; count: number } | null;
  /**
   * Set while a resumed run appends (a kill then leaves it set) and by a run stopped before all its inputs
   * (SIGTERM, SIGINT): the file is valid but short, so `vit merge` refuses it until --resume finishes it.
   */
  unfinished?: true;
}

export interface Manifest extends Provenance {
  vit: string;
}

export function manifestPath(output: string): string {
  return `${output}.vit.json`;
}

/** Manifests are a few hundred bytes; anything much larger is not one of ours. */
const MAX_MANIFEST_BYTES = 1 << 20;

/** The manifest beside an output, or null when there is none. */
export function readManifest(output: string): Manifest | null {
  const path = manifestPath(output);
  let text: string;
  try {
    text = readRegularText(path, MAX_MANIFEST_BYTES);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    if (e instanceof FileRefusedError) throw new OutputError(`${path} is not a vit manifest (${e.message})`);
    throw new OutputError(`cannot read ${path}: ${readFailure(e)}`);
  }
  try {
    const m = JSON.parse(text) as Manifest;
    if (typeof m?.command !== 'string' || typeof m.model?.id !== 'string') throw new Error('fields missing');
    return m;
  } catch (e) {
    throw new OutputError(`${path} is not a vit manifest (${(e as Error).message})`);
  }
}

/** Write (atomically) the manifest beside an output. */
export function writeManifest(output: string, p: Provenance): void {
  const path = manifestPath(output);
  const m: Manifest = { vit: toolVersion(), ...p };
  // A run killed while writing it left PATH.PID.tmp.
  removeStaleTempFiles(dirname(path), `${basename(path)}.`);
  try {
    replaceFile(path, { bytes: `${JSON.stringify(m, null, 2)}\n` });
  } catch (e) {
    throw writeError(path, e);
  }
}

const show = (v: unknown) => (v === undefined ? 'unset' : JSON.stringify(v));

/** What differs between two provenances, in words ([] when they match); `shardIndex: false` ignores K. */
export function differences(a: Provenance, b: Provenance, opts: { shardIndex?: boolean } = {}): string[] {
  const out: string[] = [];
  if (a.command !== b.command) out.push(`command ${a.command} vs ${b.command}`);
  if (a.format !== b.format) out.push(`format ${a.format} vs ${b.format}`);
  if (a.model.id !== b.model.id) out.push(`model ${a.model.name} (${a.model.id.slice(0, 12)}) vs ${b.model.name} (${b.model.id.slice(0, 12)})`);
  for (const k of [...new Set([...Object.keys(a.options), ...Object.keys(b.options)])].sort()) {
    if (JSON.stringify(a.options[k]) !== JSON.stringify(b.options[k])) out.push(`${k} ${show(a.options[k])} vs ${show(b.options[k])}`);
  }
  const shard = (s: Provenance['shard']) => (s === null ? 'none' : opts.shardIndex === false ? `of ${s.count}` : `${s.index}/${s.count}`);
  if (shard(a.shard) !== shard(b.shard)) out.push(`shard ${shard(a.shard)} vs ${shard(b.shard)}`);
  return out;
}

/** Refuse to continue `output` (`fileBytes` long) unless its manifest says it was made as this run makes it. */
export function checkResumable(output: string, fileBytes: number, p: Provenance): void {
  // Nothing written yet (or the output was removed): there are no rows to protect.
  if (fileBytes === 0) return;
  const m = readManifest(output);
  if (m === null) {
    throw new UsageError(`cannot resume ${output}: it has no ${manifestPath(output)}, so what produced it is unknown; write a new output instead`);
  }
  const diff = differences(m, p);
  if (diff.length > 0) throw new UsageError(`cannot resume ${output}: it was written by another run (${diff.join('; ')}, file vs this run); the file is left as it is`);
}

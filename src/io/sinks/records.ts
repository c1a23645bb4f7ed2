/**
 * Reading back what a run wrote, as a list of rows with their byte ranges: `--resume` continues a file from
 * its last complete row, `vit merge` copies rows of shard outputs.
 *
 * A run writes rows strictly one after another, so whatever interrupted it (even kill -9 or a power cut
 * between writes), the file is a valid prefix followed by at most one torn row. Two ways to read that:
 * - 'resume': keep the longest run of complete rows from the start; the torn rest is cut off by the resumed
 *   writer.
 * - 'merge': the file must be complete (a closed JSON array, an npy header that counts its rows, ...); an
 *   interrupted shard output is an error that says to finish it with --resume.
 */
import { constants } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import type { SchemaElement } from 'hyparquet';
import { OutputError } from '../../errors.js';
import type { Format } from './rows.js';

/**
 * A stored output (or an npy's paths file) to read: a regular file (a FIFO or device given as --resume file or
 * merge part would block or never end), opened without waiting on a FIFO's writer. Null when it does not exist.
 */
export async function openStored(file: string): Promise<{ fh: FileHandle; size: number } | null> {
  let fh: FileHandle;
  try {
    fh = await open(file, constants.O_RDONLY | constants.O_NONBLOCK);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw new OutputError(`cannot read ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  const st = await fh.stat();
  if (!st.isFile()) {
    await fh.close();
    throw new OutputError(`${file} is not a regular file: outputs to continue or merge are files written by vit`);
  }
  return { fh, size: st.size };
}

/** One row of a stored output: its path and where its bytes are (the npy data range for npy, its index for parquet). */
export interface StoredRow {
  path: string;
  start: number;
  end: number;
  error: boolean;
}

export interface StoredOutput {
  file: string;
  format: Format;
  /** The complete rows, in file order. */
  rows: StoredRow[];
  /** File length to keep: header and complete rows. 0 means there is nothing worth keeping. */
  keep: number;
  /** CSV: the header's cells. */
  csvHeader?: string[];
  /** npy: the array's layout and its paths file. */
  npy?: { rowShape: number[]; headerLength: number; pathsFile: string; pathsKeep: number };
  /** parquet: the file's schema (a row's range is its index: start, start + 1). */
  parquet?: { schema: SchemaElement[] };
}

export type ReadMode = 'resume' | 'merge';

/** An output that holds nothing yet (a file that does not exist, or nothing complete in it). */
export function emptyOutput(file: string, format: Format): StoredOutput {
  return { file, format, rows: [], keep: 0 };
}

/** What a merge says about a part that was not finished. */
export function unfinished(file: string, what: string): OutputError {
  return new OutputError(`${file} is incomplete (${what}): was its run interrupted? Finish it with --resume -o ${file}`);
}

export interface Rec {
  start: number;
  /** Offset after the record's '\n' (or after its last byte, for the unterminated tail). */
  end: number;
  bytes: Buffer;
  /** Ended by '\n'; false only for the last record of a file that does not end with one. */
  complete: boolean;
}

const CHUNK = 1 << 20;

/**
 * Newline-terminated records of a file, read in chunks so files of any size are scanned in little memory.
 * With `csv`, a newline inside a quoted field does not end a record (every '"' toggles the quoted state,
 * which also handles RFC 4180's doubled quotes).
 */
export async function* records(fh: FileHandle, csv: boolean): AsyncGenerator<Rec> {
  const buf = Buffer.alloc(CHUNK);
  let pos = 0;
  let start = 0;
  let pending: Buffer[] = [];
  let quoted = false;
  for (;;) {
    const { bytesRead } = await fh.read(buf, 0, CHUNK, pos);
    if (bytesRead === 0) break;
    let from = 0;
    for (let i = 0; i < bytesRead; i++) {
      const b = buf[i];
      if (csv && b === 0x22) quoted = !quoted;
      else if (b === 0x0a && !quoted) {
        pending.push(Buffer.from(buf.subarray(from, i)));
        const end = pos + i + 1;
        yield { start, end, bytes: Buffer.concat(pending), complete: true };
        pending = [];
        start = end;
        from = i + 1;
      }
    }
    pending.push(Buffer.from(buf.subarray(from, bytesRead)));
    pos += bytesRead;
  }
  const tail = Buffer.concat(pending);
  if (tail.length > 0) yield { start, end: pos, bytes: tail, complete: false };
}

/** A JSON row of ours ({"path": …, …}), or null. */
export function parseJsonRow(bytes: Buffer): { path: string; error: boolean } | null {
  try {
    const v = JSON.parse(bytes.toString('utf8')) as { path?: unknown; error?: unknown };
    if (v === null || typeof v !== 'object' || typeof v.path !== 'string') return null;
    return { path: v.path, error: typeof v.error === 'string' };
  } catch {
    return null;
  }
}

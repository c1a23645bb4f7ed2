/**
 * Reading the files that are not images — checkpoints, config.json, preprocessor_config.json, --labels,
 * shard indexes, the caches' one-line files — from paths a user or a downloaded model directory names. Each
 * must be a regular file of bounded size: a FIFO would block the open (or the read) forever, /dev/zero never
 * ends, a directory is a mistake. The open is non-blocking, so even a FIFO with no writer returns at once, and fstat of the open
 * descriptor decides (no race with the path changing between a stat and the open).
 */
import { closeSync, constants, fstatSync, openSync, readSync, type BigIntStats, type Stats } from 'node:fs';

/** Byte caps per kind of file, each far beyond any real one. */
export const FILE_LIMITS = {
  /** config.json, preprocessor_config.json (ImageNet-21k's id2label is 1.3 MB). */
  config: 16 * 2 ** 20,
  /** A sharded checkpoint's *.index.json (tens of thousands of entries take a few MB); a graph cache entry's entry.json. */
  index: 64 * 2 ** 20,
  /** --labels (the bundled 21,843 ImageNet-21k names take 0.6 MB). */
  labels: 16 * 2 ** 20,
  /** One line of a cache or credentials file: a hub token, a ref's commit hash, a remembered sha256. */
  small: 64 * 2 ** 10,
} as const;

/** Why a file was refused: the message is the reason, for "<what> <path>: <reason>". */
export class FileRefusedError extends Error {}

/** What the file is, when it is not a regular file: for one clear line instead of a hang. */
function kindOf(st: Stats | BigIntStats): string | null {
  if (st.isFile()) return null;
  if (st.isDirectory()) return 'a directory';
  if (st.isFIFO()) return 'a FIFO (named pipe)';
  if (st.isCharacterDevice()) return 'a character device';
  if (st.isBlockDevice()) return 'a block device';
  if (st.isSocket()) return 'a socket';
  return 'something other than a file';
}

/** "a FIFO (named pipe), not a regular file" for anything but a regular file, else null. */
export function notRegular(st: Stats | BigIntStats): string | null {
  const kind = kindOf(st);
  return kind === null ? null : `${kind}, not a regular file`;
}

/** Reads larger than this are split: readSync takes at most 2 GiB at a time. */
const CHUNK = 256 * 2 ** 20;

/** Read fd from `pos` into buf until it is full or the file ends; the bytes read in all. */
function fill(fd: number, buf: Buffer, pos: number): number {
  while (pos < buf.length) {
    const n = readSync(fd, buf, pos, Math.min(CHUNK, buf.length - pos), pos);
    if (n === 0) break;
    pos += n;
  }
  return pos;
}

/**
 * The whole of a regular file, refusing anything else at once and anything larger than `maxBytes` before
 * allocating it. Throws the system call's error (ENOENT, EACCES: `code` set) or a FileRefusedError whose
 * message is the reason ("a FIFO (named pipe), not a regular file", "… bytes, more than the … allowed").
 */
export function readRegularFile(path: string | Buffer, maxBytes: number): Buffer {
  const fd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK);
  try {
    const st = fstatSync(fd);
    const refused = notRegular(st);
    if (refused !== null) throw new FileRefusedError(refused);
    if (st.size > maxBytes) throw new FileRefusedError(`${st.size} bytes, more than the ${maxBytes} allowed`);
    if (st.size > 0) {
      const buf = Buffer.allocUnsafe(st.size);
      const got = fill(fd, buf, 0);
      if (got < st.size) throw new FileRefusedError(`the file shrank while it was read (${got} of ${st.size} bytes)`);
      return buf;
    }
    // Files of the proc and sys file systems report size 0 and still have content: read those up to the cap.
    let buf = Buffer.allocUnsafe(2 ** 16);
    let got = 0;
    for (;;) {
      got = fill(fd, buf, got);
      if (got > maxBytes) throw new FileRefusedError(`more than the ${maxBytes} bytes allowed`);
      if (got < buf.length) return buf.subarray(0, got);
      const grown = Buffer.allocUnsafe(Math.min(buf.length * 2, maxBytes + 1));
      buf.copy(grown);
      buf = grown;
    }
  } finally {
    closeSync(fd);
  }
}

/** The reason for a failed read, for "<what> <path>: <reason>" messages: errno code, or the refusal. */
export function readFailure(e: unknown): string {
  return (e as NodeJS.ErrnoException).code ?? (e as Error).message;
}

/** A regular text file (UTF-8) of at most `maxBytes`. */
export function readRegularText(path: string | Buffer, maxBytes: number): string {
  return readRegularFile(path, maxBytes).toString('utf8');
}

import * as zlib from 'node:zlib';
import { WeightsError } from '../../errors.js';

/** One member of a zip archive, as its central directory describes it. */
export interface ZipEntry {
  name: string;
  method: number;
  compressedSize: number;
  size: number;
  crc32: number;
  /** Offset of the entry's local header. */
  localOffset: number;
}

/** What the caller knows an entry's size must be; checked against the directory before anything is inflated. */
export interface SizeLimit {
  /** The entry must be exactly this many bytes (a storage of known length). */
  exactBytes?: number;
  /** The entry may be at most this many bytes (what the model could need). */
  maxBytes?: number;
}

export interface ZipArchive {
  entries: Map<string, ZipEntry>;
  /**
   * The entry's uncompressed bytes (a view into the file for stored entries, no copy). Its declared size is
   * checked against `limit` first, and inflating stops as soon as the output would pass the declared size.
   */
  read(name: string, limit?: SizeLimit): Uint8Array;
}

const SIG_LOCAL = 0x04034b50;
const SIG_CENTRAL = 0x02014b50;
const SIG_EOCD = 0x06054b50;
const SIG_ZIP64_LOCATOR = 0x07064b50;
const SIG_ZIP64_EOCD = 0x06064b50;
const EOCD_SIZE = 22;
const MAX_COMMENT = 0xffff;
/** deflate cannot expand data by more than about 1032:1; a header claiming more is lying. */
const MAX_DEFLATE_RATIO = 1100;

export function isZip(bytes: Uint8Array): boolean {
  return bytes.length >= 4 && bytes[0] === 0x50 && bytes[1] === 0x4b && bytes[2] === 0x03 && bytes[3] === 0x04;
}

/** Bounds-checked little-endian reads: every access past the end is a WeightsError, never a RangeError. */
class Reader {
  private readonly view: DataView;
  constructor(readonly bytes: Uint8Array, readonly source: string) {
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }
  check(offset: number, length: number, what: string): void {
    if (!(Number.isSafeInteger(offset) && Number.isSafeInteger(length) && offset >= 0 && length >= 0 && offset + length <= this.bytes.length)) {
      throw new WeightsError(`${this.source}: damaged zip: ${what} at ${offset} (+${length}) is outside the ${this.bytes.length}-byte file`);
    }
  }
  u16(o: number): number {
    this.check(o, 2, 'field');
    return this.view.getUint16(o, true);
  }
  u32(o: number): number {
    this.check(o, 4, 'field');
    return this.view.getUint32(o, true);
  }
  u64(o: number): number {
    this.check(o, 8, 'field');
    const v = this.view.getBigUint64(o, true);
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new WeightsError(`${this.source}: damaged zip: 64-bit field ${v} is too large`);
    return Number(v);
  }
  slice(o: number, length: number, what: string): Uint8Array {
    this.check(o, length, what);
    return this.bytes.subarray(o, o + length);
  }
}

/** Locate the end-of-central-directory record: the last signature within the final 64 KiB + 22 bytes. */
function findEocd(r: Reader): number {
  const n = r.bytes.length;
  const lowest = Math.max(0, n - EOCD_SIZE - MAX_COMMENT);
  for (let o = n - EOCD_SIZE; o >= lowest; o--) {
    if (r.bytes[o] === 0x50 && r.bytes[o + 1] === 0x4b && r.u32(o) === SIG_EOCD) return o;
  }
  throw new WeightsError(`${r.source}: not a readable zip archive (no end-of-central-directory record)`);
}

interface Directory { count: number; offset: number; size: number }

function readDirectory(r: Reader): Directory {
  const eocd = findEocd(r);
  let dir: Directory = { count: r.u16(eocd + 10), size: r.u32(eocd + 12), offset: r.u32(eocd + 16) };
  // torch.save writes ZIP64 records for archives past 4 GiB; the 32-bit fields then hold 0xFFFFFFFF.
  const loc = eocd - 20;
  if (loc >= 0 && r.u32(loc) === SIG_ZIP64_LOCATOR) {
    const rec = r.u64(loc + 8);
    if (r.u32(rec) !== SIG_ZIP64_EOCD) throw new WeightsError(`${r.source}: damaged zip: bad ZIP64 end record`);
    dir = { count: r.u64(rec + 32), size: r.u64(rec + 40), offset: r.u64(rec + 48) };
  }
  r.check(dir.offset, dir.size, 'central directory');
  // Each central header is at least 46 bytes, which bounds the count a hostile file can claim.
  if (dir.count * 46 > dir.size) throw new WeightsError(`${r.source}: damaged zip: ${dir.count} entries cannot fit a ${dir.size}-byte directory`);
  return dir;
}

/** Apply a ZIP64 extended-information extra field (id 1) to the fields that overflowed 32 bits. */
function applyZip64(r: Reader, extraStart: number, extraLen: number, e: ZipEntry): void {
  const fields = (['size', 'compressedSize', 'localOffset'] as const).filter((f) => e[f] === 0xffffffff);
  if (fields.length === 0) return;
  let o = extraStart;
  const end = extraStart + extraLen;
  while (o + 4 <= end) {
    const id = r.u16(o);
    const len = r.u16(o + 2);
    if (o + 4 + len > end) break;
    if (id === 0x0001) {
      if (len < fields.length * 8) break;
      fields.forEach((f, i) => { e[f] = r.u64(o + 4 + i * 8); });
      return;
    }
    o += 4 + len;
  }
  throw new WeightsError(`${r.source}: damaged zip: entry "${e.name}" needs a ZIP64 extra field it does not have`);
}

/**
 * Parse a zip archive held in memory. Only the central directory is trusted for names and sizes; every
 * offset is checked against the buffer before use, so a hostile file can only fail.
 */
export function readZip(bytes: Uint8Array, source: string): ZipArchive {
  const r = new Reader(bytes, source);
  const dir = readDirectory(r);
  const entries = new Map<string, ZipEntry>();
  const utf8 = new TextDecoder('utf-8', { fatal: false });
  let o = dir.offset;
  for (let i = 0; i < dir.count; i++) {
    if (r.u32(o) !== SIG_CENTRAL) throw new WeightsError(`${source}: damaged zip: central directory entry ${i} has a bad signature`);
    const flags = r.u16(o + 8);
    const nameLen = r.u16(o + 28);
    const extraLen = r.u16(o + 30);
    const commentLen = r.u16(o + 32);
    const e: ZipEntry = {
      name: utf8.decode(r.slice(o + 46, nameLen, 'entry name')),
      method: r.u16(o + 10),
      crc32: r.u32(o + 16),
      compressedSize: r.u32(o + 20),
      size: r.u32(o + 24),
      localOffset: r.u32(o + 42),
    };
    r.check(o + 46 + nameLen, extraLen, 'extra field');
    applyZip64(r, o + 46 + nameLen, extraLen, e);
    if (flags & 1) throw new WeightsError(`${source}: zip entry "${e.name}" is encrypted`);
    entries.set(e.name, e);
    o += 46 + nameLen + extraLen + commentLen;
  }
  return { entries, read: (name, limit) => extract(r, entries, name, limit ?? {}) };
}

function checkLimit(e: ZipEntry, limit: SizeLimit, source: string): void {
  if (limit.exactBytes !== undefined && e.size !== limit.exactBytes) {
    throw new WeightsError(`${source}: entry "${e.name}" holds ${e.size} bytes, ${limit.exactBytes} expected`);
  }
  if (limit.maxBytes !== undefined && e.size > limit.maxBytes) {
    throw new WeightsError(
      `${source}: entry "${e.name}" claims ${e.size} bytes uncompressed, more than the ${limit.maxBytes} the model could need; ` +
      'refused before inflating it',
    );
  }
}

function extract(r: Reader, entries: Map<string, ZipEntry>, name: string, limit: SizeLimit): Uint8Array {
  const e = entries.get(name);
  if (!e) throw new WeightsError(`${r.source}: the archive has no entry "${name}"`);
  checkLimit(e, limit, r.source);
  if (r.u32(e.localOffset) !== SIG_LOCAL) throw new WeightsError(`${r.source}: damaged zip: entry "${name}" has no local header`);
  // The local header's name and extra lengths may differ from the central copy (torch pads data with the
  // local extra field to align it), so the data start is computed from the local header itself.
  const start = e.localOffset + 30 + r.u16(e.localOffset + 26) + r.u16(e.localOffset + 28);
  const raw = r.slice(start, e.compressedSize, `data of "${name}"`);
  let data: Uint8Array;
  if (e.method === 0) {
    if (e.size !== e.compressedSize) throw new WeightsError(`${r.source}: damaged zip: stored entry "${name}" has two sizes`);
    data = raw;
  } else if (e.method === 8) {
    if (e.size > e.compressedSize * MAX_DEFLATE_RATIO + 1024) {
      throw new WeightsError(`${r.source}: damaged zip: entry "${name}" claims ${e.size} bytes from ${e.compressedSize} compressed`);
    }
    try {
      // maxOutputLength is enforced chunk by chunk while inflating: a member that inflates past its declared
      // size stops there (in microseconds), whatever it would have grown to.
      data = zlib.inflateRawSync(raw, { maxOutputLength: Math.max(e.size, 1) });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ERR_BUFFER_TOO_LARGE') {
        throw new WeightsError(`${r.source}: entry "${name}" inflates to more than the ${e.size} bytes it declares; stopped there`);
      }
      throw new WeightsError(`${r.source}: entry "${name}" does not inflate: ${(err as Error).message}`);
    }
    if (data.length !== e.size) throw new WeightsError(`${r.source}: entry "${name}" inflates to ${data.length} bytes, ${e.size} expected`);
  } else {
    throw new WeightsError(`${r.source}: zip entry "${name}" uses compression method ${e.method}; only stored (0) and deflate (8) are read`);
  }
  // A truncated or bit-flipped download fails here rather than producing wrong weights.
  if (typeof zlib.crc32 === 'function' && zlib.crc32(data) !== e.crc32) {
    throw new WeightsError(`${r.source}: entry "${name}" fails its CRC-32 check (corrupted file?)`);
  }
  return data;
}

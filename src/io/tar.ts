/**
 * Tar archives (WebDataset shards: `KEY.jpg`, `KEY.json`, … as img2dataset writes them), read as streams
 * with tar-stream: plain or gzip-compressed (told by the first bytes, so a `.tar` that is really gzipped
 * works too). Nothing is extracted to disk and no archive is held in memory: entries go by one at a time,
 * the data of those not wanted is read and dropped.
 *
 * Member names as inputs: `TARPATH/MEMBER`, the member as stored without a leading `./` or `/`. Members
 * that are not regular files, hidden ones (a `.` name, as the directory walk skips) and those without an
 * image extension are not inputs; a name stored twice is one input, its first copy.
 */
import { constants } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import type { Readable } from 'node:stream';
import { createGunzip } from 'node:zlib';
import tarStream, { type Header } from 'tar-stream';
import { InputError } from '../errors.js';
import { fsPath } from './fs-names.js';
import { fsReason } from './images.js';

/** Names read as tar archives (case-insensitive). */
export const TAR_SUFFIXES = ['.tar', '.tar.gz', '.tgz'] as const;

export function isTarName(name: string): boolean {
  const lower = name.toLowerCase();
  return TAR_SUFFIXES.some((s) => lower.endsWith(s) && lower.length > s.length);
}

/**
 * A member larger than this is an error row ("member too large"), skipped without being read: a photo is a
 * few MB, and a member is held in memory whole between the archive and the decoder.
 */
export const TAR_MEMBER_LIMIT = 256 * 2 ** 20;

/** One member as tar-stream hands it over: its header, and its data to read (or drain) before the next. */
type Entry = AsyncIterable<Uint8Array> & { header: Header };

/** The members of one archive in order, each to be consumed (read or drained) before the next is asked for. */
interface Archive {
  next(): Promise<Entry | null>;
  close(): void;
}

/** What went wrong reading an archive, as an error row says it. */
function archiveReason(e: unknown, after: string | null): InputError {
  if (e instanceof InputError) return e;
  const err = e as NodeJS.ErrnoException;
  const where = after === null ? '' : ` after ${after}`;
  if (typeof err?.code === 'string' && err.code.startsWith('Z_')) return new InputError(`truncated or corrupt gzip data${where}`);
  if (typeof err?.code === 'string' && /^E[A-Z]+$/.test(err.code)) return fsReason(e);
  const msg = String(err?.message ?? e);
  if (/unexpected end of data/i.test(msg)) return new InputError(`truncated tar archive${where}`);
  if (/invalid tar header/i.test(msg)) return new InputError(after === null ? 'not a tar archive' : `corrupt tar archive (invalid header${where})`);
  return new InputError(`cannot read tar archive (${msg.split('\n')[0]})${where}`);
}

async function openArchive(path: string): Promise<Archive> {
  let fh: FileHandle;
  try {
    // O_NONBLOCK: a FIFO named x.tar must not hang the run waiting for a writer.
    fh = await open(fsPath(path), constants.O_RDONLY | constants.O_NONBLOCK);
  } catch (e) {
    throw fsReason(e);
  }
  let gzip = false;
  try {
    const st = await fh.stat();
    if (!st.isFile()) throw new InputError('not a regular file');
    // tar-stream ends a stream with no blocks at all quietly, as an archive of nothing; GNU tar and Python's
    // tarfile refuse it (a shard left empty by a failed copy).
    if (st.size === 0) throw new InputError('not a tar archive (empty file)');
    const magic = Buffer.alloc(2);
    const { bytesRead } = await fh.read(magic, 0, 2, 0);
    gzip = bytesRead === 2 && magic[0] === 0x1f && magic[1] === 0x8b;
  } catch (e) {
    await fh.close();
    throw e instanceof InputError ? e : fsReason(e);
  }
  const file = fh.createReadStream({ start: 0, highWaterMark: 1 << 20 });
  const extract = tarStream.extract();
  const stages: Readable[] = [file];
  const fail = (e: Error) => extract.destroy(e);
  file.on('error', fail);
  if (gzip) {
    const gunzip = createGunzip();
    gunzip.on('error', fail);
    stages.push(file.pipe(gunzip));
  }
  stages[stages.length - 1].pipe(extract);
  const entries = extract[Symbol.asyncIterator]();
  return {
    next: async () => {
      const r = await entries.next();
      // tar-stream's entries are streamx Readables of Buffers (typed as yielding unknown).
      return r.done ? null : (r.value as unknown as Entry);
    },
    close() {
      for (const s of stages) s.destroy();
      extract.destroy();
    },
  };
}

/** A member's name as an input takes it: without a leading `./` or `/`. */
function memberName(header: Header): string {
  return header.name.replace(/^(?:\.?\/)+/, '');
}

function isFile(header: Header): boolean {
  return header.type === 'file' || header.type === 'contiguous-file';
}

/** The members that are inputs: regular files with one of the extensions, not hidden (nor in a hidden directory). */
function isImageMember(name: string, header: Header, extensions: ReadonlySet<string>): boolean {
  const dot = name.lastIndexOf('.');
  return isFile(header) && !name.split('/').some((part) => part.startsWith('.')) && extensions.has(name.slice(dot + 1).toLowerCase());
}

async function drain(entry: Entry): Promise<void> {
  for await (const _ of entry);
}

/** A member's bytes, in an ArrayBuffer of their own (it is transferred to a decoding thread). */
async function readMember(entry: Entry, size: number): Promise<Uint8Array> {
  const out = new Uint8Array(size);
  let at = 0;
  for await (const chunk of entry) {
    if (at + chunk.length > size) throw new InputError('corrupt tar archive (a member longer than its header says)');
    out.set(chunk, at);
    at += chunk.length;
  }
  if (at !== size) throw new InputError('truncated tar archive');
  return out;
}

export interface TarListing {
  /** The image members, as inputs (TARPATH/MEMBER), in archive order. */
  members: string[];
  /** Why the archive could not be read to its end (truncated, corrupt, unreadable), or null. */
  error: string | null;
  /** The error cut off the last member listed: reading that member will report it. */
  inMember: boolean;
}

/** The image members of an archive, read through once (data dropped, nothing decoded). */
export async function listTar(path: string, extensions: ReadonlySet<string>): Promise<TarListing> {
  const members: string[] = [];
  const seen = new Set<string>();
  let after: string | null = null;
  let current: string | null = null;
  let archive: Archive | null = null;
  try {
    archive = await openArchive(path);
    for (let entry = await archive.next(); entry !== null; entry = await archive.next()) {
      const name = memberName(entry.header);
      current = isImageMember(name, entry.header, extensions) && !seen.has(name) ? name : null;
      if (current !== null) {
        seen.add(name);
        members.push(`${path}/${name}`);
      }
      await drain(entry);
      after = name;
      current = null;
    }
    return { members, error: null, inMember: false };
  } catch (e) {
    return { members, error: archiveReason(e, after).message, inMember: current !== null };
  } finally {
    archive?.close();
  }
}

/**
 * At most `limit` bytes of members read but not yet decoded (across all archives of a run), so that reading
 * ahead never holds more than that; a member larger than what is left waits until nothing else is held.
 */
export class ByteBudget {
  private used = 0;
  private readonly waiting: { n: number; go(): void }[] = [];

  constructor(readonly limit: number) {}

  private fits(n: number): boolean {
    return this.used === 0 || this.used + n <= this.limit;
  }

  async acquire(n: number): Promise<void> {
    if (this.waiting.length === 0 && this.fits(n)) {
      this.used += n;
      return;
    }
    await new Promise<void>((go) => this.waiting.push({ n, go }));
  }

  release(n: number): void {
    this.used -= n;
    while (this.waiting.length > 0 && this.fits(this.waiting[0].n)) {
      const w = this.waiting.shift()!;
      this.used += w.n;
      w.go();
    }
  }
}

/** A problem with one member (too large, missing) that leaves the rest of the archive readable. */
class MemberError extends InputError {}

/**
 * The second pass over an archive: its members' bytes, asked for in archive order (members not asked for
 * are skipped). The archive is opened at the first request and closed after the last of `expected`; once it
 * fails (cut off, corrupt), every later request fails with the same reason.
 */
export class TarReader {
  private archive: Promise<Archive> | null = null;
  private chain: Promise<unknown> = Promise.resolve();
  private failure: InputError | null = null;
  private served = 0;
  /** A member refused unread (too large): its data is read past when the next member is asked for. */
  private skipped: Entry | null = null;

  constructor(readonly path: string, private readonly expected: number, private readonly budget: ByteBudget) {}

  /**
   * The bytes of `member` (as stored, without a leading ./), counted against the budget until the caller
   * releases them. Rejects with an InputError when the member is too large or not in the archive, or the
   * archive is cut off or corrupt before its end.
   */
  read(member: string): Promise<Uint8Array> {
    const bytes = this.chain.then(() => this.find(member));
    this.chain = bytes.catch(() => undefined);
    return bytes;
  }

  close(): void {
    const archive = this.archive;
    this.archive = null;
    void archive?.then((a) => a.close(), () => undefined);
  }

  private async find(member: string): Promise<Uint8Array> {
    if (this.failure) throw this.failure;
    try {
      return await this.scan(member);
    } catch (e) {
      if (e instanceof MemberError) throw e;
      this.failure = archiveReason(e, null);
      this.close();
      throw this.failure;
    } finally {
      if (++this.served >= this.expected) this.close();
    }
  }

  private async scan(member: string): Promise<Uint8Array> {
    this.archive ??= openArchive(this.path);
    const archive = await this.archive;
    if (this.skipped !== null) {
      const entry = this.skipped;
      this.skipped = null;
      await drain(entry);
    }
    for (let entry = await archive.next(); entry !== null; entry = await archive.next()) {
      if (memberName(entry.header) !== member || !isFile(entry.header)) {
        await drain(entry);
        continue;
      }
      const size = entry.header.size ?? 0;
      if (size > TAR_MEMBER_LIMIT) {
        this.skipped = entry;
        throw new MemberError(`member too large (${size} bytes; the limit is ${TAR_MEMBER_LIMIT})`);
      }
      await this.budget.acquire(size);
      try {
        return await readMember(entry, size);
      } catch (e) {
        this.budget.release(size);
        throw e;
      }
    }
    throw new MemberError(`not in ${this.path} any more (was the archive changed during the run?)`);
  }
}

/**
 * The `-o` contract: where an output's bytes go, decided once, before any image is read, and written so that
 * nothing else is harmed.
 * - A regular file is replaced atomically: written under a temporary name beside it, fsynced, renamed over
 *   it, with the old file's mode (and owner, where allowed) kept. A missing file is created the same way.
 * - A symbolic link is followed: the file it points to is written (atomically, beside the target); the link
 *   stays a link.
 * - A FIFO, a character device (/dev/null, a terminal) or a socket is written straight into, never renamed
 *   over: replacing /dev/null with a CSV file (as root) breaks every program on the machine.
 * - `-o -` is stdout.
 * - A directory is a usage error (exit 2); a missing parent, an unwritable place or a block device an error
 *   (exit 1); an output that is also an input is a usage error: inputs are never overwritten.
 * - A write that fails mid-run is one line, `vit: cannot write PATH: ENOSPC (no space left on device)`, and
 *   the temporary file is removed.
 */
import { once } from 'node:events';
import { accessSync, constants, createWriteStream, lstatSync, readdirSync, readlinkSync, realpathSync, rmSync, statSync, unlinkSync, type Stats } from 'node:fs';
import { copyFile, open, rename, unlink, type FileHandle } from 'node:fs/promises';
import { createConnection } from 'node:net';
import { finished } from 'node:stream/promises';
import { tmpdir } from 'node:os';
import { basename, dirname, isAbsolute, join, resolve } from 'node:path';
import { OutputError, UsageError } from '../../errors.js';
import { isBrokenPipe } from '../streams.js';

export type OutputTarget =
  | { kind: 'stdout' }
  /** A regular file (existing or not): `path` is the file written, after following symbolic links. */
  | { kind: 'file'; path: string; name: string; existing: Stats | null }
  /** A FIFO, character device or socket, written into. */
  | { kind: 'stream'; path: string; name: string; socket: boolean; fd?: number };

/** A descriptor of this process named as a path: /dev/fd/N, /proc/self/fd/N, /proc/<our pid>/fd/N. */
function ownDescriptor(path: string): number | null {
  const m = /^(?:\/dev\/fd|\/proc\/(?:self|thread-self|(\d+))\/fd)\/(\d+)$/.exec(path);
  if (!m || (m[1] !== undefined && Number(m[1]) !== process.pid)) return null;
  return Number(m[2]);
}

/** "ENOSPC (no space left on device)" from a Node error, or its message. */
export function errnoText(e: unknown): string {
  const err = e as NodeJS.ErrnoException;
  if (!err?.code) return String(err?.message ?? e);
  const desc = new RegExp(`^${err.code}: ([^,]+)`).exec(err.message ?? '')?.[1];
  return desc ? `${err.code} (${desc})` : err.code;
}

export function writeError(name: string, e: unknown): OutputError {
  return e instanceof OutputError ? e : new OutputError(`cannot write ${name}: ${errnoText(e)}`);
}

/** The path a chain of symbolic links ends at, whether or not that last path exists. */
function followLinks(path: string): string {
  let p = resolve(path);
  for (let hops = 0; hops < 40; hops++) {
    let st: Stats;
    try {
      st = lstatSync(p);
    } catch {
      // Missing: resolve the directories above it, which must exist for the file to be created.
      try {
        return join(realpathSync(dirname(p)), basename(p));
      } catch {
        return p;
      }
    }
    if (!st.isSymbolicLink()) return realpathSync(p);
    const to = readlinkSync(p);
    // /proc's links to objects that have no path (/dev/stdout → /proc/self/fd/1 → "pipe:[123]", bash's >(cmd)):
    // the link itself is what opens the pipe.
    if (/^[a-z_]+:\[\d+\]$/.test(to) && realpathSync(dirname(p)).startsWith('/proc/')) return p;
    p = isAbsolute(to) ? to : resolve(dirname(p), to);
  }
  throw new OutputError(`cannot write ${path}: ELOOP (too many levels of symbolic links)`);
}

/** The same file as `st`, among the inputs: by path first, then by device and inode for same-named ones. */
function isAnInput(path: string, st: Stats | null, inputs: readonly string[]): boolean {
  const name = basename(path);
  for (const input of inputs) {
    if (resolve(input) === path) return true;
    if (st === null || basename(input) !== name) continue;
    try {
      const other = statSync(input);
      if (other.dev === st.dev && other.ino === st.ino) return true;
    } catch {
      // A missing input cannot be the output.
    }
  }
  return false;
}

/**
 * Where `output` (undefined or "-": stdout) goes, checked now: every refusal of the contract is thrown
 * here. `inputs` are the run's inputs, none of which may be the output; `flag` names the option in messages.
 */
export function resolveOutput(output: string | undefined, inputs: readonly string[] = [], flag = '-o'): OutputTarget {
  if (output === undefined || output === '-') return { kind: 'stdout' };
  if (output === '') throw new UsageError(`${flag} needs a file name (or - for stdout)`);
  const path = followLinks(output);
  let st: Stats | null = null;
  try {
    st = statSync(path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw writeError(output, e);
  }
  if (st?.isDirectory()) throw new UsageError(`${flag} ${output} is a directory: name a file (e.g. ${join(output, 'out.jsonl')})`);
  if (st?.isBlockDevice()) throw new OutputError(`cannot write ${output}: it is a block device; rows go to files, pipes, terminals and sockets`);
  if (isAnInput(path, st, inputs)) throw new UsageError(`${flag} ${output} is also an input: vit never writes over its inputs`);
  if (st?.isSocket()) {
    // A socket this process holds (stdout of a process started by node or a service manager is a socketpair):
    // written through its descriptor, since connecting to it by path is refused.
    const fd = ownDescriptor(path);
    if (fd === 1) return { kind: 'stdout' };
    if (fd !== null) return { kind: 'stream', path, name: output, socket: false, fd };
  }
  if (st && (st.isFIFO() || st.isCharacterDevice() || st.isSocket())) return { kind: 'stream', path, name: output, socket: st.isSocket() };
  const dir = dirname(path);
  try {
    if (!statSync(dir).isDirectory()) throw Object.assign(new Error(`ENOTDIR: not a directory, ${dir}`), { code: 'ENOTDIR' });
    accessSync(dir, constants.W_OK);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new OutputError(`cannot write ${output}: ${errnoText(e)}${code === 'ENOENT' ? `: the directory ${dir} does not exist` : ''}`);
  }
  return { kind: 'file', path, name: output, existing: st };
}

// ---------------------------------------------------------------------------------------------------------
// Byte sinks

export interface Sink {
  write(chunk: string | Uint8Array): Promise<void>;
  /** Make what is written so far durable (files continued in place: fsync). */
  checkpoint(): Promise<void>;
  /** Flush and make the output final (rename into place for atomic files). */
  close(): Promise<void>;
  /** Give up: an atomic file sink removes what it wrote, an in-place one keeps it. */
  abort(): Promise<void>;
  readonly closedByReader: boolean;
}

/**
 * A stream: stdout (never ended by us), or a FIFO, device or socket we opened. A reader that goes away
 * (EPIPE) is a normal end: from then on writes are dropped and closedByReader is set, so the run can stop
 * early with status 0.
 */
export class StreamSink implements Sink {
  closedByReader = false;
  private failure: Error | null = null;
  private readonly onError = (e: Error) => {
    if (isBrokenPipe(e) || (e as NodeJS.ErrnoException).code === 'ECONNRESET') this.closedByReader = true;
    else this.failure ??= e;
  };

  constructor(private readonly out: NodeJS.WritableStream, private readonly name: string, private readonly owned: boolean) {
    out.on('error', this.onError);
  }

  /** A FIFO, device or socket opened for writing (a FIFO's open waits for its reader, as a shell's `>` does). */
  static async open(target: Extract<OutputTarget, { kind: 'stream' }>): Promise<StreamSink> {
    if (target.fd !== undefined) return new StreamSink(createWriteStream('', { fd: target.fd, autoClose: false }), target.name, true);
    if (target.socket) {
      const sock = createConnection({ path: target.path });
      try {
        await once(sock, 'connect');
      } catch (e) {
        throw writeError(target.name, e);
      }
      return new StreamSink(sock, target.name, true);
    }
    let fh: FileHandle;
    try {
      fh = await open(target.path, constants.O_WRONLY);
    } catch (e) {
      throw writeError(target.name, e);
    }
    return new StreamSink(fh.createWriteStream(), target.name, true);
  }

  private check(): void {
    if (this.failure) throw writeError(this.name, this.failure);
  }

  async write(chunk: string | Uint8Array): Promise<void> {
    this.check();
    if (this.closedByReader) return;
    if (!this.out.write(chunk)) {
      // Whichever comes first: room in the buffer, or the error that says there never will be.
      await new Promise<void>((res) => {
        const done = () => {
          this.out.off('drain', done);
          this.out.off('error', done);
          res();
        };
        this.out.once('drain', done);
        this.out.once('error', done);
      });
    }
    this.check();
  }

  async checkpoint(): Promise<void> {
    this.check();
  }

  async close(): Promise<void> {
    if (!this.closedByReader) {
      // Resolves once everything written before has been handed to the OS (write callbacks run in order).
      await new Promise<void>((res) => this.out.write('', (e?: Error | null) => {
        if (e) this.onError(e);
        res();
      }));
      if (this.owned) {
        // Ended and flushed, or failed: the stream's own end, so that an error of its last writes is this close's.
        this.out.end();
        await finished(this.out).catch((e: Error) => this.onError(e));
      }
    }
    this.check();
    this.release();
  }

  async abort(): Promise<void> {
    if (this.owned) (this.out as NodeJS.WritableStream & { destroy(): void }).destroy();
    this.release();
  }

  /**
   * Stop listening to a stream that lives on (stdout). A stream of our own keeps the listener: a write it still
   * had queued can fail after close or destroy (ENOSPC on a full device), and an 'error' nobody listens to
   * would end the process with a stack trace instead of the one line already decided.
   */
  private release(): void {
    if (!this.owned) this.out.off('error', this.onError);
  }
}

/** A new file written in place of `existing` gets its mode, and its owner where allowed. */
async function keepOwnership(fh: FileHandle, existing: Stats | null): Promise<void> {
  if (existing === null) return;
  await fh.chmod(existing.mode & 0o7777).catch(() => undefined);
  // Only root may give a file away; for anyone else the file stays theirs, as a shell's `>` would leave it.
  if (process.getuid?.() === 0) await fh.chown(existing.uid, existing.gid).catch(() => undefined);
}

/** Temporary files not yet renamed or removed: a process that exits in between (a second Ctrl-C) removes them. */
const liveTempFiles = new Set<string>();

/** Remove the temporary files of unfinished outputs (on exit, or before a second Ctrl-C ends the process). */
export function removeTempFiles(): void {
  for (const f of liveTempFiles) {
    try {
      unlinkSync(f);
    } catch {
      // Already gone.
    }
  }
  liveTempFiles.clear();
}
process.on('exit', removeTempFiles);

/** Whether a process of this id runs on this machine. */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Remove the temporary files that a process killed outright (no exit handler ran) left in dir under
 * `PREFIX<pid>.tmp` or `PREFIX<pid>.snapshot.tmp`, of processes no longer running: AtomicFileSink's
 * (`.NAME.`) and the manifest's (`NAME.vit.json.`).
 */
export function removeStaleTempFiles(dir: string, prefix: string, rest = /^(\d+)\.(?:snapshot\.)?tmp$/): void {
  let entries: string[];
  try {
    entries = readdirSync(dir);
  } catch {
    return;
  }
  for (const e of entries) {
    if (!e.startsWith(prefix)) continue;
    const m = rest.exec(e.slice(prefix.length));
    if (m === null || Number(m[1]) === process.pid || alive(Number(m[1]))) continue;
    try {
      unlinkSync(join(dir, e));
    } catch {
      // Gone already, or not ours to remove.
    }
  }
}

/** Scratch files in the OS temporary directory: SPOOL_PREFIX<pid>.<ms>.<random>.tmp. */
const SPOOL_PREFIX = 'vit-spool.';

/** A file written at explicit positions (so an npy header can be patched in place). */
export abstract class FileSink implements Sink {
  readonly closedByReader = false;
  protected position = 0;
  protected done = false;

  /** `path` is the file written; `name` is how errors call it (the output, not a temporary name). */
  protected constructor(readonly path: string, protected readonly name: string, protected readonly fh: FileHandle) {}

  /** Appends at the current end; FileHandle writes are awaited one by one, which is the backpressure. */
  async write(chunk: string | Uint8Array): Promise<void> {
    const buf = typeof chunk === 'string' ? Buffer.from(chunk, 'utf8') : chunk;
    await this.patch(this.position, buf);
    this.position += buf.length;
  }

  /** Write bytes at `at` (the npy header: overwritten in place). */
  async patch(at: number, bytes: Uint8Array): Promise<void> {
    try {
      // A write may be short (a full disk on its way): keep going until it throws.
      for (let off = 0; off < bytes.length;) {
        const { bytesWritten } = await this.fh.write(bytes, off, bytes.length - off, at + off);
        off += bytesWritten;
      }
    } catch (e) {
      throw writeError(this.name, e);
    }
  }

  async checkpoint(): Promise<void> {}

  /** Copy the contents written so far to another sink (an npy spooled for a stream, copied out at close). */
  async copyTo(sink: Sink): Promise<void> {
    const buf = Buffer.allocUnsafe(1 << 20);
    for (let at = 0; at < this.position && !sink.closedByReader;) {
      const { bytesRead } = await this.fh.read(buf, 0, Math.min(buf.length, this.position - at), at);
      if (bytesRead === 0) break;
      await sink.write(buf.subarray(0, bytesRead));
      at += bytesRead;
    }
  }

  abstract close(): Promise<void>;
  abstract abort(): Promise<void>;
}

/**
 * A file written under a temporary name in the target's directory (`.NAME.<pid>.tmp`), fsynced and renamed
 * over the target on close, removed on abort: readers never see a partial file, and an existing target is
 * replaced only by a finished one, with its mode and owner.
 */
export class AtomicFileSink extends FileSink {
  private constructor(private readonly target: string | null, tmp: string, name: string, fh: FileHandle, private readonly existing: Stats | null) {
    super(tmp, name, fh);
  }

  /**
   * Open now, so that an unwritable place fails before any work. `target` null: a scratch file in the OS
   * temporary directory, removed on close (an npy spooled for a stream).
   */
  static async open(target: string | null, name: string, existing: Stats | null = null): Promise<AtomicFileSink> {
    // Those of runs that were killed (kill -9, a lost machine) would stay forever, as large as the output.
    if (target !== null) removeStaleTempFiles(dirname(target), `.${basename(target)}.`);
    else removeStaleTempFiles(tmpdir(), SPOOL_PREFIX, /^(\d+)\.\d+\.[a-z0-9]+\.tmp$/);
    const tmp = target === null
      ? join(tmpdir(), `${SPOOL_PREFIX}${process.pid}.${Date.now()}.${Math.random().toString(36).slice(2)}.tmp`)
      : join(dirname(target), `.${basename(target)}.${process.pid}.tmp`);
    let fh: FileHandle;
    try {
      // Created anew, never opened through what is there: a symbolic link planted under this name in a shared
      // directory would have had its target overwritten (as root, any file). Readable too: an npy spool is
      // copied out of it at close.
      rmSync(tmp, { force: true });
      fh = await open(tmp, 'wx+', 0o666);
    } catch (e) {
      throw writeError(name, e);
    }
    liveTempFiles.add(tmp);
    await keepOwnership(fh, existing);
    return new AtomicFileSink(target, tmp, name, fh, existing);
  }

  /**
   * Make the target hold, atomically, the bytes written so far followed by `tail`, while writing goes on
   * here: they are copied under another temporary name, completed, synced and renamed over the target (how a
   * parquet output continued with --resume is committed now and then, see parquet.ts).
   */
  async snapshot(tail: Uint8Array): Promise<void> {
    if (this.target === null) throw new Error('a scratch file has no target to snapshot to');
    const snap = join(dirname(this.target), `.${basename(this.target)}.${process.pid}.snapshot.tmp`);
    liveTempFiles.add(snap);
    try {
      // Every write so far has reached the file (writes are awaited one by one), so a copy sees them all.
      rmSync(snap, { force: true });
      await copyFile(this.path, snap, constants.COPYFILE_EXCL);
      const fh = await open(snap, 'r+');
      try {
        await keepOwnership(fh, this.existing);
        for (let off = 0; off < tail.length;) off += (await fh.write(tail, off, tail.length - off, this.position + off)).bytesWritten;
        await fh.sync();
      } finally {
        await fh.close();
      }
      await rename(snap, this.target);
    } catch (e) {
      await unlink(snap).catch(() => undefined);
      throw writeError(this.name, e);
    } finally {
      liveTempFiles.delete(snap);
    }
  }

  private async remove(): Promise<void> {
    await unlink(this.path).catch(() => undefined);
    liveTempFiles.delete(this.path);
  }

  async close(): Promise<void> {
    if (this.done) return;
    this.done = true;
    if (this.target === null) {
      await this.fh.close().catch(() => undefined);
      await this.remove();
      return;
    }
    try {
      await this.fh.sync();
      await this.fh.close();
      await rename(this.path, this.target);
      liveTempFiles.delete(this.path);
    } catch (e) {
      await this.remove();
      throw writeError(this.name, e);
    }
  }

  async abort(): Promise<void> {
    if (this.done) return;
    this.done = true;
    await this.fh.close().catch(() => undefined);
    await this.remove();
  }
}

/**
 * A file continued in place (--resume): opened without truncation, cut back to `keep` bytes (the complete
 * rows a previous run left), then appended to. Every checkpoint fsyncs, so what a crash leaves is the
 * previous rows plus at most one torn row, which the next --resume cuts off. Abort keeps what was written.
 */
export class InPlaceFileSink extends FileSink {
  static async open(path: string, name: string, keep: number): Promise<InPlaceFileSink> {
    try {
      const fh = await open(path, constants.O_RDWR | constants.O_CREAT, 0o666);
      await fh.truncate(keep);
      const sink = new InPlaceFileSink(path, name, fh);
      sink.position = keep;
      return sink;
    } catch (e) {
      throw writeError(name, e);
    }
  }

  override async checkpoint(): Promise<void> {
    try {
      await this.fh.sync();
    } catch (e) {
      throw writeError(this.name, e);
    }
  }

  async close(): Promise<void> {
    if (this.done) return;
    this.done = true;
    try {
      await this.fh.sync();
      await this.fh.close();
    } catch (e) {
      throw writeError(this.name, e);
    }
  }

  async abort(): Promise<void> {
    if (this.done) return;
    this.done = true;
    await this.fh.sync().catch(() => undefined);
    await this.fh.close().catch(() => undefined);
  }
}

/** The byte sink of a target: stdout, a stream opened now, or a regular file replaced atomically. */
export async function openSink(target: OutputTarget, stdout: NodeJS.WritableStream): Promise<Sink> {
  switch (target.kind) {
    case 'stdout':
      return new StreamSink(stdout, 'stdout', false);
    case 'stream':
      return StreamSink.open(target);
    case 'file':
      return AtomicFileSink.open(target.path, target.name, target.existing);
  }
}

/**
 * Turn the command line's inputs into the ordered list of image paths a run will process: files as given,
 * directories walked (images and tar archives), glob patterns expanded, and `-` for a list of paths on stdin.
 * Tar archives stay single inputs here (so that --shard gives each whole to one shard); tar-inputs.ts lists
 * their members.
 */
import { createHash } from 'node:crypto';
import { readdir, stat, type BigIntStats } from 'node:fs';
import { readdir as readdirAsync, stat as statAsync } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { createRequire } from 'node:module';
import type fg from 'fast-glob';
import type sharpModule from 'sharp';
import { UsageError, wholeNumber } from '../errors.js';
import { decodeFsName, pathBytes } from './fs-names.js';
import { isTarName } from './tar.js';

/** fast-glob, loaded only to walk a directory or expand a pattern (not for files named one by one). */
async function loadGlob(): Promise<typeof fg> {
  return (await import('fast-glob')).default;
}

let extensions: readonly string[] | null = null;

/**
 * Extensions (lower case, no dot) a directory walk picks up; HEIC/HEIF only where this sharp decodes them.
 * Worked out on the first walk: sharp is not loaded for files named one by one.
 */
export function imageExtensions(): readonly string[] {
  if (extensions) return extensions;
  const exts = ['jpg', 'jpeg', 'png', 'webp', 'gif', 'tif', 'tiff', 'avif'];
  // Prebuilt sharp reads AVIF through libheif but not HEVC-coded HEIC; it lists what it reads as suffixes.
  const sharp = createRequire(import.meta.url)('sharp') as typeof sharpModule;
  const heif = (sharp.format as unknown as Record<string, { input?: { fileSuffix?: string[] } }>).heif;
  const suffixes = heif?.input?.fileSuffix ?? [];
  for (const e of ['heic', 'heif']) if (suffixes.includes(`.${e}`)) exts.push(e);
  extensions = exts;
  return exts;
}

export interface CollectOptions {
  /** Where `-` (or no arguments on a pipe) reads paths from; default process.stdin. */
  stdin?: NodeJS.ReadableStream;
  /** Whether stdin is a terminal; default: stdin's own isTTY. */
  stdinIsTTY?: boolean;
  /** stdin lists are NUL-separated (find -print0) instead of newline-separated. */
  nul?: boolean;
  /** Directory relative arguments are resolved against; default process.cwd(). Results stay relative. */
  cwd?: string;
  /**
   * Which inputs to keep (a shard's: inShard), asked of each as it is collected, so that a long list on stdin
   * is never held whole; default all.
   */
  keep?: (path: string) => boolean;
}

/** Byte order of the names as stored (as `LC_ALL=C sort`), not UTF-16 code-unit order. */
function byteOrder(a: string, b: string): number {
  return Buffer.compare(pathBytes(a), pathBytes(b));
}

/**
 * The longest entry a path list may hold: Linux's PATH_MAX is 4096 bytes, so this leaves room for any real
 * path, while a stream that is no list (a binary file, /dev/zero: one endless line) is refused before it
 * fills memory (/dev/zero took 5.9 GB in 30 s when the whole stream was read first).
 */
export const PATH_LIST_ENTRY_MAX = 64 * 2 ** 10;

/**
 * Paths from a list on stdin, in order, those `keep` accepts (default: all). Newline-separated lists drop a
 * trailing \r per line (CRLF files); empty entries, including the one after a final separator, are skipped.
 * The list is split as its bytes arrive and never held whole: with `keep` (a shard's paths) memory follows
 * what is kept, not the list's length. Entry lengths are checked as the bytes arrive.
 */
export async function readPathList(stream: NodeJS.ReadableStream, nul = false, keep?: (path: string) => boolean): Promise<string[]> {
  const sep = nul ? 0 : 0x0a;
  const out: string[] = [];
  let entries = 0; // non-empty entries taken so far
  const take = (bytes: Buffer) => {
    for (const e of splitPathList(bytes, nul)) {
      entries++;
      if (keep === undefined) out.push(e);
      // A piece of a split string holds on to the whole (V8's sliced strings): a path kept from each chunk
      // would keep every chunk's text. A copy of its own (UTF-16 as it is, so escaped bytes stay) holds
      // itself only: a 2-million-path list cut to 1/1000 peaked at 242 MiB with the pieces, 134 MiB with copies.
      else if (keep(e)) out.push(Buffer.from(e, 'utf16le').toString('utf16le'));
    }
  };
  let carry: Buffer | null = null; // the unfinished entry of earlier chunks
  let run = 0; // its length: bytes since the last separator
  for await (const c of stream) {
    const u = c as string | Uint8Array;
    const chunk = typeof u === 'string' ? Buffer.from(u, 'utf8') : Buffer.from(u.buffer, u.byteOffset, u.byteLength);
    for (let from = 0; ;) {
      const end = chunk.indexOf(sep, from);
      const upTo = end === -1 ? chunk.length : end;
      run += upTo - from;
      if (run > PATH_LIST_ENTRY_MAX) {
        // The entries before this one: those taken, and those of this chunk before it (when it began here).
        const start = upTo - run;
        const before = entries + (start > 0 ? splitPathList(Buffer.concat([carry ?? Buffer.alloc(0), chunk.subarray(0, start)]), nul).length : 0);
        throw new UsageError(
          `the list on stdin has an entry longer than ${PATH_LIST_ENTRY_MAX} bytes after ${before} paths: ` +
          `it is not a list of paths (one a line${nul ? '' : ', or NUL-separated with -0'})`,
        );
      }
      if (end === -1) break;
      run = 0;
      from = end + 1;
    }
    // Every entry finished in this chunk is taken now, decoded in one piece; the rest waits (copied, so
    // that the chunk is not kept).
    const last = chunk.lastIndexOf(sep);
    if (last === -1) {
      carry = carry === null ? Buffer.from(chunk) : Buffer.concat([carry, chunk]);
      continue;
    }
    take(carry === null ? chunk.subarray(0, last) : Buffer.concat([carry, chunk.subarray(0, last)]));
    carry = last + 1 < chunk.length ? Buffer.from(chunk.subarray(last + 1)) : null;
  }
  if (carry !== null) take(carry);
  return out;
}

function splitPathList(bytes: Buffer, nul: boolean): string[] {
  // Names that are not UTF-8 keep their bytes (fs-names.ts): `find -print0` lists them as they are.
  const text = decodeFsName(bytes);
  const entries = nul ? text.split('\0') : text.split('\n').map((l) => (l.endsWith('\r') ? l.slice(0, -1) : l));
  return entries.filter((e) => e.length > 0);
}

/**
 * The directories from a walk's root down to one directory, by (device, inode): a directory already on its
 * own chain was reached through a symbolic link to one of its ancestors, which is how `find -L` detects a
 * loop. Only ancestors count, so two links to the same (non-ancestor) directory are both walked, as find -L
 * does, and the check depends on the path alone, never on the order directories happen to be read in.
 */
interface Chain {
  readonly id: string;
  readonly parent: Chain | null;
}

/** `parent`'s chain extended by the directory `st`, or null when that directory is already on it (a loop). */
function enter(parent: Chain | null, st: BigIntStats): Chain | null {
  const id = `${st.dev}:${st.ino}`;
  for (let c = parent; c !== null; c = c.parent) if (c.id === id) return null;
  return { id, parent };
}

/**
 * fast-glob (for patterns) follows symbolic links but has no loop protection: a link to an ancestor would be
 * walked again and again until the OS gives up (ELOOP). This file-system adapter lists a directory that closes
 * a loop as empty. fast-glob reads a directory before any of its subdirectories, so the parent's chain is
 * always known; each check costs one stat and a walk up the chain.
 */
function loopSafeFs(roots: string[]): Partial<fg.FileSystemAdapter> {
  const chains = new Map<string, Chain>();
  const within = (dir: string) => roots.some((r) => dir === r || dir.startsWith(r.endsWith('/') ? r : `${r}/`));
  // fs.walk calls readdir(path, options, callback) or readdir(path, callback).
  const guarded = (path: string, ...rest: unknown[]) => {
    const cb = rest[rest.length - 1] as (err: NodeJS.ErrnoException | null, entries: unknown[]) => void;
    const opts = rest.length > 1 ? rest[0] : undefined;
    const list = () => (opts === undefined ? readdir(path, cb as never) : readdir(path, opts as never, cb as never));
    if (!within(path)) return list();
    stat(path, { bigint: true }, (err, st) => {
      if (err) return cb(err, []);
      const chain = enter(chains.get(dirname(path)) ?? null, st);
      if (chain === null) return cb(null, []);
      chains.set(path, chain);
      list();
    });
  };
  return { readdir: guarded as unknown as fg.FileSystemAdapter['readdir'] };
}

/** fast-glob options for patterns. */
function globOptions(cwd: string, roots: string[]): fg.Options {
  return {
    cwd,
    onlyFiles: true,
    followSymbolicLinks: true,
    // Hidden files are skipped: on shared drives they are mostly junk like macOS's ._IMG_0001.jpg.
    dot: false,
    // An unreadable subdirectory is skipped rather than ending the whole run.
    suppressErrors: true,
    fs: loopSafeFs(roots),
  };
}

/** Directories read at once while walking: enough to hide the latency of a network file system. */
const WALK_CONCURRENCY = 16;

interface Pending { path: Buffer; rel: Buffer; parent: Chain | null }

/**
 * The images and tar archives under a directory, sorted by the bytes of their path, each joined onto the directory as the
 * user wrote it. Names are read as bytes (fs-names.ts), so names that are not UTF-8 are found and opened.
 * Every directory is read once per path reaching it, with one stat, so the walk is linear in the entries
 * (a chain of 1,000 nested directories is 1,000 reads); hidden entries are skipped, symbolic links followed
 * (loops cut, see Chain), unreadable directories and broken links skipped.
 */
async function walkDirectory(dir: string, cwd: string): Promise<string[]> {
  const exts = new Set(imageExtensions());
  const sep = Buffer.from('/');
  const found: Buffer[] = [];
  const queue: Pending[] = [{ path: pathBytes(resolve(cwd, dir)), rel: Buffer.alloc(0), parent: null }];
  const isInput = (name: Buffer) => {
    const dot = name.lastIndexOf(0x2e);
    return dot > 0 && (exts.has(name.subarray(dot + 1).toString('latin1').toLowerCase()) || isTarName(name.toString('latin1')));
  };
  const visit = async ({ path, rel, parent }: Pending) => {
    const chain = await statAsync(path, { bigint: true }).then((st) => (st.isDirectory() ? enter(parent, st) : null), () => null);
    if (chain === null) return;
    const entries = await readdirAsync(path, { withFileTypes: true, encoding: 'buffer' }).catch(() => []);
    for (const e of entries) {
      const name = e.name as unknown as Buffer;
      if (name[0] === 0x2e) continue; // hidden
      const childPath = Buffer.concat([path, sep, name]);
      const childRel = rel.length === 0 ? name : Buffer.concat([rel, sep, name]);
      let isDir = e.isDirectory();
      let isFile = e.isFile();
      // A link, or a file system that does not report types (DT_UNKNOWN): stat says what it leads to.
      const typed = isDir || isFile || e.isFIFO() || e.isSocket() || e.isCharacterDevice() || e.isBlockDevice();
      if (e.isSymbolicLink() || !typed) {
        const st = await statAsync(childPath).catch(() => null);
        isDir = st?.isDirectory() ?? false;
        isFile = st?.isFile() ?? false;
      }
      if (isDir) queue.push({ path: childPath, rel: childRel, parent: chain });
      else if (isFile && isInput(name)) found.push(childRel);
    }
  };
  let active = 0;
  await new Promise<void>((done, fail) => {
    const pump = () => {
      while (active < WALK_CONCURRENCY && queue.length > 0) {
        active++;
        visit(queue.pop()!).then(() => {
          active--;
          pump();
        }, fail);
      }
      if (active === 0 && queue.length === 0) done();
    };
    pump();
  });
  const prefix = dir.endsWith('/') ? dir : `${dir}/`;
  return found.sort(Buffer.compare).map((rel) => prefix + decodeFsName(rel));
}

/**
 * What a glob pattern matches, sorted: files as they are, and directories walked as a directory argument is,
 * which is what the shell's expansion of the same pattern gives (`vit classify 'photos/*'` = `vit classify
 * photos/*`). A recursive pattern (**) matches every file itself, so there directories are not walked again.
 * The path itself when nothing matches or when it is no pattern at all (it becomes an error row).
 */
async function expandGlob(pattern: string, cwd: string): Promise<string[]> {
  const fg = await loadGlob();
  if (!fg.isDynamicPattern(pattern)) return [pattern];
  const roots = fg.generateTasks([pattern], { cwd }).map((t) => resolve(cwd, t.base));
  const recursive = pattern.includes('**');
  const found = await fg(pattern, { ...globOptions(cwd, roots), onlyFiles: recursive, markDirectories: !recursive });
  if (found.length === 0) return [pattern];
  const out: string[] = [];
  for (const p of found.sort(byteOrder)) {
    if (!p.endsWith('/')) out.push(p);
    else for (const f of await walkDirectory(p, cwd)) out.push(f);
  }
  return out;
}

type Kind = 'dir' | 'other' | 'missing';

function kindOf(path: string): Promise<Kind> {
  return new Promise((res) => stat(path, (err, st) => res(err ? (err.code === 'ENOENT' ? 'missing' : 'other') : st.isDirectory() ? 'dir' : 'other')));
}

/**
 * The ordered list of inputs for a run:
 * - an existing file (or anything that is not a directory) is kept as written;
 * - a directory is walked recursively for images and tar archives (by extension, case-insensitive; hidden
 *   files skipped),
 *   following symbolic links without looping, sorted by the byte order of the path;
 * - a path that does not exist but is a glob pattern is expanded by fast-glob (sorted likewise, no
 *   extension filter: the pattern says what is wanted), or kept as written when it matches nothing;
 * - a path that does not exist is kept as written, to become an error row ("no such file");
 * - `-` reads a list of paths from stdin (newline- or, with `nul`, NUL-separated), in order.
 * With no arguments, stdin is read when it is not a terminal; on a terminal that is a UsageError.
 */
export async function collectInputs(args: string[], opts: CollectOptions = {}): Promise<string[]> {
  const stdin = opts.stdin ?? process.stdin;
  const cwd = opts.cwd ?? process.cwd();
  if (args.length === 0) {
    const tty = opts.stdinIsTTY ?? (stdin as { isTTY?: boolean }).isTTY === true;
    if (tty) {
      throw new UsageError(
        'no inputs: pass image files, directories or glob patterns, or - to read paths from stdin ' +
        "(e.g. `find photos -name '*.jpg' | vit classify -`)",
      );
    }
    return readPathList(stdin, opts.nul, opts.keep);
  }
  const keep = opts.keep ?? (() => true);
  const out: string[] = [];
  for (const arg of args) {
    if (arg === '-') {
      for (const p of await readPathList(stdin, opts.nul, opts.keep)) out.push(p);
      continue;
    }
    // An empty argument names no file (as for ls or cat); resolved, it would be the working directory, listed
    // with names rooted at "/" instead of "./".
    if (arg === '') {
      if (keep(arg)) out.push(arg);
      continue;
    }
    const kind = await kindOf(resolve(cwd, arg));
    const found = kind === 'dir' ? await walkDirectory(arg, cwd) : kind === 'missing' ? await expandGlob(arg, cwd) : [arg];
    // One at a time: push(...found) passes each as an argument, past V8's stack beyond about 125,000 of them.
    for (const p of found) if (keep(p)) out.push(p);
  }
  return out;
}

/** The paths with repeats removed (the first occurrence stays), and how many were removed. */
export function uniquePaths(paths: string[]): { paths: string[]; repeated: number } {
  const seen = new Set<string>();
  const out: string[] = [];
  for (const p of paths) {
    if (seen.has(p)) continue;
    seen.add(p);
    out.push(p);
  }
  return { paths: out, repeated: paths.length - out.length };
}

// ---------------------------------------------------------------------------------------------------------
// Sharding: one deterministic slice of the inputs per machine, for the schedulers people already run.

/** Shard `index` of `count`, counted from 1 as Playwright's and Jest's --shard do; `from` says who set it. */
export interface Shard {
  index: number;
  count: number;
  from: string;
}

/**
 * The shard (1 to count) a path belongs to: the first 8 bytes of sha256(path) mod count, plus 1, the path
 * taken as its bytes (UTF-8; a name that is not UTF-8 as stored, see fs-names.ts).
 */
export function shardOf(path: string, count: number): number {
  const digest = createHash('sha256').update(pathBytes(path)).digest();
  return Number(digest.readBigUInt64BE(0) % BigInt(count)) + 1;
}

/**
 * Whether a path is in the shard: what collectInputs keeps for a sharded run, in the inputs' order.
 * Membership depends on the path alone, not on its position or on the other inputs, so adding files
 * elsewhere never moves a file to another shard, and every shard of a run sees the same split as long as all
 * are given the same inputs spelt the same way.
 */
export function inShard(shard: Shard): (path: string) => boolean {
  return shard.count === 1 ? () => true : (p) => shardOf(p, shard.count) === shard.index;
}

function checkedShard(index: number, count: number, from: string): Shard {
  if (index < 1 || index > count) throw new UsageError(`${from} gives shard ${index} of ${count}; shards go from 1 to ${count}`);
  return { index, count, from };
}

/** `--shard K/N` (K from 1 to N). */
export function parseShard(spec: string): Shard {
  const m = /^\s*(\d+)\s*\/\s*(\d+)\s*$/.exec(spec);
  if (!m) throw new UsageError(`--shard takes K/N (shard K of N, counted from 1, e.g. 2/8), not "${spec}"`);
  return checkedShard(Number(m[1]), wholeNumber(m[2], '--shard N', 1), '--shard');
}

const set = (v: string | undefined): v is string => v !== undefined && v !== '';

/**
 * The shard of this process, or null for all inputs:
 * 1. `--shard K/N`;
 * 2. a Kubernetes Indexed Job: `JOB_COMPLETION_INDEX` (0-based, set by Kubernetes) is shard index + 1. Kubernetes
 *    sets no variable with the number of completions, so the count comes from `--shard-count N` or the
 *    environment variable `VIT_SHARD_COUNT` (set it in the manifest next to `completions`);
 * 3. a Slurm job array: `SLURM_ARRAY_TASK_ID` with `SLURM_ARRAY_TASK_MIN`, `SLURM_ARRAY_TASK_STEP` (default 1)
 *    and `SLURM_ARRAY_TASK_COUNT`: K = (ID − MIN) / STEP + 1 and N = COUNT (or --shard-count / VIT_SHARD_COUNT).
 * `--shard 1/1` runs everything whatever the environment says. Bad values are UsageErrors.
 */
export function resolveShard(opts: { shard?: string; shardCount?: number }, env: NodeJS.ProcessEnv = process.env): Shard | null {
  if (opts.shard !== undefined) {
    if (opts.shardCount !== undefined) throw new UsageError('--shard K/N already says the count: leave out --shard-count');
    return parseShard(opts.shard);
  }
  const countFrom = (fallback?: { value: string | undefined; name: string }): number | null => {
    if (opts.shardCount !== undefined) return wholeNumber(String(opts.shardCount), '--shard-count', 1);
    if (set(env.VIT_SHARD_COUNT)) return wholeNumber(env.VIT_SHARD_COUNT, 'VIT_SHARD_COUNT', 1);
    return fallback && set(fallback.value) ? wholeNumber(fallback.value, fallback.name, 1) : null;
  };
  if (set(env.JOB_COMPLETION_INDEX)) {
    const count = countFrom();
    if (count === null) {
      throw new UsageError(
        'JOB_COMPLETION_INDEX is set (a Kubernetes Indexed Job) but the number of shards is not: pass --shard-count N or ' +
        'set VIT_SHARD_COUNT to the job\'s completions (or --shard 1/1 to process every input)',
      );
    }
    return checkedShard(wholeNumber(env.JOB_COMPLETION_INDEX, 'JOB_COMPLETION_INDEX', 0) + 1, count, 'JOB_COMPLETION_INDEX');
  }
  if (set(env.SLURM_ARRAY_TASK_ID)) {
    const id = wholeNumber(env.SLURM_ARRAY_TASK_ID, 'SLURM_ARRAY_TASK_ID', 0);
    const min = set(env.SLURM_ARRAY_TASK_MIN) ? wholeNumber(env.SLURM_ARRAY_TASK_MIN, 'SLURM_ARRAY_TASK_MIN', 0) : 0;
    const step = set(env.SLURM_ARRAY_TASK_STEP) ? wholeNumber(env.SLURM_ARRAY_TASK_STEP, 'SLURM_ARRAY_TASK_STEP', 1) : 1;
    const count = countFrom({ value: env.SLURM_ARRAY_TASK_COUNT, name: 'SLURM_ARRAY_TASK_COUNT' });
    if (count === null) throw new UsageError('SLURM_ARRAY_TASK_ID is set but SLURM_ARRAY_TASK_COUNT is not: pass --shard-count N');
    if (id < min || (id - min) % step !== 0) {
      throw new UsageError(`SLURM_ARRAY_TASK_ID ${id} is not MIN ${min} plus a multiple of STEP ${step}: use a plain range (--array=0-${count - 1}) or --shard K/N`);
    }
    return checkedShard((id - min) / step + 1, count, 'SLURM_ARRAY_TASK_ID');
  }
  if (opts.shardCount !== undefined) {
    throw new UsageError('--shard-count goes with JOB_COMPLETION_INDEX or SLURM_ARRAY_TASK_ID in the environment; otherwise use --shard K/N');
  }
  return null;
}

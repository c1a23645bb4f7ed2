import { existsSync, mkdirSync, rmSync, statSync, symlinkSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, isAbsolute, join, relative } from 'node:path';
import { ModelError, UsageError } from '../errors.js';
import { replaceFile } from './atomic-file.js';
import type { Timeouts } from './http.js';
import { FILE_LIMITS, readFailure, readRegularText } from './regular-file.js';

/**
 * The on-disk cache shared with huggingface_hub (and transformers, timm, @huggingface/hub): one folder per
 * repository, `models--ORG--NAME/{blobs/<etag>, snapshots/<commit>/<file> → ../../blobs/<etag>, refs/<revision>}`,
 * plus `.no_exist/<commit>/<file>` markers for optional files the hub does not have. Reading and writing the
 * same layout means a model downloaded by either side is reused by the other.
 */

/** Where the hub is and how we may talk to it, from the same environment variables huggingface_hub reads. */
export interface HubSettings {
  cacheDir: string;
  /** Without a trailing slash, e.g. https://huggingface.co. */
  endpoint: string;
  token: string | null;
  offline: boolean;
  /** Limits on every wait; default: hubTimeouts({}) (huggingface_hub's 10 s). */
  timeouts?: HubTimeouts;
}

/** `metadata` for the model-info API and HEAD requests, `download` for the GETs of file bodies. */
export interface HubTimeouts {
  metadata: Timeouts;
  download: Timeouts;
}

/**
 * The environment variables, in seconds (fractions allowed) except VIT_HUB_MIN_RATE in bytes per second.
 * HF_HUB_ETAG_TIMEOUT and HF_HUB_DOWNLOAD_TIMEOUT are huggingface_hub's own (10 s by default there too):
 * each bounds the connect, the wait for headers and every wait for the next body bytes of its requests.
 */
export const TIMEOUT_ENV = {
  metadata: 'HF_HUB_ETAG_TIMEOUT',
  download: 'HF_HUB_DOWNLOAD_TIMEOUT',
  minRate: 'VIT_HUB_MIN_RATE',
  rateWindow: 'VIT_HUB_RATE_WINDOW',
} as const;

const TIMEOUT_DEFAULTS = { metadata: 10, download: 10, minRate: 1024, rateWindow: 30 };

function positiveNumber(env: NodeJS.ProcessEnv, name: string, fallback: number): number {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  const v = Number(raw);
  if (!Number.isFinite(v) || v <= 0) throw new UsageError(`${name} must be a positive number, not "${raw}"`);
  return v;
}

export function hubTimeouts(env: NodeJS.ProcessEnv = process.env): HubTimeouts {
  const minRate = positiveNumber(env, TIMEOUT_ENV.minRate, TIMEOUT_DEFAULTS.minRate);
  const rateWindowMs = positiveNumber(env, TIMEOUT_ENV.rateWindow, TIMEOUT_DEFAULTS.rateWindow) * 1000;
  const phase = (name: string, fallback: number): Timeouts => {
    const ms = positiveNumber(env, name, fallback) * 1000;
    return { connectMs: ms, headersMs: ms, idleMs: ms, minRate, rateWindowMs };
  };
  return { metadata: phase(TIMEOUT_ENV.metadata, TIMEOUT_DEFAULTS.metadata), download: phase(TIMEOUT_ENV.download, TIMEOUT_DEFAULTS.download) };
}

const TRUE_VALUES = new Set(['1', 'ON', 'YES', 'TRUE']);
const isTrue = (v: string | undefined) => v !== undefined && TRUE_VALUES.has(v.toUpperCase());

/** `~` and `$VAR` / `${VAR}` expansion as Python's expanduser + expandvars do (unknown variables stay as written). */
function expandPath(p: string, env: NodeJS.ProcessEnv): string {
  const vars = p.replace(/\$(\w+)|\$\{(\w+)\}/g, (whole, a: string | undefined, b: string | undefined) => env[(a ?? b)!] ?? whole);
  return vars === '~' || vars.startsWith('~/') ? join(homedir(), vars.slice(1)) : vars;
}

export function hubSettings(env: NodeJS.ProcessEnv = process.env): HubSettings {
  const nonEmpty = (v: string | undefined) => (v === undefined || v === '' ? undefined : v);
  const hfHome = expandPath(nonEmpty(env.HF_HOME) ?? join(nonEmpty(env.XDG_CACHE_HOME) ?? join(homedir(), '.cache'), 'huggingface'), env);
  const cacheDir = expandPath(nonEmpty(env.HF_HUB_CACHE) ?? nonEmpty(env.HUGGINGFACE_HUB_CACHE) ?? join(hfHome, 'hub'), env);
  const endpoint = (nonEmpty(env.HF_ENDPOINT) ?? 'https://huggingface.co').replace(/\/+$/, '');
  return {
    cacheDir, endpoint, token: readToken(env, hfHome), offline: isTrue(env.HF_HUB_OFFLINE || env.TRANSFORMERS_OFFLINE),
    timeouts: hubTimeouts(env),
  };
}

/** HF_TOKEN, else the file `huggingface-cli login` writes ($HF_TOKEN_PATH, default $HF_HOME/token). */
function readToken(env: NodeJS.ProcessEnv, hfHome: string): string | null {
  const fromEnv = (env.HF_TOKEN || env.HUGGING_FACE_HUB_TOKEN)?.trim();
  if (fromEnv) return fromEnv;
  try {
    return readRegularText(expandPath(env.HF_TOKEN_PATH || join(hfHome, 'token'), env), FILE_LIMITS.small).trim() || null;
  } catch {
    return null;
  }
}

/** A repository id and the revision asked for. */
export interface HubRef {
  repo: string;
  revision: string;
}

const NAME_PART = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;
const REVISION = /^[A-Za-z0-9][A-Za-z0-9._/+-]*$/;

function validPart(p: string): boolean {
  return NAME_PART.test(p) && !p.includes('--') && !p.includes('..') && p.length <= 96;
}

/**
 * A branch, tag, commit or `refs/pr/N`. Nested names (feature/x) are kept as written: they are quoted as one
 * URL path segment (feature%2Fx) and stored as nested files under refs/, as huggingface_hub does; no part
 * may be empty or start with a dot, so refs/<revision> stays inside the cache.
 */
export function isRevision(r: string): boolean {
  return REVISION.test(r) && r.length <= 255 && r.split('/').every((p) => p !== '' && !p.startsWith('.'));
}

/** Python's urllib.parse.quote(s, safe=""): encodeURIComponent also escapes ! ' ( ) *. */
export function quoteAll(s: string): string {
  return encodeURIComponent(s).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
}

/** True when `s` reads as ORG/NAME[@REV] and not as a preset: a short all-digit name (B/17) is a mistyped preset. */
export function isHubId(s: string): boolean {
  const m = /^([^/@]+)\/([^/@]+)(?:@(.+))?$/.exec(s);
  return m !== null && validPart(m[1]) && validPart(m[2]) && !/^\d+$/.test(m[2]) && (m[3] === undefined || isRevision(m[3]));
}

/** "ORG/NAME" (+ optional "@REV", or the revision given separately) → repo and revision; a malformed id is a usage error. */
export function parseHubId(s: string, revision?: string): HubRef {
  const [repo, atRev] = s.split('@', 2) as [string, string | undefined];
  const parts = repo.split('/');
  if (parts.length !== 2 || !parts.every(validPart)) {
    throw new UsageError(`"${s}" is not a hub model id: expected ORG/NAME (letters, digits, "-", "_", "."), e.g. google/vit-base-patch16-224`);
  }
  const rev = revision ?? atRev ?? 'main';
  if (!isRevision(rev)) throw new UsageError(`"${rev}" is not a revision: expected a branch, tag, commit hash or refs/pr/N`);
  return { repo, revision: rev };
}

export const isCommitHash = (s: string) => /^[0-9a-f]{40}$/.test(s);

/** A file name from the hub (a listing or a shard index) as a safe relative path inside a snapshot. */
export function checkRepoPath(file: string, repo: string): string {
  if (file === '' || isAbsolute(file) || file.includes('\\') || file.split('/').some((p) => p === '..' || p === '' || p === '.')) {
    throw new ModelError(`${repo}: refusing the file name "${file}" (it would leave the snapshot directory)`);
  }
  return file;
}

/** One repository's folder in the cache. */
export class RepoCache {
  readonly dir: string;

  constructor(cacheDir: string, readonly repo: string) {
    this.dir = join(cacheDir, `models--${repo.split('/').join('--')}`);
  }

  blobPath(etag: string): string {
    return join(this.dir, 'blobs', etag);
  }

  snapshotDir(commit: string): string {
    return join(this.dir, 'snapshots', commit);
  }

  /** The commit a revision stands for: itself when it is a hash, else what refs/<revision> says (null if unknown). */
  commitFor(revision: string): string | null {
    if (isCommitHash(revision)) return revision;
    try {
      const c = readRegularText(join(this.dir, 'refs', revision), FILE_LIMITS.small).trim();
      return isCommitHash(c) ? c : null;
    } catch {
      return null;
    }
  }

  writeRef(revision: string, commit: string): void {
    if (revision === commit) return;
    atomicWrite(join(this.dir, 'refs', revision), commit);
  }

  /** True when the snapshot has the file and its blob is there (a dangling link does not count). */
  has(commit: string, file: string): boolean {
    try {
      return statSync(join(this.snapshotDir(commit), file)).isFile();
    } catch {
      return false;
    }
  }

  /** The hub said this optional file does not exist at this commit. */
  knownMissing(commit: string, file: string): boolean {
    return existsSync(join(this.dir, '.no_exist', commit, file));
  }

  markMissing(commit: string, file: string): void {
    atomicWrite(join(this.dir, '.no_exist', commit, file), '');
  }

  /** snapshots/<commit>/<file> → the blob, as a relative link so the cache folder can be moved. */
  link(commit: string, file: string, etag: string): void {
    const pointer = join(this.snapshotDir(commit), file);
    mkdirSync(dirname(pointer), { recursive: true });
    rmSync(pointer, { force: true }); // a previous, possibly dangling, link
    symlinkSync(relative(dirname(pointer), this.blobPath(etag)), pointer);
  }
}

/** Write through a temporary name so a reader never sees half a file. */
function atomicWrite(path: string, text: string): void {
  mkdirSync(dirname(path), { recursive: true });
  replaceFile(path, { bytes: text });
}

/** Weight files in the order a snapshot's weights are chosen (the sharded index names its shards). */
export const HUB_WEIGHT_FILES = ['model.safetensors', 'model.safetensors.index.json', 'pytorch_model.bin', 'pytorch_model.bin.index.json'];

/** A shard index from the cache: a regular file of bounded size, as every JSON file read. */
export function readIndex(path: string, repo: string): string {
  try {
    return readRegularText(path, FILE_LIMITS.index);
  } catch (e) {
    throw new ModelError(`${repo}: cannot read ${path}: ${readFailure(e)}`);
  }
}

/** The shard files a sharded checkpoint's index names, in first-use order. */
export function shardsOf(indexJson: string, repo: string, indexFile: string): string[] {
  let map: unknown;
  try {
    map = (JSON.parse(indexJson) as { weight_map?: unknown }).weight_map;
  } catch (e) {
    throw new ModelError(`${repo}/${indexFile}: not JSON (${(e as Error).message})`);
  }
  if (typeof map !== 'object' || map === null) throw new ModelError(`${repo}/${indexFile}: expected a "weight_map" object of tensor name → shard file`);
  return [...new Set(Object.values(map).map((f) => checkRepoPath(String(f), repo)))];
}

/**
 * The snapshot directory when the cache holds a usable model for this revision: config.json plus weights (one
 * file, or an index with every shard). `configOnly` accepts a snapshot without weights (offline, for commands
 * that need only the config).
 */
export function cachedSnapshot(cache: RepoCache, revision: string, configOnly = false): string | null {
  const commit = cache.commitFor(revision);
  if (!commit || !cache.has(commit, 'config.json')) return null;
  const dir = cache.snapshotDir(commit);
  for (const w of HUB_WEIGHT_FILES) {
    if (!cache.has(commit, w)) continue;
    if (!w.endsWith('.index.json')) return dir;
    const shards = shardsOf(readIndex(join(dir, w), cache.repo), cache.repo, w);
    if (shards.every((s) => cache.has(commit, s))) return dir;
  }
  return configOnly ? dir : null;
}

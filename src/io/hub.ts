import { createHash } from 'node:crypto';
import { constants, createReadStream } from 'node:fs';
import { lstat, mkdir, open, readFile, rename, rm, stat, truncate, utimes } from 'node:fs/promises';
import { hostname } from 'node:os';
import { dirname, join } from 'node:path';
import { ModelError } from '../errors.js';
import { onnxExportNote } from './checkpoint-files.js';
import { HttpError, httpRequest, type HttpResponse, type Timeouts } from './http.js';
import {
  cachedSnapshot, checkRepoPath, HUB_WEIGHT_FILES, hubSettings, hubTimeouts, isHubId, parseHubId, quoteAll, readIndex, RepoCache,
  shardsOf, TIMEOUT_ENV, type HubSettings, type HubTimeouts,
} from './hub-cache.js';
import { FILE_LIMITS } from './regular-file.js';
import { alive } from './sinks/target.js';

/**
 * Downloads from the Hugging Face Hub into the shared cache (see hub-cache.ts), the way huggingface_hub does:
 * the model-info API names the commit and the files, a HEAD on each file's resolve URL gives its ETag (the
 * sha256 for LFS files), and a GET that follows redirects streams it into blobs/<etag>.incomplete, resumed with
 * a Range request after a dropped connection, checked, then moved into place and linked from the snapshot.
 */

/** Progress of one file's download; fetchModel calls start once per file, then update, then stop. */
export interface DownloadProgress {
  start(file: string, totalBytes: number | null, doneBytes: number): void;
  update(doneBytes: number): void;
  stop(): void;
}

export interface FetchOptions {
  /** Branch, tag or commit; default: the one in the id (ORG/NAME@REV), else main. */
  revision?: string;
  settings?: HubSettings;
  /** Attempts per file when the connection drops mid-body; every retry resumes where the last one stopped. */
  attempts?: number;
  progress?: DownloadProgress;
  note?: (msg: string) => void;
}

export interface FetchedModel {
  repo: string;
  revision: string;
  commit: string;
  /** The snapshot directory: a model directory (config.json + weights) like any other. */
  dir: string;
  /** Files newly downloaded by this call (empty when everything came from the cache). */
  downloaded: string[];
}

/** The hub has no such repository, revision or file (or, offline, the cache has not). */
export class HubNotFoundError extends ModelError {}

/** No connection to the endpoint at all (as opposed to an answer we did not like). */
class HubUnreachableError extends ModelError {}

/**
 * The body stopped before its end; `bytes` of the file are on disk in the .incomplete file, all consistent
 * with what the server announced, so a later run resumes from there. `retry`: worth another attempt in this
 * run (a dropped connection), not for a server that stalls or trickles (it would do it again).
 */
class Interrupted extends Error {
  constructor(readonly bytes: number, readonly reason: string, readonly retry: boolean) {
    super(reason);
  }
}

/** The model-info answer lists every file of the repository; even huge repositories take a few MB. */
const MAX_INFO_BYTES = 64 * 2 ** 20;

/** Which environment variable sets the limit an HttpError ran into, for the message. */
function limitHint(e: HttpError, phase: keyof HubTimeouts): string {
  if (e.kind === 'slow') return ` (${TIMEOUT_ENV.minRate}, ${TIMEOUT_ENV.rateWindow})`;
  return e.kind === 'connect' || e.kind === 'headers' || e.kind === 'idle' ? ` (${TIMEOUT_ENV[phase]})` : '';
}

interface FileMeta {
  /** Blob name: the sha256 for LFS files, the git blob sha1 for small ones. */
  etag: string;
  /** The expected sha256 when the hub gave one (LFS files), else null. */
  sha256: string | null;
  size: number | null;
  url: string;
}

const REDIRECT = new Set([301, 302, 303, 307, 308]);
/** Answers worth asking again (huggingface_hub's http_backoff retries these): timeout, rate limit, server errors. */
const RETRY_STATUS = new Set([408, 429, 500, 502, 503, 504]);
/** Waits before each retry when the server gives no Retry-After: 1, 2, 4, 8 s (huggingface_hub's backoff). */
const RETRY_WAITS_S = [1, 2, 4, 8];
/** A server's Retry-After is followed up to this long. */
const MAX_RETRY_AFTER_S = 60;

/** Milliseconds to wait: the Retry-After header's (seconds or an HTTP date), capped, else the backoff's. */
export function retryWaitMs(header: string | null, fallbackS: number, now = Date.now()): number {
  if (header !== null && /^\s*\d+\s*$/.test(header)) return Math.min(Number(header), MAX_RETRY_AFTER_S) * 1000;
  const at = header === null ? NaN : Date.parse(header);
  if (Number.isFinite(at)) return Math.min(Math.max(at - now, 0), MAX_RETRY_AFTER_S * 1000);
  return fallbackS * 1000;
}
const isAbsoluteUrl = (loc: string) => /^[a-z][a-z0-9+.-]*:|^\/\//i.test(loc);

/** ETag header → blob name: weak prefix and quotes removed, and only characters that are safe as a file name. */
function blobName(etag: string | null): string | null {
  const e = etag?.replace(/^W\//, '').replace(/^"|"$/g, '');
  return e && /^[A-Za-z0-9._-]+$/.test(e) && !e.startsWith('.') ? e : null;
}

function statusError(status: number, what: string, url: string): ModelError {
  if (status === 401) return new ModelError(`authentication required: set HF_TOKEN (private or gated repository, or a mistyped name: ${what})`);
  if (status === 403) return new ModelError(`access denied to ${what}: the token lacks access (gated model? accept its terms on the hub)`);
  if (status === 404) return new HubNotFoundError(`repository or file not found: ${what}`);
  return new ModelError(`the hub answered HTTP ${status} for ${what}${url ? ` (${url})` : ''}`);
}

/** Talks to one endpoint; the token goes only to that endpoint's origin, never to a CDN it redirects to. */
class HubClient {
  private readonly origin: string;
  readonly timeouts: HubTimeouts;

  constructor(private readonly s: HubSettings) {
    this.origin = new URL(s.endpoint).origin;
    this.timeouts = s.timeouts ?? hubTimeouts({});
  }

  private headers(url: string, extra: Record<string, string>): Record<string, string> {
    // identity: byte offsets of Range requests and the announced sizes must refer to the file itself.
    const h: Record<string, string> = { 'User-Agent': 'vit', 'Accept-Encoding': 'identity', ...extra };
    if (this.s.token && new URL(url).origin === this.origin) h.Authorization = `Bearer ${this.s.token}`;
    return h;
  }

  /**
   * One request, following redirects by hand so the token policy holds on every hop. With `followAbsolute`
   * false (metadata requests), only relative redirects (renamed repositories) are followed: an absolute one
   * points at the file storage and carries the metadata itself, as huggingface_hub expects.
   */
  async request(url: string, method: 'GET' | 'HEAD', opts: { headers?: Record<string, string>; followAbsolute: boolean; phase: keyof HubTimeouts }): Promise<HttpResponse> {
    const limits: Timeouts = this.timeouts[opts.phase];
    for (let retry = 0; ; retry++) {
      const res = await this.follow(url, method, opts, limits);
      if (!RETRY_STATUS.has(res.status) || retry >= RETRY_WAITS_S.length) return res;
      res.discard();
      // As huggingface_hub's http_backoff: busy or failing servers are asked again, after their Retry-After.
      await new Promise((r) => setTimeout(r, retryWaitMs(res.headers.get('retry-after'), RETRY_WAITS_S[retry])));
    }
  }

  /** One request, its redirects followed (see request). */
  private async follow(url: string, method: 'GET' | 'HEAD', opts: { headers?: Record<string, string>; followAbsolute: boolean; phase: keyof HubTimeouts }, limits: Timeouts): Promise<HttpResponse> {
    for (let hop = 0; ; hop++) {
      let res: HttpResponse;
      try {
        res = await httpRequest(url, method, this.headers(url, opts.headers ?? {}), limits);
      } catch (e) {
        if (!(e instanceof HttpError)) throw e;
        // Nothing was answered: as huggingface_hub does, a model already in the cache can still be served.
        throw new HubUnreachableError(`${e.message}${limitHint(e, opts.phase)}; set HF_HUB_OFFLINE=1 to use only the cache`);
      }
      const loc = res.headers.get('location');
      if (!REDIRECT.has(res.status) || !loc || (!opts.followAbsolute && isAbsoluteUrl(loc))) return res;
      res.discard();
      if (hop === 10) throw new ModelError(`too many redirects from ${url}`);
      url = new URL(loc, url).href;
    }
  }

  /** As huggingface_hub's hf_hub_url: the revision quoted as one path segment (refs/pr/1 → refs%2Fpr%2F1). */
  resolveUrl(repo: string, revision: string, file: string): string {
    return `${this.s.endpoint}/${repo}/resolve/${quoteAll(revision)}/${file.split('/').map(encodeURIComponent).join('/')}`;
  }

  /**
   * A fetch for @huggingface/hub's API calls, over request(): the same headers, token policy and limits, and
   * an answer read whole (at most MAX_INFO_BYTES) before the library parses it.
   */
  private apiFetch = async (input: string | URL | Request): Promise<Response> => {
    const res = await this.request(input instanceof Request ? input.url : String(input), 'GET', { followAbsolute: true, phase: 'metadata' });
    let body: Buffer;
    try {
      body = await res.bytes(MAX_INFO_BYTES);
    } catch (e) {
      if (!(e instanceof HttpError)) throw e;
      throw new ModelError(`the hub's model-info answer stopped: ${e.message}${limitHint(e, 'metadata')}`);
    }
    return new Response(res.status === 204 || res.status === 304 ? null : new Uint8Array(body), { status: res.status, headers: res.headers });
  };

  /** The commit a revision points at and the repository's file list, from the model-info API. */
  async info(repo: string, revision: string): Promise<{ commit: string; files: string[] }> {
    // Imported here so commands that never touch the hub do not load it.
    const hub = await import('@huggingface/hub');
    try {
      const info = await hub.modelInfo({
        name: repo,
        revision,
        hubUrl: this.s.endpoint,
        additionalFields: ['sha', 'filePaths'],
        // Our fetch, so the API call gets the same headers, token policy and limits as the downloads.
        fetch: this.apiFetch,
      });
      if (typeof info.sha !== 'string' || !/^[0-9a-f]{40}$/.test(info.sha)) {
        throw new ModelError(`the hub's model info for ${repo}@${revision} has no commit hash ("sha")`);
      }
      const files: unknown = info.filePaths ?? [];
      if (!Array.isArray(files) || files.some((f) => typeof f !== 'string')) {
        throw new ModelError(`the hub's model info for ${repo}@${revision} has no list of file names ("filePaths")`);
      }
      return { commit: info.sha, files: files as string[] };
    } catch (e) {
      if (e instanceof hub.HubApiError) throw statusError(e.statusCode, `${repo}@${revision}`, e.url);
      // The library reading an answer of the wrong shape (siblings that are not a list, say).
      if (e instanceof TypeError) throw new ModelError(`the hub's model info for ${repo}@${revision} is not in the form the hub's API has (${e.message})`);
      throw e;
    }
  }

  /** HEAD on the resolve URL: where the file is and what its blob is called; null when the hub has no such file. */
  async head(repo: string, commit: string, file: string, what: string): Promise<FileMeta | null> {
    const url = this.resolveUrl(repo, commit, file);
    const res = await this.request(url, 'HEAD', { followAbsolute: false, phase: 'metadata' });
    res.discard();
    if (res.status === 404) return null;
    if (!res.ok && !REDIRECT.has(res.status)) throw statusError(res.status, what, url);
    const linked = res.headers.get('x-linked-etag');
    const etag = blobName(linked ?? res.headers.get('etag'));
    if (!etag) throw new ModelError(`the hub sent no usable ETag for ${what}, so it cannot be placed in the cache`);
    const sizeHeader = res.headers.get('x-linked-size') ?? (res.ok ? res.headers.get('content-length') : null);
    const size = sizeHeader !== null && /^\d+$/.test(sizeHeader) ? Number(sizeHeader) : null;
    return { etag, sha256: linked && /^[0-9a-f]{64}$/.test(etag) ? etag : null, size, url };
  }
}

/** Files from this size on get a note and a progress bar; config files are not worth a line each. */
export const LARGE_FILE = 2 ** 20;

function formatBytes(n: number): string {
  return n >= 2 ** 30 ? `${(n / 2 ** 30).toFixed(2)} GiB` : `${(n / 2 ** 20).toFixed(1)} MiB`;
}

/** Whether a regular file is at `path` (a blob in place). */
async function isFileAt(path: string): Promise<boolean> {
  return stat(path).then((st) => st.isFile(), () => false);
}

async function fileSize(path: string): Promise<number> {
  try {
    return (await stat(path)).size;
  } catch {
    return 0;
  }
}

/**
 * The bytes of a partial download to continue: 0 when there is none, or when what has its name is not a
 * regular file, which is removed. In a cache shared between users someone may have put a symbolic link there:
 * appending through it would write into the file it points to (as root, any file).
 */
async function partialSize(path: string): Promise<number> {
  const st = await lstat(path).catch(() => null);
  if (st === null) return 0;
  if (st.isFile()) return st.size;
  await rm(path, { force: true, recursive: true });
  return 0;
}

async function sha256File(path: string): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of createReadStream(path)) h.update(chunk as Buffer);
  return h.digest('hex');
}

/** First byte of a 206 answer's Content-Range ("bytes 100-199/200"), or null. */
function rangeStart(res: HttpResponse): number | null {
  const m = /^bytes (\d+)-/.exec(res.headers.get('content-range') ?? '');
  return m ? Number(m[1]) : null;
}

/** The most a JSON file of a snapshot may hold (as when it is read, regular-file.ts), or null for weights. */
function jsonLimit(file: string): number | null {
  if (file.endsWith('.index.json')) return FILE_LIMITS.index;
  return file.endsWith('.json') ? FILE_LIMITS.config : null;
}

/**
 * Where the answer's own headers contradict the size the HEAD announced (X-Linked-Size / Content-Length):
 * the body cannot then be the file, and a partial written from such a server is not kept.
 */
function sizeMismatch(res: HttpResponse, size: number | null, start: number): string | null {
  if (size === null) return null;
  const length = res.headers.get('content-length');
  if (length !== null && Number(length) !== size - start) {
    return `the server announced ${size} bytes but this answer carries ${length}${start > 0 ? ` from byte ${start}` : ''}`;
  }
  const total = /\/(\d+)$/.exec(res.headers.get('content-range') ?? '')?.[1];
  return total !== undefined && Number(total) !== size ? `the server announced ${size} bytes but its Content-Range says ${total}` : null;
}

/**
 * One GET into the .incomplete file, appending when the server honours our Range request. The body is cut
 * off at the announced size: a server sending more is refused and nothing it sent is kept.
 */
async function downloadOnce(client: HubClient, meta: FileMeta, incomplete: string, file: string, what: string, progress?: DownloadProgress): Promise<void> {
  let start = await partialSize(incomplete);
  if (meta.size !== null && start > meta.size) start = 0; // a stale partial of something else: start over
  if (meta.size !== null && start === meta.size && start > 0) return; // finished last time, never moved into place
  const res = await client.request(meta.url, 'GET', { headers: start > 0 ? { Range: `bytes=${start}-` } : {}, followAbsolute: true, phase: 'download' });
  if (res.status === 416) {
    res.discard();
    await truncate(incomplete, 0);
    throw new Interrupted(0, 'the server refused to resume the partial file', true);
  }
  if (!res.ok) {
    res.discard();
    throw statusError(res.status, what, meta.url);
  }
  // A 200 to a Range request (or a range that starts elsewhere) is the whole file: write it from the start.
  if (start > 0 && !(res.status === 206 && rangeStart(res) === start)) start = 0;
  const mismatch = sizeMismatch(res, meta.size, start);
  if (mismatch) {
    res.discard();
    await rm(incomplete, { force: true });
    throw new ModelError(`${what}: ${mismatch}; refused, and the partial download was deleted`);
  }
  // Without an announced size, only JSON files (the configs and indexes) have a known bound.
  const limit = meta.size !== null ? meta.size - start : jsonLimit(file) ?? Number.MAX_SAFE_INTEGER;
  // Never through a link (see partialSize): O_NOFOLLOW fails (ELOOP) on one planted since.
  const fh = await open(incomplete, constants.O_WRONLY | constants.O_CREAT | constants.O_NOFOLLOW | (start > 0 ? constants.O_APPEND : constants.O_TRUNC), 0o644);
  let done = start;
  let overflow: HttpError | null = null;
  progress?.start(file, meta.size, done);
  try {
    for await (const chunk of res.chunks(limit)) {
      await fh.write(chunk);
      done += chunk.length;
      progress?.update(done);
    }
  } catch (e) {
    if (!(e instanceof HttpError)) throw e;
    if (e.kind !== 'overflow') throw new Interrupted(done, `${e.message}${limitHint(e, 'download')}`, e.kind === 'network');
    overflow = e;
  } finally {
    await fh.close();
    progress?.stop();
  }
  if (overflow) {
    await rm(incomplete, { force: true });
    const announced = meta.size === null ? `more than the ${limit} bytes such a file can have` : `more than the ${meta.size} bytes it announced`;
    throw new ModelError(`${what}: the server sent ${announced}; stopped there, and the partial download was deleted`);
  }
}

interface FileJob {
  client: HubClient;
  cache: RepoCache;
  repo: string;
  revision: string;
  commit: string;
  opts: FetchOptions;
}

/**
 * Make snapshots/<commit>/<file> exist: from the snapshot, from a blob another revision (or Python) left, or by
 * downloading. Returns 'cached', 'downloaded' or 'missing' (an optional file the hub does not have).
 */
async function ensureFile(job: FileJob, file: string, optional: boolean): Promise<'cached' | 'downloaded' | 'missing'> {
  const { client, cache, repo, commit, opts } = job;
  if (cache.has(commit, file)) return 'cached';
  if (optional && cache.knownMissing(commit, file)) return 'missing';
  const what = `${repo}@${job.revision}/${file}`;
  const meta = await client.head(repo, commit, file, what);
  if (!meta) {
    if (!optional) throw new HubNotFoundError(`repository or file not found: ${what}`);
    cache.markMissing(commit, file);
    return 'missing';
  }
  const cap = jsonLimit(file);
  if (cap !== null && meta.size !== null && meta.size > cap) {
    throw new ModelError(`${what}: the hub announces ${meta.size} bytes, more than the ${cap} such a file can have; not downloaded`);
  }
  const blob = cache.blobPath(meta.etag);
  if (await isFileAt(blob)) {
    cache.link(commit, file, meta.etag);
    return 'cached';
  }
  await mkdir(dirname(blob), { recursive: true });
  const lock = await lockBlob(blob, what, opts.note);
  try {
    // Another process may have finished it while this one waited for the lock.
    if (await isFileAt(blob)) {
      cache.link(commit, file, meta.etag);
      return 'cached';
    }
    await download(job, meta, blob, file, what);
  } finally {
    await lock.release();
  }
  cache.link(commit, file, meta.etag);
  return 'downloaded';
}

/** How often a lock holder touches its lock, and how long an untouched lock is trusted. */
const LOCK_BEAT_MS = 5_000;
const LOCK_STALE_MS = 60_000;

/**
 * One download per blob at a time, across processes sharing the cache (a Slurm array's tasks starting
 * together): `blobs/<etag>.vit.lock`, created exclusively, names its holder (host and pid) and is touched while
 * the download runs. Others wait for the blob, or take the lock over once its holder has ended (same host, no
 * such process) or has not touched it for a minute (another host). Without it, two processes appended to the
 * same .incomplete file and one could move a corrupt blob into place.
 */
async function lockBlob(blob: string, what: string, note?: (msg: string) => void): Promise<{ release(): Promise<void> }> {
  const path = `${blob}.vit.lock`;
  const me = `${hostname()} ${process.pid}`;
  let said = false;
  for (;;) {
    try {
      const fh = await open(path, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o644);
      await fh.writeFile(`${me}\n`);
      await fh.close();
      const beat = setInterval(() => void utimes(path, new Date(), new Date()).catch(() => undefined), LOCK_BEAT_MS);
      beat.unref();
      return {
        release: async () => {
          clearInterval(beat);
          await rm(path, { force: true });
        },
      };
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    }
    if (await isFileAt(blob)) return { release: async () => undefined };
    if (await staleLock(path)) {
      await rm(path, { force: true });
      continue;
    }
    if (!said) note?.(`${what}: another process is downloading it; waiting`);
    said = true;
    await new Promise((r) => setTimeout(r, 250));
  }
}

/** A lock whose holder ended (on this host) or stopped touching it (any host); a lock that is gone is stale too. */
async function staleLock(path: string): Promise<boolean> {
  try {
    const [st, text] = await Promise.all([lstat(path), readFile(path, 'utf8')]);
    const [host, pid] = text.trim().split(' ');
    if (host === hostname() && /^\d+$/.test(pid ?? '') && !alive(Number(pid))) return true;
    return Date.now() - st.mtimeMs > LOCK_STALE_MS;
  } catch {
    return true;
  }
}

/** Download a blob into place: into its .incomplete file (resumed where a run left it), checked, renamed. */
async function download(job: FileJob, meta: FileMeta, blob: string, file: string, what: string): Promise<void> {
  const { client, opts } = job;
  const incomplete = `${blob}.incomplete`;
  if (meta.size === null || meta.size >= LARGE_FILE) opts.note?.(`downloading ${what}${meta.size === null ? '' : ` (${formatBytes(meta.size)})`}`);
  const attempts = Math.max(1, opts.attempts ?? 3);
  for (let attempt = 1; ; attempt++) {
    try {
      await downloadOnce(client, meta, incomplete, file, what, opts.progress);
      break;
    } catch (e) {
      if (!(e instanceof Interrupted)) throw e;
      const total = meta.size === null ? '' : ` of ${meta.size}`;
      if (!e.retry || attempt >= attempts) {
        throw new ModelError(`download of ${what} interrupted after ${e.bytes}${total} bytes (${e.reason}); run the command again to resume`);
      }
      opts.note?.(`${what}: connection lost after ${e.bytes}${total} bytes (${e.reason}); resuming`);
      await new Promise((r) => setTimeout(r, 200 * attempt));
    }
  }
  await verify(incomplete, meta, what);
  await rename(incomplete, blob);
}

/** Size and (for LFS files) sha256 against what the hub announced; a bad file is deleted, never linked. */
async function verify(path: string, meta: FileMeta, what: string): Promise<void> {
  const size = await fileSize(path);
  if (meta.size !== null && size !== meta.size) {
    await rm(path, { force: true });
    throw new ModelError(`${what}: got ${size} bytes, the hub announced ${meta.size}; the download was deleted, run again`);
  }
  if (meta.sha256 === null) return;
  const got = await sha256File(path);
  if (got !== meta.sha256) {
    await rm(path, { force: true });
    throw new ModelError(
      `checksum mismatch for ${what}: the hub's sha256 is ${meta.sha256}, the download's is ${got}; ` +
      'the file was deleted and nothing was added to the cache',
    );
  }
}

/**
 * `vit fetch`: config.json, preprocessor_config.json when the repository has one, and the weights (single file
 * or every shard of an index) of ORG/NAME at a revision, into the cache. Offline, only the cache is consulted.
 */
export async function fetchModel(id: string, opts: FetchOptions = {}): Promise<FetchedModel> {
  const { repo, revision } = parseHubId(id, opts.revision);
  const s = opts.settings ?? hubSettings();
  const cache = new RepoCache(s.cacheDir, repo);
  if (s.offline) {
    const dir = cachedSnapshot(cache, revision);
    if (!dir) throw new HubNotFoundError(`offline (HF_HUB_OFFLINE is set) and not in cache: ${repo}@${revision} (looked in ${cache.dir})`);
    return { repo, revision, commit: cache.commitFor(revision)!, dir, downloaded: [] };
  }
  const client = new HubClient(s);
  let info: { commit: string; files: string[] };
  try {
    info = await client.info(repo, revision);
  } catch (e) {
    // As huggingface_hub does: without a connection, a model already in the cache is still served.
    const dir = e instanceof HubUnreachableError ? cachedSnapshot(cache, revision) : null;
    if (!dir) throw e;
    opts.note?.(`${(e as Error).message}; using the cached snapshot of ${repo}@${revision}`);
    return { repo, revision, commit: cache.commitFor(revision)!, dir, downloaded: [] };
  }
  const { commit, files } = info;
  const listed = new Set(files);
  if (!listed.has('config.json')) throw new ModelError(`${repo}@${revision} has no config.json (files: ${summarizeList(files)})`);
  const weights = HUB_WEIGHT_FILES.find((f) => listed.has(f));
  if (!weights) {
    throw new ModelError(`${repo}@${revision} has no weights this tool reads${onnxExportNote((f) => listed.has(f))}: expected one of ${HUB_WEIGHT_FILES.join(', ')}; files: ${summarizeList(files)}`);
  }
  const job: FileJob = { client, cache, repo, revision, commit, opts };
  const downloaded: string[] = [];
  const get = async (file: string, optional = false) => {
    if ((await ensureFile(job, checkRepoPath(file, repo), optional)) === 'downloaded') downloaded.push(file);
  };
  await get('config.json');
  if (listed.has('preprocessor_config.json')) await get('preprocessor_config.json', true);
  else cache.markMissing(commit, 'preprocessor_config.json');
  await get(weights);
  if (weights.endsWith('.index.json')) {
    for (const shard of shardsOf(readIndex(join(cache.snapshotDir(commit), weights), repo), repo, weights)) await get(shard);
  }
  cache.writeRef(revision, commit);
  return { repo, revision, commit, dir: cache.snapshotDir(commit), downloaded };
}

function summarizeList(files: string[]): string {
  if (files.length === 0) return 'none listed';
  return files.length > 12 ? `${files.slice(0, 12).join(', ')}, … (${files.length} in all)` : files.join(', ');
}

/**
 * `--model ORG/NAME[@REV]`: the cached snapshot when it is complete (no network at all), else a fetch when
 * allowed. Null for names that are not hub ids, so the caller can say what else it expected.
 */
export async function resolveHubModel(name: string, opts: Omit<FetchOptions, 'revision'> = {}): Promise<string | null> {
  if (!isHubId(name)) return null;
  const { repo, revision } = parseHubId(name);
  const s = opts.settings ?? hubSettings();
  const cache = new RepoCache(s.cacheDir, repo);
  // Offline, a snapshot with only config.json still serves commands that need no weights (summary).
  const cached = cachedSnapshot(cache, revision) ?? (s.offline ? cachedSnapshot(cache, revision, true) : null);
  if (cached) return cached;
  try {
    return (await fetchModel(name, { ...opts, settings: s })).dir;
  } catch (e) {
    if (e instanceof HubNotFoundError) {
      throw new HubNotFoundError(`${e.message} ("${name}" is not a preset or a directory either, so it was looked up on the hub)`);
    }
    throw e;
  }
}

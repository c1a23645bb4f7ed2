import { createHash } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

/**
 * A small stand-in for the Hugging Face Hub on 127.0.0.1, answering the way the real one does for the requests
 * vit makes: the model-info API (`sha`, `siblings`), resolve URLs with ETag / X-Repo-Commit, and for LFS files
 * a 302 to a "CDN" (a second server on another port) with X-Linked-Etag (sha256) and X-Linked-Size. The CDN
 * honours Range requests. Faults can be switched on per file: corrupted bodies, connections dropped mid-body,
 * Range ignored, answers that never come, bodies that stall or trickle, bodies larger than announced.
 */

export interface MockFile {
  name: string;
  body: Uint8Array;
  /** Stored with Git LFS (served through the CDN redirect); default: .safetensors and .bin files. */
  lfs?: boolean;
}

export interface MockRepo {
  id: string;
  commit: string;
  files: MockFile[];
  /** Requires `Authorization: Bearer <token>` with the hub's token. */
  private?: boolean;
  /** Branch, tag or PR names (feature/x, refs/pr/1) that point at this commit, besides main and HEAD. */
  revisions?: string[];
}

export interface LoggedRequest {
  server: 'hub' | 'cdn';
  method: string;
  path: string;
  /** The path as sent, still percent-encoded. */
  rawPath: string;
  headers: IncomingMessage['headers'];
  /** The file whose bytes this request was answered with (200 or 206), if any. */
  served?: string;
}

export const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');
/** Git's object id of a file: sha1 of "blob <size>\0" + content, the ETag the hub gives small files. */
export const gitSha1 = (b: Uint8Array) => createHash('sha1').update(`blob ${b.length}\0`).update(b).digest('hex');

export interface MockHub {
  url: string;
  cdnUrl: string;
  requests: LoggedRequest[];
  /** Serve these files with one byte flipped (same length), so only a checksum can tell. */
  corrupt: Set<string>;
  /** Close the connection after this many body bytes, for the next `times` GETs of the file. */
  dropAfter: Map<string, { bytes: number; times: number }>;
  /** Answer Range requests with 200 and the whole file, as some servers do. */
  ignoreRange: boolean;
  /** Never answer these requests (the connection stays open): 'api' for the model-info API, or file names. */
  stall: Set<string>;
  /** Send this many body bytes of the file, then nothing more, keeping the connection open. */
  stallAfter: Map<string, number>;
  /** Send the file's body `bytes` at a time, one piece every `everyMs`. */
  trickle: Map<string, { bytes: number; everyMs: number }>;
  /**
   * Send `extra` bytes beyond the file: with `announce`, a Content-Length saying so (the HEAD's size stays
   * the file's); without, chunked, so only the count of bytes received can tell.
   */
  overflow: Map<string, { extra: number; announce: boolean }>;
  /**
   * Answer the next `times` requests for 'api' (the model-info API), 'cdn' (any CDN request) or a file name
   * (its resolve URL) with this status, and a Retry-After when given, as a busy or failing server does.
   */
  busy: Map<string, { status: number; times: number; retryAfter?: string }>;
  /** The GETs answered with a file's bytes (hub or CDN), for "was it downloaded?" checks. */
  bodyGets(name?: string): LoggedRequest[];
  close(): Promise<void>;
}

const isLfs = (f: MockFile) => f.lfs ?? /\.(safetensors|bin)$/.test(f.name);

function listen(server: Server): Promise<string> {
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(`http://127.0.0.1:${(server.address() as AddressInfo).port}`)));
}

export interface MockHubOptions {
  /** The token private repositories accept. */
  token?: string;
  /** Renamed repositories, old id → new id: answered with a relative 307, as the hub does. */
  renamed?: Record<string, string>;
}

export async function startMockHub(repos: MockRepo[], opts: MockHubOptions = {}): Promise<MockHub> {
  const requests: LoggedRequest[] = [];
  const byName = new Map<string, MockFile>();
  const byOid = new Map<string, MockFile>();
  for (const repo of repos) {
    for (const file of repo.files) {
      byName.set(`${repo.id}/${file.name}`, file);
      if (isLfs(file)) byOid.set(sha256(file.body), file);
    }
  }

  const hubServer = createServer((req, res) => onHub(req, res));
  const cdnServer = createServer((req, res) => onCdn(req, res));
  const url = await listen(hubServer);
  const cdnUrl = await listen(cdnServer);

  const hub: MockHub = {
    url,
    cdnUrl,
    requests,
    corrupt: new Set(),
    dropAfter: new Map(),
    ignoreRange: false,
    stall: new Set(),
    stallAfter: new Map(),
    trickle: new Map(),
    overflow: new Map(),
    busy: new Map(),
    bodyGets: (name?: string) => requests.filter((r) => r.method === 'GET' && r.served !== undefined && (name === undefined || r.served === name)),
    close: () => Promise.all([hubServer, cdnServer].map((s) => new Promise<void>((r) => {
      s.closeAllConnections();
      s.close(() => r());
    }))).then(() => undefined),
  };

  const authorized = (req: IncomingMessage, repo: MockRepo) => !repo.private || req.headers.authorization === `Bearer ${opts.token}`;

  function json(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}) {
    const text = JSON.stringify(body);
    res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text), ...headers });
    res.end(text);
  }

  /** Answered as busy (hub.busy) if `key` has busy answers left. */
  function busy(res: ServerResponse, key: string): boolean {
    const b = hub.busy.get(key);
    if (!b || b.times <= 0) return false;
    b.times--;
    json(res, b.status, { error: 'busy' }, b.retryAfter === undefined ? {} : { 'Retry-After': b.retryAfter });
    return true;
  }

  function findRepo(id: string, rev: string): MockRepo | undefined {
    return repos.find((r) => r.id === id && (rev === 'main' || rev === 'HEAD' || rev === r.commit || r.revisions?.includes(rev)));
  }

  function log(server: LoggedRequest['server'], req: IncomingMessage, base: string): LoggedRequest {
    const rawPath = new URL(req.url!, base).pathname;
    const entry = { server, method: req.method!, path: decodeURIComponent(rawPath), rawPath, headers: req.headers };
    requests.push(entry);
    return entry;
  }

  function onHub(req: IncomingMessage, res: ServerResponse) {
    const entry = log('hub', req, url);
    const path = entry.path;
    const moved = Object.entries(opts.renamed ?? {}).find(([from]) => path.startsWith(`/${from}/`) || path.startsWith(`/api/models/${from}/`));
    if (moved) {
      res.writeHead(307, { Location: req.url!.replace(`/${moved[0]}/`, `/${moved[1]}/`), 'Content-Length': '0' });
      return res.end();
    }
    const api = /^\/api\/models\/([^/]+\/[^/]+)\/revision\/(.+)$/.exec(path);
    if (api && hub.stall.has('api')) return;
    if (api && busy(res, 'api')) return;
    if (api) {
      const repo = findRepo(api[1], api[2]);
      if (repo && !authorized(req, repo)) return json(res, 401, { error: 'Invalid credentials in Authorization header' });
      if (!repo) return json(res, 404, { error: 'Repository not found' });
      return json(res, 200, { _id: 'x', id: repo.id, sha: repo.commit, private: !!repo.private, siblings: repo.files.map((f) => ({ rfilename: f.name })) });
    }
    const resolve = /^\/([^/]+\/[^/]+)\/resolve\/([^/]+)\/(.+)$/.exec(path);
    if (!resolve) return json(res, 404, { error: 'no such route' });
    if (busy(res, resolve[3])) return;
    const repo = findRepo(resolve[1], resolve[2]);
    if (repo && !authorized(req, repo)) return json(res, 401, { error: 'Invalid credentials' }, { 'X-Error-Code': 'RepoNotFound' });
    const file = repo && byName.get(`${repo.id}/${resolve[3]}`);
    if (!repo || !file) return json(res, 404, { error: 'Entry not found' }, { 'X-Error-Code': 'EntryNotFound' });
    const headers = { 'X-Repo-Commit': repo.commit };
    if (isLfs(file)) {
      const oid = sha256(file.body);
      res.writeHead(302, {
        ...headers,
        Location: `${cdnUrl}/cdn/${oid}`,
        ETag: `"${gitSha1(new TextEncoder().encode(`version https://git-lfs.github.com/spec/v1\noid sha256:${oid}\n`))}"`,
        'X-Linked-Etag': `"${oid}"`,
        'X-Linked-Size': String(file.body.length),
        'Content-Length': '0',
      });
      return res.end();
    }
    sendBody(req, res, entry, file, { ...headers, ETag: `"${gitSha1(file.body)}"` });
  }

  function onCdn(req: IncomingMessage, res: ServerResponse) {
    const entry = log('cdn', req, cdnUrl);
    if (busy(res, 'cdn')) return;
    const file = byOid.get(entry.path.slice('/cdn/'.length));
    if (!file) return json(res, 404, { error: 'NoSuchKey' });
    sendBody(req, res, entry, file, { ETag: `"${sha256(file.body)}"` });
  }

  /** 200 or 206 (Range: bytes=N-), with the faults switched on for this file. */
  function sendBody(req: IncomingMessage, res: ServerResponse, entry: LoggedRequest, file: MockFile, headers: Record<string, string>) {
    if (hub.stall.has(file.name)) return;
    let body = file.body;
    if (hub.corrupt.has(file.name)) {
      body = Uint8Array.from(body);
      body[body.length >> 1] ^= 0xff;
    }
    const range = /^bytes=(\d+)-$/.exec(req.headers.range ?? '');
    let start = 0;
    if (range && !hub.ignoreRange) {
      start = Number(range[1]);
      if (start >= body.length) {
        res.writeHead(416, { 'Content-Range': `bytes */${body.length}` });
        return res.end();
      }
      res.writeHead(206, { ...headers, 'Content-Length': body.length - start, 'Content-Range': `bytes ${start}-${body.length - 1}/${body.length}` });
    } else if (req.method === 'GET' && hub.overflow.has(file.name)) {
      const { extra, announce } = hub.overflow.get(file.name)!;
      body = Uint8Array.from([...body, ...new Uint8Array(extra).fill(0x5a)]);
      res.writeHead(200, { ...headers, ...(announce ? { 'Content-Length': body.length } : {}) });
    } else {
      res.writeHead(200, { ...headers, 'Content-Length': body.length, 'Accept-Ranges': 'bytes' });
    }
    if (req.method === 'HEAD') return res.end();
    entry.served = file.name;
    const stallAt = hub.stallAfter.get(file.name);
    if (stallAt !== undefined) return res.write(body.subarray(start, start + stallAt));
    const trickle = hub.trickle.get(file.name);
    if (trickle) {
      let at = start;
      const timer = setInterval(() => {
        res.write(body.subarray(at, at + trickle.bytes));
        at += trickle.bytes;
        if (at >= body.length) {
          clearInterval(timer);
          res.end();
        }
      }, trickle.everyMs);
      res.on('close', () => clearInterval(timer));
      return;
    }
    const drop = hub.dropAfter.get(file.name);
    if (drop && drop.times > 0) {
      drop.times--;
      // Part of the body, then the connection goes away without finishing the announced length. The pause lets
      // the client take the bytes in first: a fetch body stream that errors drops whatever it still has queued.
      return res.write(body.subarray(start, start + drop.bytes), () => setTimeout(() => res.socket?.destroy(), 150));
    }
    res.end(body.subarray(start));
  }

  return hub;
}

/**
 * HTTP requests with every wait bounded, for the hub client. fetch (undici) gives no hook between connecting
 * and the answer, and its defaults wait 300 s for headers and 300 s between body bytes; a server that stalls
 * or trickles one byte every few seconds would hold a batch job indefinitely. Here each phase has its own
 * limit, and the body is read through a guard that also enforces a floor on the transfer rate and a hard
 * stop at the size the caller expects.
 */
import * as http from 'node:http';
import * as https from 'node:https';

export interface Timeouts {
  /** Until the TCP (and TLS) connection is up. */
  connectMs: number;
  /** From the request sent to the status line and headers. */
  headersMs: number;
  /** Between two chunks of the body. */
  idleMs: number;
  /** The body must bring at least minRate bytes per second, averaged over each window of rateWindowMs. */
  minRate: number;
  rateWindowMs: number;
}

export type HttpFailure = 'connect' | 'headers' | 'idle' | 'slow' | 'overflow' | 'network';

/** A request that failed or was stopped; `kind` says which limit (or the network) ended it. */
export class HttpError extends Error {
  constructor(message: string, readonly kind: HttpFailure) {
    super(message);
  }
}

export interface HttpResponse {
  status: number;
  ok: boolean;
  headers: Headers;
  /**
   * The body, chunk by chunk, under the idle and rate limits; more than `maxBytes` in all stops it with an
   * HttpError of kind 'overflow' before the chunk that crosses the limit is handed out.
   */
  chunks(maxBytes?: number): AsyncGenerator<Uint8Array>;
  /** The whole body (for small answers), under the same limits. */
  bytes(maxBytes: number): Promise<Buffer>;
  /** Drop the body and the connection. */
  discard(): void;
}

const seconds = (ms: number) => `${+(ms / 1000).toFixed(3)} s`;

function toHeaders(raw: http.IncomingHttpHeaders): Headers {
  const h = new Headers();
  for (const [k, v] of Object.entries(raw)) {
    if (v === undefined) continue;
    for (const one of Array.isArray(v) ? v : [v]) h.append(k, one);
  }
  return h;
}

/** Read a response body with the guards of `t`; `what` names the server in messages. */
async function* guarded(res: http.IncomingMessage, t: Timeouts, what: string, maxBytes: number): AsyncGenerator<Uint8Array> {
  const stop = (message: string, kind: HttpFailure) => res.destroy(new HttpError(message, kind));
  let idle: NodeJS.Timeout | undefined;
  let inWindow = 0;
  const floor = (t.minRate * t.rateWindowMs) / 1000;
  const rate = setInterval(() => {
    if (inWindow < floor) stop(`${what} sent ${inWindow} bytes in ${seconds(t.rateWindowMs)}, slower than the floor of ${t.minRate} bytes/s`, 'slow');
    inWindow = 0;
  }, t.rateWindowMs);
  const it = res[Symbol.asyncIterator]();
  let total = 0;
  try {
    for (;;) {
      idle = setTimeout(() => stop(`${what} sent nothing for ${seconds(t.idleMs)}`, 'idle'), t.idleMs);
      let next: IteratorResult<Buffer>;
      try {
        next = await it.next();
      } catch (e) {
        throw e instanceof HttpError ? e : new HttpError(`${what}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, 'network');
      }
      clearTimeout(idle);
      if (next.done) return;
      total += next.value.length;
      inWindow += next.value.length;
      if (total > maxBytes) throw new HttpError(`${what} sent more than the ${maxBytes} bytes expected`, 'overflow');
      yield next.value;
    }
  } finally {
    clearTimeout(idle);
    clearInterval(rate);
    if (!res.complete) res.destroy();
  }
}

/**
 * One request, no redirects followed. Resolves when the headers are in; rejects with an HttpError of kind
 * 'connect' or 'headers' when a limit passes first, or 'network' for a refused or reset connection.
 */
export function httpRequest(url: string, method: string, headers: Record<string, string>, t: Timeouts): Promise<HttpResponse> {
  const u = new URL(url);
  const client = u.protocol === 'https:' ? https : u.protocol === 'http:' ? http : null;
  if (!client) return Promise.reject(new HttpError(`unsupported URL scheme ${u.protocol} in ${url}`, 'network'));
  return new Promise((resolve, reject) => {
    // agent: false gives each request its own connection, so a stalled one cannot hold up the next.
    const req = client.request(u, { method, headers, agent: false });
    const fail = (message: string, kind: HttpFailure) => req.destroy(new HttpError(message, kind));
    let timer = setTimeout(() => fail(`no connection to ${u.origin} within ${seconds(t.connectMs)}`, 'connect'), t.connectMs);
    req.on('socket', (socket) => {
      const connected = () => {
        clearTimeout(timer);
        timer = setTimeout(() => fail(`${u.origin} accepted the connection but sent no answer within ${seconds(t.headersMs)}`, 'headers'), t.headersMs);
      };
      if (!socket.connecting) connected();
      else socket.once(u.protocol === 'https:' ? 'secureConnect' : 'connect', connected);
    });
    req.on('error', (e) => {
      clearTimeout(timer);
      reject(e instanceof HttpError ? e : new HttpError(`cannot reach ${u.origin}: ${(e as NodeJS.ErrnoException).code ?? e.message}`, 'network'));
    });
    req.on('response', (res) => {
      clearTimeout(timer);
      const status = res.statusCode ?? 0;
      const chunks = (maxBytes = Number.MAX_SAFE_INTEGER) => guarded(res, t, u.origin, maxBytes);
      resolve({
        status,
        ok: status >= 200 && status < 300,
        headers: toHeaders(res.headers),
        chunks,
        async bytes(maxBytes: number) {
          const parts: Uint8Array[] = [];
          for await (const c of chunks(maxBytes)) parts.push(c);
          return Buffer.concat(parts);
        },
        discard: () => res.destroy(),
      });
    });
    req.end();
  });
}

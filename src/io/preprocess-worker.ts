/**
 * One thread of the preprocessing pool (preprocess-pool.ts): reads, decodes, resizes and normalises images
 * into the shared batch buffer it is handed, one request at a time, and answers each with null or the reason
 * the image failed.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { InputError } from '../errors.js';
import type { Channels, Preprocess } from '../model/config.js';
import { loadImage } from './images.js';

export interface PreprocessInit {
  preprocess: Preprocess;
  size: [number, number];
  channels: Channels;
}

/**
 * One image to load into pixels[offset, ...), read from `path` or decoded from `bytes` (a tar member); a thread
 * has one request at a time, so replies need no id.
 */
export interface PreprocessRequest { path: string; bytes?: Uint8Array; pixels: Float32Array; offset: number }
export interface PreprocessReply { error: string | null }

const { preprocess, size, channels } = workerData as PreprocessInit;

function reason(e: unknown): string {
  if (e instanceof InputError) return e.message;
  return (e as Error)?.message?.split('\n')[0] ?? String(e);
}

/** Whether an image is in hand, and whether the pool asked this thread to end once it is done. */
let busy = false;
let ending = false;

function reply(error: string | null): void {
  busy = false;
  parentPort!.postMessage({ error } satisfies PreprocessReply);
  if (ending) process.exit(0);
}

/** A request, or null: end the thread, after the image in hand if there is one (see WorkerHold.end). */
parentPort!.on('message', (req: PreprocessRequest | null) => {
  if (req === null) {
    ending = true;
    if (!busy) process.exit(0);
    return;
  }
  busy = true;
  loadImage(req.bytes ?? req.path, { preprocess, size, channels }, req.pixels, req.offset, { blockingRead: true }).then(
    () => reply(null),
    (e: unknown) => reply(reason(e)),
  );
});

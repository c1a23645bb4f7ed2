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

/** One image to load into pixels[offset, ...); a thread has one request at a time, so replies need no id. */
export interface PreprocessRequest { path: string; pixels: Float32Array; offset: number }
export interface PreprocessReply { error: string | null }

const { preprocess, size, channels } = workerData as PreprocessInit;

function reason(e: unknown): string {
  if (e instanceof InputError) return e.message;
  return (e as Error)?.message?.split('\n')[0] ?? String(e);
}

parentPort!.on('message', (req: PreprocessRequest) => {
  loadImage(req.path, { preprocess, size, channels }, req.pixels, req.offset, { blockingRead: true }).then(
    () => parentPort!.postMessage({ error: null } satisfies PreprocessReply),
    (e: unknown) => parentPort!.postMessage({ error: reason(e) } satisfies PreprocessReply),
  );
});

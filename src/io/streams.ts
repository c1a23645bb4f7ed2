import { once } from 'node:events';
import { readRegularFile } from './regular-file.js';

/** Write with backpressure: wait for 'drain' when the stream's buffer is full. */
export async function writeAll(out: NodeJS.WritableStream, chunk: string | Uint8Array): Promise<void> {
  if (!out.write(chunk)) await once(out, 'drain');
}

/** True for the error a write to a closed pipe raises (`vit … | head -1`). */
export function isBrokenPipe(e: unknown): boolean {
  return (e as NodeJS.ErrnoException)?.code === 'EPIPE' || (e as NodeJS.ErrnoException)?.code === 'ERR_STREAM_DESTROYED';
}

/**
 * A whole checkpoint in one buffer, read in chunks (readFileSync refuses files over 2 GiB, and H/14's is
 * 2.5 GB). It must be a regular file of at most `maxBytes` (what the model could need, maxFileBytes): a FIFO
 * or device is refused at once, a file too large before it is allocated.
 */
export function readFileBytes(path: string, maxBytes = Number.MAX_SAFE_INTEGER): Buffer {
  return readRegularFile(path, maxBytes);
}

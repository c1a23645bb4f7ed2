/**
 * Batches of decoded images, in input order, from the preprocessing pool's threads: each batch's pixels are
 * one shared buffer the threads write into, with the failures compacted out so the engine sees a dense batch.
 * How far ahead of the engine batches are decoded is the caller's choice (`fill`), made in run.ts.
 */
import type { ModelConfig } from '../model/config.js';
import { sharedFloats } from '../io/preprocess-pool.js';

/** Where a batch's images come from: the decoding pool, or an InputLoader over it (tar members). */
export interface ImageSource {
  /** Load one input into pixels[offset, ...): null, or the reason it failed. */
  load(path: string, pixels: Float32Array, offset: number): Promise<string | null>;
}

/** One decoded batch: the pixels of the images that decoded, and what happened to each input. */
export interface Batch {
  paths: string[];
  /** For each input of the batch: its row in `pixels`, or the reason it failed. */
  slots: ({ row: number } | { error: string })[];
  pixels: Float32Array;
  /** Images in `pixels`. */
  count: number;
}

export class BatchQueue {
  private readonly queue: Promise<Batch>[] = [];
  private readonly spare: Float32Array[] = [];
  private queued = 0;
  /** Floats per image. */
  private readonly per: number;
  /**
   * Whether batches decode ahead of the engine (`fill`). Not with one thread: decoding then waits for the
   * engine, so that `--threads 1` keeps the run to one core (B/32 over 100 photos: 102% of a core; overlapped,
   * 109–110%, and 8% less wall time where a second core was idle).
   */
  private readonly ahead: boolean;

  constructor(private readonly paths: string[], private readonly batchSize: number, config: ModelConfig, readonly pool: ImageSource, threads: number) {
    this.per = config.inChans * config.imgSize[0] * config.imgSize[1];
    this.ahead = threads > 1;
  }

  /** Start decoding batches until `depth` are ahead of the engine (or the inputs run out); with one thread, none. */
  fill(depth: number): void {
    if (this.ahead) this.enqueue(depth);
  }

  /** The next batch in order (decoded now if none is ahead), or null after the last. */
  async next(): Promise<Batch | null> {
    this.enqueue(1);
    const b = this.queue.shift();
    return b === undefined ? null : b;
  }

  private enqueue(depth: number): void {
    while (this.queue.length < depth && this.queued < this.paths.length) {
      const start = this.queued;
      this.queued += this.batchSize;
      const batch = this.decode(this.paths.slice(start, start + this.batchSize));
      // A batch dropped unread must not become an unhandled rejection when the pool closes under it.
      batch.catch(() => undefined);
      this.queue.push(batch);
    }
  }

  /** Hand a batch's buffer back once its rows are written. Two spares cover one running and one decoding. */
  recycle(b: Batch): void {
    if (this.spare.length < 2) this.spare.push(b.pixels);
  }

  private async decode(paths: string[]): Promise<Batch> {
    const pixels = this.spare.pop() ?? sharedFloats(this.batchSize * this.per);
    const per = this.per;
    const errors = await Promise.all(paths.map((p, i) => this.pool.load(p, pixels, i * per)));
    const slots: Batch['slots'] = [];
    let count = 0;
    errors.forEach((error, i) => {
      if (error !== null) {
        slots.push({ error });
        return;
      }
      if (count !== i) pixels.copyWithin(count * per, i * per, (i + 1) * per);
      slots.push({ row: count++ });
    });
    return { paths, slots, pixels, count };
  }
}

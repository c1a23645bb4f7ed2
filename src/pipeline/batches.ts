/**
 * Batches of decoded images, in input order, from the preprocessing pool's threads: each batch's pixels are
 * one shared buffer the threads write into, with the failures compacted out so the engine sees a dense batch.
 * How far ahead of the engine batches are decoded is the caller's choice (`fill`), made in run.ts.
 */
import type { ModelConfig } from '../model/config.js';
import { PreprocessPool, sharedFloats } from '../io/preprocess-pool.js';

/** One decoded batch: the pixels of the images that decoded, and what happened to each input. */
export interface Batch {
  paths: string[];
  /** For each input of the batch: its row in `pixels`, or the reason it failed. */
  slots: ({ row: number } | { error: string })[];
  pixels: Float32Array;
  /** Images in `pixels`. */
  count: number;
  /** Wall time the batch took to decode. */
  decodeMs: number;
  /** Decoding began while the engine was idle, so decodeMs measures decoding alone. */
  alone: boolean;
}

export class BatchQueue {
  private readonly queue: Promise<Batch>[] = [];
  private readonly spare: Float32Array[] = [];
  private queued = 0;
  /** Floats per image. */
  readonly per: number;

  constructor(private readonly paths: string[], private readonly batchSize: number, config: ModelConfig, readonly pool: PreprocessPool) {
    this.per = config.inChans * config.imgSize[0] * config.imgSize[1];
  }

  /** Batches decoded or decoding, not yet taken. */
  get ahead(): number {
    return this.queue.length;
  }

  get exhausted(): boolean {
    return this.queued >= this.paths.length && this.queue.length === 0;
  }

  /**
   * Start decoding batches until `depth` are ahead (or the inputs run out). `alone`: nothing else is
   * decoding or running, so the time the batch takes is decoding's own.
   */
  fill(depth: number, alone = false): void {
    while (this.queue.length < depth && this.queued < this.paths.length) {
      const start = this.queued;
      this.queued += this.batchSize;
      const batch = this.decode(this.paths.slice(start, start + this.batchSize), alone && this.queue.length === 0);
      // A batch dropped unread must not become an unhandled rejection when the pool closes under it.
      batch.catch(() => undefined);
      this.queue.push(batch);
    }
  }

  /**
   * The next batch in order (decoded now if none is ahead: only the first, whose time includes the threads'
   * warm-up and so is not measured), or null after the last.
   */
  async next(): Promise<Batch | null> {
    this.fill(1);
    const b = this.queue.shift();
    return b === undefined ? null : b;
  }

  /** Hand a batch's buffer back once its rows are written. Two spares cover one running and one decoding. */
  recycle(b: Batch): void {
    if (this.spare.length < 2) this.spare.push(b.pixels);
  }

  private async decode(paths: string[], alone: boolean): Promise<Batch> {
    const t0 = performance.now();
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
    return { paths, slots, pixels, count, decodeMs: performance.now() - t0, alone };
  }
}

/**
 * When the next batch is decoded, once the engine runs: while the engine computes the current one
 * (overlapped), or between two runs (in turn), whichever costs less as measured on the run itself:
 * - When inference takes much longer than decoding, in turn: decoding threads that interrupt onnxruntime's
 *   intra-op threads cost it more than the decoding takes on its own. B/32, 2 cores, batches of 8 photos,
 *   interleaved runs: 25 ms more per batch overlapped, 16–17 ms in turn.
 * - When decoding takes a good part of the inference time (small models, big photos), overlapped: the
 *   decoding is then the bottleneck, and in turn would leave the engine idle for all of it (Ti/16 at 64²:
 *   718 images/s overlapped, 659 in turn).
 * Overlapping starts once decoding takes more than OVERLAP_FROM of inference time per image; while
 * overlapping, every REMEASURE_EVERY-th batch is decoded in turn so both are measured again.
 */
export class DecodeSchedule {
  static readonly OVERLAP_FROM = 0.2;
  static readonly REMEASURE_EVERY = 16;
  private decodeMs = NaN;
  private runMs = NaN;
  private sinceMeasured = 0;
  /** Batches decoded while the engine ran another. */
  overlapped = 0;

  /** Batches to have decoding while the engine runs the next one: 1 overlapped, 0 in turn. */
  depthWhileRunning(): number {
    const overlap = this.decodeMs > DecodeSchedule.OVERLAP_FROM * this.runMs;
    if (!overlap) return 0;
    if (++this.sinceMeasured >= DecodeSchedule.REMEASURE_EVERY) {
      this.sinceMeasured = 0;
      return 0;
    }
    this.overlapped++;
    return 1;
  }

  /** A batch decoded: its time counts when it was decoded alone. */
  decoded(b: Batch): void {
    if (b.alone && b.paths.length > 0) this.decodeMs = follow(this.decodeMs, b.decodeMs / b.paths.length);
  }

  /** A run of n images that took `ms` while nothing was decoded. */
  ran(ms: number, n: number): void {
    this.runMs = follow(this.runMs, ms / n);
  }
}

/** Running mean that follows the recent batches (first value taken as it is). */
function follow(mean: number, x: number): number {
  return Number.isNaN(mean) ? x : 0.8 * mean + 0.2 * x;
}

import type { Engine, RunOptions, RunResult } from '../model/engines/engine.js';
import { ModelError } from '../errors.js';
import type { ViTConfig } from '../model/config.js';
import { PreprocessPool, sharedFloats } from '../io/preprocess-pool.js';
import { statSync } from 'node:fs';
import { availableParallelism } from 'node:os';

/** One decoded batch: the pixels of the images that decoded, and what happened to each input. */
interface Batch {
  paths: string[];
  /** For each input of the batch: its row in `pixels`, or the reason it failed. */
  slots: ({ row: number } | { error: string })[];
  pixels: Float32Array;
  count: number;
}

/** How a batch loop went. */
export interface BatchStats {
  done: number;
  failed: number;
  /** Ended early: the reader went away or shouldStop said so. */
  stopped: boolean;
  /** Batches decoded while the engine ran another (after its start-up), of all batches decoded. */
  overlapped: number;
  batches: number;
}

/** What the batch loop hands a command for every input, in input order. */
export type Outcome = { path: string; result: RunResult; row: number } | { path: string; error: string };

export interface BatchLoopOptions {
  paths: string[];
  /** The model's config: image size and preprocessing, known before the engine is ready. */
  config: ViTConfig;
  /**
   * The engine, or its start-up still under way: images are decoded while onnxruntime creates its session,
   * on the core that start-up leaves free.
   */
  engine: Engine | Promise<Engine>;
  batchSize: number;
  runOptions?: RunOptions;
  /** Called once per input, in input order, as soon as its batch is done; return false to stop early. */
  emit(o: Outcome): Promise<boolean>;
  /**
   * Checked before decoding ahead and after each batch: once true, no new batch is decoded, the batch in
   * flight is finished and its rows emitted, and the loop ends (an interrupt).
   */
  shouldStop?(): boolean;
  /** After the rows of each batch are emitted: a point the output can be resumed from. */
  onBatchEnd?(): Promise<void>;
  /** Decode the next batch while the engine runs (true) or between runs (false); default: as measured. */
  overlap?: boolean;
}

/**
 * While the engine starts, up to this many bytes of batches are decoded ahead (B/32 at batch 8: 20 batches),
 * on the cores onnxruntime's session creation leaves free; every image done then is one less to share the
 * cores with inference later (B/32, 500 photos: 15.1 s instead of 15.8 s with 8 batches, 80 MB more at the
 * peak).
 *
 * Start-up decoding uses one thread fewer than there are cores: on every core it slowed session creation
 * (mostly the packing of weight matrices, on one thread) from 0.46 to 0.85 s, and the first batch then ran
 * at 1.1 s instead of 0.6 s (B/32, 2 cores).
 */
const STARTUP_AHEAD_BYTES = 96 * 2 ** 20;
const STARTUP_AHEAD_MAX = 20;

/**
 * Once the engine runs, the next batch is decoded either while it computes the current one (overlapped) or
 * between two runs (in turn), whichever costs less, as measured on the run itself:
 * - When inference takes much longer than decoding, in turn: decoding threads that interrupt onnxruntime's
 *   intra-op threads cost it more than the decoding takes on its own. B/32, 2 cores, batches of 8 photos,
 *   interleaved runs: 25 ms more per batch overlapped, 16–17 ms in turn (the same as running the decoding
 *   threads at the lowest OS priority).
 * - When decoding takes a good part of the inference time (small models, big photos), overlapped: the
 *   decoding is then the bottleneck, and in turn would leave the engine idle for all of it.
 * Overlapping starts once decoding takes more than this fraction of inference time, per image: on 2 cores it
 * was as fast as in turn for S/32 (decoding 0.3 of inference) and 2% faster for Ti/16 (0.25).
 */
const OVERLAP_FROM = 0.2;
/** While overlapping, every this many batches one is done in turn to measure both again. */
const REMEASURE_EVERY = 16;

/** Running mean that follows the recent batches (first value taken as it is). */
function follow(mean: number, x: number): number {
  return Number.isNaN(mean) ? x : 0.8 * mean + 0.2 * x;
}

/**
 * Preprocess batches on the pool's threads and run them through the engine, then hand out results in input
 * order. Pixel buffers are shared with the pool and reused from batch to batch.
 */
export async function runBatches(o: BatchLoopOptions): Promise<BatchStats> {
  const pool = new PreprocessPool(o.config.preprocess, o.config.imgSize);
  try {
    return await loop(o, pool);
  } finally {
    await pool.close();
  }
}

/** The batch loop proper, with the pool the caller closes. */
async function loop(o: BatchLoopOptions, pool: PreprocessPool): Promise<BatchStats> {
  const cfg = o.config;
  const [h, w] = cfg.imgSize;
  const per = cfg.inChans * h * w;
  const free: Float32Array[] = [];
  const startupAhead = Math.max(1, Math.min(STARTUP_AHEAD_MAX, Math.floor(STARTUP_AHEAD_BYTES / (o.batchSize * per * 4))));

  const decode = async (start: number, pixels: Float32Array): Promise<Batch> => {
    const paths = o.paths.slice(start, start + o.batchSize);
    // Decode into per-input slots, then compact the failures out so the engine sees a dense batch. The
    // biggest files go first, so that the threads finish the batch together rather than one waiting on a
    // big photo it took last.
    const order = paths.map((p, i) => ({ i, bytes: fileBytes(p) })).sort((a, b) => b.bytes - a.bytes);
    const results: (string | null)[] = new Array(paths.length);
    await Promise.all(order.map(({ i }) => pool.load(paths[i], pixels, i * per).then((r) => (results[i] = r))));
    const slots: Batch['slots'] = [];
    let count = 0;
    results.forEach((err, i) => {
      if (err !== null) {
        slots.push({ error: err });
        return;
      }
      if (count !== i) pixels.copyWithin(count * per, i * per, (i + 1) * per);
      slots.push({ row: count++ });
    });
    return { paths, slots, pixels, count };
  };

  let engine: Engine | null = null;
  // Until the engine is ready, one core is left to its start-up.
  const starting = !isEngine(o.engine);
  if (starting) pool.limit(availableParallelism() - 1);
  const ready = Promise.resolve(o.engine).then((e) => {
    pool.limit(Infinity);
    const [eh, ew] = e.config.imgSize;
    if (eh !== h || ew !== w || e.config.inChans !== cfg.inChans) {
      throw new ModelError(`the engine takes ${e.config.inChans}×${eh}×${ew} images, the batches were made for ${cfg.inChans}×${h}×${w}`);
    }
    engine = e;
    return e;
  });
  // Rejections surface where `ready` is awaited; this only keeps an early one from counting as unhandled.
  ready.catch(() => undefined);

  // Milliseconds per image, measured apart: decoding a batch while the engine idles, and running one while
  // nothing is decoded.
  let decodeMs = NaN;
  let runMs = NaN;
  let sinceMeasured = 0;
  let overlapped = 0;
  let overlap = o.overlap ?? false;
  const queue: Promise<Batch>[] = [];
  let queued = 0;
  const startDecode = (measured: boolean) => {
    const t0 = performance.now();
    const n = Math.min(o.batchSize, o.paths.length - queued);
    const batch = decode(queued, free.pop() ?? sharedFloats(o.batchSize * per));
    if (measured) batch.then(() => (decodeMs = follow(decodeMs, (performance.now() - t0) / n)), () => undefined);
    queue.push(batch);
    queued += o.batchSize;
  };
  // Batches decoded ahead: several while the engine starts, then one while it runs if overlapping pays.
  const decodeAhead = () => {
    const depth = engine ? (overlap ? 1 : 0) : starting ? startupAhead : 1;
    while (queue.length < depth && queued < o.paths.length && !o.shouldStop?.()) {
      if (engine) overlapped++;
      startDecode(false);
    }
  };
  // Batches decoded ahead that will not run: dropped without waiting (closing the pool ends their work).
  const drain = () => {
    for (const b of queue.splice(0)) b.catch(() => undefined);
  };

  let done = 0;
  let failed = 0;
  const stats = (stopped: boolean): BatchStats => ({ done, failed, stopped, overlapped, batches: Math.ceil(queued / o.batchSize) });
  decodeAhead();
  while (queue.length > 0 || queued < o.paths.length) {
    // Nothing decoded ahead: decode the next batch now, with the engine idle (a clean measurement).
    if (queue.length === 0) startDecode(engine !== null);
    const batch = await queue.shift()!;
    if (overlap && o.overlap === undefined && ++sinceMeasured >= REMEASURE_EVERY) sinceMeasured = 0;
    else decodeAhead();
    let result: RunResult | null = null;
    if (batch.count > 0) {
      try {
        const e = engine ?? await ready;
        const alone = pool.quiet;
        const t0 = performance.now();
        result = await e.run(batch.pixels, batch.count, o.runOptions);
        if (alone) runMs = follow(runMs, (performance.now() - t0) / batch.count);
      } catch (e) {
        drain();
        throw e;
      }
    }
    if (o.overlap === undefined && !Number.isNaN(decodeMs) && !Number.isNaN(runMs)) overlap = decodeMs > OVERLAP_FROM * runMs;
    // In turn: the next batch is decoded now, while this one's rows are written.
    if (queue.length === 0 && queued < o.paths.length && !o.shouldStop?.()) startDecode(true);
    // Two spare buffers cover the steady state (one batch running, one decoding); the extra ones made while
    // the engine started are let go.
    if (free.length < 2) free.push(batch.pixels);
    for (let i = 0; i < batch.paths.length; i++) {
      const slot = batch.slots[i];
      const path = batch.paths[i];
      const go = 'error' in slot
        ? await o.emit({ path, error: slot.error })
        : await o.emit({ path, result: result!, row: slot.row });
      if ('error' in slot) failed++;
      else done++;
      if (!go) {
        drain();
        return stats(true);
      }
    }
    await o.onBatchEnd?.();
    if (o.shouldStop?.()) {
      drain();
      return stats(true);
    }
  }
  // A run whose every input failed never needed the engine; it still has to have started properly.
  await ready;
  return stats(false);
}

/** Row `row` of a [B, ...] result tensor as a fresh Float32Array. */
export function rowOf(t: { shape: number[]; data: Float32Array }, row: number): Float32Array {
  const n = t.data.length / t.shape[0];
  return t.data.slice(row * n, (row + 1) * n);
}

function isEngine(e: Engine | Promise<Engine>): e is Engine {
  return typeof (e as Promise<Engine>).then !== 'function';
}

/** A file's size, or 0 when it cannot be read (its load will say why). */
function fileBytes(path: string): number {
  try {
    return statSync(path).size;
  } catch {
    return 0;
  }
}

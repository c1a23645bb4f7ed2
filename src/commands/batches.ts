import type { Engine, RunOptions, RunResult } from '../model/engines/engine.js';
import { ModelError } from '../errors.js';
import type { ViTConfig } from '../model/config.js';
import { PreprocessPool, sharedFloats } from '../io/preprocess-pool.js';
import { availableParallelism } from 'node:os';

/** One decoded batch: the pixels of the images that decoded, and what happened to each input. */
interface Batch {
  paths: string[];
  /** For each input of the batch: its row in `pixels`, or the reason it failed. */
  slots: ({ row: number } | { error: string })[];
  pixels: Float32Array;
  count: number;
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
}

/**
 * While the engine starts, up to this many bytes of batches are decoded ahead (B/32 at batch 8: 20 batches),
 * on the cores onnxruntime's session creation leaves free; every image done then is one less to share the
 * cores with inference later (B/32, 500 photos: 15.1 s instead of 15.8 s with 8 batches, 80 MB more at the
 * peak). Once the engine runs, one batch is decoded while it computes the previous one.
 *
 * Start-up decoding uses one thread fewer than there are cores: on every core it slowed session creation
 * (mostly the packing of weight matrices, on one thread) from 0.46 to 0.85 s, and the first batch then ran
 * at 1.1 s instead of 0.6 s (B/32, 2 cores).
 */
const STARTUP_AHEAD_BYTES = 96 * 2 ** 20;
const STARTUP_AHEAD_MAX = 20;

/**
 * Preprocess the next batch on the pool's threads while the engine runs this one, then hand out results in
 * input order. Pixel buffers are shared with the pool and reused from batch to batch.
 */
export async function runBatches(o: BatchLoopOptions): Promise<{ done: number; failed: number; stopped: boolean }> {
  const pool = new PreprocessPool(o.config.preprocess, o.config.imgSize);
  try {
    return await loop(o, pool);
  } finally {
    await pool.close();
  }
}

/** The batch loop proper, with the pool the caller closes. */
async function loop(o: BatchLoopOptions, pool: PreprocessPool): Promise<{ done: number; failed: number; stopped: boolean }> {
  const cfg = o.config;
  const [h, w] = cfg.imgSize;
  const per = cfg.inChans * h * w;
  const free: Float32Array[] = [];
  const startupAhead = Math.max(1, Math.min(STARTUP_AHEAD_MAX, Math.floor(STARTUP_AHEAD_BYTES / (o.batchSize * per * 4))));

  const decode = async (start: number, pixels: Float32Array): Promise<Batch> => {
    const paths = o.paths.slice(start, start + o.batchSize);
    // Decode into per-input slots, then compact the failures out so the engine sees a dense batch.
    const results = await Promise.all(paths.map((p, i) => pool.load(p, pixels, i * per)));
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
  if (!isEngine(o.engine)) pool.limit(availableParallelism() - 1);
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

  const queue: Promise<Batch>[] = [];
  let queued = 0;
  const decodeAhead = () => {
    const depth = engine ? 1 : startupAhead;
    while (queue.length < depth && queued < o.paths.length && !o.shouldStop?.()) {
      queue.push(decode(queued, free.pop() ?? sharedFloats(o.batchSize * per)));
      queued += o.batchSize;
    }
  };
  // Batches decoded ahead that will not run: dropped without waiting (closing the pool ends their work).
  const drain = () => {
    for (const b of queue.splice(0)) b.catch(() => undefined);
  };

  let done = 0;
  let failed = 0;
  decodeAhead();
  while (queue.length > 0) {
    const batch = await queue.shift()!;
    decodeAhead();
    let result: RunResult | null = null;
    if (batch.count > 0) {
      try {
        result = await (engine ?? await ready).run(batch.pixels, batch.count, o.runOptions);
      } catch (e) {
        drain();
        throw e;
      }
    }
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
        return { done, failed, stopped: true };
      }
    }
    await o.onBatchEnd?.();
    if (o.shouldStop?.()) {
      drain();
      return { done, failed, stopped: true };
    }
  }
  // A run whose every input failed never needed the engine; it still has to have started properly.
  await ready;
  return { done, failed, stopped: false };
}

/** Row `row` of a [B, ...] result tensor as a fresh Float32Array. */
export function rowOf(t: { shape: number[]; data: Float32Array }, row: number): Float32Array {
  const n = t.data.length / t.shape[0];
  return t.data.slice(row * n, (row + 1) * n);
}

function isEngine(e: Engine | Promise<Engine>): e is Engine {
  return typeof (e as Promise<Engine>).then !== 'function';
}

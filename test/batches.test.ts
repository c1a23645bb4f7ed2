import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { PreprocessPool } from '../src/io/preprocess-pool.js';
import type { ErrorRow, RowWriter } from '../src/io/sinks/rows.js';
import { archOf, presetConfig } from '../src/model/arch/index.js';
import type { Engine, RunResult } from '../src/model/engines/engine.js';
import { BatchQueue } from '../src/pipeline/batches.js';
import { processBatches, type LoopStats } from '../src/pipeline/run.js';
import { BAD, PHOTOS } from './helpers/golden.js';

const base = presetConfig('Ti/16');
const cfg = archOf(base).withImageSize(base, [32, 32]);
const PER = 3 * 32 * 32;

/**
 * An engine that answers each image with the sum and the first value of its pixels, after `delayMs`: what
 * it saw can be checked against what the inputs decode to.
 */
function fakeEngine(delayMs: number): Engine {
  return {
    name: 'onnx', backend: 'fake', config: cfg,
    async run(pixels: Float32Array, batch: number): Promise<RunResult> {
      if (delayMs > 0) await sleep(delayMs);
      const data = new Float32Array(batch * 2);
      for (let b = 0; b < batch; b++) {
        let sum = 0;
        for (let i = 0; i < PER; i++) sum += pixels[b * PER + i];
        data[2 * b] = sum;
        data[2 * b + 1] = pixels[b * PER];
      }
      return { logits: { shape: [batch, 2], data }, features: {}, attentions: [] };
    },
    async dispose() {},
  };
}

type Row = { path: string; values: number[] };

/** A writer that keeps the rows it is given. */
function keeper(rows: [string, string | number[]][]): RowWriter<Row> {
  return {
    closedByReader: false,
    async write(r: Row | ErrorRow) {
      rows.push([r.path, 'error' in r ? r.error : r.values]);
    },
    async close() {},
    async abort() {},
  };
}

/** Every row of a loop over paths, as [path, the two numbers or the error], and the loop's stats. */
async function collect(paths: string[], engine: Engine, batchSize = 3, stopAfter = Infinity) {
  const rows: [string, string | number[]][] = [];
  const pool = new PreprocessPool(cfg, 2, batchSize);
  try {
    const stats: LoopStats = await processBatches({
      queue: new BatchQueue(paths, batchSize, cfg, pool, 2),
      engine,
      writer: keeper(rows),
      makeRow: (r, row, path) => ({ path, values: Array.from(r.logits!.data.subarray(2 * row, 2 * row + 2)) }),
      stopped: () => rows.length >= stopAfter,
    });
    return { rows, stats };
  } finally {
    await pool.close();
  }
}

const photos = readdirSync(PHOTOS).map((f) => join(PHOTOS, f));
const inputs = [...photos, join(BAD, 'truncated.jpg'), ...photos.slice(0, 2), join(BAD, 'not-found.png'), join(BAD, 'empty.jpg'), ...photos];

test('the batch loop gives the same rows, in input order, with failures compacted out, at any batch size and engine speed', async () => {
  const reference = await collect(inputs, fakeEngine(0));
  assert.deepEqual(reference.rows.map(([p]) => p), inputs);
  assert.equal(reference.rows.filter(([, r]) => typeof r === 'string').length, 3);
  assert.equal(reference.stats.done + reference.stats.failed, inputs.length);
  for (const [size, delay] of [[1, 1], [4, 2], [64, 0], [3, 30]]) {
    assert.deepEqual((await collect(inputs, fakeEngine(delay), size)).rows, reference.rows, `batch ${size}, ${delay} ms`);
  }
});

/** What a loop over five inputs in batches of two does, in order, with a decoding pool of `threads`. */
async function loopEvents(threads: number): Promise<string[]> {
  const events: string[] = [];
  const source = {
    async load(path: string): Promise<string | null> {
      events.push(`load ${path}`);
      return null;
    },
  };
  const engine: Engine = {
    ...fakeEngine(0),
    async run(_pixels: Float32Array, batch: number): Promise<RunResult> {
      events.push('run start');
      await sleep(5);
      events.push('run end');
      return { logits: { shape: [batch, 2], data: new Float32Array(batch * 2) }, features: {}, attentions: [] };
    },
  };
  const rows: [string, string | number[]][] = [];
  await processBatches({
    queue: new BatchQueue(['a', 'b', 'c', 'd', 'e'], 2, cfg, source, threads),
    engine,
    writer: keeper(rows),
    makeRow: (_r, _row, path) => ({ path, values: [] }),
    stopped: () => false,
  });
  assert.deepEqual(rows.map(([p]) => p), ['a', 'b', 'c', 'd', 'e']);
  return events;
}

test('the next batch decodes while the engine runs the current one, never further ahead', async () => {
  assert.deepEqual(await loopEvents(2), [
    'load a', 'load b', 'load c', 'load d', 'run start', 'run end',
    'load e', 'run start', 'run end',
    'run start', 'run end',
  ]);
});

test('with one thread nothing decodes while the engine runs (--threads 1 keeps to one core)', async () => {
  assert.deepEqual(await loopEvents(1), [
    'load a', 'load b', 'run start', 'run end',
    'load c', 'load d', 'run start', 'run end',
    'load e', 'run start', 'run end',
  ]);
});

test('a stop asked for mid-run ends the loop after the batch in flight, with rows for every input before it', async () => {
  const { rows, stats } = await collect(inputs, fakeEngine(1), 2, 5);
  assert.equal(rows.length, 6); // the batch in flight (inputs 5 and 6) is finished
  assert.equal(stats.done + stats.failed, 6);
});

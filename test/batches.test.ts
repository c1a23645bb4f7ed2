import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { runBatches, type BatchStats, type Outcome } from '../src/commands/batches.js';
import type { Engine, RunResult } from '../src/model/engines/engine.js';
import { PACKAGE_ROOT } from '../src/io/paths.js';
import { presetConfig } from '../src/model/presets.js';
import { withImageSize } from '../src/model/config.js';

const PHOTOS = join(PACKAGE_ROOT, 'test', 'fixtures', 'photos');
const BAD = join(PACKAGE_ROOT, 'test', 'fixtures', 'bad');
const cfg = withImageSize(presetConfig('Ti/16'), [32, 32]);
const PER = 3 * 32 * 32;

/**
 * An engine that answers each image with the sum and the first value of its pixels, after `delayMs`: what
 * it saw can be checked against what the inputs decode to.
 */
function fakeEngine(delayMs: number): Engine & { batches: number[] } {
  const batches: number[] = [];
  return {
    name: 'onnx', backend: 'fake', config: cfg, batches,
    async run(pixels: Float32Array, batch: number): Promise<RunResult> {
      batches.push(batch);
      if (delayMs > 0) await sleep(delayMs);
      const data = new Float32Array(batch * 2);
      for (let b = 0; b < batch; b++) {
        let sum = 0;
        for (let i = 0; i < PER; i++) sum += pixels[b * PER + i];
        data[2 * b] = sum;
        data[2 * b + 1] = pixels[b * PER];
      }
      const t = { shape: [batch, 2], data };
      return { logits: t, cls: t, avg: t, preLogits: t, attentions: [] };
    },
    async dispose() {},
  };
}

/** Every outcome of a loop over paths, as [path, the two numbers or the error]. */
async function collect(paths: string[], engine: Engine | Promise<Engine>, overlap: boolean | undefined, batchSize = 3) {
  const rows: [string, string | number[]][] = [];
  const stats: BatchStats = await runBatches({
    paths, config: cfg, engine, batchSize, overlap,
    emit: async (o: Outcome) => {
      if ('error' in o) rows.push([o.path, o.error]);
      else rows.push([o.path, Array.from(o.result.logits!.data.subarray(2 * o.row, 2 * o.row + 2))]);
      return true;
    },
  });
  return { rows, stats };
}

const photos = readdirSync(PHOTOS).map((f) => join(PHOTOS, f));
const inputs = [...photos, join(BAD, 'truncated.jpg'), ...photos.slice(0, 2), join(BAD, 'not-found.png'), join(BAD, 'empty.jpg'), ...photos];

test('the batch loop gives the same rows, in input order, whether it decodes in turn, overlapped or as measured', async () => {
  const reference = await collect(inputs, fakeEngine(0), true);
  assert.deepEqual(reference.rows.map(([p]) => p), inputs);
  assert.equal(reference.rows.filter(([, r]) => typeof r === 'string').length, 3);
  assert.equal(reference.stats.done + reference.stats.failed, inputs.length);
  for (const overlap of [false, undefined]) {
    const other = await collect(inputs, fakeEngine(2), overlap);
    assert.deepEqual(other.rows, reference.rows, `overlap ${overlap}`);
    assert.equal(other.stats.failed, 3);
  }
  // Batch sizes that do not divide the inputs, and an engine still starting.
  for (const size of [1, 4, 64]) {
    const starting = sleep(30).then(() => fakeEngine(1) as Engine);
    assert.deepEqual((await collect(inputs, starting, undefined, size)).rows, reference.rows, `batch ${size}`);
  }
});

test('the batch loop decodes between runs when inference is slow, and while it runs when inference is fast', async () => {
  const many = Array.from({ length: 3 }, () => photos).flat();
  // 100 ms per image: far slower than decoding these photos.
  const slow = await collect(many, fakeEngine(400), undefined, 4);
  // The first batch and the first one measured go in turn; a slow engine keeps it that way.
  assert.equal(slow.stats.overlapped, 0, JSON.stringify(slow.stats));
  assert.equal(slow.stats.batches, Math.ceil(many.length / 4));
  const more = Array.from({ length: 8 }, () => photos).flat();
  const fast = await collect(more, fakeEngine(0), undefined, 4);
  assert.ok(fast.stats.overlapped >= fast.stats.batches / 2, JSON.stringify(fast.stats));
  // Forced either way.
  assert.equal((await collect(many, fakeEngine(0), false, 4)).stats.overlapped, 0);
  assert.ok((await collect(many, fakeEngine(20), true, 4)).stats.overlapped >= Math.ceil(many.length / 4) - 2);
});

test('a stop asked for mid-run ends the loop after the batch in flight, with rows for every input before it', async () => {
  let emitted = 0;
  const stats = await runBatches({
    paths: inputs, config: cfg, engine: fakeEngine(1), batchSize: 2,
    emit: async () => {
      emitted++;
      return true;
    },
    shouldStop: () => emitted >= 5,
  });
  assert.equal(stats.stopped, true);
  assert.equal(emitted, 6); // the batch in flight (inputs 5 and 6) is finished
  assert.equal(stats.done + stats.failed, 6);
});

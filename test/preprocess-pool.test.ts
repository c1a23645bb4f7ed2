import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { test } from 'node:test';
import { InputError } from '../src/errors.js';
import { loadImage } from '../src/io/images.js';
import { PACKAGE_ROOT } from '../src/io/paths.js';
import { PreprocessPool, sharedFloats } from '../src/io/preprocess-pool.js';
import { timmPreprocess } from '../src/model/preprocess.js';
import { BAD, PHOTOS } from './helpers/golden.js';


test('the preprocessing pool writes the same floats as loading in process, and the same failure reasons', async () => {
  const pp = timmPreprocess([48, 64], 0.875, 'bicubic', [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]);
  const size: [number, number] = [48, 64];
  const per = 3 * size[0] * size[1];
  const paths = [
    ...readdirSync(PHOTOS).map((f) => join(PHOTOS, f)),
    ...readdirSync(BAD).filter((f) => !f.endsWith('.json')).map((f) => join(BAD, f)),
    join(BAD, 'no-such-file.png'),
  ];
  const pool = new PreprocessPool({ preprocess: pp, imgSize: size, inChans: 3 }, 2, 8);
  try {
    const shared = sharedFloats(paths.length * per);
    const reasons = await Promise.all(paths.map((p, i) => pool.load(p, shared, i * per)));
    const local = new Float32Array(paths.length * per);
    for (const [i, p] of paths.entries()) {
      const expected = await loadImage(p, { preprocess: pp, size, channels: 3 }, local, i * per).then(() => null, (e: unknown) => (e instanceof InputError ? e.message : `other: ${e}`));
      assert.equal(reasons[i], expected, p);
      if (expected === null) assert.deepEqual(shared.subarray(i * per, (i + 1) * per), local.subarray(i * per, (i + 1) * per), p);
    }
    assert.ok(reasons.filter((r) => r === null).length >= 4, 'some images must load');
    assert.ok(reasons.filter((r) => r !== null).length >= 10, 'the bad fixtures must fail');
  } finally {
    await pool.close();
  }
  // A closed pool refuses work instead of hanging.
  await assert.rejects(pool.load(join(PHOTOS, 'chelsea.png'), sharedFloats(per), 0), /closed/);
});

test('closing the pool while a thread starts on its first JPEG ends cleanly (never aborts the process)', () => {
  // Each round: a fresh one-thread pool decodes a PNG (sharp loaded), is handed a truncated JPEG (the thread
  // now loads koffi and libjpeg-turbo, then falls back to sharp) and is closed 0-20 ms later. Terminating the
  // thread inside koffi's start aborted the process within 100 rounds in 5 of 5 runs.
  const pool = pathToFileURL(join(PACKAGE_ROOT, 'dist', 'src', 'io', 'preprocess-pool.js')).href;
  const script = `
    import { PreprocessPool, sharedFloats } from ${JSON.stringify(pool)};
    const config = { preprocess: { resize: { shortestEdge: 32 }, crop: { height: 32, width: 32 }, interpolation: 'bilinear',
      rescale: 1 / 255, mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5] }, imgSize: [32, 32], inChans: 3 };
    const pixels = sharedFloats(3 * 32 * 32);
    for (let i = 0; i < 100; i++) {
      const pool = new PreprocessPool(config, 1, 1);
      await pool.load(${JSON.stringify(join(PHOTOS, 'chelsea.png'))}, pixels, 0);
      pool.load(${JSON.stringify(join(BAD, 'truncated.jpg'))}, pixels, 0).catch(() => undefined);
      await new Promise((resolve) => setTimeout(resolve, (i * 7) % 21));
      await pool.close();
    }
    console.log('done');`;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', timeout: 180_000 });
  assert.equal(r.signal, null, r.stderr.slice(0, 400));
  assert.equal(r.status, 0, r.stderr.slice(0, 400));
  assert.equal(r.stdout.trim(), 'done');
});

test('the pool starts no more threads than a batch has images', { skip: process.platform !== 'linux' && 'counts threads in /proc/self/status' }, async () => {
  const osThreads = () => Number(/^Threads:\s+(\d+)/m.exec(readFileSync('/proc/self/status', 'utf8'))![1]);
  const config = { preprocess: timmPreprocess([32, 32], 1, 'bilinear', [0.5, 0.5, 0.5], [0.5, 0.5, 0.5]), imgSize: [32, 32] as [number, number], inChans: 3 as const };
  for (const [threads, batchSize, started] of [[16, 3, 3], [2, 8, 2], [4, 4, 4]]) {
    const before = osThreads();
    const pool = new PreprocessPool(config, threads, batchSize);
    try {
      assert.equal(osThreads() - before, started, `${threads} threads for batches of ${batchSize}`);
    } finally {
      await pool.close();
    }
  }
});

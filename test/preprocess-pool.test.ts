import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { InputError } from '../src/errors.js';
import { loadImage } from '../src/io/images.js';
import { PACKAGE_ROOT } from '../src/io/paths.js';
import { PreprocessPool, sharedFloats } from '../src/io/preprocess-pool.js';
import { timmPreprocess } from '../src/model/preprocess.js';

const BAD = join(PACKAGE_ROOT, 'test', 'fixtures', 'bad');
const PHOTOS = join(PACKAGE_ROOT, 'test', 'fixtures', 'photos');

test('the preprocessing pool writes the same floats as loading in process, and the same failure reasons', async () => {
  const pp = timmPreprocess([48, 64], 0.875, 'bicubic', [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]);
  const size: [number, number] = [48, 64];
  const per = 3 * size[0] * size[1];
  const paths = [
    ...readdirSync(PHOTOS).map((f) => join(PHOTOS, f)),
    ...readdirSync(BAD).filter((f) => !f.endsWith('.json')).map((f) => join(BAD, f)),
    join(BAD, 'no-such-file.png'),
  ];
  const pool = new PreprocessPool({ preprocess: pp, imgSize: size, inChans: 3 }, 2);
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

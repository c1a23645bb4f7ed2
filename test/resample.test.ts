import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { WeightsError } from '../src/errors.js';
import { loadModel } from '../src/io/model-source.js';
import { TfjsEngine } from '../src/model/engines/tfjs.js';
import { resamplePosEmbed } from '../src/model/arch/vit/pos-embed.js';
import { FIXTURES, maxAbsDiff, modelDir } from './helpers/golden.js';

interface Case {
  prefix: number;
  from: [number, number];
  to: [number, number];
  input: { shape: number[]; data: number[] };
  output: { shape: number[]; data: number[] };
}

const WEIGHTS = join(FIXTURES, 'weights');
const { cases } = JSON.parse(readFileSync(join(WEIGHTS, 'resample.json'), 'utf8')) as { cases: Case[] };

for (const c of cases) {
  test(`pos_embed ${c.from.join('x')} → ${c.to.join('x')} (${c.prefix} prefix tokens) matches torch's antialiased bicubic`, () => {
    const got = resamplePosEmbed({ shape: c.input.shape, data: Float32Array.from(c.input.data) }, c.prefix, c.from, c.to);
    assert.deepEqual(got.shape, c.output.shape);
    const err = maxAbsDiff(got.data, c.output.data);
    console.log(`resample ${c.from.join('x')} → ${c.to.join('x')}: max |Δ| ${err.toExponential(2)}`);
    assert.ok(err < 1e-5, `off by ${err}`);
    // Prefix tokens pass through untouched.
    const d = c.input.shape[2];
    assert.deepEqual([...got.data.subarray(0, c.prefix * d)], c.input.data.slice(0, c.prefix * d).map(Math.fround));
  });
}

test('a pos_embed that does not hold the stated grid is refused', () => {
  const pos = { shape: [1, 10, 4], data: new Float32Array(40) };
  assert.throws(() => resamplePosEmbed(pos, 1, [3, 4], [2, 2]), WeightsError);
});

test('--image-size HxW resamples on load and matches torch end to end (odd40 at 40x64)', async () => {
  const g = JSON.parse(readFileSync(join(WEIGHTS, 'resized.json'), 'utf8')) as {
    imageSize: [number, number]; inputs: { shape: number[]; data: number[] }; logits: number[][]; cls: number[][];
  };
  for (const layout of ['timm', 'hf'] as const) {
    const m = await loadModel({ model: modelDir('odd40', layout), imageSize: g.imageSize });
    assert.deepEqual(m.config.imgSize, g.imageSize);
    assert.deepEqual(m.weights.get('pos_embed')!.shape, [1, 1 + 5 * 8, 40]);
    const engine = await TfjsEngine.create(m.config, m.weights);
    try {
      const out = await engine.run(Float32Array.from(g.inputs.data), g.inputs.shape[0]);
      const err = maxAbsDiff(out.logits!.data, g.logits);
      console.log(`odd40/${layout} at ${g.imageSize.join('x')}: max |Δ| logits ${err.toExponential(2)}`);
      assert.ok(err < 1e-4, `logits off by ${err}`);
      assert.ok(maxAbsDiff(out.features.cls.data, g.cls) < 1e-4);
    } finally {
      await engine.dispose();
    }
  }
});

test('random weights at another size get a pos_embed of the new grid', async () => {
  const m = await loadModel({ model: modelDir('eps32', 'timm'), randomWeights: true, imageSize: [48, 24] });
  assert.deepEqual(m.weights.get('pos_embed')!.shape, [1, 1 + 12 * 6, 32]);
});

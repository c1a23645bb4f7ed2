import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { TfjsEngine } from '../src/model/engines/tfjs.js';
import { tf } from '../src/model/engines/tfjs-backend.js';
import { loadModel, type ModelSpec } from '../src/io/model-source.js';
import type { Engine } from '../src/model/engines/engine.js';
import { GOLDEN_MODELS, FIXTURES, maxAbsDiff, modelDir, readGolden, withEngine } from './helpers/golden.js';

const TOL = 1e-4;

/** Load a model through the library and run `use` on a tfjs engine for it. */
async function withTfjs<R>(spec: ModelSpec, use: (e: Engine, scheme: string) => Promise<R>): Promise<R> {
  const m = await loadModel(spec);
  return withEngine(TfjsEngine.create(m.config, m.weights), (e) => use(e, m.scheme));
}

for (const name of GOLDEN_MODELS) {
  for (const layout of ['hf', 'timm'] as const) {
    const dir = modelDir(name, layout);
    test(`${name} (${layout} layout) reproduces torchvision logits and features`, { skip: !existsSync(dir) }, async () => {
      const g = readGolden(name);
      await withTfjs({ model: dir }, async (engine, scheme) => {
        assert.equal(scheme, layout);
        const out = await engine.run(Float32Array.from(g.inputs.data), g.inputs.shape[0]);
        const errLogits = maxAbsDiff(out.logits!.data, g.logits);
        const errCls = maxAbsDiff(out.features.cls.data, g.cls);
        const errAvg = maxAbsDiff(out.features.avg.data, g.avg);
        const errPre = maxAbsDiff(out.features['pre-logits'].data, g.preLogits);
        console.log(`${name}/${layout} max |Δ| logits ${errLogits.toExponential(2)} cls ${errCls.toExponential(2)} avg ${errAvg.toExponential(2)}`);
        assert.ok(errLogits < TOL, `logits off by ${errLogits}`);
        assert.ok(errCls < TOL, `cls off by ${errCls}`);
        assert.ok(errAvg < TOL, `avg off by ${errAvg}`);
        assert.ok(errPre < TOL, `pre-logits off by ${errPre}`);
        assert.deepEqual(out.logits!.shape, [g.inputs.shape[0], g.config.numClasses]);
      });
    });
  }
}

for (const dtype of ['f16', 'bf16'] as const) {
  test(`odd40 ${dtype} safetensors converts to float32 exactly`, async () => {
    const g = readGolden('odd40');
    const ref = g[dtype]!;
    await withTfjs({ model: modelDir('odd40', 'hf'), weights: join(FIXTURES, '..', '..', ref.weights) }, async (engine) => {
      const out = await engine.run(Float32Array.from(g.inputs.data), g.inputs.shape[0]);
      const err = maxAbsDiff(out.logits!.data, ref.logits);
      console.log(`odd40 ${dtype} max |Δ| logits ${err.toExponential(2)}`);
      assert.ok(err < TOL, `logits off by ${err}`);
    });
  });
}

test('attention probabilities match the hand-computed reference', async () => {
  const g = readGolden('odd40');
  await withTfjs({ model: modelDir('odd40', 'hf') }, async (engine) => {
    const per = g.inputs.data.length / g.inputs.shape[0];
    const out = await engine.run(Float32Array.from(g.inputs.data.slice(0, per)), 1, { attentions: true });
    assert.equal(out.attentions.length, g.attentions.length);
    for (let l = 0; l < g.attentions.length; l++) {
      const err = maxAbsDiff(out.attentions[l].data, g.attentions[l]);
      assert.ok(err < 1e-5, `layer ${l} attention off by ${err}`);
    }
  });
});

test('repeated forwards leak no tensors', async () => {
  const g = readGolden('eps32');
  await withTfjs({ model: modelDir('eps32', 'hf') }, async (engine) => {
    const x = Float32Array.from(g.inputs.data);
    await engine.run(x, g.inputs.shape[0], { attentions: true });
    const before = tf.memory().numTensors;
    for (let i = 0; i < 5; i++) await engine.run(x, g.inputs.shape[0], { attentions: i % 2 === 0 });
    assert.equal(tf.memory().numTensors, before);
  });
});

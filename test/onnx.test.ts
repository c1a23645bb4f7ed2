import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync, rmSync, statSync, truncateSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { UsageError } from '../src/errors.js';
import { PACKAGE_ROOT } from '../src/io/paths.js';
import { loadModel } from '../src/io/model-source.js';
import { openOnnxCache } from '../src/io/onnx-cache.js';
import { validateConfig, type ViTConfig } from '../src/model/config.js';
import type { RunResult } from '../src/model/engines/engine.js';
import { createEngine } from '../src/model/engines/index.js';
import { OnnxEngine, type OnnxEngineOptions } from '../src/model/engines/onnx.js';
import { TfjsEngine } from '../src/model/engines/tfjs.js';
import type { TensorMap } from '../src/model/tensor.js';
import { randomWeights } from '../src/model/weights/random.js';
import { GOLDEN_MODELS, maxAbsDiff, modelDir, readGolden, withEngine } from './helpers/golden.js';

const TOL = 1e-4;
const ATTENTION_TOL = 1e-5;
const scratch = mkdtempSync(join(tmpdir(), 'vit-onnx-test-'));
after(() => rmSync(scratch, { recursive: true, force: true }));
let dirs = 0;
const freshDir = () => join(scratch, `cache-${dirs++}`);

/** Largest |a - b| over two runs' outputs, output by output. */
function diffs(a: RunResult, b: RunResult): Record<string, number> {
  const d = (x: { data: Float32Array } | null, y: { data: Float32Array } | null) => {
    assert.equal(x === null, y === null);
    return x && y ? maxAbsDiff(x.data, [...y.data]) : 0;
  };
  const out: Record<string, number> = { logits: d(a.logits, b.logits), cls: d(a.cls, b.cls), avg: d(a.avg, b.avg), preLogits: d(a.preLogits, b.preLogits) };
  assert.equal(a.attentions.length, b.attentions.length);
  a.attentions.forEach((t, i) => (out[`attn_${i}`] = d(t, b.attentions[i])));
  return out;
}

function assertClose(label: string, errs: Record<string, number>, tol: number): void {
  console.log(`${label} max |Δ| ${Object.entries(errs).map(([k, v]) => `${k} ${v.toExponential(2)}`).join(' ')}`);
  for (const [k, v] of Object.entries(errs)) assert.ok(v < tol, `${label}: ${k} off by ${v}`);
}

const onnx = (cfg: ViTConfig, w: TensorMap, opts: OnnxEngineOptions = {}) =>
  OnnxEngine.create(cfg, w, { store: openOnnxCache(freshDir()), ...opts });

for (const name of GOLDEN_MODELS) {
  for (const layout of ['hf', 'timm'] as const) {
    const dir = modelDir(name, layout);
    test(`onnx: ${name} (${layout} layout) matches torchvision and the tfjs engine`, { skip: !existsSync(dir) }, async () => {
      const g = readGolden(name);
      const m = await loadModel({ model: dir });
      const x = Float32Array.from(g.inputs.data);
      const batch = g.inputs.shape[0];
      const got = await withEngine(onnx(m.config, m.weights), (e) => e.run(x, batch));
      const errs = {
        logits: maxAbsDiff(got.logits!.data, g.logits), cls: maxAbsDiff(got.cls.data, g.cls),
        avg: maxAbsDiff(got.avg.data, g.avg), preLogits: maxAbsDiff(got.preLogits.data, g.preLogits),
      };
      assertClose(`${name}/${layout} onnx vs torchvision`, errs, TOL);
      assert.deepEqual(got.logits!.shape, [batch, g.config.numClasses]);
      assert.deepEqual(got.cls.shape, [batch, g.config.embedDim]);
      const ref = await withEngine(TfjsEngine.create(m.config, m.weights), (e) => e.run(x, batch));
      assertClose(`${name}/${layout} onnx vs tfjs`, diffs(got, ref), TOL);

      // Attention probabilities come from the second graph; the goldens hold them for the first image.
      const first = x.subarray(0, x.length / batch);
      const att = await withEngine(onnx(m.config, m.weights), (e) => e.run(first, 1, { attentions: true }));
      assert.equal(att.attentions.length, g.attentions.length);
      const attErrs: Record<string, number> = {};
      g.attentions.forEach((layer, l) => (attErrs[`attn_${l}`] = maxAbsDiff(att.attentions[l].data, layer)));
      assertClose(`${name}/${layout} onnx attentions vs torchvision`, attErrs, ATTENTION_TOL);
      assert.deepEqual(att.attentions[0].shape, [1, g.config.numHeads, g.attentions[0][0].length, g.attentions[0][0].length]);
    });
  }
}

/** Weights with every tensor (biases and norms too) far from its init, so a mixed-up parameter shows. */
function busyWeights(cfg: ViTConfig, seed: number): TensorMap {
  const w = randomWeights(cfg, seed);
  let k = 0;
  for (const t of w.values()) {
    k++;
    for (let i = 0; i < t.data.length; i++) t.data[i] = t.data[i] * 3 + 0.1 * Math.sin(0.37 * i + k);
  }
  return w;
}

const VARIANTS: { label: string; change: Partial<ViTConfig> }[] = [
  { label: 'distilled (DeiT)', change: { distilled: true } },
  { label: 'avg pool + fc_norm, no class token', change: { classToken: false, globalPool: 'avg', fcNorm: true } },
  { label: 'headless with pre-logits, no qkv bias', change: { numClasses: 0, labels: null, representationSize: 12, qkvBias: false } },
  { label: 'non-square input', change: { imgSize: [24, 40] } },
];

for (const v of VARIANTS) {
  test(`onnx: ${v.label} matches the tfjs engine, with attentions`, async () => {
    const base = (await loadModel({ model: modelDir('eps32', 'hf') })).config;
    const cfg = validateConfig({ ...base, ...v.change, name: v.label });
    const w = busyWeights(cfg, 7);
    const batch = 2;
    const x = Float32Array.from({ length: batch * 3 * cfg.imgSize[0] * cfg.imgSize[1] }, (_, i) => Math.cos(i * 0.013) * 1.5);
    const got = await withEngine(onnx(cfg, w), (e) => e.run(x, batch, { attentions: true }));
    const ref = await withEngine(TfjsEngine.create(cfg, w), (e) => e.run(x, batch, { attentions: true }));
    assertClose(`${v.label} onnx vs tfjs`, diffs(got, ref), TOL);
    assert.equal(got.logits === null, cfg.numClasses === 0);
  });
}

test('onnx: the external-data cache is reused, and a changed weight makes a new entry', async () => {
  const g = readGolden('odd40');
  const x = Float32Array.from(g.inputs.data);
  const batch = g.inputs.shape[0];
  const cacheDir = freshDir();
  const store = openOnnxCache(cacheDir);
  const load = async () => loadModel({ model: modelDir('odd40', 'hf') });

  const m1 = await load();
  const first = await OnnxEngine.create(m1.config, m1.weights, { store, externalDataThreshold: 0 });
  const out1 = await first.run(x, batch);
  await first.dispose();
  assert.equal(first.startup.reused, false);
  const entry = first.startup.cacheDir!;
  assert.deepEqual(readdirSync(entry).sort(), ['entry.json', 'model-attn.onnx', 'model.onnx', 'weights.bin']);
  assert.ok(statSync(join(entry, 'weights.bin')).size >= m1.weights.get('blocks.0.mlp.fc1.weight')!.data.byteLength);
  assert.ok(maxAbsDiff(out1.logits!.data, g.logits) < TOL);

  // Same weights from a fresh load: the entry is found and used as it is; releaseWeights empties the map.
  const m2 = await load();
  const second = await OnnxEngine.create(m2.config, m2.weights, { store, externalDataThreshold: 0, releaseWeights: true });
  assert.equal(second.startup.reused, true);
  assert.equal(second.startup.graphMs, 0, 'a reused entry needs no graph building');
  assert.equal(second.startup.cacheDir, entry);
  assert.equal(m2.weights.size, 0);
  const out2 = await second.run(x, batch, { attentions: true });
  await second.dispose();
  assertClose('odd40 cache reuse vs first build', diffs({ ...out2, attentions: [] }, out1), 1e-6);
  assert.equal(out2.attentions.length, g.attentions.length);

  // One changed bias: a new entry, whose logits carry the change (so the new weights really were written).
  const m3 = await load();
  m3.weights.get('head.bias')!.data[2] += 1;
  const third = await OnnxEngine.create(m3.config, m3.weights, { store, externalDataThreshold: 0 });
  const out3 = await third.run(x, batch);
  await third.dispose();
  assert.equal(third.startup.reused, false);
  assert.notEqual(third.startup.cacheDir, entry);
  for (let b = 0; b < batch; b++) {
    for (let c = 0; c < g.config.numClasses; c++) {
      const want = out1.logits!.data[b * g.config.numClasses + c] + (c === 2 ? 1 : 0);
      assert.ok(Math.abs(out3.logits!.data[b * g.config.numClasses + c] - want) < 1e-5, `logit [${b}, ${c}]`);
    }
  }
  assert.equal(readdirSync(cacheDir).filter((n) => !n.startsWith('.')).length, 2);
});

test('onnx: an incomplete cache entry is rebuilt, not loaded', async () => {
  const m = await loadModel({ model: modelDir('eps32', 'hf') });
  const store = openOnnxCache(freshDir());
  const a = await OnnxEngine.create(m.config, m.weights, { store });
  await a.dispose();
  truncateSync(join(a.startup.cacheDir!, 'weights.bin'), 100);
  const b = await OnnxEngine.create(m.config, m.weights, { store });
  await b.dispose();
  assert.equal(b.startup.reused, false);
  assert.equal(b.startup.cacheDir, a.startup.cacheDir);
});

test('onnx: in-memory weights (below the threshold or without a writable cache) give the same outputs', async () => {
  const g = readGolden('eps32');
  const m = await loadModel({ model: modelDir('eps32', 'timm') });
  const x = Float32Array.from(g.inputs.data);
  const batch = g.inputs.shape[0];
  const viaDisk = await withEngine(onnx(m.config, m.weights), (e) => e.run(x, batch, { attentions: true }));
  const below = await OnnxEngine.create(m.config, m.weights, { store: openOnnxCache(freshDir()), externalDataThreshold: Infinity });
  assert.equal(below.startup.cacheDir, null);
  assertClose('eps32 in memory vs external data', diffs(await below.run(x, batch, { attentions: true }), viaDisk), 1e-6);
  await below.dispose();

  // A cache "directory" that is a file cannot be written: the engine says so and builds in memory.
  const blocked = join(scratch, 'not-a-dir');
  writeFileSync(blocked, 'x');
  const notes: string[] = [];
  const fallback = await OnnxEngine.create(m.config, m.weights, { store: openOnnxCache(join(blocked, 'onnx')), verbose: (s) => notes.push(s) });
  assert.equal(fallback.startup.cacheDir, null);
  assert.ok(notes.some((n) => /cannot write the ONNX model cache/.test(n)), notes.join('\n'));
  assertClose('eps32 cache fallback vs external data', diffs(await fallback.run(x, batch), { ...viaDisk, attentions: [] }), 1e-6);
  await fallback.dispose();
});

test('onnx cache: entries unused for maxAgeDays go when a new one is written', async () => {
  const root = freshDir();
  const store = openOnnxCache(root, { maxAgeDays: 30 });
  const file = (name: string) => ({ name, bytes: new Uint8Array([1, 2, 3]) });
  const old = await store.save('old', [file('model.onnx')]);
  const recent = await store.save('recent', [file('model.onnx')]);
  const longAgo = new Date(Date.now() - 40 * 24 * 3600 * 1000);
  utimesSync(join(old, 'entry.json'), longAgo, longAgo);
  assert.equal(await store.find('old'), old);
  utimesSync(join(old, 'entry.json'), longAgo, longAgo); // find refreshed it; age it again
  await store.save('new', [file('model.onnx')]);
  assert.deepEqual(readdirSync(root).sort(), ['new', 'recent']);
  assert.equal(await store.find('recent'), recent);
  assert.equal(await store.find('old'), null);
});

test('createEngine: auto picks onnx here and says so; tfjs on request; unknown names are usage errors', async () => {
  const m = await loadModel({ model: modelDir('eps32', 'hf') });
  const notes: string[] = [];
  await withEngine(createEngine('auto', m.config, m.weights, { cacheDir: freshDir(), verbose: (s) => notes.push(s) }), async (e) => {
    assert.equal(e.name, 'onnx');
    assert.match(e.backend, /^cpu, \d+ threads?$/);
  });
  assert.ok(notes.some((n) => /^engine: onnx \(onnxruntime-node \d+\.\d+\.\d+, cpu, \d+ threads?\)$/.test(n)), notes.join('\n'));
  await withEngine(createEngine('tfjs', m.config, m.weights), async (e) => assert.equal(e.name, 'tfjs'));
  await assert.rejects(createEngine('gpu' as 'auto', m.config, m.weights), (e: unknown) => e instanceof UsageError && /auto, onnx, tfjs/.test(e.message));
});

test('vit classify: a later run starts from the cached graph without the checkpoint, and a damaged entry falls back to it', async () => {
  const { runVit } = await import('./helpers/cli.js');
  const env = { XDG_CACHE_HOME: join(scratch, 'cli-cache') };
  const images = join(PACKAGE_ROOT, 'test', 'fixtures', 'images');
  const args = ['classify', images, '-m', modelDir('odd40', 'hf'), '-f', 'jsonl', '--engine', 'onnx', '--verbose'];
  const first = await runVit(args, { env });
  assert.equal(first.code, 0, first.stderr);
  const second = await runVit(args, { env });
  assert.equal(second.code, 0, second.stderr);
  assert.match(second.stderr, /without reading the checkpoint/);
  assert.equal(second.stdout, first.stdout);
  // Garble the graph of the entry the alias points to, keeping its size (a complete-looking entry that
  // onnxruntime cannot load): the run must load the checkpoint instead and give the same rows.
  const root = join(env.XDG_CACHE_HOME, 'vit', 'onnx');
  const entry = readdirSync(root).find((d) => d !== 'files' && existsSync(join(root, d, 'model.onnx')))!;
  const graph = join(root, entry, 'model.onnx');
  writeFileSync(graph, Buffer.alloc(statSync(graph).size, 0xff));
  const third = await runVit(args, { env });
  assert.equal(third.code, 0, third.stderr);
  assert.match(third.stderr, /cached graph unusable/);
  assert.equal(third.stdout, first.stdout);
});

test('vit classify where onnxruntime-node does not load: auto runs on tfjs and keeps the cached graph; --engine onnx says why it cannot', async () => {
  const { runVit } = await import('./helpers/cli.js');
  const env = { XDG_CACHE_HOME: join(scratch, 'cli-cache-no-ort') };
  const noOrt = { ...env, NODE_OPTIONS: `--import ${join(PACKAGE_ROOT, 'dist', 'test', 'helpers', 'no-onnxruntime.js')}` };
  const images = join(PACKAGE_ROOT, 'test', 'fixtures', 'images');
  const args = ['classify', images, '-m', modelDir('odd40', 'hf'), '-f', 'jsonl', '-k', '1', '--verbose'];
  const withOrt = await runVit(args, { env });
  assert.equal(withOrt.code, 0, withOrt.stderr);
  assert.match(withOrt.stderr, /engine: onnx/);
  const root = join(env.XDG_CACHE_HOME, 'vit', 'onnx');
  const entries = readdirSync(root).sort();

  const fallback = await runVit(args, { env: noOrt });
  assert.equal(fallback.code, 0, fallback.stderr);
  assert.match(fallback.stderr, /onnxruntime-node does not load \(.*unavailable in this test\); falling back to tfjs/);
  assert.match(fallback.stderr, /engine: tfjs/);
  const tops = (out: string) => out.trim().split('\n').map((l) => JSON.parse(l) as { path: string; predictions: { index: number; logit: number }[] });
  const [a, b] = [tops(fallback.stdout), tops(withOrt.stdout)];
  assert.equal(a.length, b.length);
  a.forEach((r, i) => {
    assert.equal(r.path, b[i].path);
    assert.equal(r.predictions[0].index, b[i].predictions[0].index, r.path);
    assert.ok(Math.abs(r.predictions[0].logit - b[i].predictions[0].logit) < TOL, r.path);
  });
  // The cached graph was not blamed for the runtime's absence.
  assert.deepEqual(readdirSync(root).sort(), entries);
  assert.ok(entries.every((d) => d === 'files' || existsSync(join(root, d, 'model.onnx'))));

  const forced = await runVit([...args, '--engine', 'onnx'], { env: noOrt });
  assert.equal(forced.code, 1);
  assert.match(forced.stderr, /the onnx engine needs onnxruntime-node, which does not load here: .*unavailable in this test/);
  assert.equal(forced.stdout, '');
});

test('vit classify: a cached graph starts while the inputs are read, and an input error then still ends the run cleanly', async () => {
  const { runVit } = await import('./helpers/cli.js');
  const env = { XDG_CACHE_HOME: join(scratch, 'cli-cache-early') };
  const images = join(PACKAGE_ROOT, 'test', 'fixtures', 'images');
  const base = ['classify', images, '-m', modelDir('odd40', 'hf'), '--verbose'];
  assert.equal((await runVit(base, { env })).code, 0);
  const garbage = join(scratch, 'not-a-vit-output.csv');
  writeFileSync(garbage, 'garbage\n');
  const r = await runVit([...base, '-o', garbage, '--resume'], { env });
  assert.equal(r.code, 1, r.stderr);
  // The engine had started from the cache before the output file was found wrong.
  assert.match(r.stderr, /without reading the checkpoint[\s\S]*not a CSV written by vit/);
  assert.equal(r.stdout, '');
});

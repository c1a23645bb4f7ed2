import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync, statSync, truncateSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { UsageError } from '../src/errors.js';
import { PACKAGE_ROOT } from '../src/io/paths.js';
import { loadModel } from '../src/io/model-source.js';
import { openGraphCache } from '../src/io/graph-cache.js';
import { archOf } from '../src/model/arch/index.js';
import { validateVitConfig, type ViTConfig } from '../src/model/arch/vit/config.js';
import { vitPreset } from '../src/model/arch/vit/presets.js';
import type { ModelConfig } from '../src/model/config.js';
import type { GraphStore, RunResult } from '../src/model/engines/engine.js';
import { startEngine } from '../src/model/engines/index.js';
import type { TensorMap } from '../src/model/tensor.js';
import { randomWeights } from '../src/model/weights/random.js';
import { engineFor, GOLDEN_MODELS, IMAGES, identityOf, maxAbsDiff, modelDir, readGolden, withEngine } from './helpers/golden.js';

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
  const out: Record<string, number> = { logits: d(a.logits, b.logits) };
  for (const k of Object.keys(a.features)) out[k] = d(a.features[k], b.features[k]);
  assert.equal(a.attentions.length, b.attentions.length);
  a.attentions.forEach((t, i) => (out[`attn_${i}`] = d(t, b.attentions[i])));
  return out;
}

function assertClose(label: string, errs: Record<string, number>, tol: number): void {
  console.log(`${label} max |Δ| ${Object.entries(errs).map(([k, v]) => `${k} ${v.toExponential(2)}`).join(' ')}`);
  for (const [k, v] of Object.entries(errs)) assert.ok(v < tol, `${label}: ${k} off by ${v}`);
}

/** The onnx engine through a store, with the notes it writes. */
function onnx(cfg: ModelConfig, w: TensorMap, store: GraphStore | null = openGraphCache(freshDir()), notes: string[] = []) {
  return engineFor('onnx', cfg, w, { cache: store, identity: identityOf(cfg, w), verbose: (m) => notes.push(m) });
}
const tfjs = (cfg: ModelConfig, w: TensorMap) => engineFor('tfjs', cfg, w);

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
        logits: maxAbsDiff(got.logits!.data, g.logits), cls: maxAbsDiff(got.features.cls.data, g.cls),
        avg: maxAbsDiff(got.features.avg.data, g.avg), preLogits: maxAbsDiff(got.features['pre-logits'].data, g.preLogits),
      };
      assertClose(`${name}/${layout} onnx vs torchvision`, errs, TOL);
      assert.deepEqual(got.logits!.shape, [batch, g.config.numClasses]);
      assert.deepEqual(got.features.cls.shape, [batch, g.config.embedDim]);
      const ref = await withEngine(tfjs(m.config, m.weights), (e) => e.run(x, batch));
      assertClose(`${name}/${layout} onnx vs tfjs`, diffs(got, ref), TOL);

      // Runs that read only the class token's outputs (classify, embed --pool cls) take the graph whose last
      // block computes the prefix tokens alone: torchvision's values all the same, on both engines.
      for (const engine of [onnx, tfjs]) {
        const prefix = await withEngine(engine(m.config, m.weights), (e) => e.run(x, batch, { pools: ['cls', 'pre-logits'] }));
        assertClose(`${name}/${layout} ${engine.name}, prefix tokens only, vs torchvision`, {
          logits: maxAbsDiff(prefix.logits!.data, g.logits), cls: maxAbsDiff(prefix.features.cls.data, g.cls),
          preLogits: maxAbsDiff(prefix.features['pre-logits'].data, g.preLogits),
        }, TOL);
      }

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
  { label: 'distilled (DeiT)', change: { distilled: true, distilledHead: true } },
  { label: 'distillation token, class token head only (transformers\' DeiTForImageClassification)', change: { distilled: true } },
  { label: 'avg pool + fc_norm, no class token', change: { classToken: false, globalPool: 'avg', fcNorm: true } },
  { label: 'class token through fc_norm', change: { globalPool: 'token', fcNorm: true } },
  { label: 'headless with pre-logits, no qkv bias', change: { numClasses: 0, labels: null, representationSize: 12, qkvBias: false } },
  // The preprocessing follows the size, as --image-size makes it (a config whose resize misses its input is refused).
  { label: 'non-square input', change: { imgSize: [24, 40], preprocess: { ...vitPreset('B/16').preprocess, resize: { height: 24, width: 40 }, crop: null } } },
];

for (const v of VARIANTS) {
  test(`onnx: ${v.label} matches the tfjs engine, with attentions, without, and with the prefix tokens only`, async () => {
    const base = (await loadModel({ model: modelDir('eps32', 'hf') })).config;
    const cfg = validateVitConfig({ ...(base as ViTConfig), ...v.change, name: v.label });
    const w = busyWeights(cfg, 7);
    const batch = 2;
    const x = Float32Array.from({ length: batch * 3 * cfg.imgSize[0] * cfg.imgSize[1] }, (_, i) => Math.cos(i * 0.013) * 1.5);
    const got = await withEngine(onnx(cfg, w), (e) => e.run(x, batch, { attentions: true }));
    const ref = await withEngine(tfjs(cfg, w), (e) => e.run(x, batch, { attentions: true }));
    assertClose(`${v.label} onnx vs tfjs`, diffs(got, ref), TOL);
    assert.equal(got.logits === null, cfg.numClasses === 0);
    // The plain graph (fused attention kernels, which a model without a qkv bias once crashed) gives the same.
    const plain = await withEngine(onnx(cfg, w), (e) => e.run(x, batch));
    assertClose(`${v.label} onnx plain graph vs tfjs`, diffs(plain, { ...ref, attentions: [] }), TOL);

    // A run that reads only the logits and the class token's features gives the same values on both engines;
    // where the model pools by class token, without the average over patches (its last block skipped them).
    const kept = archOf(cfg).prefixPools(cfg);
    for (const engine of [onnx, tfjs]) {
      const prefix = await withEngine(engine(cfg, w), (e) => e.run(x, batch, { pools: ['cls', 'pre-logits'] }));
      const errs: Record<string, number> = { cls: maxAbsDiff(prefix.features.cls.data, Array.from(got.features.cls.data)) };
      errs.preLogits = maxAbsDiff(prefix.features['pre-logits'].data, Array.from(got.features['pre-logits'].data));
      if (cfg.numClasses > 0) errs.logits = maxAbsDiff(prefix.logits!.data, Array.from(got.logits!.data));
      assertClose(`${v.label} ${engine.name}, prefix tokens only`, errs, TOL);
      assert.equal('avg' in prefix.features, kept === null, `${v.label} ${engine.name}: avg ${kept === null ? 'missing' : 'computed'}`);
    }
  });
}

/** The store entry an engine's notes say it reused or wrote. */
function entryOf(notes: string[]): { dir: string; reused: boolean } | null {
  for (const n of notes) {
    const m = /^onnx: (reused|wrote) (\S+)/.exec(n);
    if (m) return { dir: m[2], reused: m[1] === 'reused' };
  }
  return null;
}

test('onnx: a stored graph is reused without loading the weights, and other weights make a new entry', async () => {
  const g = readGolden('odd40');
  const x = Float32Array.from(g.inputs.data);
  const batch = g.inputs.shape[0];
  const cacheDir = freshDir();
  const store = openGraphCache(cacheDir);
  const m1 = await loadModel({ model: modelDir('odd40', 'hf') });
  const notes1: string[] = [];
  const out1 = await withEngine(onnx(m1.config, m1.weights, store, notes1), (e) => e.run(x, batch));
  const first = entryOf(notes1)!;
  assert.equal(first.reused, false);
  assert.deepEqual(readdirSync(first.dir).sort(), ['entry.json', 'model-attn.onnx', 'model-prefix.onnx', 'model.onnx', 'weights.bin']);
  assert.ok(maxAbsDiff(out1.logits!.data, g.logits) < TOL);

  // The same identity again: the stored graph runs and the weights are never asked for.
  const m2 = await loadModel({ model: modelDir('odd40', 'hf') });
  const notes2: string[] = [];
  let loads = 0;
  const second = await startEngine('onnx', {
    config: m2.config, identity: identityOf(m2.config, m2.weights), settings: { dtype: 'fp32', device: 'cpu', threads: 2 },
    load: async () => {
      loads++;
      return { config: m2.config, weights: m2.weights };
    },
    cache: store, verbose: (n) => notes2.push(n),
  });
  const out2 = await withEngine(Promise.resolve(second), (e) => e.run(x, batch, { attentions: true }));
  assert.equal(loads, 0);
  assert.deepEqual(entryOf(notes2), { dir: first.dir, reused: true });
  assertClose('odd40 stored graph vs first build', diffs({ ...out2, attentions: [] }, out1), 1e-6);
  assert.equal(out2.attentions.length, g.attentions.length);

  // One changed bias: a new entry, whose logits carry the change (so the new weights really were written).
  const m3 = await loadModel({ model: modelDir('odd40', 'hf') });
  m3.weights.get('head.bias')!.data[2] += 1;
  const notes3: string[] = [];
  const out3 = await withEngine(onnx(m3.config, m3.weights, store, notes3), (e) => e.run(x, batch));
  assert.notEqual(entryOf(notes3)!.dir, first.dir);
  for (let b = 0; b < batch; b++) {
    for (let c = 0; c < g.config.numClasses; c++) {
      const want = out1.logits!.data[b * g.config.numClasses + c] + (c === 2 ? 1 : 0);
      assert.ok(Math.abs(out3.logits!.data[b * g.config.numClasses + c] - want) < 1e-5, `logit [${b}, ${c}]`);
    }
  }
  assert.equal(readdirSync(cacheDir).filter((n) => !n.startsWith('.')).length, 2);
});

test('onnx: an incomplete store entry is rebuilt, not loaded', async () => {
  const m = await loadModel({ model: modelDir('eps32', 'hf') });
  const store = openGraphCache(freshDir());
  const notesA: string[] = [];
  await withEngine(onnx(m.config, m.weights, store, notesA), async () => undefined);
  const a = entryOf(notesA)!;
  truncateSync(join(a.dir, 'weights.bin'), 100);
  const notesB: string[] = [];
  await withEngine(onnx(m.config, m.weights, store, notesB), async () => undefined);
  assert.deepEqual(entryOf(notesB), { dir: a.dir, reused: false });
});

test('onnx: in-memory graphs (no store, or one that cannot be written) give the same outputs', async () => {
  const g = readGolden('eps32');
  const m = await loadModel({ model: modelDir('eps32', 'timm') });
  const x = Float32Array.from(g.inputs.data);
  const batch = g.inputs.shape[0];
  const viaDisk = await withEngine(onnx(m.config, m.weights), (e) => e.run(x, batch, { attentions: true }));
  const notes: string[] = [];
  const inMemory = await withEngine(onnx(m.config, m.weights, null, notes), (e) => e.run(x, batch, { attentions: true }));
  assert.equal(entryOf(notes), null);
  assertClose('eps32 in memory vs external data', diffs(inMemory, viaDisk), 1e-6);

  // A store "directory" that is a file cannot be written: the engine says so and builds in memory.
  const blocked = join(scratch, 'not-a-dir');
  writeFileSync(blocked, 'x');
  const blockedNotes: string[] = [];
  const fallback = await withEngine(onnx(m.config, m.weights, openGraphCache(join(blocked, 'onnx')), blockedNotes), (e) => e.run(x, batch));
  assert.equal(entryOf(blockedNotes), null);
  assert.ok(blockedNotes.some((n) => /cannot write the ONNX model cache/.test(n)), blockedNotes.join('\n'));
  assertClose('eps32 store fallback vs external data', diffs(fallback, { ...viaDisk, attentions: [] }), 1e-6);
});

test('graph cache: entries unused for maxAgeDays go when a new one is written', async () => {
  const root = freshDir();
  const store = openGraphCache(root, { maxAgeDays: 30 });
  const cfg = (await loadModel({ model: modelDir('eps32', 'hf') })).config;
  const file = (name: string) => ({ name, bytes: new Uint8Array([1, 2, 3]) });
  const old = await store.save('old', cfg, [file('model.onnx')]);
  const recent = await store.save('recent', cfg, [file('model.onnx')]);
  const longAgo = new Date(Date.now() - 40 * 24 * 3600 * 1000);
  utimesSync(join(old, 'entry.json'), longAgo, longAgo);
  assert.equal((await store.find('old'))?.dir, old);
  utimesSync(join(old, 'entry.json'), longAgo, longAgo); // find refreshed it; age it again
  await store.save('new', cfg, [file('model.onnx')]);
  assert.deepEqual(readdirSync(root).sort(), ['new', 'recent']);
  assert.equal((await store.find('recent'))?.dir, recent);
  assert.deepEqual((await store.find('recent'))?.config, cfg);
  assert.equal(await store.find('old'), null);
});

test('graph cache: an entry whose entry.json is a FIFO is no entry (not waited on)', async () => {
  const root = freshDir();
  const store = openGraphCache(root);
  const cfg = (await loadModel({ model: modelDir('eps32', 'hf') })).config;
  const dir = await store.save('k', cfg, [{ name: 'model.onnx', bytes: new Uint8Array([1, 2, 3]) }]);
  rmSync(join(dir, 'entry.json'));
  execFileSync('mkfifo', [join(dir, 'entry.json')]);
  assert.equal(await store.find('k'), null);
});

test('startEngine: auto picks onnx here and says so; tfjs on request; unknown names and unsupported dtypes are usage errors', async () => {
  const m = await loadModel({ model: modelDir('eps32', 'hf') });
  const notes: string[] = [];
  await withEngine(engineFor('auto', m.config, m.weights, { verbose: (s) => notes.push(s) }), async (e) => {
    assert.equal(e.name, 'onnx');
    assert.match(e.backend, /^cpu, \d+ threads?$/);
  });
  assert.ok(notes.some((n) => /^engine: onnx \(onnxruntime-node \d+\.\d+\.\d+, cpu, \d+ threads?\)$/.test(n)), notes.join('\n'));
  await withEngine(tfjs(m.config, m.weights), async (e) => assert.equal(e.name, 'tfjs'));
  await assert.rejects(engineFor('gpu' as 'auto', m.config, m.weights), (e: unknown) => e instanceof UsageError && /auto, onnx, tfjs/.test(e.message));
  await assert.rejects(engineFor('tfjs', m.config, m.weights, { dtype: 'int8' }), (e: unknown) => e instanceof UsageError && /fp32/.test(e.message));
});


test('vit classify: a later run starts from the cached graph without the checkpoint, and a damaged entry falls back to it', async () => {
  const { runVit } = await import('./helpers/cli.js');
  const env = { XDG_CACHE_HOME: join(scratch, 'cli-cache') };
  const args = ['classify', IMAGES, '-m', modelDir('odd40', 'hf'), '-f', 'jsonl', '--engine', 'onnx', '--verbose'];
  const first = await runVit(args, { env });
  assert.equal(first.code, 0, first.stderr);
  const second = await runVit(args, { env });
  assert.equal(second.code, 0, second.stderr);
  assert.match(second.stderr, /without reading the checkpoint/);
  assert.equal(second.stdout, first.stdout);
  // Garble the stored graph, keeping its size (a complete-looking entry that
  // onnxruntime cannot load): the run must load the checkpoint instead and give the same rows.
  const root = join(env.XDG_CACHE_HOME, 'vit', 'onnx');
  // The graph classify opens: the one for logits alone (the class token's rows only in the last block).
  const entry = readdirSync(root).find((d) => existsSync(join(root, d, 'model-prefix.onnx')))!;
  const graph = join(root, entry, 'model-prefix.onnx');
  writeFileSync(graph, Buffer.alloc(statSync(graph).size, 0xff));
  const third = await runVit(args, { env });
  assert.equal(third.code, 0, third.stderr);
  assert.match(third.stderr, /stored graph unusable/);
  assert.equal(third.stdout, first.stdout);
});

test('vit classify where onnxruntime-node does not load: auto runs on tfjs and keeps the cached graph; --engine onnx says why it cannot', async () => {
  const { runVit } = await import('./helpers/cli.js');
  const env = { XDG_CACHE_HOME: join(scratch, 'cli-cache-no-ort') };
  const noOrt = { ...env, NODE_OPTIONS: `--import ${join(PACKAGE_ROOT, 'dist', 'test', 'helpers', 'no-onnxruntime.js')}` };
  const args = ['classify', IMAGES, '-m', modelDir('odd40', 'hf'), '-f', 'jsonl', '-k', '1', '--verbose'];
  const withOrt = await runVit(args, { env });
  assert.equal(withOrt.code, 0, withOrt.stderr);
  assert.match(withOrt.stderr, /engine: onnx/);
  const root = join(env.XDG_CACHE_HOME, 'vit', 'onnx');
  const entries = readdirSync(root).sort();

  const fallback = await runVit(args, { env: noOrt });
  assert.equal(fallback.code, 0, fallback.stderr);
  assert.match(fallback.stderr, /engine: onnx: onnxruntime-node does not load here: .*unavailable in this test; using tfjs/);
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
  assert.ok(entries.every((d) => d === 'ids' || existsSync(join(root, d, 'model.onnx'))));

  const forced = await runVit([...args, '--engine', 'onnx'], { env: noOrt });
  assert.equal(forced.code, 1);
  assert.match(forced.stderr, /the onnx engine cannot run: onnxruntime-node does not load here: .*unavailable in this test/);
  assert.equal(forced.stdout, '');
});

test('vit classify: an output that cannot be resumed is reported before the engine starts', async () => {
  const { runVit } = await import('./helpers/cli.js');
  const env = { XDG_CACHE_HOME: join(scratch, 'cli-cache-early') };
  const base = ['classify', IMAGES, '-m', modelDir('odd40', 'hf'), '--verbose'];
  assert.equal((await runVit(base, { env })).code, 0);
  const garbage = join(scratch, 'not-a-vit-output.csv');
  writeFileSync(garbage, 'garbage\n');
  const r = await runVit([...base, '-o', garbage, '--resume'], { env });
  assert.equal(r.code, 2, r.stderr);
  assert.match(r.stderr, /cannot resume .*not-a-vit-output\.csv: it has no .*\.vit\.json/);
  assert.doesNotMatch(r.stderr, /engine: onnx/);
  assert.equal(r.stdout, '');
});

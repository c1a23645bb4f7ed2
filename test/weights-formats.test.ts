import assert from 'node:assert/strict';
import { copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { WeightsError } from '../src/errors.js';
import { loadModel, type ModelSpec } from '../src/io/model-source.js';
import { TfjsEngine } from '../src/model/engines/tfjs.js';
import { vitPreset as presetConfig } from '../src/model/arch/vit/presets.js';
import type { TensorMap } from '../src/model/tensor.js';
import { readWeights } from '../src/model/weights/formats.js';
import '../src/model/weights/index.js';
import { randomWeights } from '../src/model/weights/random.js';
import { detectScheme } from '../src/model/weights/schemes.js';
import { VIT_SCHEMES } from '../src/model/arch/vit/schemes.js';
import type { ViTConfig } from '../src/model/arch/vit/config.js';
import { readSafetensors, writeSafetensors } from '../src/model/weights/safetensors.js';
import { readZip } from '../src/model/weights/zip.js';
import { FIXTURES, GOLDEN_MODELS, maxAbsDiff, modelDir, readGolden } from './helpers/golden.js';

const TOL = 1e-4;
const WEIGHTS = join(FIXTURES, 'weights');

interface Expected { shape: number[]; data: number[] }
interface FeatureGolden { inputs: { shape: number[]; data: number[] }; logits: number[][]; cls: number[][]; avg?: number[][] }

function read(path: string): TensorMap {
  return readWeights(readFileSync(path), path);
}

/** Two tensor maps hold the same names, shapes and float32 values. */
function assertSameTensors(got: TensorMap, want: TensorMap): void {
  assert.deepEqual([...got.keys()].sort(), [...want.keys()].sort());
  for (const [k, t] of want) {
    assert.deepEqual(got.get(k)!.shape, t.shape, k);
    assert.equal(maxAbsDiff(got.get(k)!.data, [...t.data]), 0, k);
  }
}

function assertMatches(got: TensorMap, want: Record<string, Expected>): void {
  for (const [k, e] of Object.entries(want)) {
    const t = got.get(k);
    assert.ok(t, `missing ${k}`);
    assert.deepEqual(t.shape, e.shape, k);
    assert.deepEqual([...t.data], e.data.map(Math.fround), k);
  }
}

/** Load a model, run the golden inputs through the tfjs engine, return the max logit error (and more). */
async function runGolden(spec: ModelSpec, g: FeatureGolden, logits = g.logits) {
  const m = await loadModel(spec);
  const engine = await TfjsEngine.create(m.config, m.weights);
  try {
    const out = await engine.run(Float32Array.from(g.inputs.data), g.inputs.shape[0]);
    return { model: m, out, errLogits: maxAbsDiff(out.logits!.data, logits), errCls: maxAbsDiff(out.features.cls.data, g.cls) };
  } finally {
    await engine.dispose();
  }
}

// ---- the same model in every format and naming scheme

const FORMATS = [
  { file: 'hf/model.safetensors', scheme: 'hf' },
  { file: 'timm.bin', scheme: 'timm' },
  { file: 'torchvision.pth', scheme: 'torchvision' },
  { file: 'google.npz', scheme: 'google' },
];

for (const name of GOLDEN_MODELS) {
  for (const { file, scheme } of FORMATS) {
    const path = join(FIXTURES, 'models', name, file);
    test(`${name}: ${file} (${scheme} names) gives torchvision's logits`, { skip: !existsSync(path) && 'no such fixture' }, async () => {
      const g = readGolden(name);
      const r = await runGolden({ model: modelDir(name, 'timm'), weights: path }, g);
      console.log(`${name} ${file}: max |Δ| logits ${r.errLogits.toExponential(2)} cls ${r.errCls.toExponential(2)}`);
      assert.equal(r.model.scheme, scheme);
      assert.ok(r.errLogits < TOL, `logits off by ${r.errLogits}`);
      assert.ok(r.errCls < TOL, `cls off by ${r.errCls}`);
    });
  }
  test(`${name}: every format converts to exactly the timm safetensors tensors`, async () => {
    const cfg = (await loadModel({ model: modelDir(name, 'timm') })).config;
    const want = read(join(modelDir(name, 'timm'), 'model.safetensors'));
    for (const { file } of FORMATS.slice(1)) {
      const raw = read(join(FIXTURES, 'models', name, file));
      assertSameTensors(detectScheme(VIT_SCHEMES, raw).toCanonical(raw, cfg as ViTConfig), want);
    }
  });
}

test('scheme detection names all four schemes and explains unknown keys', () => {
  const detected = FORMATS.map(({ file }) => detectScheme(VIT_SCHEMES, read(join(FIXTURES, 'models', 'odd40', file))).name);
  assert.deepEqual(detected, FORMATS.map((f) => f.scheme));
  const odd = new Map([['encoder.blk0.w', { shape: [1], data: new Float32Array(1) }]]);
  assert.throws(() => detectScheme(VIT_SCHEMES, odd), (e: Error) =>
    e instanceof WeightsError && /cannot tell which naming scheme/.test(e.message) && /encoder\.blk0\.w/.test(e.message) &&
    ['timm', 'hf', 'torchvision', 'google'].every((s) => e.message.includes(s)));
});

// ---- torch.save variants

test('float16 and bfloat16 storages read exactly and give the rounded model\'s logits', async () => {
  const g = readGolden('odd40');
  for (const [file, dtype] of [['half.pth', 'f16'], ['bf16.pth', 'bf16']] as const) {
    const raw = read(join(WEIGHTS, file));
    const hf = read(join(FIXTURES, 'models', 'odd40', 'hf', `model.${dtype}.safetensors`));
    const cfg = (await loadModel({ model: modelDir('odd40', 'timm') })).config;
    assertSameTensors(raw, detectScheme(VIT_SCHEMES, hf).toCanonical(hf, cfg as ViTConfig));
    const r = await runGolden({ model: modelDir('odd40', 'timm'), weights: join(WEIGHTS, file) }, g, g[dtype]!.logits);
    console.log(`odd40 ${file}: max |Δ| logits ${r.errLogits.toExponential(2)}`);
    assert.ok(r.errLogits < TOL, `${file}: logits off by ${r.errLogits}`);
  }
});

test('strided, offset, shared, transposed, f16/bf16/f64 and 0-d tensors read as torch sees them', () => {
  const got = read(join(WEIGHTS, 'views.pth'));
  const want = JSON.parse(readFileSync(join(WEIGHTS, 'views.json'), 'utf8')) as { tensors: Record<string, Expected>; ignored: string[] };
  assertMatches(got, want.tensors);
  for (const k of want.ignored) assert.ok(!got.has(k), `integer tensor ${k} should be left out`);
  assert.equal(got.size, Object.keys(want.tensors).length);
});

test('legacy (non-zip) torch.save files are read', () => {
  assertSameTensors(read(join(WEIGHTS, 'legacy.pth')), read(join(modelDir('eps32', 'timm'), 'model.safetensors')));
});

test('{"state_dict": ...} wrappers, module. prefixes and integer buffers unwrap to the state dict', () => {
  const got = read(join(WEIGHTS, 'wrapped.pth'));
  assertSameTensors(got, read(join(modelDir('eps32', 'timm'), 'model.safetensors')));
  assert.equal(detectScheme(VIT_SCHEMES, got).name, 'timm');
});

// ---- npz variants

test('compressed .npz with f2 / f8 / Fortran-order / 0-d arrays reads exactly', () => {
  const want = JSON.parse(readFileSync(join(WEIGHTS, 'misc.json'), 'utf8')) as Record<string, Expected>;
  const got = read(join(WEIGHTS, 'misc.npz'));
  assertMatches(got, want);
  assert.equal(got.size, Object.keys(want).length);
});

test('ZIP64 central directories are followed', () => {
  const bytes = readFileSync(join(WEIGHTS, 'zip64.npz'));
  const zip = readZip(bytes, 'zip64.npz');
  assert.ok([...zip.entries.values()].every((e) => e.localOffset >= 0 && e.size === e.compressedSize));
  assertSameTensors(read(join(WEIGHTS, 'zip64.npz')), read(join(FIXTURES, 'models', 'eps32', 'google.npz')));
});

// ---- hostile archives only ever fail with a WeightsError

/** Whatever the bytes, reading either succeeds or throws a WeightsError: never a RangeError, never a hang. */
function readsOrRefuses(bytes: Uint8Array, what: string): 'ok' | 'refused' {
  try {
    readWeights(bytes, what);
    return 'ok';
  } catch (e) {
    assert.ok(e instanceof WeightsError, `${what}: ${(e as Error).stack}`);
    return 'refused';
  }
}

test('truncated and corrupted archives are refused cleanly', () => {
  for (const file of [join(FIXTURES, 'models', 'eps32', 'torchvision.pth'), join(WEIGHTS, 'misc.npz'), join(WEIGHTS, 'zip64.npz')]) {
    const bytes = readFileSync(file);
    for (let cut = 1; cut < 40; cut++) {
      assert.equal(readsOrRefuses(bytes.subarray(0, Math.floor((bytes.length * cut) / 40)), `${file} cut ${cut}`), 'refused');
    }
    // Flip bytes all over the central directory and end records.
    let refused = 0;
    for (let i = 0; i < 400; i++) {
      const b = Uint8Array.from(bytes);
      const at = b.length - 1 - ((i * 7919) % Math.min(b.length, 6000));
      b[at] ^= 1 << (i % 8);
      if (readsOrRefuses(b, `${file} flip @${at}`) === 'refused') refused++;
    }
    assert.ok(refused > 0);
  }
});

test('a flipped data byte fails the CRC check; absurd sizes are refused before allocating', () => {
  const bytes = Uint8Array.from(readFileSync(join(FIXTURES, 'models', 'eps32', 'torchvision.pth')));
  const zip = readZip(bytes, 'x');
  const entry = zip.entries.get('torchvision/data/1')!;
  const dataStart = entry.localOffset + 30 + bytes[entry.localOffset + 26] + (bytes[entry.localOffset + 27] << 8) +
    bytes[entry.localOffset + 28] + (bytes[entry.localOffset + 29] << 8);
  bytes[dataStart + 5] ^= 0x40;
  assert.throws(() => readWeights(bytes, 'flipped.pth'), /CRC-32/);

  // A deflated entry claiming 4 GiB from 100 bytes.
  const npz = Uint8Array.from(readFileSync(join(WEIGHTS, 'misc.npz')));
  const z = readZip(npz, 'misc.npz');
  const first = [...z.entries.values()][0];
  const view = new DataView(npz.buffer);
  let cd = npz.length - 22;
  cd = view.getUint32(cd + 16, true); // central directory offset from the end record
  assert.equal(view.getUint32(cd, true), 0x02014b50);
  view.setUint32(cd + 24, 0xfffffff0, true);
  assert.throws(() => readZip(npz, 'bomb.npz').read(first.name), /claims 4294967280 bytes/);
});

// ---- DeiT distilled, in timm and Hugging Face names

const deit = JSON.parse(readFileSync(join(WEIGHTS, 'deit.json'), 'utf8')) as FeatureGolden;

for (const layout of ['timm', 'hf'] as const) {
  test(`distilled DeiT (${layout} names) gives the reference logits: mean of both heads`, async () => {
    const r = await runGolden({ model: join(WEIGHTS, 'deit', layout) }, deit);
    console.log(`deit ${layout}: max |Δ| logits ${r.errLogits.toExponential(2)} cls ${r.errCls.toExponential(2)}`);
    assert.equal(r.model.scheme, layout);
    assert.equal((r.model.config as ViTConfig).distilled, true);
    assert.ok(r.model.weights.has('dist_token') && r.model.weights.has('head_dist.weight'));
    assert.ok(r.errLogits < TOL, `logits off by ${r.errLogits}`);
    assert.ok(r.errCls < TOL, `cls off by ${r.errCls}`);
    assert.ok(maxAbsDiff(r.out.features.avg.data, deit.avg!) < TOL, 'patch-token mean off');
    // Logits alone (classify): the last block computes the class and distillation tokens only, same values.
    const engine = await TfjsEngine.create(r.model.config, r.model.weights);
    try {
      const prefix = await engine.run(Float32Array.from(deit.inputs.data), deit.inputs.shape[0], { pools: ['cls'] });
      assert.ok(maxAbsDiff(prefix.logits!.data, deit.logits) < TOL, 'logits off with the prefix tokens only');
      assert.ok(maxAbsDiff(prefix.features.cls.data, deit.cls) < TOL, 'cls off with the prefix tokens only');
      assert.equal('avg' in prefix.features, false);
    } finally {
      await engine.dispose();
    }
  });
}

test('transformers\' DeiTForImageClassification (a fine-tuned DeiT): the distillation token runs, the class token\'s head alone classifies', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'vit-deit-cls-'));
  try {
    const src = join(WEIGHTS, 'deit', 'hf');
    const config = JSON.parse(readFileSync(join(src, 'config.json'), 'utf8'));
    writeFileSync(join(dir, 'config.json'), JSON.stringify({ ...config, architectures: ['DeiTForImageClassification'] }));
    copyFileSync(join(src, 'preprocessor_config.json'), join(dir, 'preprocessor_config.json'));
    // What transformers saves for it: `classifier` on the class token, no distillation head.
    const w = read(join(src, 'model.safetensors'));
    const out: TensorMap = new Map();
    for (const [k, t] of w) {
      if (k.startsWith('distillation_classifier.')) continue;
      out.set(k.replace(/^cls_classifier\./, 'classifier.'), t);
    }
    writeFileSync(join(dir, 'model.safetensors'), writeSafetensors(out));
    // The reference: torch's class-token features of the golden inputs through that head.
    const W = w.get('cls_classifier.weight')!;
    const bias = w.get('cls_classifier.bias')!.data;
    const [classes, width] = W.shape;
    const want = deit.cls.map((f) => Array.from({ length: classes }, (_, c) => {
      let acc = bias[c];
      for (let d = 0; d < width; d++) acc += W.data[c * width + d] * f[d];
      return acc;
    }));
    const r = await runGolden({ model: dir }, deit, want);
    console.log(`deit DeiTForImageClassification: max |Δ| logits ${r.errLogits.toExponential(2)} cls ${r.errCls.toExponential(2)}`);
    const cfg = r.model.config as ViTConfig;
    assert.equal(cfg.distilled, true);
    assert.equal(cfg.distilledHead, false);
    assert.ok(r.errLogits < TOL, `logits off by ${r.errLogits}`);
    assert.ok(r.errCls < TOL, `cls off by ${r.errCls}`);
    assert.ok(maxAbsDiff(r.out.logits!.data, deit.logits) > 10 * TOL, 'not the two-head mean');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

// ---- headless checkpoints

test('headless checkpoints load with no classifier: presets infer numClasses 0, features still match', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'vit-headless-'));
  try {
    for (const preset of ['vit_tiny_patch16_224', 'deit_tiny_distilled_patch16_224']) {
      const w = randomWeights(presetConfig(preset));
      for (const k of ['head.weight', 'head.bias', 'head_dist.weight', 'head_dist.bias']) w.delete(k);
      const file = join(dir, `${preset}.safetensors`);
      writeFileSync(file, writeSafetensors(w));
      const m = await loadModel({ model: preset, weights: file });
      assert.equal(m.config.numClasses, 0, preset);
      assert.equal(m.config.labels, null);
    }
    // The small DeiT without its heads, described by a timm config with num_classes 0.
    const src = join(WEIGHTS, 'deit', 'timm');
    const cfg = JSON.parse(readFileSync(join(src, 'config.json'), 'utf8'));
    writeFileSync(join(dir, 'config.json'), JSON.stringify({ ...cfg, num_classes: 0, label_names: undefined }));
    const w = readSafetensors(readFileSync(join(src, 'model.safetensors')));
    for (const k of ['head.weight', 'head.bias', 'head_dist.weight', 'head_dist.bias']) w.delete(k);
    writeFileSync(join(dir, 'model.safetensors'), writeSafetensors(w));
    const m = await loadModel({ model: dir });
    const engine = await TfjsEngine.create(m.config, m.weights);
    try {
      const out = await engine.run(Float32Array.from(deit.inputs.data), deit.inputs.shape[0]);
      assert.equal(out.logits, null);
      assert.ok(maxAbsDiff(out.features.cls.data, deit.cls) < TOL);
    } finally {
      await engine.dispose();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('--weights with a .pth next to a model directory config works the same as the directory', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'vit-pth-dir-'));
  try {
    copyFileSync(join(modelDir('eps32', 'timm'), 'config.json'), join(dir, 'config.json'));
    copyFileSync(join(FIXTURES, 'models', 'eps32', 'torchvision.pth'), join(dir, 'model.pth'));
    const g = readGolden('eps32');
    const r = await runGolden({ model: dir }, g);
    assert.equal(r.model.scheme, 'torchvision');
    assert.ok(r.errLogits < TOL);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

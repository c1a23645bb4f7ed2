import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import * as ort from 'onnxruntime-node';
import protoPkg from 'onnx-proto';
import { argmaxRows, digitsToPixels, splitDigits } from '../scripts/digits-data.js';
import { UsageError } from '../src/errors.js';
import { int8WeightsFor } from '../src/io/cpus.js';
import { writeNewFile } from '../src/io/atomic-file.js';
import { openGraphCache } from '../src/io/graph-cache.js';
import { loadModel } from '../src/io/model-source.js';
import { validateVitConfig, type ViTConfig } from '../src/model/arch/vit/config.js';
import type { ModelConfig } from '../src/model/config.js';
import type { Dtype, Engine, Int8Weights } from '../src/model/engines/engine.js';
import { exportOnnx, INLINE_LIMIT } from '../src/model/engines/onnx-export.js';
import { buildGraph, type GraphOptions } from '../src/model/engines/onnx-graph.js';
import { quantizeLinear, weightChunks } from '../src/model/engines/onnx-weights.js';
import type { TensorMap } from '../src/model/tensor.js';
import { randomWeights } from '../src/model/weights/random.js';
import { engineFor, GOLDEN_MODELS, identityOf, INT8_LOGIT_TOL, maxAbsDiff, modelDir, readGolden, SWIN_INT7_LOGIT_TOL, SWIN_INT8_LOGIT_TOL, withEngine } from './helpers/golden.js';
import { goldenInputs, loadLayout, readSwinGolden, SWIN_GOLDENS } from './helpers/swin.js';

/** Attention probabilities (each in [0, 1]) at int8, absolute; measured up to 0.044 (odd40, last block). */
const INT8_ATTENTION_TOL = 0.06;
/** The bundled digits model at fp32 reads 1961 of the 2004 held-out digits; int8 must not lose more than 4. */
const MIN_INT8_DIGITS = 1957;

const onnxProto = protoPkg.onnx;
const scratch = mkdtempSync(join(tmpdir(), 'vit-int8-test-'));
after(() => rmSync(scratch, { recursive: true, force: true }));

const shapes = (w: TensorMap) => (p: string) => w.get(p)!.shape;
const onnx = (cfg: ModelConfig, w: TensorMap, dtype: Dtype, int8Weights?: Int8Weights) => engineFor('onnx', cfg, w, { dtype, int8Weights });
const vit = (cfg: ModelConfig) => cfg as ViTConfig;

function maxAbs(rows: number[][]): number {
  return Math.max(...rows.flat().map(Math.abs));
}

/**
 * The weight encodings whose products are exact on this CPU: int7 and uint8 everywhere, int8 too where the
 * CPU has VNNI or is not x86 (see int8WeightsFor); the one the CLI picks is among them.
 */
const EXACT_ENCODINGS: Int8Weights[] = int8WeightsFor() === 'int8' ? ['int8', 'int7', 'uint8'] : ['int7', 'uint8'];

for (const name of GOLDEN_MODELS) {
  test(`int8: ${name} stays within ${INT8_LOGIT_TOL * 100}% of torchvision's logits, same top-1, attentions close`, async (t) => {
    const g = readGolden(name);
    const m = await loadModel({ model: modelDir(name, 'timm') });
    const x = Float32Array.from(g.inputs.data);
    const batch = g.inputs.shape[0];
    const first = x.subarray(0, x.length / batch);
    for (const held of EXACT_ENCODINGS) {
      const [got, att] = await withEngine(onnx(m.config, m.weights, 'int8', held), async (e) => [await e.run(x, batch), await e.run(first, 1, { attentions: true })]);
      const err = maxAbsDiff(got.logits!.data, g.logits);
      const limit = INT8_LOGIT_TOL * maxAbs(g.logits);
      t.diagnostic(`${name} int8 (weights as ${held}) logits max |Δ| ${err.toExponential(2)} (limit ${limit.toExponential(2)}), cls ${maxAbsDiff(got.features.cls.data, g.cls).toExponential(2)}`);
      assert.ok(err < limit, `${name}, weights as ${held}: int8 logits off by ${err}, limit ${limit}`);
      assert.deepEqual(argmaxRows(got.logits!.data, g.config.numClasses), g.logits.map((row) => row.indexOf(Math.max(...row))));
      g.attentions.forEach((layer, l) => {
        const e = maxAbsDiff(att.attentions[l].data, layer);
        assert.ok(e < INT8_ATTENTION_TOL, `${name} attn_${l} off by ${e}`);
      });
    }
  });
}

test('int8: where both encodings multiply exactly, int8 and uint8 weights give the same logits', { skip: !EXACT_ENCODINGS.includes('int8') && 'this CPU multiplies u8·s8 with saturation (no VNNI)' }, async () => {
  const m = await loadModel({ model: modelDir('odd40', 'timm') });
  const g = readGolden('odd40');
  const x = Float32Array.from(g.inputs.data);
  const [a, b] = await Promise.all((['int8', 'uint8'] as const).map((held) => withEngine(onnx(m.config, m.weights, 'int8', held), (e) => e.run(x, g.inputs.shape[0]))));
  assert.ok(maxAbsDiff(a.logits!.data, Array.from(b.logits!.data)) < 1e-4 * maxAbs(g.logits));
});

test(`int8: the Swin goldens stay within ${SWIN_INT8_LOGIT_TOL * 100}% of the reference logits (${SWIN_INT7_LOGIT_TOL * 100}% with weights in 7 bits), the same top-1 where two classes are not closer than the error`, async (t) => {
  for (const name of SWIN_GOLDENS) {
    const g = readSwinGolden(name);
    const [layout, l] = Object.entries(g.layouts)[0];
    const { cfg, weights } = await loadLayout(g, layout);
    const x = goldenInputs(g);
    const batch = g.inputs.shape[0];
    const got = await withEngine(onnx(cfg, weights, 'int8'), (e) => e.run(x, batch));
    const want = g.references[l.reference].logits;
    const err = maxAbsDiff(got.logits!.data, want);
    const limit = (int8WeightsFor() === 'int7' ? SWIN_INT7_LOGIT_TOL : SWIN_INT8_LOGIT_TOL) * Math.max(...want.map(Math.abs));
    t.diagnostic(`${name} (${layout}) int8 (weights as ${int8WeightsFor()}) logits max |Δ| ${err.toExponential(2)} (limit ${limit.toExponential(2)})`);
    assert.ok(err < limit, `${name}: int8 logits off by ${err}, limit ${limit}`);
    // Where two classes are closer than twice the error, int8 may swap them (swin_shift's second image: 0.039
    // apart, error 0.074); everywhere else its top-1 must be the reference's.
    const classes = cfg.numClasses;
    const top = argmaxRows(got.logits!.data, classes);
    for (let b = 0; b < batch; b++) {
      const row = want.slice(b * classes, (b + 1) * classes);
      const [first, second] = [...row].sort((p, q) => q - p);
      if (first - second > 2 * err) assert.equal(top[b], row.indexOf(first), `${name} image ${b}`);
    }
  }
});

test('int8 quantization: per output row, symmetric, the largest |w| of a row at ±127 (±64 in 7 bits), every weight within half a step', () => {
  const out = 3;
  const inDim = 5;
  const w = Float32Array.from([0.5, -1, 0.25, 0.1, 0, 0, 0, 0, 0, 0, 3e-3, 2e-3, -4e-3, 1e-3, 0]);
  for (const qmax of [127, 64]) {
    const { q, scales } = quantizeLinear(w, out, inDim, qmax);
    [1, 0, 4e-3].forEach((max, o) => assert.ok(Math.abs(scales[o] * qmax - max) < 1e-7, `row ${o}: scale ${scales[o]}`));
    for (let o = 0; o < out; o++) {
      for (let i = 0; i < inDim; i++) {
        const v = q[i * out + o]; // stored [in, out]
        assert.ok(v >= -qmax && v <= qmax);
        assert.ok(Math.abs(v * scales[o] - w[o * inDim + i]) <= scales[o] / 2 + 1e-9, `w[${o}, ${i}]`);
      }
    }
    assert.equal(q[1 * out + 0], -qmax); // the row's largest |w|, negative
    assert.equal(q[2 * out + 2], -qmax);
    assert.deepEqual([0, 1, 2, 3, 4].map((i) => q[i * out + 1]), [0, 0, 0, 0, 0]); // a zero row stays zero
  }
});

/**
 * onnxruntime's integer product of activations quantized at run time by constant int8 weights, against the
 * exact sum. The activations are 1 and -0.1, which DynamicQuantizeLinear makes 255 and 0 (zero point 23): the
 * largest pair sums a u8·s8 kernel can meet.
 */
async function integerProduct(bound: number): Promise<{ got: Int32Array; exact: number[] }> {
  const [m, k, n] = [4, 64, 8];
  const x = Float32Array.from({ length: m * k }, (_, i) => ((i * 7) % 5 < 3 ? 1 : -0.1));
  // Adjacent rows of w (pairs of products) share a sign in most columns, so pair sums reach 2·255·|w|.
  const w = Int8Array.from({ length: k * n }, (_, i) => (Math.floor(i / n) % 4 < 3 === (i % n) < 5 ? bound : -bound)); // [k, n]
  const model = {
    irVersion: onnxProto.Version.IR_VERSION,
    opsetImport: [{ domain: '', version: 17 }],
    graph: {
      name: 'product',
      node: [
        { opType: 'DynamicQuantizeLinear', input: ['x'], output: ['xq', 'scale', 'zero'] },
        { opType: 'MatMulInteger', input: ['xq', 'w', 'zero'], output: ['y'] },
      ],
      initializer: [{ name: 'w', dims: [k, n], dataType: onnxProto.TensorProto.DataType.INT8, rawData: new Uint8Array(w.buffer) }],
      input: [{ name: 'x', type: { tensorType: { elemType: onnxProto.TensorProto.DataType.FLOAT, shape: { dim: [{ dimValue: m }, { dimValue: k }] } } } }],
      output: ['xq', 'zero', 'y'].map((name) => ({ name })),
    },
  };
  const s = await ort.InferenceSession.create(onnxProto.ModelProto.encode(model).finish());
  const r = await s.run({ x: new ort.Tensor('float32', x, [m, k]) });
  await s.release();
  const xq = r.xq.data as Uint8Array;
  const zero = (r.zero.data as Uint8Array)[0];
  const exact: number[] = [];
  for (let i = 0; i < m; i++) {
    for (let j = 0; j < n; j++) {
      let sum = 0;
      for (let c = 0; c < k; c++) sum += (xq[i * k + c] - zero) * w[c * n + j];
      exact.push(sum);
    }
  }
  assert.ok(xq.includes(255) && xq.includes(0), 'the activations span 0..255');
  return { got: r.y.data as Int32Array, exact };
}

test('int8 products on this CPU: weights in 7 bits are exact everywhere; 8-bit weights exactly where int8WeightsFor picks them', async (t) => {
  const int7 = await integerProduct(64);
  assert.deepEqual(Array.from(int7.got), int7.exact, 'weights at ±64: exact');
  const int8 = await integerProduct(127);
  const off = Math.max(...int8.exact.map((v, i) => Math.abs(v - int8.got[i])));
  t.diagnostic(`weights at ±127: largest error of a sum ${off} (sums up to ${Math.max(...int8.exact.map(Math.abs))}); int8WeightsFor: ${int8WeightsFor()}`);
  // If a CPU picked for 8-bit weights saturated, or one given 7 bits no longer did, the choice would be wrong.
  assert.equal(off === 0, int8WeightsFor() === 'int8');
});

test('int8 graph: every linear weight is an int8 initializer with one scale per output; attention, norms, GELU in fp32', async () => {
  const m = await loadModel({ model: modelDir('repr24', 'timm') });
  const cfg = vit(m.config);
  const linears = cfg.depth * 4 + 2; // qkv, proj, fc1, fc2 per block; pre_logits, head
  for (const opts of [{}, { portable: true }, { attentions: true }]) {
    const { model, slots } = buildGraph(cfg, shapes(m.weights), { dtype: 'int8', ...opts });
    const q = slots.filter((s) => s.encoding === 'int8-t');
    assert.equal(q.length, linears);
    assert.equal(slots.filter((s) => s.encoding === 'int8-scale').length, linears);
    assert.equal(slots.filter((s) => s.encoding === 'float32-t').length, 0, 'no fp32 linear weight left');
    for (const s of q) {
      const [out, inDim] = m.weights.get(s.param)!.shape;
      assert.deepEqual(s.shape, [inDim, out]);
      assert.deepEqual(slots.find((x) => x.name === s.name.replace(/\.int8$/, '.scale'))?.shape, [out]);
    }
    const nodes = model.graph!.node!;
    const count = (op: string) => nodes.filter((n) => n.opType === op).length;
    // Every linear layer's input is quantized once, at run time.
    assert.equal(count('DynamicQuantizeLinear'), linears);
    if (Object.keys(opts).length === 0) {
      // For onnxruntime: the qkv projection and the attention after it in one QAttention kernel per block.
      assert.equal(count('QAttention'), cfg.depth);
      assert.equal(count('MatMulInteger'), linears - cfg.depth);
      assert.equal(count('MatMul') + count('Softmax'), 0);
    } else {
      // Portable, or with the probabilities as outputs: standard ops only, which onnxruntime fuses itself.
      assert.equal(count('MatMulInteger'), linears);
      assert.equal(count('MatMul'), cfg.depth * 2, 'only q·kᵀ and probabilities·v stay float matrix products');
      assert.equal(count('Softmax'), cfg.depth);
      assert.ok(nodes.every((n) => !n.domain), 'standard ONNX ops only');
    }
  }
});

test('int8 graph, weights as uint8: the same numbers plus 128, zero point 128 in every integer product', async () => {
  const m = await loadModel({ model: modelDir('repr24', 'timm') });
  const cfg = vit(m.config);
  for (const opts of [{}, { portable: true }]) {
    const a = buildGraph(cfg, shapes(m.weights), { dtype: 'int8', ...opts });
    const b = buildGraph(cfg, shapes(m.weights), { dtype: 'int8', int8Weights: 'uint8', ...opts });
    assert.deepEqual(b.slots.map((s) => s.encoding), a.slots.map((s) => (s.encoding === 'int8-t' ? 'uint8-t' : s.encoding)));
    const products = (g: typeof a) => g.model.graph!.node!.filter((n) => n.opType === 'MatMulInteger' || n.opType === 'QAttention');
    // MatMulInteger's input 3 and QAttention's input 7 are the weights' zero point.
    for (const n of products(b)) {
      const zero = b.model.graph!.initializer!.find((t) => t.name === n.input![n.opType === 'QAttention' ? 7 : 3])!;
      assert.deepEqual([zero.dataType, Array.from(zero.rawData!)], [onnxProto.TensorProto.DataType.UINT8, [128]]);
    }
    assert.ok(products(a).every((n) => n.input!.length === (n.opType === 'QAttention' ? 7 : 3)), 'int8 weights: zero point 0, left out');
  }
  const fc1 = 'blocks.0.mlp.fc1.weight';
  const stored = (held: Int8Weights) => {
    const slot = buildGraph(cfg, shapes(m.weights), { dtype: 'int8', int8Weights: held }).slots.find((s) => s.param === fc1 && s.encoding !== 'int8-scale')!;
    return [...weightChunks([slot], new Map([[fc1, m.weights.get(fc1)!]]))][0].bytes;
  };
  const i8 = new Int8Array(stored('int8').slice().buffer);
  const u8 = stored('uint8');
  assert.deepEqual(Array.from(u8), Array.from(i8, (v) => v + 128));
});

test('int8: the fused QAttention graph gives the portable int8 graph\'s logits: with and without a qkv bias, distilled, pooled', async (t) => {
  const base = vit((await loadModel({ model: modelDir('odd40', 'hf') })).config);
  const variants: [string, Partial<ViTConfig>][] = [
    ['qkv bias', {}],
    ['no qkv bias', { qkvBias: false }],
    ['distilled (two prefix tokens)', { distilled: true, distilledHead: true }],
    ['no class token, average pool', { classToken: false, globalPool: 'avg', fcNorm: true }],
  ];
  for (const [label, change] of variants) {
    const cfg = validateVitConfig({ ...base, ...change, name: `odd40, ${label}` });
    const w = randomWeights(cfg, 3);
    // Biases too non-zero, so that a qkv bias matters.
    for (const v of w.values()) for (let i = 0; i < v.data.length; i++) v.data[i] += 0.05 * Math.sin(0.37 * i + v.data.length);
    const batch = 3;
    const x = Float32Array.from({ length: batch * 3 * cfg.imgSize[0] * cfg.imgSize[1] }, (_, i) => Math.sin(i * 0.011) * 1.7);
    const fused = await withEngine(onnx(cfg, w, 'int8'), (e) => e.run(x, batch, { pools: [] }));
    const dir = join(scratch, `portable-${label.replace(/\W+/g, '-')}`);
    mkdirSync(dir);
    // The portable graph with the weights as the engine holds them on this CPU.
    for (const f of exportOnnx(cfg, w, 'int8', INLINE_LIMIT, int8WeightsFor())) writeNewFile(join(dir, f.name), f);
    const s = await ort.InferenceSession.create(join(dir, 'model_quantized.onnx'));
    const dims = [batch, 3, ...cfg.imgSize];
    const portable = (await s.run({ pixel_values: new ort.Tensor('float32', x, dims) })).logits.data as Float32Array;
    await s.release();
    const err = maxAbsDiff(fused.logits!.data, Array.from(portable));
    const scale = Math.max(...Array.from(portable, Math.abs));
    t.diagnostic(`${label}: max |Δ| ${err.toExponential(2)} of logits up to ${scale.toFixed(3)}`);
    assert.ok(err < 1e-3 * scale, `${label}: fused int8 off the portable graph by ${err}`);
  }
});

test('fp32 graph: fused kernels where no probabilities are wanted; the attention graph and a portable graph keep standard ops', async () => {
  const m = await loadModel({ model: modelDir('odd40', 'hf') });
  const depth = vit(m.config).depth;
  const ops = (opts: GraphOptions & { attentions?: boolean }) => buildGraph(m.config, shapes(m.weights), opts).model.graph!.node!;
  const fused = ops({});
  const count = (nodes: typeof fused, op: string) => nodes.filter((n) => n.opType === op).length;
  assert.equal(count(fused, 'Attention'), depth);
  assert.equal(count(fused, 'Softmax'), 0);
  const withProbs = ops({ attentions: true });
  assert.equal(count(withProbs, 'Attention'), 0);
  assert.equal(count(withProbs, 'Softmax'), depth);
  assert.ok(ops({ portable: true }).every((n) => !n.domain));
});

test('int8: the cache keeps fp32 and int8 graphs of the same weights apart; int8 weights take about a quarter', async () => {
  const root = join(scratch, 'both');
  const cache = openGraphCache(root);
  const m = await loadModel({ model: modelDir('odd40', 'hf') });
  const identity = identityOf(m.config, m.weights);
  const open = (dtype: Dtype) => engineFor('onnx', m.config, m.weights, { cache, identity, dtype });
  const entries = () => readdirSync(root).filter((n) => !n.startsWith('.'));
  await withEngine(open('fp32'), async () => undefined);
  const [fp32Entry] = entries();
  const notes: string[] = [];
  const backend = await withEngine(engineFor('onnx', m.config, m.weights, { cache, identity, dtype: 'int8', verbose: (n) => notes.push(n) }), async (e) => e.backend);
  assert.match(backend, /int8/);
  assert.equal(entries().length, 2, 'int8 is an entry of its own');
  const int8Entry = entries().find((n) => n !== fp32Entry)!;
  assert.ok(notes.some((n) => /wrote/.test(n)), notes.join('\n'));
  const again: string[] = [];
  await withEngine(engineFor('onnx', m.config, m.weights, { cache, identity, dtype: 'int8', verbose: (n) => again.push(n) }), async () => undefined);
  assert.ok(again.some((n) => /reused/.test(n)), again.join('\n'));
  // odd40's matrices are small (page padding dominates the files), so compare the bytes the slots hold.
  const held = (dtype: Dtype) => buildGraph(m.config, shapes(m.weights), { dtype }).slots
    .filter((s) => s.encoding !== 'float32').reduce((n, s) => n + s.length, 0);
  assert.ok(held('int8') < 0.3 * held('fp32'), `${held('int8')} int8 bytes vs ${held('fp32')} fp32`);
  const size = (entry: string) => statSync(join(root, entry, 'weights.bin')).size;
  assert.ok(size(int8Entry) < size(fp32Entry), `${size(int8Entry)} vs ${size(fp32Entry)}`);
});

test('int8 on the tfjs engine is a usage error', async () => {
  const m = await loadModel({ model: modelDir('eps32', 'hf') });
  await assert.rejects(engineFor('tfjs', m.config, m.weights, { dtype: 'int8' }), (e: unknown) => e instanceof UsageError && /--engine onnx/.test(e.message));
});

test(`int8: the bundled digits model still reads at least ${MIN_INT8_DIGITS} of the 2004 held-out digits`, async (t) => {
  const m = await loadModel({});
  const { heldOut } = splitDigits();
  const pixels = digitsToPixels(heldOut, m.config.preprocess);
  const per = pixels.length / heldOut.length;
  const batch = 8; // the CLI's default: activations are quantized per batch, so its composition matters
  const predict = async (e: Engine) => {
    const out: number[] = [];
    for (let i = 0; i < heldOut.length; i += batch) {
      const n = Math.min(batch, heldOut.length - i);
      out.push(...argmaxRows((await e.run(pixels.subarray(i * per, (i + n) * per), n)).logits!.data, m.config.numClasses));
    }
    return out;
  };
  const fp32 = await withEngine(onnx(m.config, m.weights, 'fp32'), predict);
  const q = await withEngine(onnx(m.config, m.weights, 'int8'), predict);
  const right = (p: number[]) => p.filter((c, i) => c === heldOut[i].label).length;
  const agree = q.filter((c, i) => c === fp32[i]).length;
  t.diagnostic(`digits held out: fp32 ${right(fp32)}/${heldOut.length}, int8 ${right(q)}/${heldOut.length}, int8 top-1 = fp32 top-1 on ${agree}`);
  assert.ok(right(q) >= MIN_INT8_DIGITS, `int8 reads ${right(q)} digits right`);
});

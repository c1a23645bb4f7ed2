import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { WeightsError } from '../src/errors.js';
import { PACKAGE_ROOT } from '../src/io/paths.js';
import { archOf, configFromJson, presetConfig } from '../src/model/arch/index.js';
import { swinForward } from '../src/model/arch/swin/forward.js';
import { expectedSwinParams } from '../src/model/arch/swin/params.js';
import { SWIN_PRESETS } from '../src/model/arch/swin/presets.js';
import { swinFromHf, swinFromTimm } from '../src/model/arch/swin/readers.js';
import { SWIN_SCHEMES } from '../src/model/arch/swin/schemes.js';
import { MASKED, blockWindows, relativePositionIndex, shiftMask } from '../src/model/arch/swin/windows.js';
import type { RunResult } from '../src/model/engines/engine.js';
import { INPUT_NAME, OnnxGraphOps } from '../src/model/engines/onnx-graph.js';
import { tf } from '../src/model/engines/tfjs-backend.js';
import type { HostTensor } from '../src/model/tensor.js';
import { checkWeights } from '../src/model/weights/check.js';
import { readWeights } from '../src/model/weights/formats.js';
import { detectScheme } from '../src/model/weights/schemes.js';
import { TEST_CACHE, runVit } from './helpers/cli.js';
import { engineFor, IMAGES, maxAbsDiff } from './helpers/golden.js';
import { SWIN_GOLDENS, goldenConfig, goldenInputs, loadLayout, readSwinGolden, runSwin, type SwinGolden } from './helpers/swin.js';

const TOL = 1e-4;

/** The index of a golden's attention block among all blocks (the forward returns them stage by stage). */
function blockIndex(g: SwinGolden, stage: number, block: number): number {
  return g.config.depths.slice(0, stage).reduce((a, b) => a + b, 0) + block;
}

/** The first image's part of a [B, nW, heads, N, N] attention output. */
function firstImage(t: HostTensor): Float32Array {
  return t.data.subarray(0, t.data.length / t.shape[0]);
}

function compare(label: string, g: SwinGolden, reference: string, out: RunResult): void {
  const ref = g.references[reference];
  const a = ref.attention;
  const att = out.attentions[blockIndex(g, a.stage, a.block)];
  const errs = {
    logits: maxAbsDiff(out.logits!.data, ref.logits),
    avg: maxAbsDiff(out.features.avg.data, ref.avg),
    attention: maxAbsDiff(firstImage(att), a.data),
  };
  console.log(`${label} (${reference} reference) max |Δ| ${Object.entries(errs).map(([k, v]) => `${k} ${v.toExponential(2)}`).join(' ')}`);
  for (const [k, v] of Object.entries(errs)) assert.ok(v < TOL, `${label}: ${k} off by ${v}`);
  assert.deepEqual(att.shape.slice(1), a.shape);
  assert.deepEqual(out.logits!.shape, [g.inputs.shape[0], g.config.numClasses]);
}

for (const name of SWIN_GOLDENS) {
  const g = readSwinGolden(name);
  for (const layout of Object.keys(g.layouts)) {
    test(`swin ${name}, ${layout} layout: tfjs and onnx reproduce torchvision`, async () => {
      const { cfg, weights, scheme } = await loadLayout(g, layout);
      assert.equal(scheme, layout);
      assert.equal(cfg.windowRule, g.layouts[layout].rule);
      const x = goldenInputs(g);
      const batch = g.inputs.shape[0];
      for (const engine of ['tfjs', 'onnx'] as const) {
        compare(`${name}/${layout} ${engine}`, g, g.layouts[layout].reference, await runSwin(engine, cfg, weights, x, batch, true));
      }
    });
  }
}

test('swin: the goldens leave the ground where the three window rules agree', async () => {
  const pad = (await loadLayout(readSwinGolden('swin_pad'), 'timm')).cfg;
  const padded = blockWindows(pad).filter((w) => w.shift[0] > 0 && w.padded[0] > w.map[0]);
  assert.ok(padded.length >= 2, 'swin_pad has padded, shifted blocks in both stages');
  const small = (await loadLayout(readSwinGolden('swin_small'), 'timm')).cfg;
  const last = blockWindows(small).filter((w) => w.stage === 2);
  assert.deepEqual(last.map((w) => w.window), [[2, 2]]);
  const tvLast = blockWindows({ ...small, windowRule: 'torchvision' }).filter((w) => w.stage === 2);
  assert.deepEqual(tvLast.map((w) => [w.window, w.padded]), [[[4, 4], [4, 4]]]);
});

test('swin: each window rule against the other reference misses it (the goldens can tell the rules apart)', async () => {
  for (const [name, layout, other] of [['swin_pad', 'timm', 'torchvision'], ['swin_pad', 'torchvision', 'timm']] as const) {
    const g = readSwinGolden(name);
    const { cfg, weights } = await loadLayout(g, layout);
    const out = await runSwin('tfjs', cfg, weights, goldenInputs(g), g.inputs.shape[0]);
    const err = maxAbsDiff(out.logits!.data, g.references[other].logits);
    assert.ok(err > 1e-2, `${name}/${layout} is within ${err} of the ${other} reference`);
  }
});

test('swin: presets have exactly torchvision\'s (and timm\'s) parameter counts, under every name', () => {
  const count = (name: string) => {
    const cfg = presetConfig(name);
    assert.equal(cfg.arch, 'swin', name);
    let n = 0;
    for (const s of archOf(cfg).params(cfg).values()) n += s.reduce((a, b) => a * b, 1);
    return n;
  };
  // torchvision's Swin_{T,S,B}_Weights meta num_params; the 384 and L counts from torchvision's SwinTransformer
  // built with those sizes (scripts/make_swin_goldens.py's environment).
  const expected: [string[], number][] = [
    [['swin_tiny_patch4_window7_224', 'Swin-T', 'swin_t', 'SWIN-T@224'], 28_288_354],
    [['swin_small_patch4_window7_224', 'Swin-S', 'swin_s'], 49_606_258],
    [['swin_base_patch4_window7_224', 'Swin-B', 'swin_b'], 87_768_224],
    [['swin_base_patch4_window12_384', 'Swin-B@384', 'swin-b-384'], 87_903_584],
    [['swin_large_patch4_window7_224', 'Swin-L'], 196_532_476],
    [['swin_large_patch4_window12_384', 'Swin-L@384'], 196_735_516],
  ];
  for (const [names, n] of expected) for (const name of names) assert.equal(count(name), n, name);
  assert.deepEqual(SWIN_PRESETS.names(), expected.map(([names]) => names[0]));
  assert.equal(SWIN_PRESETS.lookup('swin_huge'), null);
  const b384 = SWIN_PRESETS.lookup('Swin-B@384')!;
  assert.deepEqual([b384.imgSize, b384.windowSize, b384.preprocess.crop], [[384, 384], [12, 12, 12, 12], { height: 384, width: 384 }]);
});

test('swin: scheme detection from the keys alone, and the derived buffers dropped', () => {
  const names = (keys: string[]) => detectScheme(SWIN_SCHEMES, new Map(keys.map((k) => [k, { shape: [1], data: new Float32Array(1) }]))).name;
  const block = 'layers.0.blocks.0.attn.qkv.weight';
  assert.equal(names(['patch_embed.proj.weight', block, 'layers.1.downsample.reduction.weight', 'head.fc.weight']), 'timm');
  // Headless: only the merging's position tells the two layouts apart.
  assert.equal(names(['patch_embed.proj.weight', block, 'layers.1.downsample.reduction.weight']), 'timm');
  assert.equal(names(['patch_embed.proj.weight', block, 'layers.0.downsample.reduction.weight']), 'microsoft');
  assert.equal(names(['patch_embed.proj.weight', block, 'head.weight']), 'microsoft');
  assert.equal(names(['embeddings.patch_embeddings.projection.weight', 'encoder.layers.0.blocks.0.layernorm_before.weight']), 'hf');
  assert.equal(names(['swin.embeddings.patch_embeddings.projection.weight', 'swin.encoder.layers.0.blocks.0.attention.self.query.weight']), 'hf');
  assert.equal(names(['features.0.0.weight', 'features.1.0.attn.qkv.weight']), 'torchvision');
  // A ViT checkpoint is none of them.
  assert.throws(() => names(['patch_embed.proj.weight', 'blocks.0.attn.qkv.weight', 'cls_token']), WeightsError);
  assert.throws(() => names(['embeddings.patch_embeddings.projection.weight', 'encoder.layer.0.layernorm_before.weight']), /known: microsoft, timm, hf, torchvision/);

  const g = readSwinGolden('swin_shift');
  const raw = readWeights(new Uint8Array(readFileSync(join(PACKAGE_ROOT, g.layouts.microsoft.weights!))), 'microsoft.pth');
  assert.ok([...raw.keys()].some((k) => k.endsWith('attn_mask')), 'the fixture carries attn_mask buffers');
  const canonical = detectScheme(SWIN_SCHEMES, raw).toCanonical(raw, goldenConfig(g, 'timm'));
  assert.ok(![...canonical.keys()].some((k) => /attn_mask|relative_position_index/.test(k)));
  assert.deepEqual([...canonical.keys()].filter((k) => k.includes('downsample')).sort(),
    ['layers.1.downsample.norm.bias', 'layers.1.downsample.norm.weight', 'layers.1.downsample.reduction.weight',
      'layers.2.downsample.norm.bias', 'layers.2.downsample.norm.weight', 'layers.2.downsample.reduction.weight']);
});

test('swin: a checkpoint that does not fit is refused with every problem named', async () => {
  const g = readSwinGolden('swin_shift');
  const { weights } = await loadLayout(g, 'timm');
  weights.delete('layers.1.blocks.0.attn.qkv.bias');
  weights.set('absolute_pos_embed', { shape: [1, 256, 8], data: new Float32Array(2048) });
  const cfg = { ...goldenConfig(g, 'timm'), windowSize: [4, 8, 4] };
  assert.throws(() => checkWeights(cfg, weights, 'w.safetensors'), (e: Error) =>
    e instanceof WeightsError && /missing \(1\): layers\.1\.blocks\.0\.attn\.qkv\.bias/.test(e.message) &&
    /unexpected \(1\): absolute_pos_embed/.test(e.message) && /relative_position_bias_table: expected \[225, 4\], found \[49, 4\]/.test(e.message));
});

test('swin: config readers take HF and timm configs as their libraries do', async () => {
  const eps = (await loadLayout(readSwinGolden('swin_eps'), 'hf')).cfg;
  assert.deepEqual([eps.layerNormEps, eps.patchNormEps, eps.windowRule, eps.labels], [1e-3, 1e-5, 'hf', ['alpha', 'bêta', 'gamma "g"']]);
  assert.equal(eps.preprocess.interpolation, 'bicubic');
  const hfBase = { model_type: 'swin', architectures: ['SwinForImageClassification'] };
  // config.json dispatch: HF model_type swin and timm architectures swin_* reach this record.
  assert.equal(configFromJson(hfBase, null, 'hf').arch, 'swin');
  assert.equal(configFromJson({ architecture: 'swin_base_patch4_window7_224' }, null, 'timm').arch, 'swin');
  assert.equal(configFromJson({ architecture: 'vit_base_patch16_224' }, null, 'vit').arch, 'vit');
  const tiny = swinFromHf(hfBase, null, 'defaults');
  assert.deepEqual([tiny.embedDim, tiny.depths, tiny.numHeads, tiny.windowSize, tiny.numClasses], [96, [2, 2, 6, 2], [3, 6, 12, 24], [7, 7, 7, 7], 2]);
  assert.equal(swinFromHf({ ...hfBase, architectures: ['SwinModel'] }, null, 'bare').numClasses, 0);
  assert.throws(() => swinFromHf({ ...hfBase, use_absolute_embeddings: true }, null, 'ape'), /use_absolute_embeddings/);
  assert.throws(() => swinFromHf({ ...hfBase, depths: [2, 2], num_heads: [3, 6, 12] }, null, 'bad'), /numHeads \[3, 6, 12\] for 2 stages/);
  // Hostile sizes are refused by name before anything is planned or allocated.
  assert.throws(() => swinFromHf({ ...hfBase, depths: [2, 1e9, 2, 2] }, null, 'deep'), /depths\[1\] 1000000000 is more than 1000/);
  assert.throws(() => swinFromHf({ ...hfBase, window_size: 1e6 }, null, 'wide'), /windowSize\[0\] 1000000 is more than 32/);
  assert.throws(() => swinFromHf({ ...hfBase, embed_dim: 4096 }, null, 'wide'), /last stage width 32768 is more than 16384/);
  // transformers pads an image that is not a whole number of patches; timm and torchvision drop the rest.
  assert.throws(() => swinFromHf({ ...hfBase, image_size: 226 }, null, 'odd'), /image size 226x226 is not a multiple of the patch size 4 \(transformers' Swin pads the image/);
  assert.deepEqual(swinFromTimm({ architecture: 'swin_tiny_patch4_window7_224', model_args: { img_size: 226 }, pretrained_cfg: {} }, 't226').imgSize, [226, 226]);

  const shift = (await loadLayout(readSwinGolden('swin_shift'), 'timm')).cfg;
  assert.deepEqual([shift.imgSize, shift.depths, shift.windowSize, shift.mlpRatio, shift.numClasses, shift.windowRule],
    [[64, 64], [2, 2, 1], [4, 4, 4], 2.5, 5, 'timm']);
  const b384 = swinFromTimm({ architecture: 'swin_base_patch4_window12_384', pretrained_cfg: { crop_pct: 1.0, input_size: [3, 384, 384] } }, 'b');
  assert.equal(b384.embedDim, 128);
  assert.deepEqual(b384.preprocess.resize, { shortestEdge: 384 });
  const s3 = swinFromTimm({ architecture: 'swin_s3_tiny_224', model_args: { embed_dim: 96, depths: [2, 2, 6, 2], num_heads: [3, 6, 12, 24], window_size: [7, 7, 14, 7] } }, 's3');
  assert.deepEqual(s3.windowSize, [7, 7, 14, 7]);
  assert.deepEqual(swinFromTimm({ architecture: 'swin_tiny_patch4_window7_224', model_args: { window_size: [6, 6] } }, 'pair').windowSize, [6, 6, 6, 6]);
  assert.throws(() => swinFromTimm({ architecture: 'swin_s3_tiny_224' }, 's3'), /model_args must give embed_dim, depths, num_heads, window_size/);
  assert.throws(() => swinFromTimm({ architecture: 'vit_base_patch16_224' }, 'vit'), /not a Swin/);
  assert.throws(() => swinFromTimm({ architecture: 'swin_tiny_patch4_window7_224', model_args: { head_dim: 16 } }, 'h'), /head_dim/);
});

test('swin: relative position index and shift mask as the implementations derive them', () => {
  // A 2×2 window: tokens (0,0) (0,1) (1,0) (1,1); row = (Δy + 1)·3 + (Δx + 1).
  assert.deepEqual([...relativePositionIndex([2, 2])], [4, 3, 1, 0, 5, 4, 2, 1, 7, 6, 4, 3, 8, 7, 5, 4]);
  assert.equal(relativePositionIndex([7, 7]), relativePositionIndex([7, 7]), 'shared, so a graph stores one copy');
  // An 8×8 map, windows of 4 shifted by 2: the top-left window mixes nothing, the bottom-right one four bands.
  const w = blockWindows(SWIN_PRESETS.lookup('swin_tiny_patch4_window7_224')!).find((b) => b.stage === 3)!;
  assert.deepEqual([w.window, w.shift, w.numWindows], [[7, 7], [0, 0], 1]);
  const cfg = { ...goldenConfig(readSwinGolden('swin_shift'), 'timm') };
  const b = blockWindows(cfg).find((x) => x.stage === 1 && x.block === 1)!;
  assert.deepEqual([b.map, b.window, b.shift, b.numWindows], [[8, 8], [4, 4], [2, 2], 4]);
  const mask = shiftMask(b);
  const N = 16;
  const masked = (win: number) => mask.subarray(win * N * N, (win + 1) * N * N).filter((v) => v === MASKED).length;
  assert.equal(masked(0), 0);
  // Window 3 holds 4 bands of 2×2 tokens: each token sees its own band's 4 of 16.
  assert.equal(masked(3), N * 12);
  assert.equal(masked(1), N * 8);
});

test('swin: tfjs frees every intermediate of a forward', async () => {
  const g = readSwinGolden('swin_pad');
  const { cfg, weights } = await loadLayout(g, 'torchvision');
  const engine = await engineFor('tfjs', cfg, weights);
  try {
    await engine.run(goldenInputs(g), 2, { attentions: true });
    const before = tf.memory().numTensors;
    for (const attentions of [true, false, true]) await engine.run(goldenInputs(g), 2, { attentions });
    assert.equal(tf.memory().numTensors, before);
  } finally {
    await engine.dispose();
  }
});

test('swin: the ONNX graph of a preset stores each window index and mask once', () => {
  for (const name of ['swin_tiny_patch4_window7_224', 'swin_base_patch4_window12_384']) {
    const cfg = SWIN_PRESETS.lookup(name)!;
    const shapes = expectedSwinParams(cfg);
    const ops = new OnnxGraphOps((p) => shapes.get(p)!);
    swinForward(ops, cfg, ops.input(INPUT_NAME, 4));
    const constants = ops.constantInitializers();
    const bytes = constants.reduce((n, c) => n + (c.rawData?.length ?? 0), 0);
    const shifted = blockWindows(cfg).filter((w) => w.shift[0] > 0);
    // One index per window size (all stages share it) and one mask per shifted stage.
    const big = constants.filter((c) => (c.rawData?.length ?? 0) > 1000);
    assert.equal(big.length, 1 + new Set(shifted.map((w) => w.stage)).size, name);
    const N = cfg.windowSize[0] ** 2;
    const masks = new Set(shifted.map((w) => w.stage)).size;
    assert.ok(bytes < 8 * N * N + 4 * 64 * N * N * masks + 100_000, `${name}: ${bytes} bytes of constants`);
  }
});

test('vit classify / embed / summary / attention on Swin models', async () => {
  const hf = join(PACKAGE_ROOT, readSwinGolden('swin_shift').layouts.hf.dir!);
  const timmDir = join(PACKAGE_ROOT, readSwinGolden('swin_pad').layouts.timm.dir!);
  const images = ['eps32_0.png', 'odd40_1.png'].map((f) => join(IMAGES, f));

  const cls = await runVit(['classify', ...images, '-m', hf, '-k', '2', '-f', 'jsonl']);
  assert.equal(cls.code, 0, cls.stderr);
  const rows = cls.stdout.trim().split('\n').map((l) => JSON.parse(l));
  assert.equal(rows.length, 2);
  assert.ok(rows.every((r) => r.predictions.length === 2 && ['alpha', 'bêta', 'gamma "g"', 'delta', 'epsilon'].includes(r.predictions[0].label)));

  // The pooled features: the same on both engines, and the default pool.
  const embed = async (engine: string, extra: string[] = []) => {
    const r = await runVit(['embed', ...images, '-m', timmDir, '-w', join(timmDir, '..', 'microsoft.pth'), '--engine', engine, '-f', 'jsonl', ...extra]);
    assert.equal(r.code, 0, r.stderr);
    return r.stdout.trim().split('\n').map((l) => JSON.parse(l).embedding as number[]);
  };
  const [a, b] = [await embed('tfjs', ['--pool', 'avg']), await embed('onnx')];
  assert.equal(a[0].length, 16);
  assert.ok(maxAbsDiff(Float32Array.from(a.flat()), b) < TOL);
  const cls2 = await runVit(['embed', images[0], '-m', hf, '--pool', 'cls']);
  assert.equal(cls2.code, 2);
  assert.match(cls2.stderr, /--pool cls: a Swin model has avg/);

  const sum = await runVit(['summary', 'Swin-T', '--json']);
  assert.equal(sum.code, 0, sum.stderr);
  const s = JSON.parse(sum.stdout);
  assert.equal(s.params, 28_288_354);
  // torchvision documents 4.49 GFLOPS (multiply-adds) for swin_t.
  assert.ok(Math.abs(s.gmacs - 4.49) < 0.01, `${s.gmacs} GMACs`);
  assert.deepEqual(s.depths, [2, 2, 6, 2]);

  const raw = await runVit(['attention', images[0], '-m', hf, '--raw', '--layer', '2', '--head', '1', '-f', 'json']);
  assert.equal(raw.code, 0, raw.stderr);
  const layer = JSON.parse(raw.stdout)[0].layers[0];
  assert.equal(layer.layer, 2);
  // Stage 1's map 8×8 in windows of 4: 4 windows, one head kept, 16 × 16 probabilities each, rows summing to 1.
  assert.deepEqual([layer.windows.length, layer.windows[0].length, layer.windows[0][0].length, layer.windows[0][0][0].length], [4, 1, 16, 16]);
  for (const row of layer.windows[3][0]) assert.ok(Math.abs(row.reduce((x: number, y: number) => x + y, 0) - 1) < 1e-5);
  for (const analysis of [[], ['--distance'], ['--heatmap', join(TEST_CACHE, 'maps')]]) {
    const r = await runVit(['attention', images[0], '-m', hf, ...analysis]);
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /defined for global attention; Swin attends within windows .*use --raw/);
  }
  const npy = await runVit(['attention', images[0], '-m', hf, '--raw', '-f', 'npy', '-o', join(TEST_CACHE, 'a.npy')]);
  assert.equal(npy.code, 2);
  assert.match(npy.stderr, /-f npy holds one shape.*16x2x16, 4x4x16, 1x8x16/);
});

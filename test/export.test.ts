import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import * as ort from 'onnxruntime-node';
import protoPkg from 'onnx-proto';
import sharp from 'sharp';
import { argmaxRows } from '../scripts/digits-data.js';
import { writeModelFolder } from '../src/io/model-folder.js';
import { loadModel } from '../src/io/model-source.js';
import { swinFromHf } from '../src/model/arch/swin/readers.js';
import { vitFromHf } from '../src/model/arch/vit/readers.js';
import { timmPreprocess, preprocessFromHf, preprocessToHf } from '../src/model/preprocess.js';
import { int8WeightsFor } from '../src/io/cpus.js';
import { exportOnnx, INLINE_LIMIT } from '../src/model/engines/onnx-export.js';
import { runVit } from './helpers/cli.js';
import { IMAGES, INT8_LOGIT_TOL, maxAbsDiff, modelDir, PHOTOS, readGolden, SWIN_INT7_LOGIT_TOL } from './helpers/golden.js';
import { SWIN_FIXTURES, goldenInputs, readSwinGolden } from './helpers/swin.js';

const { onnx } = protoPkg;
const TOL = 1e-4;

const scratch = mkdtempSync(join(tmpdir(), 'vit-export-test-'));
after(() => rmSync(scratch, { recursive: true, force: true }));

const odd40 = modelDir('odd40', 'hf');
const folder = join(scratch, 'odd40');

async function exportBoth(): Promise<void> {
  for (const dtype of ['fp32', 'int8']) {
    const r = await runVit(['export', '-m', odd40, folder, '--dtype', dtype]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, '');
  }
}
const ready = exportBoth();

/**
 * The export's int8 model where this CPU multiplies its u8·s8 products exactly (VNNI, AMX, or not x86). Where
 * it does not (AVX2 alone: onnxruntime's vpmaddubsw kernel saturates 16-bit pair sums), the same export with
 * its weights as uint8 plus 128 (folder odd40-u8), after checking that it holds the very numbers of the file
 * `vit export` wrote.
 */
const exactInt8Folder = ready.then(async () => {
  if (int8WeightsFor() === 'int8') return folder;
  const twin = join(scratch, 'odd40-u8');
  mkdirSync(twin);
  for (const f of ['config.json', 'preprocessor_config.json']) copyFileSync(join(folder, f), join(twin, f));
  const m = await loadModel({ model: odd40 });
  writeModelFolder(join(twin, 'onnx'), exportOnnx(m.config, m.weights, 'int8', INLINE_LIMIT, 'uint8'));
  const inits = (dir: string) => onnx.ModelProto.decode(readFileSync(join(dir, 'onnx', 'model_quantized.onnx'))).graph!.initializer!;
  const u8 = new Map(inits(twin).map((t) => [t.name!, t]));
  const i8 = inits(folder).filter((t) => t.dataType === onnx.TensorProto.DataType.INT8);
  assert.ok(i8.length > 0);
  for (const t of i8) {
    const u = u8.get(t.name!.replace(/\.int8$/, '.uint8'))!;
    assert.equal(u.dataType, onnx.TensorProto.DataType.UINT8, t.name!);
    assert.deepEqual(Array.from(u.rawData!), Array.from(t.rawData!, (b) => b ^ 0x80), `${t.name}: the same numbers plus 128`);
  }
  return twin;
});

/** Logits of an ONNX file on the golden inputs, through onnxruntime-node as any user would load it. */
async function logitsOf(file: string, x: Float32Array, dims: number[]): Promise<Float32Array> {
  const s = await ort.InferenceSession.create(file);
  try {
    assert.deepEqual(s.inputNames, ['pixel_values']);
    assert.deepEqual(s.outputNames, ['logits']);
    return (await s.run({ pixel_values: new ort.Tensor('float32', x, dims) })).logits.data as Float32Array;
  } finally {
    await s.release();
  }
}

/** Photos resized to `size` beforehand (fill), so that no resize implementation's rounding stands between vit and transformers.js. */
function photosAt(size: number, tag: string): Promise<string[]> {
  return Promise.all(['chelsea.png', 'coffee.png', 'astronaut.png'].map(async (f) => {
    const out = join(scratch, `${tag}-${f}`);
    await sharp(join(PHOTOS, f)).resize(size, size, { fit: 'fill' }).png().toFile(out);
    return out;
  }));
}

/**
 * transformers.js's image-classification pipeline over the folder `name` of the scratch directory gives the
 * top-1 label vit classify gives with `model` and `ours` (its dtype options), and the top-3 scores rank by rank:
 * within 1e-4 at fp32, within 0.05 at q8 (another graph of int8 products, or vit at fp32).
 */
async function sameAsTransformersJs(name: string, model: string[], images: string[], dtype: 'fp32' | 'q8', ours: string[]): Promise<void> {
  const { env, pipeline } = await import('@huggingface/transformers');
  env.allowRemoteModels = false;
  env.localModelPath = scratch;
  env.useFSCache = false;
  const r = await runVit(['classify', ...images, ...model, '-f', 'jsonl', '-k', '3', ...ours]);
  assert.equal(r.code, 0, r.stderr);
  const rows = r.stdout.trim().split('\n').map((l) => JSON.parse(l) as { predictions: { label: string; score: number }[] });
  const classify = await pipeline('image-classification', name, { dtype });
  for (const [i, image] of images.entries()) {
    const got = (await classify(image, { top_k: 3 })) as { label: string; score: number }[];
    assert.equal(got[0].label, rows[i].predictions[0].label, `${dtype} ${image}`);
    const tol = dtype === 'fp32' ? TOL : 0.05;
    got.forEach((p, k) => assert.ok(Math.abs(p.score - rows[i].predictions[k].score) < tol, `${dtype} ${image}: ${p.label} ${p.score}`));
  }
  await classify.dispose();
}

test('vit export: a folder with config.json, preprocessor_config.json and one ONNX file per dtype, weights inline', async () => {
  await ready;
  assert.deepEqual(readdirSync(folder).sort(), ['config.json', 'onnx', 'preprocessor_config.json']);
  assert.deepEqual(readdirSync(join(folder, 'onnx')).sort(), ['model.onnx', 'model_quantized.onnx']);
  const config = JSON.parse(readFileSync(join(folder, 'config.json'), 'utf8'));
  const source = JSON.parse(readFileSync(join(odd40, 'config.json'), 'utf8'));
  assert.equal(config.model_type, 'vit');
  assert.deepEqual(config.id2label, source.id2label);
  for (const k of ['hidden_size', 'num_hidden_layers', 'num_attention_heads', 'intermediate_size', 'patch_size', 'layer_norm_eps']) {
    assert.equal(config[k], source[k], k);
  }
  assert.equal(config['transformers.js_config'], undefined, 'no external data to announce');
  const m = await loadModel({ model: odd40 });
  assert.deepEqual(preprocessFromHf(JSON.parse(readFileSync(join(folder, 'preprocessor_config.json'), 'utf8')), m.config.imgSize, 3, 'vit'), m.config.preprocess);
  for (const file of ['model.onnx', 'model_quantized.onnx']) {
    const proto = onnx.ModelProto.decode(readFileSync(join(folder, 'onnx', file)));
    assert.ok(proto.graph!.node!.every((n) => !n.domain), `${file}: standard ONNX ops only`);
    assert.ok(proto.graph!.initializer!.every((t) => t.dataLocation !== onnx.TensorProto.DataLocation.EXTERNAL), `${file}: weights inline`);
  }
});

test('vit export: timm-style preprocessing (shortest edge, centre crop, bicubic) reads back the same, as a BitImageProcessor', () => {
  const pp = timmPreprocess([224, 224], 0.9, 'bicubic', [0.5, 0.5, 0.5], [0.5, 0.5, 0.5]);
  const hf = preprocessToHf(pp);
  const { timm: _settings, ...steps } = pp;
  assert.deepEqual(preprocessFromHf(hf, [224, 224], 3, 'vit'), steps);
  // transformers' ViTImageProcessor refuses a shortest_edge size and has no crop.
  assert.equal(hf.image_processor_type, 'BitImageProcessor');
  const plain = preprocessFromHf({ size: { height: 224, width: 224 }, resample: 2 }, [224, 224], 3, 'vit');
  assert.equal(preprocessToHf(plain).image_processor_type, 'ViTImageProcessor');
  assert.deepEqual(preprocessFromHf(preprocessToHf(plain), [224, 224], 3, 'vit'), plain);
});

test('vit export: onnxruntime-node runs the exported graphs; fp32 matches torchvision within 1e-4, int8 within its tolerance', async (t) => {
  await ready;
  const g = readGolden('odd40');
  const x = Float32Array.from(g.inputs.data);
  const fp32 = await logitsOf(join(folder, 'onnx', 'model.onnx'), x, g.inputs.shape);
  const err = maxAbsDiff(fp32, g.logits);
  assert.ok(err < TOL, `fp32 export off by ${err}`);
  const limit = INT8_LOGIT_TOL * Math.max(...g.logits.flat().map(Math.abs));
  const exact = await exactInt8Folder;
  if (exact !== folder) {
    const own = maxAbsDiff(await logitsOf(join(folder, 'onnx', 'model_quantized.onnx'), x, g.inputs.shape), g.logits);
    t.diagnostic(`this CPU's u8·s8 products saturate: the int8 export itself is off by ${own.toExponential(2)} here; checked as uint8`);
  }
  const int8 = await logitsOf(join(exact, 'onnx', 'model_quantized.onnx'), x, g.inputs.shape);
  assert.ok(maxAbsDiff(int8, g.logits) < limit, `int8 export off by ${maxAbsDiff(int8, g.logits)}`);
  assert.deepEqual(argmaxRows(int8, g.config.numClasses), argmaxRows(fp32, g.config.numClasses));
});

test('vit export: above the inline limit the weights go to model.onnx_data beside the graph, which onnxruntime finds', async () => {
  const m = await loadModel({ model: odd40 });
  const dir = join(scratch, 'external');
  const files = exportOnnx(m.config, m.weights, 'fp32', 0);
  assert.deepEqual(files.map((f) => f.name), ['model.onnx', 'model.onnx_data']);
  writeModelFolder(dir, files);
  const g = readGolden('odd40');
  const err = maxAbsDiff(await logitsOf(join(dir, 'model.onnx'), Float32Array.from(g.inputs.data), g.inputs.shape), g.logits);
  assert.ok(err < TOL, `external-data export off by ${err}`);
});

test('vit export: a model without a classifier head is refused, and the output folder is required', async () => {
  const headless = await runVit(['export', '-m', 'Ti/16', '--random-weights', '--num-classes', '0', join(scratch, 'headless')]);
  assert.equal(headless.code, 1, headless.stderr);
  assert.match(headless.stderr, /no classifier head/);
  assert.ok(!existsSync(join(scratch, 'headless')));
  const missing = await runVit(['export', '-m', odd40]);
  assert.equal(missing.code, 2);
});

test('vit export: the exported folder is not a checkpoint; classify on it says that it holds an ONNX export', async () => {
  await ready;
  const photo = join(PHOTOS, 'coffee.png');
  const r = await runVit(['classify', photo, '-m', folder]);
  assert.equal(r.code, 2, r.stderr);
  assert.equal(r.stdout, '');
  assert.match(r.stderr, /has no weights \(onnx\/model\.onnx is an ONNX export; vit builds its own graph from a checkpoint/);
});

test('vit export: a file or FIFO where the folder should be is refused before any work; a file in the place of its onnx/ is one line', async () => {
  const file = join(scratch, 'a-file');
  writeFileSync(file, 'keep');
  const fifo = join(scratch, 'a-fifo');
  execFileSync('mkfifo', [fifo]);
  for (const target of [file, fifo]) {
    const r = await runVit(['export', '-m', odd40, target]);
    assert.equal(r.code, 2, r.stderr);
    assert.equal(r.stderr.split('\n')[0], `vit: ${target} is not a folder: vit export writes a folder (created if needed)`);
  }
  assert.equal(readFileSync(file, 'utf8'), 'keep');
  const blocked = join(scratch, 'blocked');
  mkdirSync(blocked);
  writeFileSync(join(blocked, 'onnx'), 'not a folder');
  const r = await runVit(['export', '-m', odd40, blocked]);
  assert.equal(r.code, 1, r.stderr);
  assert.equal(r.stderr, `vit: cannot write ${join(blocked, 'onnx', 'model.onnx')}: EEXIST (file already exists)\n`);
  assert.deepEqual(readdirSync(blocked), ['onnx']);
});

test('vit export: transformers.js loads both exports offline from the folder and classifies as vit does', async () => {
  await ready;
  const images = ['odd40_0.png', 'odd40_1.png', 'odd40_2.png'].map((f) => join(IMAGES, f));
  await sameAsTransformersJs('odd40', ['-m', odd40], images, 'fp32', []);
  // q8 from the folder whose int8 products are exact on this CPU (see exactInt8Folder), against vit's fp32 rows.
  await sameAsTransformersJs((await exactInt8Folder).split('/').pop()!, ['-m', odd40], images, 'q8', []);
});

test('vit export --reduce-range: int8 weights at most ±64 per output row, exact on any CPU; without it a CPU without VNNI is told', async () => {
  await ready;
  const dir = join(scratch, 'odd40-r7');
  const r = await runVit(['export', '-m', odd40, dir, '--dtype', 'int8', '--reduce-range']);
  assert.equal(r.code, 0, r.stderr);
  assert.doesNotMatch(r.stderr, /reduce-range/);
  const proto = onnx.ModelProto.decode(readFileSync(join(dir, 'onnx', 'model_quantized.onnx')));
  const q = proto.graph!.initializer!.filter((t) => t.dataType === onnx.TensorProto.DataType.INT8);
  assert.ok(q.length > 0);
  for (const t of q) {
    const [rows, cols] = t.dims!.map(Number);
    const v = new Int8Array(t.rawData!.buffer, t.rawData!.byteOffset, rows * cols);
    const peak = new Array<number>(cols).fill(0);
    v.forEach((x, i) => { peak[i % cols] = Math.max(peak[i % cols], Math.abs(x)); });
    assert.deepEqual(new Set(peak), new Set([64]), `${t.name}: each output row's largest |w| at 64`);
  }
  const g = readGolden('odd40');
  const x = Float32Array.from(g.inputs.data);
  const int7 = await logitsOf(join(dir, 'onnx', 'model_quantized.onnx'), x, g.inputs.shape);
  const limit = INT8_LOGIT_TOL * Math.max(...g.logits.flat().map(Math.abs));
  assert.ok(maxAbsDiff(int7, g.logits) < limit, `7-bit export off by ${maxAbsDiff(int7, g.logits)}`);
  assert.deepEqual(argmaxRows(int7, g.config.numClasses), argmaxRows(Float32Array.from(g.logits.flat()), g.config.numClasses));

  const eight = await runVit(['export', '-m', odd40, join(scratch, 'odd40-8'), '--dtype', 'int8']);
  assert.equal(eight.code, 0, eight.stderr);
  assert.equal(/model_quantized.onnx holds 8-bit weights, .* --reduce-range writes them in 7 bits/.test(eight.stderr), int8WeightsFor() === 'int7', eight.stderr);
  const fp32 = await runVit(['export', '-m', odd40, join(scratch, 'odd40-fp32'), '--reduce-range']);
  assert.equal(fp32.code, 2);
  assert.match(fp32.stderr, /^vit: --reduce-range is for --dtype int8/);
  assert.ok(!existsSync(join(scratch, 'odd40-fp32')));
});

test('vit export: a FIFO or an oversized file in the place of the folder\'s config.json is replaced, not read', { timeout: 60_000 }, async () => {
  const dir = join(scratch, 'fifo-config');
  mkdirSync(dir);
  execFileSync('mkfifo', [join(dir, 'config.json')]);
  const r = await runVit(['export', '-m', odd40, dir]);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')).model_type, 'vit');
  const big = join(scratch, 'big-config');
  mkdirSync(big);
  writeFileSync(join(big, 'config.json'), `{"pad": "${'x'.repeat(17 * 2 ** 20)}"}`);
  const b = await runVit(['export', '-m', odd40, big]);
  assert.equal(b.code, 0, b.stderr);
  assert.equal(JSON.parse(readFileSync(join(big, 'config.json'), 'utf8')).pad, undefined);
});

const swinShift = readSwinGolden('swin_shift');
const swinSource = join(SWIN_FIXTURES, 'swin_shift', 'hf');
const swinFolder = join(scratch, 'swin_shift');
/** fp32, and int8 in 7 bits (--reduce-range), whose products are exact on any CPU. */
const swinReady = (async () => {
  for (const extra of [[], ['--dtype', 'int8', '--reduce-range']]) {
    const r = await runVit(['export', '-m', swinSource, swinFolder, ...extra]);
    assert.equal(r.code, 0, r.stderr);
  }
})();

test('vit export: a Swin as transformers\' SwinForImageClassification; fp32 matches torchvision within 1e-4, int8 within its tolerance', async () => {
  await swinReady;
  const config = JSON.parse(readFileSync(join(swinFolder, 'config.json'), 'utf8'));
  const preprocessor = JSON.parse(readFileSync(join(swinFolder, 'preprocessor_config.json'), 'utf8'));
  assert.equal(config.model_type, 'swin');
  assert.deepEqual(config.architectures, ['SwinForImageClassification']);
  // The folder's config describes the model the graph computes: it reads back as the source's config.
  const source = (await loadModel({ model: swinSource })).config;
  assert.deepEqual({ ...swinFromHf(config, preprocessor, 'back'), name: source.name }, source);
  const x = goldenInputs(swinShift);
  const want = swinShift.references.torchvision.logits;
  const fp32 = await logitsOf(join(swinFolder, 'onnx', 'model.onnx'), x, swinShift.inputs.shape);
  assert.ok(maxAbsDiff(fp32, want) < TOL, `fp32 Swin export off by ${maxAbsDiff(fp32, want)}`);
  const int8 = await logitsOf(join(swinFolder, 'onnx', 'model_quantized.onnx'), x, swinShift.inputs.shape);
  const limit = SWIN_INT7_LOGIT_TOL * Math.max(...want.flat().map(Math.abs));
  assert.ok(maxAbsDiff(int8, want) < limit, `int8 Swin export off by ${maxAbsDiff(int8, want)} (limit ${limit})`);
  for (const file of ['model.onnx', 'model_quantized.onnx']) {
    const proto = onnx.ModelProto.decode(readFileSync(join(swinFolder, 'onnx', file)));
    assert.ok(proto.graph!.node!.every((n) => !n.domain), `${file}: standard ONNX ops only`);
  }
});

test('vit export: transformers.js loads a Swin export (fp32 and q8) offline and classifies as vit does', async () => {
  await swinReady;
  const images = await photosAt(64, 'swin');
  await sameAsTransformersJs('swin_shift', ['-m', swinSource], images, 'fp32', []);
  await sameAsTransformersJs('swin_shift', ['-m', swinSource], images, 'q8', ['--dtype', 'int8', '--reduce-range']);
});

test('vit export: a Swin runs as the implementation that wrote it, where transformers would place windows otherwise; per-stage windows are listed', async () => {
  // swin_pad at 40 px: its maps do not tile into windows of 3, and timm shifts before padding where transformers
  // pads first; the graph is timm's model all the same.
  const g = readSwinGolden('swin_pad');
  const dir = join(scratch, 'swin-pad-timm');
  const pad = await runVit(['export', '-m', join(SWIN_FIXTURES, 'swin_pad', 'timm'), dir]);
  assert.equal(pad.code, 0, pad.stderr);
  const got = await logitsOf(join(dir, 'onnx', 'model.onnx'), goldenInputs(g), g.inputs.shape);
  assert.ok(maxAbsDiff(got, g.references.timm.logits) < TOL, `swin_pad (timm) export off by ${maxAbsDiff(got, g.references.timm.logits)}`);
  // Windows per stage (timm's S3 models): transformers' one window_size cannot say them, so the list is written.
  const s3 = join(scratch, 's3');
  mkdirSync(s3);
  const timm = JSON.parse(readFileSync(join(SWIN_FIXTURES, 'swin_shift', 'timm', 'config.json'), 'utf8'));
  timm.model_args.window_size = [4, 4, 2];
  writeFileSync(join(s3, 'config.json'), JSON.stringify(timm));
  const perStage = await runVit(['export', '-m', s3, '--random-weights', join(scratch, 's3-export')]);
  assert.equal(perStage.code, 0, perStage.stderr);
  assert.deepEqual(JSON.parse(readFileSync(join(scratch, 's3-export', 'config.json'), 'utf8')).window_size, [4, 4, 2]);
});

test('vit export: a distilled DeiT is transformers\' DeiT with teacher, which transformers.js loads and runs as vit does', async () => {
  const model = ['-m', 'deit_tiny_distilled_patch16_224', '--random-weights'];
  const r = await runVit(['export', ...model, join(scratch, 'deit')]);
  assert.equal(r.code, 0, r.stderr);
  const config = JSON.parse(readFileSync(join(scratch, 'deit', 'config.json'), 'utf8'));
  assert.equal(config.model_type, 'deit');
  assert.deepEqual(config.architectures, ['DeiTForImageClassificationWithTeacher']);
  const pp = JSON.parse(readFileSync(join(scratch, 'deit', 'preprocessor_config.json'), 'utf8'));
  assert.equal(vitFromHf(config, pp, 'back').distilled, true);
  // Images at the resize's target, so that only the crop (exact in both) is left.
  assert.equal(pp.image_processor_type, 'BitImageProcessor');
  await sameAsTransformersJs('deit', model, await photosAt(pp.size.shortest_edge, 'deit'), 'fp32', []);
});

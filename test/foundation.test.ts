import assert from 'node:assert/strict';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { ModelError, UsageError, WeightsError } from '../src/errors.js';
import { topK } from '../src/pipeline/rows.js';
import { resolveLabels } from '../src/io/labels.js';
import { loadModel } from '../src/io/model-source.js';
import { vitFromHf as fromHfConfig, vitFromTimm as fromTimmConfig } from '../src/model/arch/vit/readers.js';
import { preprocessFromHf } from '../src/model/preprocess.js';
import { VIT_PRESETS, vitPreset as presetConfig } from '../src/model/arch/vit/presets.js';
import { summarize } from '../src/model/summary.js';
import { presetConfig as anyPreset } from '../src/model/arch/index.js';
import { readSafetensors, writeSafetensors } from '../src/model/weights/safetensors.js';
import { PACKAGE_ROOT } from '../src/io/paths.js';
import { runVit } from './helpers/cli.js';
import { modelDir } from './helpers/golden.js';

test('presets: parameter counts and GMACs of the paper', () => {
  const want: [string, number, number][] = [
    ['B/16', 86_567_656, 17.58], ['B/32', 88_224_232, 4.41], ['L/16', 304_326_632, 61.6],
    ['L/32', 306_535_400, 15.38], ['H/14', 632_045_800, 167.4],
  ];
  for (const [name, params, gmacs] of want) {
    const s = summarize(presetConfig(name));
    assert.equal(s.params, params, name);
    assert.ok(Math.abs(s.gmacs - gmacs) / gmacs < 0.01, `${name} GMACs ${s.gmacs}`);
    assert.equal(s.weightBytes, params * 4);
  }
});

test('presets: paper, ViT- and timm names, case-insensitive', () => {
  for (const n of ['B/16', 'ViT-B/16', 'vit-b/16', 'vit_base_patch16_224', 'VIT_BASE_PATCH16_224']) {
    assert.equal(presetConfig(n).name, 'vit_base_patch16_224');
  }
  assert.equal(presetConfig('B/16@384').imgSize[0], 384);
  assert.equal(presetConfig('ViT-L/16@384').name, 'vit_large_patch16_384');
  for (const n of ['Ti/16', 'S/16', 'S/32', 'B/16', 'B/32', 'L/16', 'L/32', 'H/14', 'B/16@384', 'B/32@384', 'L/16@384']) {
    assert.doesNotThrow(() => presetConfig(n), n);
  }
  assert.ok(VIT_PRESETS.names().length >= 11);
  assert.throws(() => anyPreset('B/17'), (e: unknown) => e instanceof UsageError && /B\/16/.test(e.message) && /vit_huge_patch14_224/.test(e.message));
});

test('presets: the original checkpoints preprocess with mean = std = 0.5, bicubic, crop 0.9', () => {
  const pp = presetConfig('B/16').preprocess;
  assert.deepEqual(pp.mean, [0.5, 0.5, 0.5]);
  assert.equal(pp.interpolation, 'bicubic');
  assert.deepEqual(pp.resize, { shortestEdge: 248 });
  assert.deepEqual(pp.crop, { height: 224, width: 224 });
  assert.deepEqual(presetConfig('B/16@384').preprocess.resize, { shortestEdge: 384 });
});

test('config readers: Hugging Face and timm config.json', () => {
  const hf = fromHfConfig({
    model_type: 'vit', architectures: ['ViTForImageClassification'], hidden_size: 40, num_hidden_layers: 3,
    num_attention_heads: 5, intermediate_size: 72, image_size: 48, patch_size: 8, layer_norm_eps: 1e-3,
    qkv_bias: false, id2label: { 0: 'a', 1: 'b' },
  }, { size: { height: 48, width: 48 }, resample: 3, image_mean: [0.1, 0.2, 0.3], image_std: [1, 2, 3] }, 'x');
  assert.equal(hf.embedDim, 40);
  assert.equal(hf.layerNormEps, 1e-3);
  assert.equal(hf.qkvBias, false);
  assert.deepEqual(hf.labels, ['a', 'b']);
  assert.equal(hf.preprocess.interpolation, 'bicubic');
  assert.deepEqual(hf.preprocess.std, [1, 2, 3]);
  const headless = fromHfConfig({ model_type: 'vit', architectures: ['ViTModel'], hidden_size: 40, num_attention_heads: 5 }, null, 'y');
  assert.equal(headless.numClasses, 0);
  const timm = fromTimmConfig({
    architecture: 'vit_small_patch16_224', num_classes: 3, label_names: ['x', 'y', 'z'],
    model_args: { img_size: 64, global_pool: 'avg' },
    pretrained_cfg: { crop_pct: 0.875, interpolation: 'bilinear', mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225] },
  }, 't');
  assert.equal(timm.embedDim, 384);
  assert.deepEqual(timm.imgSize, [64, 64]);
  assert.equal(timm.globalPool, 'avg');
  assert.equal(timm.fcNorm, true);
  assert.deepEqual(timm.preprocess.resize, { shortestEdge: 73 });
  assert.deepEqual(preprocessFromHf({ image_processor_type: 'BitImageProcessor', size: { shortest_edge: 256 }, do_center_crop: true, crop_size: 224 }, [224, 224], 3, 'vit').crop, { height: 224, width: 224 });
});

test('timm config.json as timm reads it: the old layout without pretrained_cfg, PretrainedCfg\'s defaults, layers it cannot express', () => {
  const pre = { input_size: [3, 64, 64], crop_pct: 1.0, interpolation: 'bilinear', mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5] };
  const args = { img_size: 64 };
  const nested = fromTimmConfig({ architecture: 'vit_small_patch16_224', num_classes: 3, label_names: ['x', 'y', 'z'], model_args: args, pretrained_cfg: pre }, 'n');
  // Before timm 0.9 the file was the pretrained_cfg itself, with `labels` for label_names.
  const old = fromTimmConfig({ architecture: 'vit_small_patch16_224', num_classes: 3, num_features: 384, labels: ['x', 'y', 'z'], ...pre }, 'o');
  assert.deepEqual(old.preprocess, nested.preprocess);
  assert.deepEqual(old.imgSize, [64, 64]);
  assert.deepEqual(old.labels, ['x', 'y', 'z']);
  assert.deepEqual(nested.preprocess.resize, { shortestEdge: 64 });
  assert.equal(nested.preprocess.interpolation, 'bilinear');
  // A field the dict lacks takes PretrainedCfg's default (crop 0.875, bicubic, ImageNet statistics), not the
  // architecture's (vit_small_patch16_224's own are mean = std = 0.5 and crop 0.9).
  const sparse = fromTimmConfig({ architecture: 'vit_small_patch16_224', num_classes: 3, model_args: args, pretrained_cfg: { input_size: [3, 64, 64] } }, 's');
  assert.deepEqual(sparse.preprocess.resize, { shortestEdge: 73 });
  assert.equal(sparse.preprocess.interpolation, 'bicubic');
  assert.deepEqual(sparse.preprocess.mean, [0.485, 0.456, 0.406]);
  assert.deepEqual(sparse.preprocess.std, [0.229, 0.224, 0.225]);
  // An activation or norm other than GELU and LayerNorm adds no tensor the weight check would miss.
  for (const [k, v] of [['act_layer', 'quick_gelu'], ['norm_layer', 'rmsnorm']]) {
    assert.throws(() => fromTimmConfig({ architecture: 'vit_small_patch16_224', model_args: { [k]: v } }, 'q'),
      (e: unknown) => e instanceof ModelError && e.message === `q: model_args.${k} "${v}" is not supported (${k === 'act_layer' ? 'gelu' : 'layernorm'} only)`);
  }
  assert.equal(fromTimmConfig({ architecture: 'vit_small_patch16_224', model_args: { act_layer: 'gelu' } }, 'g').embedDim, 384);
  // Hugging Face: num_labels names the classes when id2label does not (transformers' LABEL_i then).
  const hf = { model_type: 'vit', architectures: ['ViTForImageClassification'], hidden_size: 40, num_attention_heads: 5, image_size: 48, patch_size: 8 };
  assert.equal(fromHfConfig({ ...hf, num_labels: 7 }, null, 'h').numClasses, 7);
  assert.equal(fromHfConfig(hf, null, 'h').numClasses, 2);
  assert.equal(fromHfConfig({ ...hf, num_labels: 7, id2label: { 0: 'a', 1: 'b', 2: 'c' } }, null, 'h').numClasses, 3);
});

test('preprocessor configs are read as their transformers class reads them (image_processor_type, else the model type)', () => {
  const read = (pp: Record<string, unknown>, modelType = 'vit', size: [number, number] = [224, 224]) => {
    const { resize, crop, interpolation, mean } = preprocessFromHf(pp, size, 3, modelType);
    return { resize, crop, interpolation, mean };
  };
  const square = (n: number) => ({ height: n, width: n });
  // google/vit-* and microsoft/swin-*: ViTFeatureExtractor with "size": 224 is a 224×224 resize (get_size_dict's
  // default_to_square); ViTImageProcessor has no crop step, whatever do_center_crop says.
  const google = { feature_extractor_type: 'ViTFeatureExtractor', size: 224, resample: 2, do_center_crop: true, crop_size: 200 };
  assert.deepEqual(read(google), { resize: square(224), crop: null, interpolation: 'bilinear', mean: [0.5, 0.5, 0.5] });
  assert.deepEqual(read({ size: 384, resample: 3 }, 'swin', [384, 384]).resize, square(384));
  assert.deepEqual(read({ image_processor_type: 'ViTImageProcessorFast', size: 224 }).resize, square(224));
  // facebook/deit-*: 256 is 256×256, then the 224 crop; DeiT's defaults are bicubic with the crop on.
  const deit = { feature_extractor_type: 'DeiTFeatureExtractor', size: 256, crop_size: 224, do_center_crop: true, resample: 3 };
  assert.deepEqual(read(deit, 'deit'), { resize: square(256), crop: square(224), interpolation: 'bicubic', mean: [0.5, 0.5, 0.5] });
  assert.deepEqual(read({}, 'deit'), { resize: square(256), crop: square(224), interpolation: 'bicubic', mean: [0.5, 0.5, 0.5] });
  assert.deepEqual(read({ image_processor_type: 'BeitImageProcessor', size: 256 }).resize, square(256));
  // ConvNext: the short side to ⌊S / crop_pct⌋ and an S×S crop below 384, a warp to S×S from 384 on.
  const convnext = { image_processor_type: 'ConvNextImageProcessor', size: { shortest_edge: 224 }, crop_pct: 0.875, resample: 3 };
  assert.deepEqual(read(convnext), { resize: { shortestEdge: 256 }, crop: square(224), interpolation: 'bicubic', mean: [0.5, 0.5, 0.5] });
  assert.deepEqual(read({ ...convnext, size: 224, crop_pct: undefined }).resize, { shortestEdge: 256 });
  assert.deepEqual(read({ ...convnext, size: { shortest_edge: 384 } }, 'vit', [384, 384]), { resize: square(384), crop: null, interpolation: 'bicubic', mean: [0.5, 0.5, 0.5] });
  // Bit and CLIP: a number is the shortest edge; their defaults are CLIP's statistics, bicubic, crop on.
  assert.deepEqual(read({ image_processor_type: 'BitImageProcessor', size: 224 }), {
    resize: { shortestEdge: 224 }, crop: square(224), interpolation: 'bicubic', mean: [0.48145466, 0.4578275, 0.40821073],
  });
  assert.deepEqual(read({ image_processor_type: 'CLIPImageProcessor', size: { height: 224, width: 224 }, do_center_crop: false }).resize, square(224));
  // What the class itself would refuse, and what this tool does not implement, are refused with the reason.
  const refused = (pp: Record<string, unknown>, message: RegExp) => assert.throws(() => read(pp), (e: unknown) => e instanceof ModelError && message.test(e.message), String(message));
  refused({ size: { shortest_edge: 224 } }, /ViTImageProcessor resizes to size \{height, width\}, not \{shortest_edge\}/);
  refused({ image_processor_type: 'ConvNextImageProcessor', size: { height: 224, width: 224 } }, /ConvNextImageProcessor resizes to size \{shortest_edge\}/);
  refused({ image_processor_type: 'LevitImageProcessor' }, /image processor "LevitImageProcessor" is not one this tool reads \(ViTImageProcessor, /);
  refused({ resample: 4 }, /resample 4 is not one this tool reads \(0 nearest, 1 lanczos, 2 bilinear, 3 bicubic\)/);
  refused({ size: { longest_edge: 224 } }, /size \{"longest_edge":224\} is not one this tool reads/);
});

test('safetensors: F32 round trip and corrupt headers refused', () => {
  const m = new Map([['a', { shape: [2, 3], data: Float32Array.from([1, 2, 3, 4, 5, 6]) }], ['b', { shape: [1], data: Float32Array.from([-7.5]) }]]);
  const back = readSafetensors(writeSafetensors(m));
  assert.deepEqual([...back.keys()], ['a', 'b']);
  assert.deepEqual(back.get('a')!.shape, [2, 3]);
  assert.deepEqual([...back.get('b')!.data], [-7.5]);
  const bytes = writeSafetensors(m);
  new DataView(bytes.buffer).setBigUint64(0, 10n ** 12n, true);
  assert.throws(() => readSafetensors(bytes), WeightsError);
  assert.throws(() => readSafetensors(new Uint8Array(4)), WeightsError);
});

test('weights check: one error lists the missing, the unexpected and the mis-shaped tensor', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'vit-bad-'));
  try {
    const src = modelDir('odd40', 'timm');
    cpSync(join(src, 'config.json'), join(dir, 'config.json'));
    const w = readSafetensors(readFileSync(join(src, 'model.safetensors')));
    w.delete('blocks.1.mlp.fc2.bias');
    w.set('blocks.0.attn.extra', { shape: [1], data: new Float32Array(1) });
    w.set('norm.weight', { shape: [41], data: new Float32Array(41) });
    writeFileSync(join(dir, 'model.safetensors'), writeSafetensors(w));
    await assert.rejects(loadModel({ model: dir }), (e: unknown) => {
      assert.ok(e instanceof WeightsError);
      assert.match(e.message, /missing \(1\): blocks\.1\.mlp\.fc2\.bias/);
      assert.match(e.message, /unexpected \(1\): blocks\.0\.attn\.extra/);
      assert.match(e.message, /norm\.weight: expected \[40\], found \[41\]/);
      return true;
    });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('cli: what a file puts in a message reaches stderr with its control characters escaped, one line each', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'vit-bad-'));
  try {
    const src = modelDir('odd40', 'hf');
    cpSync(src, dir, { recursive: true });
    const cfg = JSON.parse(readFileSync(join(src, 'config.json'), 'utf8')) as Record<string, unknown>;
    writeFileSync(join(dir, 'config.json'), JSON.stringify({ ...cfg, model_type: 'vit\u001b]0;title\u0007\u001b[2J' }));
    let r = await runVit(['summary', dir]);
    assert.equal(r.code, 1);
    assert.equal(r.stderr, `vit: ${dir.split('/').pop()}: model_type "vit\\x1b]0;title\\x07\\x1b[2J" is not an architecture this tool runs (vit, deit, swin)\n`);

    writeFileSync(join(dir, 'config.json'), JSON.stringify(cfg));
    const w = readSafetensors(readFileSync(join(src, 'model.safetensors')));
    w.set('extra\u001b[31m\nvit: a line of its own', { shape: [1], data: new Float32Array(1) });
    writeFileSync(join(dir, 'model.safetensors'), writeSafetensors(w));
    r = await runVit(['classify', join(tmpdir(), 'no-such-image.png'), '-m', dir]);
    assert.equal(r.code, 1);
    const lines = r.stderr.trimEnd().split('\n');
    assert.equal(lines.length, 2, r.stderr);
    assert.match(lines[0], /^vit: .* does not fit model .*:$/);
    assert.match(lines[1], /^ {2}unexpected \(1\): .*extra\\x1b\[31m\\nvit: a line of its own$/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a forward without weights says how to give some', async () => {
  await assert.rejects(loadModel({ model: 'B/32' }), (e: unknown) => e instanceof UsageError && /--weights/.test(e.message) && /--random-weights/.test(e.message));
  const m = await loadModel({ model: 'Ti/16', randomWeights: true });
  assert.equal(m.scheme, 'random');
  assert.equal(m.weights.get('head.weight')!.shape[0], 1000);
});

test('cli: vit summary prints the exact parameter count as JSON, instantly for H/14', async () => {
  const r = await runVit(['summary', 'B/16', '--num-classes', '1000', '--json']);
  assert.equal(r.code, 0, r.stderr);
  const s = JSON.parse(r.stdout);
  assert.equal(s.params, 86567656);
  for (const k of ['params', 'gmacs', 'weightBytes', 'layers']) assert.ok(k in s, k);
  const h = await runVit(['summary', 'H/14']);
  assert.equal(h.code, 0, h.stderr);
  assert.match(h.stdout, /632,045,800/);
  const big = await runVit(['summary', 'B/16', '--image-size', '384', '--json']);
  assert.equal(JSON.parse(big.stdout).tokens, 577);
});

test('cli: usage errors exit 2 and list the valid choices', async () => {
  const r = await runVit(['summary', 'B/99']);
  assert.equal(r.code, 2);
  assert.equal(r.stdout, '');
  assert.match(r.stderr, /unknown model "B\/99"/);
  assert.match(r.stderr, /B\/16/);
  assert.doesNotMatch(r.stderr, /did you mean/, 'B/99 is near no preset');
  // A name with the right letters and digits, or a typo away from one, is named first.
  for (const [typed, meant] of [['B16', 'B/16'], ['swint', 'Swin-T'], ['vit-base-patch16-224', 'vit_base_patch16_224'], ['vit_base_patch16_244', 'vit_base_patch16_224']]) {
    const t = await runVit(['summary', typed!]);
    assert.equal(t.code, 2);
    assert.ok(t.stderr.startsWith(`vit: unknown model "${typed}" (did you mean ${meant}?). Presets — `), t.stderr.slice(0, 120));
  }
  const tie = await runVit(['summary', 'Swin-X']); // as near Swin-T, -S, -B and -L: no guess
  assert.match(tie.stderr, /^vit: unknown model "Swin-X"\. Presets — /);
  const u = await runVit(['summary', 'B/16', '--no-such-flag']);
  assert.equal(u.code, 2);
  const c = await runVit(['frobnicate']);
  assert.equal(c.code, 2);
  assert.equal(c.stderr.split('\n')[0], 'vit: unknown command "frobnicate"; the commands are classify, embed, attention, summary, export, fetch, merge');
  const near = await runVit(['-q', 'clasify', 'x.jpg']);
  assert.equal(near.code, 2);
  assert.equal(near.stderr.split('\n')[0], 'vit: unknown command "clasify". Did you mean classify?');
});

test('cli: everything after -- is an operand: names that start with a dash, in order, into the command\'s slots', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'vit-dashes-'));
  try {
    const digit = join(PACKAGE_ROOT, 'examples', 'digits', '0_0800.png');
    for (const name of ['-x.png', '-q', 'a.png']) cpSync(digit, join(dir, name));
    const rows = async (args: string[]) => {
      const r = await runVit(args, { cwd: dir, input: '' });
      assert.equal(r.code, 0, r.stderr);
      return r.stdout.trim().split('\n').slice(1).map((l) => l.split(',')[0]);
    };
    // -q after -- is a file, not --quiet; xargs -0 vit classify -- gives every name this way.
    assert.deepEqual(await rows(['classify', '-k', '1', '--', '-x.png', '-q', 'a.png']), ['-x.png', '-q', 'a.png']);
    assert.deepEqual(await rows(['classify', '-k', '1', './-x.png', '--', 'a.png']), ['./-x.png', 'a.png']);
    const summary = await runVit(['summary', '--json', '--', 'B/16']);
    assert.equal(JSON.parse(summary.stdout).model, 'vit_base_patch16_224');
    const extra = await runVit(['summary', 'B/16', '--', '-x']);
    assert.equal(extra.code, 2);
    assert.match(extra.stderr, /^vit: vit summary \[model\] does not take "-x" after --\n/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('cli: a bad option value is one line quoting what was typed, exit 2, before any work', async () => {
  const cases: [string[], string][] = [
    [['classify', 'x.jpg', '--threads', 'abc'], 'vit: --threads takes a number, not "abc"'],
    [['classify', 'x.jpg', '-b', 'many'], 'vit: -b takes a number, not "many"'],
    [['classify', 'x.jpg', '--top-k=two'], 'vit: --top-k takes a number, not "two"'],
    [['classify', 'x.jpg', '--threads'], 'vit: --threads needs a value'],
    [['classify', 'x.jpg', '--threads', '2', '--threads', 'abc'], 'vit: --threads takes a number, not "abc"'],
    [['classify', 'x.jpg', '-f'], 'vit: -f needs a value'],
    [['embed', 'x.jpg', '-o'], 'vit: -o needs a value'],
    [['classify', 'x.jpg', '-f', 'xml'], 'vit: --format is one of "csv", "json", "jsonl", "parquet", not "xml"'],
    [['classify', 'x.jpg', '--device', 'gpu', '--dtype', 'int4'], 'vit: --device is one of "cpu", "cuda", not "gpu"; --dtype is one of "fp32", "int8", not "int4"'],
    [['export', '-m', 'B/16'], 'vit: vit export <outdir>: no arguments, at least 1 needed'],
    [['merge', 'all.csv'], 'vit: vit merge <output> <parts..>: 1 argument, at least 2 needed'],
    // Arguments beyond a command's own: how many it takes, and for export where the model goes.
    [['export', 'B/16', 'b16-onnx'], 'vit: vit export <outdir> takes 1 argument, not 2 (the model goes with -m: vit export -m MODEL OUTDIR)'],
    [['export', '--model=B/16', '--random-weights', 'out', 'again'], 'vit: vit export <outdir> takes 1 argument, not 2'],
    [['summary', 'B/16', 'B/32'], 'vit: vit summary [model] takes at most 1 argument, not 2'],
    [['fetch', 'acme/a', 'acme/b', 'acme/c'], 'vit: vit fetch <model> takes 1 argument, not 3'],
  ];
  for (const [args, line] of cases) {
    const r = await runVit(args);
    assert.equal(r.code, 2, args.join(' '));
    assert.equal(r.stdout, '', args.join(' '));
    assert.deepEqual(r.stderr.split('\n').slice(0, 2), [line, 'Run `vit --help` (or `vit <command> --help`) for usage.'], args.join(' '));
  }
  // "-" and "=" forms still take their values.
  const ok = await runVit(['classify', '-', '-k=1', '-o', '-', '-f', 'jsonl'], { input: '' });
  assert.equal(ok.code, 0, ok.stderr);
  // An option given twice: the last counts (it was a list the command failed on: "name.trim is not a function").
  const twice = await runVit(['classify', 'nothing.jpg', '-m', 'B/99', '-m', modelDir('odd40', 'hf'), '-f', 'csv', '-f', 'jsonl', '-q']);
  assert.equal(twice.code, 3, twice.stderr);
  assert.deepEqual(JSON.parse(twice.stdout), { path: 'nothing.jpg', error: 'no such file' });
});

test('a sharded safetensors checkpoint (model.safetensors.index.json) loads like the single file', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'vit-shards-'));
  try {
    const src = modelDir('odd40', 'hf');
    cpSync(join(src, 'config.json'), join(dir, 'config.json'));
    const all = readSafetensors(readFileSync(join(src, 'model.safetensors')));
    const names = [...all.keys()];
    const half = Math.ceil(names.length / 2);
    const weightMap: Record<string, string> = {};
    for (const [i, part] of [names.slice(0, half), names.slice(half)].entries()) {
      const file = `model-0000${i + 1}-of-00002.safetensors`;
      writeFileSync(join(dir, file), writeSafetensors(new Map(part.map((n) => [n, all.get(n)!]))));
      for (const n of part) weightMap[n] = file;
    }
    writeFileSync(join(dir, 'model.safetensors.index.json'), JSON.stringify({ metadata: {}, weight_map: weightMap }));
    const sharded = await loadModel({ model: dir });
    const single = await loadModel({ model: src });
    assert.deepEqual([...sharded.weights.keys()].sort(), [...single.weights.keys()].sort());
    for (const [k, t] of single.weights) assert.deepEqual(sharded.weights.get(k)!.data, t.data, k);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('labels: the checkpoint\'s own, bundled ImageNet-1k / 21k by class count, --labels files, class_<i>', () => {
  const withClasses = (n: number, labels: string[] | null = null) => ({ ...presetConfig('Ti/16'), numClasses: n, labels });
  const in1k = resolveLabels(withClasses(1000));
  assert.equal(in1k.length, 1000);
  assert.equal(in1k[281], 'tabby, tabby cat');
  assert.equal(in1k[0], 'tench, Tinca tinca');
  const in21k = resolveLabels(presetConfig('B/16-in21k'));
  assert.equal(in21k.length, 21843);
  assert.equal(in21k[0], 'organism, being');
  assert.deepEqual(resolveLabels(withClasses(3, ['a', 'b', 'c'])), ['a', 'b', 'c']);
  assert.deepEqual(resolveLabels(withClasses(2)), ['class_0', 'class_1']);
  const dir = mkdtempSync(join(tmpdir(), 'vit-labels-'));
  try {
    writeFileSync(join(dir, 'l.txt'), 'cat\ndog, puppy\nbird\n');
    writeFileSync(join(dir, 'l.json'), JSON.stringify({ id2label: { 0: 'x', 2: 'z', 1: 'y' } }));
    assert.deepEqual(resolveLabels(withClasses(3, ['a', 'b', 'c']), join(dir, 'l.txt')), ['cat', 'dog, puppy', 'bird']);
    assert.deepEqual(resolveLabels(withClasses(3), join(dir, 'l.json')), ['x', 'y', 'z']);
    assert.throws(() => resolveLabels(withClasses(4), join(dir, 'l.txt')), (e: unknown) => e instanceof UsageError && /3 labels for a model with 4 classes/.test(e.message));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('topK: the k best classes by score, ties by index, probabilities over all classes', () => {
  const logits = Float32Array.from({ length: 21843 }, (_, i) => Math.sin(i * 7.3) * 5);
  logits[10] = logits[20] = 9;
  const labels = Array.from({ length: logits.length }, (_, i) => `c${i}`);
  const got = topK(logits, 5, labels);
  const want = [...logits.keys()].sort((a, b) => logits[b] - logits[a] || a - b).slice(0, 5);
  assert.deepEqual(got.map((p) => p.index), want);
  assert.deepEqual(got.slice(0, 2).map((p) => p.index), [10, 20]);
  const all = topK(Float32Array.from([0, Math.log(3)]), 5, ['a', 'b']);
  assert.deepEqual(all.map((p) => [p.label, Number(p.score.toFixed(6))]), [['b', 0.75], ['a', 0.25]]);
});

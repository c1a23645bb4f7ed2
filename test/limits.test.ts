import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ModelError } from '../src/errors.js';
import { validateVitConfig, vitConfigProblems, vitWithImageSize, type ViTConfig } from '../src/model/arch/vit/config.js';
import { vitParams } from '../src/model/arch/vit/params.js';
import { VIT_PRESETS, vitPreset } from '../src/model/arch/vit/presets.js';
import {
  batchSizeProblem, imageSizeProblem, LIMITS, modelConfigProblems, outOfBound, paramCount, preprocessProblems,
} from '../src/model/limits.js';
import { preprocessFromHf, preprocessFromTimm } from '../src/model/preprocess.js';

const B16 = vitPreset('B/16');
const configProblems = vitConfigProblems;
const withImageSize = vitWithImageSize;
const problemsOf = (over: Partial<ViTConfig>) => configProblems({ ...B16, ...over });

test('limits: every preset, and the presets at the resolutions people run them, are within every bound', () => {
  for (const name of VIT_PRESETS.names()) assert.deepEqual(configProblems(vitPreset(name)), [], name);
  for (const size of [[384, 384], [518, 518], [448, 672], [1024, 1024], [2048, 2048]] as [number, number][]) {
    assert.deepEqual(configProblems(withImageSize(B16, size)), [], size.join('x'));
  }
  // The count the README gives for B/16, and H/14's 632 M: the bound on parameters is far beyond both.
  assert.equal(paramCount(vitParams(B16)), 86_567_656);
  assert.ok(paramCount(vitParams(vitPreset('H/14'))) < LIMITS.params.max / 50);
});

test('limits: each impossible architecture value is named, and depth 1e9 costs nothing to refuse', () => {
  const t0 = performance.now();
  assert.deepEqual(problemsOf({ depth: 1e9 }), ['depth 1000000000 is more than 1000']);
  assert.ok(performance.now() - t0 < 1000, 'no parameter list was built for a billion blocks');
  assert.deepEqual(problemsOf({ embedDim: 1e6, numHeads: 1e5 }), ['embedDim 1000000 is more than 16384', 'numHeads 100000 is more than 256']);
  assert.deepEqual(problemsOf({ patchSize: 0.5 }), ['patchSize 0.5 is not a whole number']);
  assert.deepEqual(problemsOf({ numClasses: 1e7 }), ['numClasses 10000000 is more than 100000']);
  assert.deepEqual(problemsOf({ mlpDim: Number.NaN }), ['mlpDim NaN is not a finite number']);
  assert.deepEqual(problemsOf({ layerNormEps: 0 }), ['layerNormEps 0 must be more than 0']);
  assert.deepEqual(problemsOf({ imgSize: [20000, 224] }), ['image size[0] 20000 is more than 8192']);
  assert.throws(() => withImageSize(B16, [4096, 4096]), /image size 4096x4096 at patch 16 gives 65536 patches, more than 16384/);
  // Every field within its bound, but the whole far past any model: 1000 blocks of width 16384.
  assert.match(problemsOf({ depth: 1000, embedDim: 16384, numHeads: 16, mlpDim: 65536 }).join(), /parameter count \d+ is more than 34359738368/);
});

test('limits: preprocessing must end at the model\'s input, with finite statistics', () => {
  const pp = B16.preprocess;
  const size: [number, number] = [224, 224];
  assert.deepEqual(preprocessProblems(pp, size), []);
  assert.deepEqual(preprocessProblems({ ...pp, std: [0, 0, 0] }, size), ['std[0] 0 must be more than 0', 'std[1] 0 must be more than 0', 'std[2] 0 must be more than 0']);
  assert.deepEqual(preprocessProblems({ ...pp, mean: [Number.NaN, 0, 0], rescale: 0 }, size), ['rescale 0 must be more than 0', 'mean[0] NaN is not a finite number']);
  assert.deepEqual(preprocessProblems({ ...pp, resize: { shortestEdge: 1e9 } }, size), ['resize shortest edge 1000000000 is more than 8192']);
  assert.deepEqual(preprocessProblems({ ...pp, resize: { height: -3, width: 224 } }, size), ['resize height -3 is less than 1']);
  assert.deepEqual(preprocessProblems({ ...pp, crop: { height: 200, width: 224 } }, size), ["crop 200x224 is not the model's input size 224x224"]);
  assert.deepEqual(preprocessProblems({ ...pp, crop: null, resize: { height: 256, width: 256 } }, size),
    ["resize to 256x256 without a crop cannot give the model's input size 224x224"]);
  // Without a crop, a resize to the model's size, or none at all (inputs already at the size), is fine.
  assert.deepEqual(preprocessProblems({ ...pp, crop: null, resize: { shortestEdge: 224 } }, size), []);
  assert.deepEqual(preprocessProblems({ ...pp, crop: null, resize: null }, size), []);
  // A config's problems include its preprocessing, and validate turns them into one error naming each.
  assert.deepEqual(modelConfigProblems({ ...B16, preprocess: { ...pp, std: [0.5, 0.5, 0] } }), ['std[2] 0 must be more than 0']);
  assert.throws(() => validateVitConfig({ ...B16, depth: 1e9, preprocess: { ...pp, std: [0.5, 0.5, 0] } }), (e: unknown) =>
    e instanceof ModelError && e.message === `invalid model config "${B16.name}": depth 1000000000 is more than 1000; std[2] 0 must be more than 0`);
});

test('limits: the config readers name the JSON field of an impossible preprocessing value', () => {
  const hf = (pp: Record<string, unknown>) => () => preprocessFromHf({ image_processor_type: 'BitImageProcessor', ...pp }, [224, 224], 3, 'vit');
  const refused = (f: () => unknown, message: string) => assert.throws(f, (e: unknown) => e instanceof ModelError && e.message === message, message);
  refused(hf({ size: { shortest_edge: 1e9 } }), 'preprocessor config: size.shortest_edge 1000000000 is more than 8192');
  refused(hf({ size: { height: 0, width: 224 } }), 'preprocessor config: size.height 0 is less than 1');
  refused(hf({ image_std: [0, 0, 0] }), 'preprocessor config: image_std[0] 0 must be more than 0');
  refused(hf({ do_center_crop: true, crop_size: 1e5 }), 'preprocessor config: crop_size 100000 is more than 8192');
  refused(hf({ rescale_factor: -1 }), 'preprocessor config: rescale_factor -1 must be more than 0');
  const timm = (pre: Record<string, unknown>) => () => preprocessFromTimm(pre, [224, 224], 3, 'm');
  refused(timm({ crop_pct: 1e-6 }), 'm: pretrained_cfg: crop_pct 0.000001 is less than 0.05');
  refused(timm({ crop_pct: 1.5 }), 'm: pretrained_cfg: crop_pct 1.5 is more than 1');
  refused(timm({ std: [0.2, 0, 0.2] }), 'm: pretrained_cfg: std[1] 0 must be more than 0');
  assert.equal(timm({ crop_pct: 0.875 })().crop?.height, 224);
});

test('limits: --batch-size and --image-size', () => {
  assert.equal(batchSizeProblem(64), null);
  assert.equal(batchSizeProblem(1e9), '--batch-size 1000000000 is more than 1024 (the limit is 1 to 1024)');
  assert.match(batchSizeProblem(0)!, /is less than 1/);
  assert.match(batchSizeProblem(2.5)!, /is not a whole number/);
  assert.equal(imageSizeProblem([384, 384]), null);
  assert.equal(imageSizeProblem([20000, 20000]), '--image-size 20000 is more than 8192 (each side must be 1 to 8192 pixels)');
  assert.equal(outOfBound(Infinity, LIMITS.mean), 'is not a finite number');
  assert.equal(outOfBound('0.9', LIMITS.cropPct), 'is not a finite number');
});

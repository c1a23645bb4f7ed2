import assert from 'node:assert/strict';
import { test } from 'node:test';
import { withImageSize, type ViTConfig } from '../src/model/config.js';
import {
  batchSizeProblem, configProblems, cropPctProblem, imageSizeProblem, LIMITS, outOfBound, paramCount, preprocessProblems,
} from '../src/model/limits.js';
import { presetConfig, presetNames } from '../src/model/presets.js';

const B16 = presetConfig('B/16');
const problemsOf = (over: Partial<ViTConfig>) => configProblems({ ...B16, ...over });

test('limits: every preset, and the presets at the resolutions people run them, are within every bound', () => {
  for (const name of presetNames()) assert.deepEqual(configProblems(presetConfig(name)), [], name);
  for (const size of [[384, 384], [518, 518], [448, 672], [1024, 1024], [2048, 2048]] as [number, number][]) {
    assert.deepEqual(configProblems(withImageSize(B16, size)), [], size.join('x'));
  }
  // The count the README gives for B/16, and H/14's 632 M: the bound on parameters is far beyond both.
  assert.equal(paramCount(B16), 86_567_656);
  assert.ok(paramCount(presetConfig('H/14')) < LIMITS.params.max / 50);
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
  assert.match(configProblems(withImageSize(B16, [4096, 4096])).join(), /image size 4096x4096 at patch 16 gives 65536 patches, more than 16384/);
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
  // A config's problems include its preprocessing.
  assert.deepEqual(configProblems({ ...B16, preprocess: { ...pp, std: [0.5, 0.5, 0] } }), ['std[2] 0 must be more than 0']);
});

test('limits: crop_pct, --batch-size and --image-size', () => {
  assert.equal(cropPctProblem(0.875), null);
  assert.equal(cropPctProblem(1), null);
  assert.equal(cropPctProblem(1e-6), 'crop_pct 0.000001 is less than 0.05');
  assert.equal(cropPctProblem(0), 'crop_pct 0 is less than 0.05');
  assert.equal(cropPctProblem(1.5), 'crop_pct 1.5 is more than 1');
  assert.equal(cropPctProblem('0.9'), 'crop_pct "0.9" is not a finite number');
  assert.equal(batchSizeProblem(64), null);
  assert.equal(batchSizeProblem(1e9), '--batch-size 1000000000 is more than 1024 (the limit is 1 to 1024)');
  assert.match(batchSizeProblem(0)!, /is less than 1/);
  assert.match(batchSizeProblem(2.5)!, /is not a whole number/);
  assert.equal(imageSizeProblem([384, 384], 16), null);
  assert.equal(imageSizeProblem([20000, 20000], 16), '--image-size 20000 is more than 8192 (each side must be 1 to 8192 pixels)');
  assert.equal(imageSizeProblem([4096, 4096], 16), '--image-size 4096x4096 at patch 16 gives 65536 patches, more than 16384 (the limit on patches per image)');
  assert.equal(outOfBound(Infinity, LIMITS.mean), 'is not a finite number');
});

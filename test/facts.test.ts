/**
 * Facts kept in one place: channels (1 = PIL's convert('L')), checkpoint file lists and shard indexes, and
 * how scores are made from a head (softmax, or sigmoid for multi-label and single-logit heads).
 */
import assert from 'node:assert/strict';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { PACKAGE_ROOT } from '../src/io/paths.js';
import { runVit } from './helpers/cli.js';
import { FIXTURES, IMAGES, maxAbsDiff, modelDir } from './helpers/golden.js';

const tmp = mkdtempSync(join(tmpdir(), 'vit-facts-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

type Row = { path: string; predictions: { index: number; score: number; logit: number }[] };
const rows = (stdout: string) => stdout.trim().split('\n').map((l) => JSON.parse(l) as Row);
/** Each row's logits in class order. */
const logitsOf = (r: Row) => [...r.predictions].sort((a, b) => a.index - b.index).map((p) => p.logit);

test('a 1-channel model reads PIL\'s convert(\'L\') of the image and matches torchvision', async () => {
  const golden = JSON.parse(readFileSync(join(FIXTURES, 'goldens', 'gray24.json'), 'utf8')) as { images: { file: string; logits: number[] }[] };
  for (const engine of ['onnx', 'tfjs']) {
    const r = await runVit(['classify', join(FIXTURES, 'gray'), '-m', join(FIXTURES, 'models', 'gray24', 'hf'), '-f', 'jsonl', '-k', '4', '--engine', engine]);
    assert.equal(r.code, 0, r.stderr);
    const got = rows(r.stdout);
    assert.equal(got.length, golden.images.length);
    golden.images.forEach((g, i) => {
      assert.ok(got[i].path.endsWith(g.file.split('/').pop()!));
      const err = maxAbsDiff(logitsOf(got[i]), g.logits);
      console.log(`gray24 ${engine} ${g.file}: max |Δ| logits ${err.toExponential(2)}`);
      assert.ok(err < 1e-4, `${g.file}: off by ${err}`);
    });
    assert.notDeepEqual(logitsOf(got[0]), logitsOf(got[2]), 'different images give different logits');
  }
});

test('num_channels other than 1 and 3 is refused at load, naming the field', async () => {
  const dir = join(tmp, 'two-channels');
  cpSync(join(FIXTURES, 'models', 'gray24', 'hf'), dir, { recursive: true });
  const cfg = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8'));
  writeFileSync(join(dir, 'config.json'), JSON.stringify({ ...cfg, num_channels: 2 }));
  const r = await runVit(['classify', join(FIXTURES, 'gray'), '-m', dir]);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /num_channels is 2: this tool runs grayscale \(1\) and RGB \(3\) models/);
});

test('a directory with a sharded pytorch_model.bin (index + shards) loads like the single file', async () => {
  const args = (model: string) => ['classify', IMAGES, '-m', model, '-f', 'jsonl', '-k', '7'];
  const sharded = await runVit(args(join(FIXTURES, 'models', 'odd40', 'sharded-bin')));
  assert.equal(sharded.code, 0, sharded.stderr);
  const single = await runVit(args(modelDir('odd40', 'hf')));
  const [a, b] = [rows(sharded.stdout), rows(single.stdout)];
  assert.equal(a.length, b.length);
  a.forEach((r, i) => assert.ok(maxAbsDiff(logitsOf(r), logitsOf(b[i])) < 1e-6, r.path));
});

test('multi-label and single-logit heads get sigmoid scores, as Hugging Face\'s pipeline gives them', async () => {
  const multi = join(tmp, 'multi');
  cpSync(modelDir('odd40', 'hf'), multi, { recursive: true });
  const cfg = JSON.parse(readFileSync(join(multi, 'config.json'), 'utf8'));
  writeFileSync(join(multi, 'config.json'), JSON.stringify({ ...cfg, problem_type: 'multi_label_classification' }));
  const r = await runVit(['classify', IMAGES, '-m', multi, '-f', 'jsonl', '-k', '7']);
  assert.equal(r.code, 0, r.stderr);
  for (const row of rows(r.stdout)) {
    for (const p of row.predictions) assert.ok(Math.abs(p.score - 1 / (1 + Math.exp(-p.logit))) < 1e-6, `${row.path}: ${p.score} vs logit ${p.logit}`);
    const sum = row.predictions.reduce((s, p) => s + p.score, 0);
    assert.ok(Math.abs(sum - 1) > 1e-3, 'sigmoid scores do not sum to 1');
  }
  // vit export keeps it, so that transformers' pipeline over the export scores as vit does.
  const exported = join(tmp, 'multi-export');
  const e = await runVit(['export', '-m', multi, exported]);
  assert.equal(e.code, 0, e.stderr);
  assert.equal(JSON.parse(readFileSync(join(exported, 'config.json'), 'utf8')).problem_type, 'multi_label_classification');
  // The same model without problem_type: softmax over the classes.
  const soft = rows((await runVit(['classify', IMAGES, '-m', modelDir('odd40', 'hf'), '-f', 'jsonl', '-k', '7'])).stdout);
  for (const row of soft) assert.ok(Math.abs(row.predictions.reduce((s, p) => s + p.score, 0) - 1) < 1e-5);

  const one = join(tmp, 'one-logit');
  cpSync(modelDir('odd40', 'hf'), one, { recursive: true });
  writeFileSync(join(one, 'config.json'), JSON.stringify({ ...cfg, id2label: { 0: 'cat' }, label2id: { cat: 0 } }));
  const single = await runVit(['classify', IMAGES, '-m', one, '--random-weights', '-f', 'jsonl']);
  assert.equal(single.code, 0, single.stderr);
  for (const row of rows(single.stdout)) {
    assert.equal(row.predictions.length, 1);
    assert.ok(Math.abs(row.predictions[0].score - 1 / (1 + Math.exp(-row.predictions[0].logit))) < 1e-6);
  }
});

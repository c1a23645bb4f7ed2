/**
 * Provenance: what an output records, --resume refusing a file another run wrote, merge refusing parts that
 * differ, and heatmaps never replacing what the run did not write.
 */
import assert from 'node:assert/strict';
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { int8WeightsFor } from '../src/io/cpus.js';
import { PACKAGE_ROOT } from '../src/io/paths.js';
import { INT8_WEIGHTS_WORDS } from '../src/model/engines/engine.js';
import { runVit } from './helpers/cli.js';
import { IMAGES, modelDir } from './helpers/golden.js';

const tmp = mkdtempSync(join(tmpdir(), 'vit-provenance-'));
after(() => rmSync(tmp, { recursive: true, force: true }));
const DIGITS = join(PACKAGE_ROOT, 'examples', 'digits');

test('every file output records its command, model identity, row-shaping options and shard', async () => {
  const out = join(tmp, 'p.jsonl');
  const r = await runVit(['classify', DIGITS, '-k', '2', '-f', 'jsonl', '-o', out, '--shard', '2/3']);
  assert.equal(r.code, 0, r.stderr);
  const m = JSON.parse(readFileSync(`${out}.vit.json`, 'utf8'));
  assert.equal(m.command, 'classify');
  assert.equal(m.format, 'jsonl');
  assert.match(m.model.id, /^[0-9a-f]{64}$/);
  assert.deepEqual(m.options, { topK: 2, labels: null, scores: 'softmax', imageSize: [28, 28], dtype: 'fp32' });
  assert.deepEqual(m.shard, { index: 2, count: 3 });
  // The identity is the weights' content, not their path: a copy of the model directory is the same model.
  const copy = join(tmp, 'digits-copy');
  cpSync(join(PACKAGE_ROOT, 'models', 'vit-digits'), copy, { recursive: true });
  const out2 = join(tmp, 'p2.jsonl');
  assert.equal((await runVit(['classify', DIGITS, '-k', '2', '-f', 'jsonl', '-o', out2, '-m', copy, '--shard', '2/3'])).code, 0);
  assert.equal(JSON.parse(readFileSync(`${out2}.vit.json`, 'utf8')).model.id, m.model.id);
});

test('--resume refuses a file written by another model, command or option (exit 2, file untouched); the same run continues it', async () => {
  const out = join(tmp, 'r.jsonl');
  const base = ['classify', IMAGES, '-m', modelDir('odd40', 'hf'), '-f', 'jsonl', '-o', out];
  assert.equal((await runVit(base)).code, 0);
  const bytes = readFileSync(out);
  const refusals: [string[], RegExp][] = [
    [['classify', IMAGES, '-m', modelDir('eps32', 'hf'), '-f', 'jsonl', '-o', out, '--resume'], /model /],
    [[...base, '--resume', '-k', '3'], /topK 5 vs 3/],
    [['embed', IMAGES, '-m', modelDir('odd40', 'hf'), '-f', 'jsonl', '-o', out, '--resume'], /command classify vs embed/],
    [[...base, '--resume', '--shard', '1/2'], /shard none vs 1\/2/],
  ];
  for (const [args, why] of refusals) {
    const r = await runVit(args);
    assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, /cannot resume .* written by another run/);
    assert.match(r.stderr, why);
    assert.ok(readFileSync(out).equals(bytes), 'the file is untouched');
  }
  // The same model from another directory (a copy) is the same model.
  const copy = join(tmp, 'odd40-copy');
  cpSync(modelDir('odd40', 'hf'), copy, { recursive: true });
  const again = await runVit(['classify', IMAGES, '-m', copy, '-f', 'jsonl', '-o', out, '--resume']);
  assert.equal(again.code, 0, again.stderr);
  assert.match(again.stderr, /already done/);
});

test('merge refuses parts of different models or options, naming what differs', async () => {
  const part = async (name: string, extra: string[], shard: string) => {
    const out = join(tmp, name);
    const r = await runVit(['classify', IMAGES, '-f', 'csv', '-o', out, '--shard', shard, ...extra]);
    assert.equal(r.code, 0, r.stderr);
    return out;
  };
  const a = await part('a1.csv', ['-m', modelDir('odd40', 'hf')], '1/2');
  const b = await part('b2.csv', ['-m', modelDir('eps32', 'hf')], '2/2');
  const c = await part('c2.csv', ['-m', modelDir('odd40', 'hf'), '-k', '1'], '2/2');
  const models = await runVit(['merge', join(tmp, 'm.csv'), a, b]);
  assert.equal(models.code, 1);
  assert.match(models.stderr, /b2\.csv was made differently from .*a1\.csv: model /);
  const options = await runVit(['merge', join(tmp, 'm.csv'), a, c]);
  assert.equal(options.code, 1);
  assert.match(options.stderr, /topK 5 vs 1/);
  const good = await part('d2.csv', ['-m', modelDir('odd40', 'hf')], '2/2');
  const merged = join(tmp, 'm.csv');
  assert.equal((await runVit(['merge', merged, a, good])).code, 0);
  assert.equal(JSON.parse(readFileSync(`${merged}.vit.json`, 'utf8')).shard, null);
});

test('int8 parts made on CPUs that quantize weights differently (8 bits, or 7 without VNNI) do not merge', async () => {
  const part = async (name: string, shard: string) => {
    const out = join(tmp, name);
    const r = await runVit(['classify', IMAGES, '-m', modelDir('odd40', 'hf'), '--dtype', 'int8', '-f', 'csv', '-o', out, '--shard', shard]);
    assert.equal(r.code, 0, r.stderr);
    return out;
  };
  const a = await part('q1.csv', '1/2');
  const b = await part('q2.csv', '2/2');
  const options = (f: string) => JSON.parse(readFileSync(`${f}.vit.json`, 'utf8')).options;
  assert.equal(options(a).dtype, 'int8');
  assert.equal(options(a).int8Weights, int8WeightsFor() === 'int7' ? INT8_WEIGHTS_WORDS.int7 : undefined, 'the manifest says how this CPU held the weights');
  assert.equal((await runVit(['merge', join(tmp, 'q.csv'), a, b])).code, 0, 'parts of one CPU kind merge');
  // Part 2 as the other kind of CPU would have written it.
  const m = JSON.parse(readFileSync(`${b}.vit.json`, 'utf8'));
  if (m.options.int8Weights) delete m.options.int8Weights;
  else m.options.int8Weights = INT8_WEIGHTS_WORDS.int7;
  writeFileSync(`${b}.vit.json`, JSON.stringify(m));
  const mixed = await runVit(['merge', join(tmp, 'q-mixed.csv'), a, b]);
  assert.equal(mixed.code, 1);
  assert.match(mixed.stderr, /int8Weights /);
});

test('--reduce-range holds int8 weights in 7 bits on every CPU: such parts merge with each other, and with plain int8 parts of CPUs without VNNI', async () => {
  const part = async (name: string, shard: string, flags: string[]) => {
    const out = join(tmp, name);
    const r = await runVit(['classify', IMAGES, '-m', modelDir('odd40', 'hf'), '--dtype', 'int8', ...flags, '-f', 'csv', '-o', out, '--shard', shard]);
    assert.equal(r.code, 0, r.stderr);
    return out;
  };
  const options = (f: string) => JSON.parse(readFileSync(`${f}.vit.json`, 'utf8')).options;
  const a = await part('r1.csv', '1/2', ['--reduce-range']);
  const b = await part('r2.csv', '2/2', ['--reduce-range']);
  assert.equal(options(a).int8Weights, INT8_WEIGHTS_WORDS.int7);
  assert.equal((await runVit(['merge', join(tmp, 'r.csv'), a, b])).code, 0);
  // A plain int8 part: 7 bits where this CPU has no VNNI (the same rows, byte for byte), else 8 bits.
  const plain = await part('p2.csv', '2/2', []);
  const sevenHere = int8WeightsFor() === 'int7';
  if (sevenHere) assert.equal(readFileSync(plain, 'utf8'), readFileSync(b, 'utf8'));
  const mixed = await runVit(['merge', join(tmp, 'rp.csv'), a, plain]);
  assert.equal(mixed.code, sevenHere ? 0 : 1, mixed.stderr);
  // Without --dtype int8 there are no int8 weights to hold: a usage error, before any work.
  const fp32 = await runVit(['classify', IMAGES, '-m', modelDir('odd40', 'hf'), '--reduce-range']);
  assert.equal(fp32.code, 2);
  assert.match(fp32.stderr, /^vit: --reduce-range is for --dtype int8/);
  assert.equal(fp32.stdout, '');
});

test('--heatmap never replaces a file it did not write, nor an input; its own earlier heatmaps are replaced', async () => {
  const dir = join(tmp, 'heat');
  mkdirSync(dir);
  const img = join(DIGITS, '8_0758_200px.png');
  const first = await runVit(['attention', img, '--heatmap', dir]);
  assert.equal(first.code, 0, first.stderr);
  const written = join(dir, '8_0758_200px.attention.png');
  const again = await runVit(['attention', img, '--heatmap', dir]);
  assert.equal(again.code, 0, again.stderr);
  writeFileSync(written, 'a user\'s file');
  const foreign = await runVit(['attention', img, '--heatmap', dir]);
  assert.equal(foreign.code, 2);
  assert.match(foreign.stderr, /already there and is not a heatmap vit wrote/);
  assert.equal(readFileSync(written, 'utf8'), 'a user\'s file');
  // An input named like a heatmap in the heatmap directory.
  const tricky = join(tmp, 'tricky');
  mkdirSync(tricky);
  const input = join(tricky, 'x.attention.png');
  cpSync(img, input);
  cpSync(img, join(tmp, 'x.png'));
  const r = await runVit(['attention', join(tmp, 'x.png'), input, '--heatmap', tricky]);
  assert.equal(r.code, 2, r.stderr);
  assert.match(r.stderr, /x\.attention\.png, which is also an input/);
  assert.ok(readFileSync(input).equals(readFileSync(img)));
});

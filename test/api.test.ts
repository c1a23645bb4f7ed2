import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { PACKAGE_ROOT } from '../src/io/paths.js';
import { runVit } from './helpers/cli.js';
import { modelDir } from './helpers/golden.js';

const DIGITS = join(PACKAGE_ROOT, 'examples', 'digits');
const IMAGES = join(PACKAGE_ROOT, 'test', 'fixtures', 'images');

/** The package by its name, as a user imports it (through package.json's exports). */
const lib = () => import('vit-cli');

async function all<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const r of it) out.push(r);
  return out;
}

test('library: classify streams the rows -f jsonl writes, in input order, with error rows', async () => {
  const { classify } = await lib();
  const paths = [...readdirSync(DIGITS).sort().slice(0, 11).map((f) => join(DIGITS, f)), join(DIGITS, 'missing.png')];
  const cli = await runVit(['classify', ...paths, '-f', 'jsonl', '-k', '3']);
  assert.equal(cli.code, 3, cli.stderr);
  const want = cli.stdout.trim().split('\n').map((l) => JSON.parse(l));
  const got = await all(classify(paths, { topK: 3, batchSize: 4 }));
  assert.deepEqual(got, want);
  assert.deepEqual(got.at(-1), { path: join(DIGITS, 'missing.png'), error: 'no such file' });
});

test('library: embed over an async iterable of paths, and openModel for pixel batches', async () => {
  const { embed, openModel } = await lib();
  const files = readdirSync(IMAGES).filter((f) => f.startsWith('odd40')).map((f) => join(IMAGES, f));
  async function* paths() {
    for (const f of files) yield f;
  }
  const model = modelDir('odd40', 'hf');
  const cli = await runVit(['embed', ...files, '-m', model, '-f', 'jsonl', '--pool', 'avg', '--normalize']);
  assert.equal(cli.code, 0, cli.stderr);
  const got = await all(embed(paths(), { model, pool: 'avg', normalize: true }));
  assert.deepEqual(got, cli.stdout.trim().split('\n').map((l) => JSON.parse(l)));

  const engine = await openModel({ model });
  try {
    const [h, w] = engine.config.imgSize;
    const out = await engine.run(new Float32Array(2 * 3 * h * w), 2);
    assert.deepEqual(out.logits!.shape, [2, engine.config.numClasses]);
  } finally {
    await engine.dispose();
  }
});

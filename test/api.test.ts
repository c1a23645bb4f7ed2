import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { inspect } from 'node:util';
import { PACKAGE_ROOT } from '../src/io/paths.js';
import { workerExecArgv } from '../src/worker-thread.js';
import { runVit } from './helpers/cli.js';
import { IMAGES, modelDir } from './helpers/golden.js';

const DIGITS = join(PACKAGE_ROOT, 'examples', 'digits');

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
  // One path as a string is one input (a string is iterable by character: "/" and "w" were rows of their own).
  assert.deepEqual(await all(classify(paths[0]!, { topK: 3 })), want.slice(0, 1));
});

test('library: a batch size out of bounds is a usage error before anything opens', async () => {
  const { classify, embed } = await lib();
  const one = join(DIGITS, readdirSync(DIGITS).sort()[0]!);
  // 1e9 was "RangeError: Array buffer allocation failed" from inside the batch queue.
  for (const batchSize of [1e9, 1025, 0, 2.5]) {
    await assert.rejects(all(classify([one], { batchSize })), { name: 'UsageError', message: /^--batch-size .*\(the limit is 1 to 1024\)$/ });
    await assert.rejects(all(embed([one], { batchSize })), { name: 'UsageError' });
  }
});

test('library: arguments of the wrong type from plain JS are usage errors naming the field', async () => {
  const { classify, openModel } = await lib();
  const one = join(DIGITS, readdirSync(DIGITS).sort()[0]!);
  // A number was read as a file descriptor ("truncated or corrupt image" for 42; 0 would read standard input).
  await assert.rejects(all(classify([one, 0 as unknown as string])), { name: 'UsageError', message: 'each input must be a path (a string), not 0' });
  await assert.rejects(all(classify(null as unknown as string[])), { name: 'UsageError', message: /inputs must be a path, or an array/ });
  const wrong: [object, RegExp][] = [
    [{ model: 42 }, /^model must be a non-empty string, not 42$/], // was "name.trim is not a function"
    [{ model: '' }, /^model must be a non-empty string/],
    [{ weights: ['a.pth'] }, /^weights must be a non-empty string, not \["a.pth"\]$/],
    [{ imageSize: -1 }, /^imageSize must be \[height, width\], not -1$/], // was "imageSize.join is not a function"
    [{ imageSize: [224, 1e6] }, /^--image-size 1000000 is more than 8192/],
    [{ imageSize: [224, '224'] }, /^--image-size "224" is not a finite number/],
    [{ numClasses: '10' }, /^numClasses must be a number, not "10"$/],
    [{ numClasses: BigInt(10) }, /^numClasses must be a number, not 10$/], // was "Do not know how to serialize a BigInt"
    [{ randomWeights: 'yes' }, /^randomWeights must be true or false/],
  ];
  for (const [spec, message] of wrong) {
    await assert.rejects(all(classify([one], spec)), { name: 'UsageError', message }, inspect(spec));
    await assert.rejects(openModel(spec), { name: 'UsageError', message }, inspect(spec));
  }
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

/** Run an inline ES module script from the package root; a script still alive after 60 s is killed. */
async function runInline(script: string): Promise<{ code: number | null; signal: string | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, ['--input-type=module', '-e', script], { cwd: PACKAGE_ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d) => (stdout += d));
  child.stderr.on('data', (d) => (stderr += d));
  const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
  const [code, signal] = await once(child, 'close');
  clearTimeout(timer);
  return { code, signal, stdout, stderr };
}

test('library: a one-line script (node --input-type=module -e) runs and exits, after leaving classify early', async () => {
  // Worker threads inherit the process's Node options; --input-type made every worker refuse to start.
  const first = readdirSync(DIGITS).sort().slice(0, 2).map((f) => join(DIGITS, f));
  const r = await runInline(`
    import { classify, openModel } from 'vit-cli';
    const engine = await openModel({ model: ${JSON.stringify(modelDir('odd40', 'hf'))} });
    const [h, w] = engine.config.imgSize;
    const out = await engine.run(new Float32Array(3 * h * w), 1);
    await engine.dispose();
    for await (const row of classify(${JSON.stringify(first)})) break;
    console.log('ran', out.logits.shape.join('x'));
  `);
  assert.equal(r.signal, null, `killed after 60 s: the script did not exit (${r.stdout}${r.stderr})`);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^ran 1x\d+$/m);
});

test('library: a script that never calls dispose() exits when its work is done, and never before an answer', async () => {
  const r = await runInline(`
    import { openModel } from 'vit-cli';
    const engine = await openModel({ model: ${JSON.stringify(modelDir('odd40', 'hf'))} });
    const [h, w] = engine.config.imgSize;
    const a = await engine.run(new Float32Array(3 * h * w), 1);
    // Between requests nothing holds the process; a later request must still be answered.
    await new Promise((resolve) => setTimeout(resolve, 200));
    const b = await engine.run(new Float32Array(2 * 3 * h * w), 2);
    const second = await openModel({ model: ${JSON.stringify(modelDir('odd40', 'hf'))} });
    console.log('ran', a.logits.shape.join('x'), b.logits.shape.join('x'), second.config.imgSize.join('x'));
  `);
  assert.equal(r.signal, null, `killed after 60 s: the script did not exit (${r.stdout}${r.stderr})`);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^ran 1x\d+ 2x\d+ \d+x\d+$/m);
});

test('worker threads get the Node options of the process except those of an inline main script', () => {
  assert.deepEqual(
    workerExecArgv(['--input-type', 'module', '-e', 'x()', '--max-old-space-size=100', '--input-type=commonjs', '--print', 'y', '--import', 'hook.js']),
    ['--max-old-space-size=100', '--import', 'hook.js'],
  );
});

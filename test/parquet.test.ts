/**
 * Parquet outputs, read by DuckDB (not by the hyparquet reader vit itself uses): the documented column types
 * for every row kind, the same values as JSONL, error rows, refusals, row groups that keep memory flat over
 * 20,000 rows, --resume after kill -9 and after SIGTERM, and the README's DuckDB example.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { copyFileSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { after, before, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { OutputError } from '../src/errors.js';
import { displayPath } from '../src/io/fs-names.js';
import { PACKAGE_ROOT } from '../src/io/paths.js';
import { mergeOutputs, readStoredOutput } from '../src/io/sinks/index.js';
import { runVit, startVit } from './helpers/cli.js';
import { columnTypes, lit, query, rowCount } from './helpers/duckdb.js';
import { testWriter } from './helpers/formats.js';
import { BAD, IMAGES, modelDir } from './helpers/golden.js';
import { writeTar } from './helpers/tars.js';

const MODEL = ['-m', modelDir('odd40', 'hf')];
const images = [0, 1, 2, 3].map((i) => join(IMAGES, `odd40_${i}.png`));
let tmp: string;
let bad: string;

before(() => {
  tmp = mkdtempSync(join(tmpdir(), 'vit-parquet-'));
  bad = join(tmp, 'broken.jpg');
  copyFileSync(join(BAD, 'truncated.jpg'), bad);
});
after(() => rmSync(tmp, { recursive: true, force: true }));

const jsonl = (text: string) => text.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);

/** DuckDB's float (a float32 widened to double) against the shortest decimal JSONL wrote for the same float32. */
function sameFloats(actual: unknown, expected: unknown, where: string): void {
  if (typeof expected === 'number') {
    assert.equal(actual, Math.fround(expected), where);
  } else if (Array.isArray(expected)) {
    assert.ok(Array.isArray(actual), `${where}: a list`);
    assert.equal(actual.length, expected.length, `${where}: length`);
    expected.forEach((e, i) => sameFloats((actual as unknown[])[i], e, `${where}[${i}]`));
  } else if (expected !== null && typeof expected === 'object') {
    for (const [k, v] of Object.entries(expected)) sameFloats((actual as Record<string, unknown>)[k], v, `${where}.${k}`);
  } else {
    assert.equal(actual, expected, where);
  }
}

/** Each kind's parquet output: DuckDB's types for it, and the same rows as JSONL (error rows as nulls). */
const KINDS: { name: string; args: string[]; types: Record<string, string> }[] = [
  {
    name: 'classify', args: ['classify', '-k', '3'],
    types: { path: 'VARCHAR', predictions: 'STRUCT(index INTEGER, label VARCHAR, score FLOAT, logit FLOAT)[]', error: 'VARCHAR' },
  },
  { name: 'embed', args: ['embed'], types: { path: 'VARCHAR', embedding: 'FLOAT[]', error: 'VARCHAR' } },
  { name: 'attention rollout', args: ['attention'], types: { path: 'VARCHAR', grid: 'INTEGER[]', rollout: 'FLOAT[]', error: 'VARCHAR' } },
  { name: 'attention distance', args: ['attention', '--distance'], types: { path: 'VARCHAR', distance: 'FLOAT[][]', error: 'VARCHAR' } },
];

for (const kind of KINDS) {
  test(`parquet: ${kind.name} has the documented column types and the JSONL rows' values (DuckDB)`, async () => {
    const out = join(tmp, `${kind.name.replace(/ /g, '-')}.parquet`);
    const inputs = [images[0], bad, ...images.slice(1)];
    const p = await runVit([...kind.args, ...inputs, ...MODEL, '-f', 'parquet', '-o', out]);
    assert.equal(p.code, 3, p.stderr);
    assert.equal(p.stdout, '');
    const j = await runVit([...kind.args, ...inputs, ...MODEL, '-f', 'jsonl']);
    assert.deepEqual(await columnTypes(out), kind.types);
    const rows = await query(`SELECT * FROM ${lit(out)}`);
    const expected = jsonl(j.stdout);
    assert.equal(rows.length, expected.length);
    const columns = Object.keys(kind.types).filter((c) => c !== 'path' && c !== 'error');
    rows.forEach((row, i) => {
      const want = expected[i];
      assert.equal(row.path, want.path);
      assert.equal(row.error, want.error ?? null);
      for (const c of columns) {
        if (want.error !== undefined) assert.equal(row[c], null, `${c} of a failed input is null`);
        else sameFloats(row[c], want[c], `${want.path as string} ${c}`);
      }
    });
    assert.ok(existsSync(`${out}.vit.json`), 'provenance beside it');
  });
}

test('parquet: needs -o (stdout is a usage error), and is not offered for raw attention', async () => {
  for (const args of [['-f', 'parquet'], ['-f', 'parquet', '-o', '-']]) {
    const r = await runVit(['classify', images[0], ...MODEL, ...args]);
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /parquet is not written to stdout: name the output file with -o/);
    assert.equal(r.stdout, '');
  }
  const raw = await runVit(['attention', images[0], ...MODEL, '--raw', '-f', 'parquet', '-o', join(tmp, 'raw.parquet')]);
  assert.equal(raw.code, 2, raw.stderr);
  assert.match(raw.stderr, /format "parquet" is not available for raw attention; choose one of: csv, json, jsonl, npy/);
  const m = await runVit(['merge', '-', join(tmp, 'classify.parquet')]);
  assert.equal(m.code, 2, m.stderr);
});

test('parquet: memory stays flat over a 20,000-row write (row groups, not one table)', async () => {
  const PRELOAD = pathToFileURL(join(PACKAGE_ROOT, 'dist', 'test', 'helpers', 'peak-rss.js')).href;
  const child = join(PACKAGE_ROOT, 'dist', 'test', 'helpers', 'parquet-rows-child.js');
  const run = async (kind: string, n: number) => {
    const out = join(tmp, `flat-${kind}-${n}.parquet`);
    const peakFile = join(tmp, `peak-${kind}-${n}`);
    const stdout: Buffer[] = [];
    const code = await new Promise<number | null>((res, rej) => {
      const c = spawn(process.execPath, ['--expose-gc', '--import', PRELOAD, child, kind, String(n), out], { env: { ...process.env, VIT_TEST_PEAK_FILE: peakFile }, stdio: ['ignore', 'pipe', 'inherit'] });
      c.stdout.on('data', (d) => stdout.push(d));
      c.on('error', rej);
      c.on('close', res);
    });
    assert.equal(code, 0);
    assert.equal(await rowCount(out), n);
    const groups = Number((await query(`SELECT count(DISTINCT row_group_id) AS g FROM parquet_metadata(${lit(out)})`))[0].g);
    const live = Buffer.concat(stdout).toString().trim().split('\n').filter(Boolean).map((l) => JSON.parse(l) as { rows: number; heapMiB: number });
    return { peakMiB: Number(readFileSync(peakFile, 'utf8')) / 1024, groups, live };
  };
  for (const kind of ['classify', 'embed']) {
    const small = await run(kind, 2000);
    const large = await run(kind, 20000);
    const live = large.live.map((l) => `${l.heapMiB.toFixed(1)}`).join(', ');
    console.log(`parquet ${kind}: peak RSS ${small.peakMiB.toFixed(0)} MiB for 2,000 rows, ${large.peakMiB.toFixed(0)} MiB for 20,000 (${large.groups} row groups); live heap every 5,000 rows: ${live} MiB`);
    assert.ok(large.groups > 1, 'written in several row groups');
    // What the writer holds (JS heap and buffers, after a collection) does not grow with the rows written:
    // 15,000 more embeddings held between the first and last figure would be 45+ MiB of floats alone.
    const heaps = large.live.map((l) => l.heapMiB);
    assert.equal(heaps.length, 4);
    assert.ok(Math.max(...heaps) - Math.min(...heaps) < 8, `live heap ${live} MiB`);
    // The peak resident set is bounded generously only: how much garbage the collector lets pile up before it
    // collects is its own choice (the embed rows' peak grew by 56–112 MiB from 2,000 to 20,000 rows in five runs
    // of 2026-12-02 while the live memory above stayed flat), so rows held are caught by the live figures.
    assert.ok(large.peakMiB < 400, `peak ${large.peakMiB.toFixed(0)} MiB`);
  }
});

test('parquet: the writer: any path round-trips, --resume re-encodes the rows held and goes on, merge refuses other columns', async () => {
  const paths = ['plain.jpg', 'with, comma.jpg', 'with "quotes".jpg', 'with\nnewline.jpg', 'ünïcödé 猫 🐈.jpg', 'latin1-\udce9.jpg', 'broken.jpg'];
  const row = (path: string, i: number) => (path === 'broken.jpg'
    ? { path, error: 'truncated or corrupt image' }
    : { path, predictions: [{ index: i, label: `l${i}`, score: 0.5, logit: i - 0.25 }] });
  const out = join(tmp, 'writer.parquet');
  const first = await testWriter('classify', 'parquet', { output: out, stdout: process.stdout });
  for (const [i, p] of paths.slice(0, 4).entries()) await first.write(row(p, i) as never);
  await first.close();
  const stored = await readStoredOutput(out, 'parquet', 'resume');
  assert.deepEqual(stored.rows.map((r) => r.path), paths.slice(0, 4));
  const resumed = await testWriter('classify', 'parquet', { output: out, stdout: process.stdout, resume: true });
  for (const [i, p] of paths.entries()) if (i >= 4) await resumed.write(row(p, i) as never);
  await resumed.close();
  const back = await readStoredOutput(out, 'parquet', 'merge');
  assert.deepEqual(back.rows.map((r) => [r.path, r.error]), paths.map((p) => [p, p === 'broken.jpg']));
  const rows = await query(`SELECT path, predictions[1].logit AS logit, error FROM ${lit(out)}`);
  assert.deepEqual(rows.map((r) => r.path), paths.map(displayPath), 'bytes that are not UTF-8 as \\xNN, as in CSV');
  assert.deepEqual(rows.map((r) => r.logit), paths.map((p, i) => (p === 'broken.jpg' ? null : i - 0.25)));

  const other = join(tmp, 'other.parquet');
  const e = await testWriter('embed', 'parquet', { output: other, stdout: process.stdout });
  await e.write({ path: 'x.jpg', embedding: Float32Array.from([1, 2]) });
  await e.close();
  for (const f of [out, other]) rmSync(`${f}.vit.json`);
  await assert.rejects(mergeOutputs([out, other], { format: 'parquet', output: join(tmp, 'm.parquet'), stdout: process.stdout, inputs: [...paths, 'x.jpg'], note: () => undefined }),
    (err: unknown) => err instanceof OutputError && /other\.parquet has other columns than .*writer\.parquet: path, embedding, error vs path, predictions, error/.test(err.message));
  writeFileSync(join(tmp, 'not.parquet'), 'PAR1 but no more');
  await assert.rejects(readStoredOutput(join(tmp, 'not.parquet'), 'parquet', 'merge'), (err: unknown) => err instanceof OutputError && /is not a parquet file/.test(err.message));
});

test('parquet: a damaged output is refused in one line by --resume and merge, and never ends the process', async () => {
  const out = join(tmp, 'damaged.parquet');
  const args = ['classify', ...images, ...MODEL, '-f', 'parquet', '-o', out];
  assert.equal((await runVit(args)).code, 0);
  // The footer names each row group's column chunks after the schema; the last "logit" in the file is the
  // chunk's path. Renamed, that chunk is in no column of the schema: hyparquet then left a failing read
  // unawaited, and Node ended the process on it with a stack trace.
  const bytes = readFileSync(out);
  const at = bytes.lastIndexOf(Buffer.from('logit'));
  assert.ok(at > 0);
  bytes[at + 1] = 'x'.charCodeAt(0);
  writeFileSync(out, bytes);
  const r = await runVit([...args, '--resume']);
  assert.equal(r.code, 1, r.stderr);
  assert.equal(r.stderr, `vit: ${out} is damaged: row group 0 does not hold the columns its schema lists\n`);
  await assert.rejects(readStoredOutput(out, 'parquet', 'merge'), (err: unknown) => err instanceof OutputError && /is damaged/.test(err.message));
});

/** The paths of a parquet output in file order, and whether its rows equal another's (DuckDB, both ways). */
async function sameRows(a: string, b: string): Promise<void> {
  const order = async (f: string) => (await query(`SELECT path FROM ${lit(f)}`)).map((r) => r.path);
  assert.deepEqual(await order(a), await order(b), 'the same paths in the same order');
  for (const [x, y] of [[a, b], [b, a]]) {
    const diff = await query(`SELECT count(*) AS n FROM (SELECT * FROM ${lit(x)} EXCEPT ALL SELECT * FROM ${lit(y)})`);
    assert.equal(Number(diff[0].n), 0, `rows of ${x} not in ${y}`);
  }
}

const BIG = 1500;
let bigTar: string;
let reference: string;

async function bigRun(): Promise<void> {
  if (reference) return;
  bigTar = join(tmp, 'big.tar');
  await writeTar(bigTar, Array.from({ length: BIG }, (_, i) => ({ name: `${String(i).padStart(6, '0')}.png`, data: readFileSync(images[i % 4]) })));
  reference = join(tmp, 'reference.parquet');
  const r = await runVit(['classify', bigTar, ...MODEL, '-f', 'parquet', '-o', reference]);
  assert.equal(r.code, 0, r.stderr);
}

const temps = (name: string) => readdirSync(tmp).filter((f) => f.startsWith(`.${name}.`));

test('parquet: --resume after kill -9 leaves a readable file every time, then completes with the rows of one run', async (t) => {
  await bigRun();
  const out = join(tmp, 'killed.parquet');
  const args = ['classify', bigTar, ...MODEL, '-b', '2', '-f', 'parquet', '-o', out, '--resume'];
  let rows = 0;
  for (const delay of [0, 150, 400]) {
    const run = startVit(args);
    // Once this run has committed its first batch (the file grows past what it held), kill it a little later.
    for (let i = 0; i < 600 && !run.ended() && (await rowCount(out)) <= rows; i++) await sleep(20);
    await sleep(delay);
    run.child.kill('SIGKILL');
    const r = await run.result;
    const now = await rowCount(out);
    t.diagnostic(`killed after ${delay} ms more (${r.signal ?? `exit ${r.code}`}): ${now} rows readable`);
    assert.ok(now >= rows && now > 0, `after the kill DuckDB reads ${now} rows (had ${rows})`);
    rows = now;
  }
  const done = await runVit(args);
  assert.equal(done.code, 0, done.stderr);
  assert.match(done.stderr, new RegExp(`resuming .*: ${rows} of ${BIG} inputs already done`));
  await sameRows(out, reference);
  assert.deepEqual(temps('killed.parquet'), [], 'no temporary files left beside it');
});

test('parquet: SIGTERM closes a complete file with the rows so far; --resume completes it', async () => {
  await bigRun();
  const out = join(tmp, 'stopped.parquet');
  const args = ['classify', bigTar, ...MODEL, '-b', '2', '-f', 'parquet', '-o', out];
  const run = startVit(args);
  for (let i = 0; i < 600 && !run.ended() && temps('stopped.parquet').length === 0; i++) await sleep(20);
  await sleep(300);
  run.child.kill('SIGTERM');
  const r = await run.result;
  assert.equal(r.code, 143, r.stderr);
  const n = await rowCount(out);
  assert.ok(n > 0 && n < BIG, `${n} rows`);
  const done = await runVit([...args, '--resume']);
  assert.equal(done.code, 0, done.stderr);
  await sameRows(out, reference);
});

test('parquet: the README\'s DuckDB example runs on an output', async () => {
  const readme = readFileSync(join(PACKAGE_ROOT, 'README.md'), 'utf8');
  const m = /^duckdb -c "(.+)"$/m.exec(readme);
  assert.ok(m, 'a `duckdb -c "…"` line in the README');
  const file = /'([^']+\.parquet)'/.exec(m[1])![1];
  const out = join(tmp, 'readme.parquet');
  assert.equal((await runVit(['classify', ...images, bad, ...MODEL, '-f', 'parquet', '-o', out])).code, 3);
  const rows = await query(m[1].replace(`'${file}'`, lit(out)));
  assert.ok(rows.length > 0 && rows.length <= images.length, `${rows.length} rows`);
  console.log(`README example: ${JSON.stringify(rows[0])}`);
});

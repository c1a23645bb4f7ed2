import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough, Writable } from 'node:stream';
import { after, test } from 'node:test';
import { main } from '../src/cli.js';
import { OutputError, UsageError } from '../src/errors.js';
import { PACKAGE_ROOT } from '../src/io/paths.js';
import { readStoredOutput } from '../src/io/sinks/index.js';
import { npyHeader, pathsFileFor } from '../src/io/sinks/npy.js';
import { manifestPath, writeManifest } from '../src/io/sinks/manifest.js';
import {
  CLASSIFY_SCHEMA, EMBED_SCHEMA, formatFloat32, formatsFor, pathsLine,
  type ClassifyRow, type EmbedRow, type ErrorRow, type Format, type RowSchema,
} from '../src/io/sinks/rows.js';
import { parseCsv, readNpy, testWriter } from './helpers/formats.js';

const tmp = mkdtempSync(join(tmpdir(), 'vit-writers-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

/** A writable that keeps everything written to it. */
function collector(): { stream: PassThrough; text(): string; bytes(): Buffer } {
  const stream = new PassThrough();
  const chunks: Buffer[] = [];
  stream.on('data', (c: Buffer) => chunks.push(c));
  return { stream, text: () => Buffer.concat(chunks).toString('utf8'), bytes: () => Buffer.concat(chunks) };
}

const NASTY_PATHS = [
  'photos/plain.jpg',
  'photos/with, comma.jpg',
  'photos/with "quotes".jpg',
  'photos/with\nnewline.jpg',
  'photos/with\r\ncrlf.jpg',
  'photos/ünïcödé 猫 🐈.jpg',
  '"starts with quote.jpg',
];

function classifyRow(path: string, i: number): ClassifyRow {
  return {
    path,
    predictions: [
      { index: 281, label: 'tabby, tabby cat', score: 0.9123456789, logit: Math.fround(9.87) },
      { index: i, label: 'the "quoted" kite', score: 0.05, logit: Math.fround(-1.5e-7) },
    ],
  };
}

async function writeAll<R extends { path: string }>(w: { write(r: R | ErrorRow): Promise<void>; close(): Promise<void> }, rows: (R | ErrorRow)[]) {
  for (const r of rows) await w.write(r);
  await w.close();
}

test('writers: classify CSV round-trips awkward paths through an RFC 4180 parser', async () => {
  const out = collector();
  const w = await testWriter('classify', 'csv', { stdout: out.stream });
  const rows: (ClassifyRow | ErrorRow)[] = NASTY_PATHS.map(classifyRow);
  rows.splice(3, 0, { path: 'broken, "bad".jpg', error: 'truncated or corrupt image' });
  await writeAll(w, rows);
  const recs = parseCsv(out.text());
  assert.deepEqual(recs[0], ['path', 'rank', 'index', 'label', 'score', 'logit', 'error']);
  const body = recs.slice(1);
  assert.equal(body.length, NASTY_PATHS.length * 2 + 1);
  const paths = [...new Set(body.map((r) => r[0]))];
  assert.deepEqual(paths, rows.map((r) => r.path), 'rows in input order, paths intact');
  for (const r of body) assert.equal(r.length, 7);
  const first = body.filter((r) => r[0] === 'photos/with\nnewline.jpg');
  assert.deepEqual(first.map((r) => r.slice(1, 4)), [['1', '281', 'tabby, tabby cat'], ['2', '3', 'the "quoted" kite']]);
  assert.equal(Math.fround(Number(first[0][5])), Math.fround(9.87), 'logit at float32 precision');
  assert.equal(first[0][6], '');
  const bad = body.find((r) => r[0] === 'broken, "bad".jpg')!;
  assert.deepEqual(bad, ['broken, "bad".jpg', '', '', '', '', '', 'truncated or corrupt image']);
});

test('writers: JSON is one valid array with 0, 1 or many rows; JSONL is one object per line', async () => {
  for (const n of [0, 1, 5]) {
    const out = collector();
    const rows = NASTY_PATHS.slice(0, n).map(classifyRow);
    await writeAll(await testWriter('classify', 'json', { stdout: out.stream }), rows);
    const parsed = JSON.parse(out.text()) as ClassifyRow[];
    assert.equal(parsed.length, n);
    assert.deepEqual(parsed.map((r) => r.path), rows.map((r) => r.path));
    if (n === 0) assert.equal(out.text(), '[\n\n]\n');
  }
  const out = collector();
  await writeAll(await testWriter('classify', 'jsonl', { stdout: out.stream }), [classifyRow(NASTY_PATHS[3], 1), { path: 'x.jpg', error: 'no such file' }]);
  const lines = out.text().split('\n');
  assert.equal(lines.pop(), '');
  assert.equal(lines.length, 2);
  const a = JSON.parse(lines[0]);
  assert.equal(a.path, NASTY_PATHS[3]);
  assert.deepEqual(Object.keys(a.predictions[0]), ['index', 'label', 'score', 'logit']);
  assert.equal(a.predictions[0].logit, 9.87, 'shortest float32 decimal');
  assert.deepEqual(JSON.parse(lines[1]), { path: 'x.jpg', error: 'no such file' });
});

test('writers: numbers are the shortest decimal that reads back as the same float32', () => {
  assert.equal(formatFloat32(Math.fround(0.1)), '0.1');
  assert.equal(formatFloat32(281), '281');
  assert.equal(formatFloat32(-0), '0');
  assert.equal(formatFloat32(NaN), 'NaN');
  assert.equal(formatFloat32(-Infinity), '-Infinity');
  let seed = 12345;
  const rand = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31 - 0.5) * 10 ** ((seed % 13) - 6);
  for (let i = 0; i < 2000; i++) {
    const f = Math.fround(rand());
    const s = formatFloat32(f);
    assert.equal(Math.fround(Number(s)), f, s);
    assert.ok(s.replace(/^-|e.*$|\./g, '').replace(/^0+/, '').length <= 9, s);
  }
});

test('writers: embed CSV and JSON; failures before the first good row keep their place', async () => {
  const v = (k: number) => Float32Array.from([k + 0.1, -k, 1e-8, 3e38]);
  const rows: (EmbedRow | ErrorRow)[] = [
    { path: 'gone.jpg', error: 'no such file' },
    { path: 'a.jpg', embedding: v(1) },
    { path: 'b, c.jpg', embedding: v(2) },
  ];
  const csv = collector();
  await writeAll(await testWriter('embed', 'csv', { stdout: csv.stream }), rows);
  const recs = parseCsv(csv.text());
  assert.deepEqual(recs[0], ['path', 'e0', 'e1', 'e2', 'e3', 'error']);
  assert.deepEqual(recs[1], ['gone.jpg', '', '', '', '', 'no such file']);
  assert.equal(recs[3][0], 'b, c.jpg');
  assert.deepEqual(recs[3].slice(1, 5).map((s) => Math.fround(Number(s))), Array.from(v(2)));
  const json = collector();
  await writeAll(await testWriter('embed', 'json', { stdout: json.stream }), rows);
  const parsed = JSON.parse(json.text());
  assert.deepEqual(parsed[0], { path: 'gone.jpg', error: 'no such file' });
  assert.deepEqual(parsed[1].embedding.map(Math.fround), Array.from(v(1)));
  // All rows failed: the CSV still has a header.
  const none = collector();
  await writeAll(await testWriter('embed', 'csv', { stdout: none.stream }), [{ path: 'x', error: 'not an image' }]);
  assert.equal(none.text(), 'path,error\nx,not an image\n');
  // Rows of different widths cannot share a header.
  const w = await testWriter('embed', 'csv', { stdout: collector().stream });
  await w.write({ path: 'a', embedding: v(1) });
  await assert.rejects(w.write({ path: 'b', embedding: new Float32Array(3) }), OutputError);
});

test('writers: npy file with paths beside it; failed inputs not written', async () => {
  const out = join(tmp, 'feats.npy');
  const w = await testWriter('embed', 'npy', { output: out, stdout: collector().stream });
  const D = 5;
  const paths = ['a.jpg', 'with\nnewline.jpg', '"quoted.jpg', 'ünï, cödé.jpg'];
  const want: number[] = [];
  let k = 0;
  for (const p of paths) {
    const e = Float32Array.from({ length: D }, () => Math.fround(Math.sin(++k) * 10));
    want.push(...e);
    await w.write({ path: p, embedding: e });
    if (k === D * 2) await w.write({ path: 'broken.jpg', error: 'truncated or corrupt image' });
  }
  await w.close();
  const npy = readNpy(readFileSync(out));
  assert.deepEqual(npy.shape, [paths.length, D]);
  assert.deepEqual(Array.from(npy.data), want);
  assert.equal(pathsFileFor(out), join(tmp, 'feats.paths.txt'));
  const lines = readFileSync(join(tmp, 'feats.paths.txt'), 'utf8').split('\n');
  assert.equal(lines.pop(), '');
  const decoded = lines.map((l) => (l.startsWith('"') ? JSON.parse(l) : l));
  assert.deepEqual(decoded, paths);
  assert.equal(lines[0], 'a.jpg', 'plain paths are plain lines');
  assert.deepEqual(readdirSync(tmp).filter((f) => f.endsWith('.tmp')), [], 'no temporary files left');
});

test('writers: npy to stdout (spooled) and with zero rows', async () => {
  const out = collector();
  const w = await testWriter('embed', 'npy', { stdout: out.stream });
  const rows = [Float32Array.from([1, 2, 3]), Float32Array.from([4, 5, 6.5])];
  for (const [i, e] of rows.entries()) await w.write({ path: `${i}.png`, embedding: e });
  await w.close();
  const npy = readNpy(out.bytes());
  assert.deepEqual(npy.shape, [2, 3]);
  assert.deepEqual(Array.from(npy.data), [1, 2, 3, 4, 5, 6.5]);
  const empty = join(tmp, 'empty.npy');
  await (await testWriter('embed', 'npy', { output: empty, stdout: collector().stream })).close();
  assert.deepEqual(readNpy(readFileSync(empty)).shape, [0, 0]);
  assert.equal(readFileSync(join(tmp, 'empty.paths.txt'), 'utf8'), '');
  // The header reserved for the row count has room for 2^40 rows and keeps its size when patched.
  const big = npyHeader(2 ** 40, 768);
  assert.equal(npyHeader(3, 768, big.length).length, big.length);
});

test('writers: -o is atomic: nothing at the target until close, nothing left on abort', async () => {
  const out = join(tmp, 'atomic.jsonl');
  const w = await testWriter('classify', 'jsonl', { output: out, stdout: collector().stream });
  await w.write(classifyRow('a.jpg', 1));
  assert.equal(existsSync(out), false, 'target not there while writing');
  assert.ok(readdirSync(tmp).includes(`.atomic.jsonl.${process.pid}.tmp`), 'temp file beside the target');
  await w.close();
  assert.equal(JSON.parse(readFileSync(out, 'utf8')).path, 'a.jpg');
  assert.deepEqual(readdirSync(tmp).filter((f) => f.endsWith('.tmp')), []);

  // An aborted run leaves an existing target untouched and no temp file.
  writeFileSync(out, 'previous contents\n');
  const w2 = await testWriter('classify', 'jsonl', { output: out, stdout: collector().stream });
  await w2.write(classifyRow('b.jpg', 1));
  await w2.abort();
  assert.equal(readFileSync(out, 'utf8'), 'previous contents\n');
  const n = join(tmp, 'aborted.npy');
  const w3 = await testWriter('embed', 'npy', { output: n, stdout: collector().stream });
  await w3.write({ path: 'a', embedding: new Float32Array(2) });
  await w3.abort();
  assert.deepEqual(readdirSync(tmp).filter((f) => f.endsWith('.tmp') || f.startsWith('aborted')), []);

  // A directory that does not exist is an OutputError, before any row.
  await assert.rejects(testWriter('classify', 'csv', { output: join(tmp, 'no', 'such', 'dir.csv'), stdout: collector().stream }),
    (e: unknown) => e instanceof OutputError && /ENOENT/.test(e.message));
});

test('writers: -o removes the temporary files that killed runs left beside the target, and only those', async () => {
  const dir = mkdtempSync(join(tmp, 'stale-'));
  const out = join(dir, 'out.csv');
  // A process that has ended: its pid names a temporary file nobody will finish.
  const gone = spawn(process.execPath, ['-e', '']);
  await new Promise((r) => gone.on('close', r));
  const dead = `.out.csv.${gone.pid}.tmp`;
  const deadSnap = `.out.csv.${gone.pid}.snapshot.tmp`;
  const deadSidecar = `out.csv.vit.json.${gone.pid}.tmp`;
  const live = `.out.csv.${process.ppid}.tmp`; // a running process's: still being written
  const liveSidecar = `out.csv.vit.json.${process.ppid}.tmp`;
  const others = ['.out.csv.x1.tmp', `.other.csv.${gone.pid}.tmp`, `out.csv.${gone.pid}.tmp`, `other.csv.vit.json.${gone.pid}.tmp`];
  for (const f of [dead, deadSnap, deadSidecar, live, liveSidecar, ...others]) writeFileSync(join(dir, f), 'partial');
  const w = await testWriter('classify', 'csv', { output: out, stdout: collector().stream });
  await w.write(classifyRow('a.jpg', 1));
  await w.close();
  assert.deepEqual(readdirSync(dir).sort(), [live, liveSidecar, ...others, 'out.csv', 'out.csv.vit.json'].sort());
});

test('writers: a link planted under a temporary file\'s name is replaced, never written through', async () => {
  const dir = mkdtempSync(join(tmp, 'planted-'));
  const victim = join(dir, 'victim');
  writeFileSync(victim, 'precious\n');
  const out = join(dir, 'out.jsonl');
  // The names this process will use (as another user of a shared directory can work them out).
  symlinkSync(victim, join(dir, `.out.jsonl.${process.pid}.tmp`));
  symlinkSync(victim, join(dir, `out.jsonl.vit.json.${process.pid}.tmp`));
  const w = await testWriter('classify', 'jsonl', { output: out, stdout: collector().stream });
  await w.write(classifyRow('a.jpg', 1));
  await w.close();
  writeManifest(out, { command: 'classify', format: 'jsonl', model: { name: 'm', id: 'x' }, options: {}, shard: null });
  assert.equal(readFileSync(victim, 'utf8'), 'precious\n');
  assert.equal(JSON.parse(readFileSync(out, 'utf8')).path, 'a.jpg');
  assert.equal(JSON.parse(readFileSync(manifestPath(out), 'utf8')).command, 'classify');
  assert.deepEqual(readdirSync(dir).sort(), ['out.jsonl', 'out.jsonl.vit.json', 'victim']);
});

test('writers: the formats of a row kind; npy only where rows are vectors, parquet where the kind has typed columns', () => {
  assert.deepEqual(formatsFor(CLASSIFY_SCHEMA), ['csv', 'json', 'jsonl', 'parquet']);
  assert.deepEqual(formatsFor(EMBED_SCHEMA), ['csv', 'json', 'jsonl', 'npy', 'parquet']);
  assert.deepEqual(formatsFor({ ...EMBED_SCHEMA, columns: undefined }), ['csv', 'json', 'jsonl', 'npy']);
});

test('writers: a schema of named arrays gets every format without new writer code', async () => {
  interface MapsRow { path: string; maps: Record<string, Float32Array> }
  const names = ['layer0', 'layer1'];
  const schema: RowSchema<MapsRow> = {
    kind: 'attention',
    csvColumns: (first) => names.flatMap((n) => Array.from({ length: first?.maps[n].length ?? 0 }, (_, i) => `${n}_${i}`)),
    csvRecords: (row) => [names.flatMap((n) => Array.from(row.maps[n]))],
    json: (row) => ({ path: row.path, ...row.maps }),
    npy: (row) => Float32Array.from(names.flatMap((n) => Array.from(row.maps[n]))),
  };
  const row: MapsRow = { path: 'a.png', maps: { layer0: Float32Array.from([0.25, 0.75]), layer1: Float32Array.from([1, 0]) } };
  const csv = collector();
  await writeAll(await testWriter(schema, 'csv', { stdout: csv.stream }), [row]);
  assert.equal(csv.text(), 'path,layer0_0,layer0_1,layer1_0,layer1_1,error\na.png,0.25,0.75,1,0,\n');
  const jsonl = collector();
  await writeAll(await testWriter(schema, 'jsonl', { stdout: jsonl.stream }), [row]);
  assert.deepEqual(JSON.parse(jsonl.text()), { path: 'a.png', layer0: [0.25, 0.75], layer1: [1, 0] });
});

test('writers: a stream that fails with EPIPE ends the output quietly', async () => {
  let writes = 0;
  const stream = new Writable({
    highWaterMark: 16,
    write(_chunk, _enc, cb) {
      if (++writes === 3) cb(Object.assign(new Error('write EPIPE'), { code: 'EPIPE' }));
      else setImmediate(cb);
    },
  });
  const w = await testWriter('classify', 'jsonl', { stdout: stream });
  let written = 0;
  for (; written < 100 && !w.closedByReader; written++) await w.write(classifyRow(`${written}.jpg`, 1));
  assert.equal(w.closedByReader, true);
  assert.ok(written < 100);
  await w.write(classifyRow('after.jpg', 1));
  await w.close();
});

test('writers: `| head -1` closes the pipe; the writer notices and the process exits 0', { timeout: 60_000 }, async () => {
  const script = join(PACKAGE_ROOT, 'dist', 'test', 'helpers', 'epipe-writer.js');
  const res = await new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve, reject) => {
    // The writer's own exit status goes to stderr: the pipeline's status would be head's.
    const child = spawn('sh', ['-c', '{ "$0" "$1" jsonl; echo "writer-exit=$?" >&2; } | head -1', process.execPath, script]);
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
  assert.equal(res.code, 0);
  assert.equal(JSON.parse(res.stdout).path, 'dir/image_0.jpg');
  const m = /closedByReader=true rows=(\d+)/.exec(res.stderr);
  assert.ok(m, res.stderr);
  assert.ok(Number(m[1]) < 200_000, 'stopped early');
  assert.match(res.stderr, /writer-exit=0/);
  assert.doesNotMatch(res.stderr, /Error|EPIPE/);
});

test('writers: paths lines escape only what readlines cannot carry', () => {
  assert.equal(pathsLine('a/b c.jpg'), 'a/b c.jpg\n');
  assert.equal(pathsLine('a\nb.jpg'), '"a\\nb.jpg"\n');
  assert.equal(pathsLine('"q".jpg'), '"\\"q\\".jpg"\n');
});

// ---- reading outputs back: --resume after a crash at any byte, and merge's completeness checks -------------

/** Rows of both kinds, with failures first, in the middle and last, and paths that need quoting. */
const RESUME_PATHS = ['gone.jpg', ...NASTY_PATHS, 'broken.jpg', 'z.jpg', 'last-fails.jpg'];
const failing = new Set(['gone.jpg', 'broken.jpg', 'last-fails.jpg']);
const resumeRows = <R extends { path: string }>(row: (p: string, i: number) => R): (R | ErrorRow)[] =>
  RESUME_PATHS.map((p, i) => (failing.has(p) ? { path: p, error: `bad ${i}` } : row(p, i)));
const embedRow = (p: string, i: number): EmbedRow => ({ path: p, embedding: Float32Array.from([i, -i / 3, 1e-3 * i]) });

/** Write `rows` to `file` in one go; returns the bytes of the file (and of the npy paths file). */
async function writeFile<K extends 'classify' | 'embed'>(kind: K, format: string, file: string, rows: ({ path: string } | ErrorRow)[], resume = false) {
  const w = await testWriter(kind, format, { output: file, stdout: collector().stream, resume });
  for (const r of rows) await w.write(r as never);
  await w.close();
  return { data: readFileSync(file), paths: format === 'npy' ? readFileSync(pathsFileFor(file)) : null };
}

/**
 * Simulate a crash at every moment of a run (every prefix of the bytes written, in the order the writer
 * writes them), then resume: read what the file holds, skip those paths, append the others. The result must
 * be the uninterrupted file, byte for byte.
 */
async function crashEverywhere(kind: 'classify' | 'embed', format: string, rows: ({ path: string } | ErrorRow)[]): Promise<number> {
  const ref = await writeFile(kind, format, join(tmp, `ref.${format}`), rows);
  const file = join(tmp, `crashed.${format}`);
  // A run continued in place (--resume) writes its manifest before its first row.
  writeFileSync(manifestPath(file), readFileSync(manifestPath(join(tmp, `ref.${format}`))));
  // npy: each row's data is written before its paths line; the header comes first.
  const states: [number, number][] = [];
  if (ref.paths === null) for (let d = 0; d <= ref.data.length; d++) states.push([d, 0]);
  else {
    const npy = readNpy(ref.data);
    const rowBytes = (ref.data.length - npy.headerLength) / npy.shape[0];
    // lineEnds[i]: the length of the paths file holding i lines.
    const lineEnds = [0, ...[...ref.paths.entries()].filter(([, b]) => b === 0x0a).map(([i]) => i + 1)];
    for (let d = 0; d <= ref.data.length; d++) {
      const full = Math.max(0, Math.floor((d - npy.headerLength) / rowBytes));
      if (full === 0 || d > npy.headerLength + full * rowBytes) states.push([d, lineEnds[full]]);
      else for (let p = lineEnds[full - 1]; p <= lineEnds[full]; p++) states.push([d, p]);
    }
  }
  for (const [d, p] of states) {
    writeFileSync(file, ref.data.subarray(0, d));
    if (ref.paths !== null) writeFileSync(pathsFileFor(file), ref.paths.subarray(0, p));
    const stored = await readStoredOutput(file, format as Format, 'resume');
    const done = stored.rows.map((r) => r.path);
    assert.deepEqual(done, rows.map((r) => r.path).filter((q) => done.includes(q)).slice(0, done.length), 'a prefix of the rows');
    const rest = rows.filter((r) => !done.includes(r.path));
    const got = await writeFile(kind, format, file, rest, true);
    assert.ok(got.data.equals(ref.data), `${format}: crash after ${d} bytes${ref.paths ? ` (+${p} of paths)` : ''} resumes to other bytes`);
    if (ref.paths !== null) assert.ok(got.paths!.equals(ref.paths), `npy paths: crash at ${d}/${p}`);
  }
  return states.length;
}

test('resume: a crash after any byte resumes to exactly the uninterrupted output (CSV, JSON, JSONL, npy)', async (t) => {
  for (const format of ['csv', 'json', 'jsonl']) {
    const n = await crashEverywhere('classify', format, resumeRows(classifyRow));
    t.diagnostic(`classify ${format}: ${n} crash points`);
  }
  t.diagnostic(`embed csv: ${await crashEverywhere('embed', 'csv', resumeRows(embedRow))} crash points`);
  t.diagnostic(`embed npy: ${await crashEverywhere('embed', 'npy', resumeRows(embedRow).filter((r) => !('error' in r)))} crash points`);
});

test('resume: an output closed after failures only (provisional CSV header) starts over; JSON arrays reopen', async () => {
  const file = join(tmp, 'only-failures.csv');
  await writeFile('embed', 'csv', file, [{ path: 'x', error: 'not an image' }]);
  assert.equal(readFileSync(file, 'utf8'), 'path,error\nx,not an image\n');
  const stored = await readStoredOutput(file, 'csv', 'resume');
  assert.equal(stored.keep, 0);
  const rows = [{ path: 'x', error: 'not an image' }, embedRow('y', 1)];
  const ref = await writeFile('embed', 'csv', join(tmp, 'only-failures-ref.csv'), rows);
  assert.ok((await writeFile('embed', 'csv', file, rows, true)).data.equals(ref.data));
  // A closed, empty JSON array holds nothing.
  const empty = join(tmp, 'empty.json');
  await writeFile('classify', 'json', empty, []);
  assert.equal((await readStoredOutput(empty, 'json', 'resume')).keep, 0);
  assert.deepEqual((await readStoredOutput(join(tmp, 'does-not-exist.csv'), 'csv', 'resume')).rows, []);
});

test('resume: a file that is not a vit output, or with a damaged middle, or other columns, is an OutputError', async () => {
  const notOurs = join(tmp, 'other.csv');
  writeFileSync(notOurs, 'name,value\na,1\n');
  await assert.rejects(readStoredOutput(notOurs, 'csv', 'resume'), (e: unknown) => e instanceof OutputError && /header/.test(e.message));
  const damaged = join(tmp, 'damaged.jsonl');
  writeFileSync(damaged, '{"path":"a","error":"x"}\n{"pa\n{"path":"b","error":"y"}\n');
  await assert.rejects(readStoredOutput(damaged, 'jsonl', 'resume'), (e: unknown) => e instanceof OutputError && /byte 25/.test(e.message));
  const csv = join(tmp, 'embed3.csv');
  await writeFile('embed', 'csv', csv, [embedRow('a', 1), embedRow('b', 2)]);
  const w = await testWriter('embed', 'csv', { output: csv, stdout: collector().stream, resume: true });
  await assert.rejects(w.write({ path: 'b', embedding: new Float32Array(5) }), (e: unknown) => e instanceof OutputError && /columns/.test(e.message));
  await w.abort();
  assert.ok(readFileSync(csv, 'utf8').startsWith('path,e0,e1,e2,error\na,'), 'an in-place file keeps its rows on abort');
});

test('stored outputs: merge mode refuses a part its run did not finish', async () => {
  const rows = resumeRows(classifyRow);
  for (const format of ['csv', 'json', 'jsonl'] as const) {
    const { data } = await writeFile('classify', format, join(tmp, `part.${format}`), rows);
    const whole = await readStoredOutput(join(tmp, `part.${format}`), format, 'merge');
    assert.deepEqual(whole.rows.map((r) => r.path), RESUME_PATHS);
    assert.deepEqual(whole.rows.map((r) => r.error), RESUME_PATHS.map((p) => failing.has(p)));
    const cut = join(tmp, `cut.${format}`);
    writeFileSync(cut, data.subarray(0, data.length - 3));
    await assert.rejects(readStoredOutput(cut, format, 'merge'), (e: unknown) => e instanceof OutputError && /incomplete.*--resume/.test(e.message), format);
  }
  const npy = join(tmp, 'part.npy');
  const { data } = await writeFile('embed', 'npy', npy, [embedRow('a', 1), embedRow('b', 2)]);
  assert.equal((await readStoredOutput(npy, 'npy', 'merge')).rows.length, 2);
  writeFileSync(npy, data.subarray(0, data.length - 12));
  await assert.rejects(readStoredOutput(npy, 'npy', 'merge'), (e: unknown) => e instanceof OutputError && /header says 2 rows/.test(e.message));
});

test('npy is not written to a terminal (as gzip refuses): one usage line, exit 2, no bytes; text formats and -o still are', async () => {
  const run = async (args: string[]) => {
    const out = Object.assign(new PassThrough(), { isTTY: true, columns: 100 });
    const err = new PassThrough();
    const chunks: Buffer[] = [];
    const errs: Buffer[] = [];
    out.on('data', (d: Buffer) => chunks.push(d));
    err.on('data', (d: Buffer) => errs.push(d));
    const code = await main(args, out, err);
    return { code, stdout: Buffer.concat(chunks).toString('latin1'), stderr: Buffer.concat(errs).toString() };
  };
  const digit = join(PACKAGE_ROOT, 'examples', 'digits', '0_0800.png');
  const npy = await run(['embed', digit, '-f', 'npy', '-q']);
  assert.equal(npy.code, 2, npy.stderr);
  assert.equal(npy.stderr.split('\n')[0], 'vit: npy is binary and stdout is a terminal: name the output file with -o (e.g. -o out.npy) or redirect stdout');
  assert.equal(npy.stdout, '');
  const jsonl = await run(['embed', digit, '-f', 'jsonl', '-q']);
  assert.equal(jsonl.code, 0, jsonl.stderr);
  assert.match(jsonl.stdout, /^\{"path":/);
  const file = join(tmp, 'tty.npy');
  const toFile = await run(['embed', digit, '-f', 'npy', '-o', file, '-q']);
  assert.equal(toFile.code, 0, toFile.stderr);
  assert.equal(readFileSync(file).subarray(1, 6).toString(), 'NUMPY');
});

/**
 * Real signals to a real `vit` process: SIGINT / SIGTERM stop cleanly with valid, complete-row outputs and
 * exit 130 / 143; kill -9 at random moments followed by --resume gives exactly the uninterrupted output.
 */
import assert from 'node:assert/strict';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { startVit, type RunResult } from './helpers/cli.js';
import { readNpy } from './helpers/formats.js';
import { BAD, IMAGES, modelDir } from './helpers/golden.js';

const tmp = mkdtempSync(join(tmpdir(), 'vit-interrupt-'));
after(() => rmSync(tmp, { recursive: true, force: true }));
const DIR = join(tmp, 'images');
const N_IMAGES = 400;
const MODEL = ['-m', modelDir('odd40', 'hf'), '-b', '4'];

/** Resolves once `grown()` is true (polled every 5 ms), or when the process has ended. */
async function waitFor(grown: () => boolean, ended: () => boolean): Promise<void> {
  for (let i = 0; i < 2000 && !grown() && !ended(); i++) await sleep(5);
}

const sizeOf = (f: string) => (existsSync(f) ? statSync(f).size : -1);

/** The temporary files of an atomic -o FILE in progress (`.FILE.<pid>.tmp` beside it). */
const tempsOf = (name: string) => readdirSync(tmp).filter((f) => f.startsWith(`.${name}.`));

/** Start `vit ARGS -o tmp/NAME` and send `signal` once rows are being written (its temporary file has `bytes`). */
async function signalWhileWriting(args: string[], name: string, bytes: number, signal: NodeJS.Signals): Promise<RunResult> {
  const run = startVit([...args, '-o', join(tmp, name)]);
  await waitFor(() => tempsOf(name).some((t) => sizeOf(join(tmp, t)) > bytes), run.ended);
  run.child.kill(signal);
  return run.result;
}

/** Seeded PRNG (mulberry32): random but repeatable delays. */
function prng(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
}

before(() => {
  mkdirSync(DIR);
  for (let i = 0; i < N_IMAGES; i++) copyFileSync(join(IMAGES, `odd40_${i % 4}.png`), join(DIR, `${String(i).padStart(4, '0')}.png`));
  // Failed inputs too: error rows must survive interruptions like the others (npy leaves them out).
  for (const at of ['0007', '0150', '0399']) copyFileSync(join(BAD, 'truncated.jpg'), join(DIR, `${at}-bad.jpg`));
});

/** An uninterrupted run's output: the reference. */
async function reference(command: string, format: string, extra: string[] = []): Promise<string> {
  const file = join(tmp, `ref-${command}.${format}`);
  const r = await startVit([command, DIR, ...MODEL, ...extra, '-f', format, '-o', file]).result;
  assert.equal(r.code, 3, r.stderr);
  return file;
}

const jsonRows = (text: string) => JSON.parse(text) as { path: string }[];
const manifestOf = (output: string) => JSON.parse(readFileSync(`${output}.vit.json`, 'utf8')) as { unfinished?: boolean };

test('interrupt: SIGINT finishes the batch in flight, closes the JSON array, renames -o into place, exits 130; --resume completes it', async () => {
  const ref = await reference('classify', 'json');
  const out = join(tmp, 'sigint.json');
  const r = await signalWhileWriting(['classify', DIR, ...MODEL, '-f', 'json'], 'sigint.json', 1000, 'SIGINT');
  assert.equal(r.code, 130, r.stderr);
  assert.match(r.stderr, /stopped by SIGINT: \d+ of \d+ inputs not done; continue with --resume/);
  const rows = jsonRows(readFileSync(out, 'utf8'));
  const want = jsonRows(readFileSync(ref, 'utf8'));
  assert.ok(rows.length > 0 && rows.length < want.length, `${rows.length} rows`);
  assert.deepEqual(rows, want.slice(0, rows.length), 'complete rows, in order');
  assert.deepEqual(tempsOf('sigint.json'), [], 'no temporary file left');
  // A valid file, but short: its manifest says so, and vit merge refuses it (a stopped shard would silently
  // lose rows) until --resume finishes it.
  assert.equal(manifestOf(out).unfinished, true);
  const merged = join(tmp, 'sigint-merged.json');
  const refused = await startVit(['merge', merged, out]).result;
  assert.equal(refused.code, 1, refused.stderr);
  assert.equal(refused.stderr, `vit: ${out} was stopped before all its inputs were done: finish it with --resume -o ${out}\n`);
  assert.ok(!existsSync(merged));
  const resumed = await startVit(['classify', DIR, ...MODEL, '-f', 'json', '-o', out, '--resume']).result;
  assert.equal(resumed.code, 3, resumed.stderr);
  assert.ok(readFileSync(out).equals(readFileSync(ref)), 'resumed output = uninterrupted output');
  assert.equal(manifestOf(out).unfinished, undefined);
  assert.equal((await startVit(['merge', merged, out]).result).code, 0);
  assert.ok(readFileSync(merged).equals(readFileSync(ref)), 'the finished file merges');
});

test('interrupt: SIGTERM leaves an npy whose header counts its rows and a paths file that names them; exit 143', async () => {
  const ref = readNpy(readFileSync(await reference('embed', 'npy')));
  const r = await signalWhileWriting(['embed', DIR, ...MODEL, '-f', 'npy'], 'sigterm.npy', 4000, 'SIGTERM');
  assert.equal(r.code, 143, r.stderr);
  const npy = readNpy(readFileSync(join(tmp, 'sigterm.npy')));
  const n = npy.shape[0];
  assert.ok(n > 0 && n < ref.shape[0], `${n} rows`);
  assert.deepEqual(Array.from(npy.data), Array.from(ref.data.subarray(0, npy.data.length)));
  const paths = readFileSync(join(tmp, 'sigterm.paths.txt'), 'utf8').split('\n').filter(Boolean);
  assert.equal(paths.length, n);
});

test('interrupt: SIGINT with JSON on stdout still ends the array: the output parses', async () => {
  const run = startVit(['classify', DIR, ...MODEL, '-f', 'json']);
  let seen = 0;
  run.child.stdout!.on('data', (d: Buffer) => (seen += d.length));
  await waitFor(() => seen > 2000, run.ended);
  run.child.kill('SIGINT');
  const r = await run.result;
  assert.equal(r.code, 130, r.stderr);
  const rows = jsonRows(r.stdout);
  assert.ok(rows.length > 0 && rows.length < N_IMAGES, `${rows.length} rows`);
});

test('interrupt: a second SIGINT exits at once, leaving no temporary file; --resume needs -o', async () => {
  const run = startVit(['classify', DIR, ...MODEL, '-o', join(tmp, 'twice.csv')]);
  await waitFor(() => tempsOf('twice.csv').some((t) => sizeOf(join(tmp, t)) > 1000), run.ended);
  run.child.kill('SIGINT');
  run.child.kill('SIGINT');
  const r = await run.result;
  // The second SIGINT ends the process by the signal itself; when the OS merges the two into one, the run
  // stops cleanly with 130 instead. A shell reports 130 either way.
  assert.ok(r.signal === 'SIGINT' || r.code === 130, `code ${r.code}, signal ${r.signal}: ${r.stderr}`);
  assert.deepEqual(tempsOf('twice.csv'), []);
  const noFile = await startVit(['classify', DIR, ...MODEL, '--resume']).result;
  assert.equal(noFile.code, 2);
  assert.match(noFile.stderr, /--resume .* -o FILE/);
});

/** Kill -9 a --resume run at random moments until one run finishes; the output must be the reference's. */
async function killAndResume(command: string, format: string, seed: number, extra: string[] = []): Promise<{ kills: number; midway: number }> {
  const ref = await reference(command, format, extra);
  const out = join(tmp, `killed-${command}.${format}`);
  const random = prng(seed);
  let kills = 0;
  let midway = 0;
  for (;;) {
    const before = sizeOf(out);
    const run = startVit([command, DIR, ...MODEL, ...extra, '-f', format, '-o', out, '--resume']);
    if (kills < 6) {
      // Once this run writes (its first rows change the file), kill it within the next 150 ms.
      await waitFor(() => sizeOf(out) !== before, run.ended);
      await sleep(random() * 150);
      if (!run.ended()) {
        run.child.kill('SIGKILL');
        kills++;
      }
    }
    const r = await run.result;
    if (r.signal === 'SIGKILL') {
      if (sizeOf(out) > 0) midway++;
      // Killed while appending: the manifest says so, and vit merge would refuse the file.
      if (existsSync(`${out}.vit.json`)) assert.equal(manifestOf(out).unfinished, true, `${format}: killed resume not marked unfinished`);
      continue;
    }
    assert.equal(r.code, 3, r.stderr);
    break;
  }
  assert.ok(readFileSync(out).equals(readFileSync(ref)), `${format}: resumed output differs from the uninterrupted one`);
  assert.equal(manifestOf(out).unfinished, undefined, `${format}: finished, yet marked unfinished`);
  if (format === 'npy') {
    assert.ok(readFileSync(join(tmp, `killed-${command}.paths.txt`)).equals(readFileSync(join(tmp, `ref-${command}.paths.txt`))));
  }
  return { kills, midway };
}

test('resume: kill -9 at random moments, then --resume, gives exactly the uninterrupted output (CSV, JSONL, JSON, npy)', async (t) => {
  let total = 0;
  for (const [i, [command, format, extra]] of ([
    ['classify', 'csv', ['-k', '3']], ['classify', 'jsonl', []], ['classify', 'json', []], ['embed', 'npy', []],
  ] as const).entries()) {
    const { kills, midway } = await killAndResume(command, format, 1000 + i, [...extra]);
    t.diagnostic(`${command} ${format}: ${kills} kills, ${midway} of them with rows written`);
    total += midway;
  }
  assert.ok(total >= 4, `only ${total} kills landed after rows were written`);
});

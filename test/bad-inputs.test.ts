/**
 * `vit classify` over the bad-input corpus (test/fixtures/bad, from scripts/make_bad_inputs.ts) plus the
 * kinds only a running system can make (unreadable, broken symlink, FIFO, a directory named like an image,
 * awkward path names, a huge image), mixed with good files in shared batches: each input gives its exact
 * result or its exact error reason, and the good files' rows are what they are without the bad ones.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { chmodSync, copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import sharp from 'sharp';
import { PACKAGE_ROOT } from '../src/io/paths.js';
import type { BadInput } from '../scripts/make_bad_inputs.js';
import { runVit, type RunResult } from './helpers/cli.js';
import { BAD, IMAGES, modelDir } from './helpers/golden.js';
import { png } from './helpers/png.js';

const manifest = JSON.parse(readFileSync(join(BAD, 'manifest.json'), 'utf8')) as BadInput[];
const GOOD = [0, 1, 2, 3].map((i) => join(IMAGES, `odd40_${i}.png`));
const AS_ROOT = process.getuid?.() === 0;
const tmp = mkdtempSync(join(tmpdir(), 'vit-bad-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

interface Row { path: string; predictions?: { index: number; label: string; score: number; logit: number }[]; error?: string }

/** Kinds made here at run time: the path, and the twin whose results it must have or its error reason. */
interface Made { path: string; kind: string; twin?: string; error?: string }

/** The huge image is one flat colour, so it must classify exactly as a flat image at the model size. */
async function hugeFlatJpeg(path: string): Promise<string> {
  const background = { r: 200, g: 60, b: 90 };
  const jpeg = (width: number, height: number) => sharp({ create: { width, height, channels: 3, background } }).jpeg({ quality: 90 });
  await jpeg(8000, 6000).toFile(path);
  // Flat 8×8 blocks decode alike whatever the image size: one 16×16 MCU gives the decoded colour.
  const px = await sharp(await jpeg(16, 16).toBuffer()).raw().toBuffer();
  const twin = join(tmp, 'huge-twin.png');
  writeFileSync(twin, png(48, 48, 8, 2, Array.from({ length: 48 }, () => Buffer.concat(Array.from({ length: 48 }, () => px.subarray(0, 3))))));
  return twin;
}

async function runtimeKinds(): Promise<Made[]> {
  const made: Made[] = [];
  const link = join(tmp, 'broken-link.jpg');
  symlinkSync(join(tmp, 'nowhere.jpg'), link);
  made.push({ path: link, kind: 'broken symlink', error: 'no such file' });
  const goodLink = join(tmp, 'good-link.png');
  symlinkSync(GOOD[1], goodLink);
  made.push({ path: goodLink, kind: 'symlink to a good file', twin: GOOD[1] });
  mkdirSync(join(tmp, 'folder.jpg'));
  made.push({ path: join(tmp, 'folder.jpg'), kind: 'directory named like an image', error: 'is a directory' });
  const fifo = join(tmp, 'pipe.jpg');
  const mk = spawn('mkfifo', [fifo]);
  await new Promise((res) => mk.on('close', res));
  made.push({ path: fifo, kind: 'FIFO named .jpg (would block a plain read)', error: 'not a regular file' });
  const odd = join(tmp, 'a, "quoted"\nnew line ünïcødé ☃ 猫.png');
  copyFileSync(GOOD[2], odd);
  made.push({ path: odd, kind: 'path with a comma, quotes, a newline and unicode', twin: GOOD[2] });
  made.push({ path: join(tmp, 'missing.png'), kind: 'file that does not exist', error: 'no such file' });
  const huge = join(tmp, 'huge.jpg');
  made.push({ path: huge, kind: 'huge valid image (8000×6000 JPEG)', twin: await hugeFlatJpeg(huge) });
  if (!AS_ROOT) {
    const locked = join(tmp, 'unreadable.png');
    copyFileSync(GOOD[0], locked);
    chmodSync(locked, 0o000);
    made.push({ path: locked, kind: 'unreadable file (chmod 000)', error: 'permission denied' });
  }
  return made;
}

const MODEL = ['-m', modelDir('odd40', 'hf'), '-k', '7', '-f', 'jsonl', '-b', '4'];
let cases: Made[];
let mixed: RunResult;
let rows: Map<string, Row>;
let alone: RunResult;

/** NUL-separated so that the path with a newline in it goes through stdin. */
const classify = (paths: string[]) => runVit(['classify', '-', '-0', ...MODEL], { input: paths.join('\0') });

before(async () => {
  cases = [
    ...manifest.map((m) => ({ path: join(BAD, m.file), kind: m.kind, twin: m.twin && join(BAD, m.twin), error: m.error })),
    ...await runtimeKinds(),
  ];
  // Good files between bad ones, and every twin, in shared batches of 4.
  const twins = [...new Set(cases.flatMap((c) => (c.twin ? [c.twin] : [])))];
  const inputs: string[] = [];
  cases.forEach((c, i) => {
    inputs.push(c.path);
    if (i % 5 === 2) inputs.push(GOOD[(i / 5) % 4 | 0]);
  });
  inputs.push(...twins.filter((t) => !inputs.includes(t)));
  mixed = await classify(inputs);
  rows = new Map(mixed.stdout.split('\n').filter(Boolean).map((l) => JSON.parse(l) as Row).map((r) => [r.path, r]));
  alone = await classify(GOOD);
});

test('bad inputs: the corpus has at least 20 kinds, and the run over all of them finishes with exit 3', () => {
  assert.ok(cases.length >= 20 + 6, `${cases.length} kinds`);
  assert.equal(mixed.code, 3, mixed.stderr);
  const failed = cases.filter((c) => c.error).length;
  assert.match(mixed.stderr, new RegExp(`${failed} of \\d+ inputs failed`));
});

test('bad inputs: every broken kind is an error row with its exact short reason', () => {
  for (const c of cases.filter((k) => k.error)) {
    const row = rows.get(c.path);
    assert.ok(row, `no row for ${c.kind}`);
    assert.equal(row.error, c.error, c.kind);
    assert.equal(row.predictions, undefined, c.kind);
  }
});

test('bad inputs: every odd but valid kind gives exactly the results of its plain-RGB twin', () => {
  for (const c of cases.filter((k) => k.twin)) {
    const row = rows.get(c.path);
    const twin = rows.get(c.twin!);
    assert.ok(row && twin, `no row for ${c.kind}`);
    assert.equal(row.error, undefined, `${c.kind}: ${row.error}`);
    assert.deepEqual(row.predictions, twin.predictions, c.kind);
    assert.equal(row.predictions!.length, 7);
  }
});

test('bad inputs: good files among bad ones have the rows of a run over the good files alone', () => {
  assert.equal(alone.code, 0, alone.stderr);
  for (const line of alone.stdout.split('\n').filter(Boolean)) {
    const want = JSON.parse(line) as Row;
    assert.deepEqual(rows.get(want.path), want);
  }
  assert.equal(rows.size, new Set(rows.keys()).size);
});

test('bad inputs: an unreadable file (chmod 000) is "permission denied"', {
  skip: AS_ROOT ? 'running as root, where chmod 000 files stay readable: the case cannot be made' : false,
}, () => {
  assert.equal(rows.get(join(tmp, 'unreadable.png'))?.error, 'permission denied');
});

test('bad inputs: decompression bombs are refused from the header, fast and with little memory', async (t) => {
  // A fresh process: its peak RSS before and after the decode attempt (after a warm-up decode that loads
  // libvips), and the time taken. Decoding 50000×50000 RGB would need 7.5 GB.
  const script = `
    const { decodeRgb } = await import(${JSON.stringify(join(PACKAGE_ROOT, 'dist', 'src', 'io', 'images.js'))});
    await decodeRgb(${JSON.stringify(GOOD[0])});
    const out = {};
    for (const f of ['bomb.png', 'bomb.jpg']) {
      const rss = process.resourceUsage().maxRSS;
      const t0 = performance.now();
      const reason = await decodeRgb(${JSON.stringify(BAD)} + '/' + f).then(() => 'decoded', (e) => e.message);
      out[f] = { reason, ms: performance.now() - t0, grewKB: process.resourceUsage().maxRSS - rss };
    }
    console.log(JSON.stringify(out));`;
  const child = spawn(process.execPath, ['--input-type=module', '-e', script], { cwd: PACKAGE_ROOT });
  let stdout = '';
  child.stdout.on('data', (d) => (stdout += d));
  const code = await new Promise((res) => child.on('close', res));
  assert.equal(code, 0);
  const got = JSON.parse(stdout) as Record<string, { reason: string; ms: number; grewKB: number }>;
  for (const [f, g] of Object.entries(got)) {
    t.diagnostic(`${f}: "${g.reason}" in ${g.ms.toFixed(1)} ms, peak RSS +${(g.grewKB / 1024).toFixed(1)} MB`);
    assert.match(g.reason, /^image too large \(\d+×\d+ pixels\)$/);
    assert.ok(g.ms < 2000, `${f}: ${g.ms} ms`);
    assert.ok(g.grewKB < 50 * 1024, `${f}: peak RSS grew ${g.grewKB} kB`);
  }
});

test('bad inputs: a listed name with a NUL byte (no file can have one) is an error row saying so; the rest go on', async () => {
  const r = await runVit(['classify', '-', ...MODEL], { input: `nul\0byte.png\n${GOOD[0]}\n` });
  assert.equal(r.code, 3, r.stderr);
  const got = r.stdout.split('\n').filter(Boolean).map((l) => JSON.parse(l) as Row);
  assert.deepEqual(got.map((row) => [row.path, row.error ?? null]), [['nul\0byte.png', 'not a file name (has a NUL byte)'], [GOOD[0], null]]);
});

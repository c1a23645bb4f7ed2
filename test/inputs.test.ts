import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { closeSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { Readable } from 'node:stream';
import { after, before, test } from 'node:test';
import { pathToFileURL } from 'node:url';
import { UsageError } from '../src/errors.js';
import { PACKAGE_ROOT } from '../src/io/paths.js';
import { runVit, TEST_CACHE, VIT_BIN } from './helpers/cli.js';
import {
  collectInputs, imageExtensions, inShard, parseShard, PATH_LIST_ENTRY_MAX, readPathList, resolveShard, shardOf, uniquePaths, type Shard,
} from '../src/io/inputs.js';

const root = mkdtempSync(join(tmpdir(), 'vit-inputs-'));
after(() => rmSync(root, { recursive: true, force: true }));

const FILES = [
  'photos/b.png', 'photos/a.JPG', 'photos/C.jpeg', 'photos/notes.txt', 'photos/.hidden.jpg', 'photos/x.Tiff',
  'photos/sub/deeper/d.webp', 'photos/sub/e.gif', 'photos/sub/f.avif', 'photos/sub/readme.md',
  'photos/Z/z.tif', 'photos/café, "quoted".png', 'photos/no-extension',
  'other/o.png',
];

before(() => {
  for (const f of FILES) {
    mkdirSync(dirname(join(root, f)), { recursive: true });
    writeFileSync(join(root, f), 'x');
  }
  // Loops: a link to the parent, a link to the walk root, and a link to a sibling (walked, not a loop).
  symlinkSync('..', join(root, 'photos/sub/up'));
  symlinkSync(join(root, 'photos'), join(root, 'photos/sub/deeper/top'));
  symlinkSync('../../other', join(root, 'photos/sub/other-link'));
});

const opts = { cwd: root, stdinIsTTY: true };

function stdin(text: string): Readable {
  return Readable.from([Buffer.from(text, 'utf8')]);
}

test('inputs: directories are walked recursively, images only, case-insensitive, sorted by bytes', { timeout: 20_000 }, async () => {
  const got = await collectInputs(['photos'], opts);
  assert.deepEqual(got, [
    'photos/C.jpeg', // upper case sorts first in byte order
    'photos/Z/z.tif',
    'photos/a.JPG',
    'photos/b.png',
    'photos/café, "quoted".png',
    'photos/sub/deeper/d.webp',
    'photos/sub/e.gif',
    'photos/sub/f.avif',
    'photos/sub/other-link/o.png', // a link to a directory outside the walk is followed
    'photos/x.Tiff',
  ]);
});

test('inputs: symbolic-link loops end, with no file listed twice through them', { timeout: 20_000 }, async () => {
  // From photos/sub, both `up` and `deeper/top` lead to photos, outside the walk: each is walked once (as
  // find -L does), down to photos/sub again, which is where the loop is cut.
  const top = ['C.jpeg', 'Z/z.tif', 'a.JPG', 'b.png', 'café, "quoted".png', 'x.Tiff'];
  assert.deepEqual(await collectInputs(['photos/sub'], opts), [
    'photos/sub/deeper/d.webp',
    ...top.map((f) => `photos/sub/deeper/top/${f}`),
    'photos/sub/e.gif',
    'photos/sub/f.avif',
    'photos/sub/other-link/o.png',
    ...top.map((f) => `photos/sub/up/${f}`),
  ]);
  // From photos, both links point back into the walk: nothing is listed through them.
  const all = await collectInputs(['photos'], opts);
  assert.ok(!all.some((p) => p.includes('/up/') || p.includes('/top/')), all.join('\n'));
});

test('inputs: results keep the spelling of the argument (relative, ./, trailing slash, absolute)', async () => {
  assert.equal((await collectInputs(['./photos/'], opts))[0], './photos/C.jpeg');
  assert.equal((await collectInputs(['photos/Z'], opts))[0], 'photos/Z/z.tif');
  assert.equal((await collectInputs([join(root, 'photos/Z')], opts))[0], join(root, 'photos/Z/z.tif'));
  // An existing file is kept as written, even one that is not an image (it becomes an error row later).
  assert.deepEqual(await collectInputs(['photos/notes.txt', './photos/b.png'], opts), ['photos/notes.txt', './photos/b.png']);
});

test('inputs: globs are expanded and sorted; no match and missing files are kept as written', async () => {
  assert.deepEqual(await collectInputs(['photos/*.png'], opts), ['photos/b.png', 'photos/café, "quoted".png']);
  assert.deepEqual(await collectInputs(['photos/**/*.{gif,webp}'], opts), ['photos/sub/deeper/d.webp', 'photos/sub/e.gif']);
  assert.deepEqual(await collectInputs(['nothing/*.jpg', 'missing.jpg', 'photos/e.gif'], opts), ['nothing/*.jpg', 'missing.jpg', 'photos/e.gif']);
  // A quoted glob is what the shell's expansion gives: the files it matches, and the directories walked.
  const shell = ['photos/C.jpeg', 'photos/Z', 'photos/a.JPG', 'photos/b.png', 'photos/café, "quoted".png', 'photos/no-extension', 'photos/notes.txt', 'photos/sub', 'photos/x.Tiff'];
  const expanded: string[] = [];
  for (const p of shell) expanded.push(...await collectInputs([p], opts));
  assert.deepEqual(await collectInputs(['photos/*'], opts), expanded);
  assert.ok(expanded.includes('photos/sub/e.gif') && expanded.includes('photos/Z/z.tif'));
});

test('inputs: the order of arguments is kept', async () => {
  const got = await collectInputs(['other', 'missing.png', 'photos/Z', 'other/o.png'], opts);
  assert.deepEqual(got, ['other/o.png', 'missing.png', 'photos/Z/z.tif', 'other/o.png']);
});

test('inputs: an empty argument is one input that names no file, never the working directory', async () => {
  assert.deepEqual(await collectInputs(['', 'other'], opts), ['', ...await collectInputs(['other'], opts)]);
  const r = await runVit(['classify', '', '-f', 'jsonl', '-q'], { cwd: root });
  assert.equal(r.code, 3, r.stderr);
  assert.deepEqual(r.stdout.trim().split('\n').map((l) => JSON.parse(l)), [{ path: '', error: 'no such file' }]);
});

test('inputs: - reads a newline-separated list from stdin, in order, CRLF and trailing newline handled', async () => {
  const list = 'photos/b.png\r\nz/last first.jpg\nphotos/a.JPG\n\nphotos/dir with, comma/x.png\n';
  const got = await collectInputs(['other', '-', 'missing.png'], { ...opts, stdin: stdin(list) });
  assert.deepEqual(got, ['other/o.png', 'photos/b.png', 'z/last first.jpg', 'photos/a.JPG', 'photos/dir with, comma/x.png', 'missing.png']);
  // The last line may lack its newline.
  assert.deepEqual(await readPathList(stdin('a.png\nb.png')), ['a.png', 'b.png']);
});

test('inputs: the entries of a stdin list are checked as they arrive; one past 64 KiB is a usage error, not a full memory', async () => {
  // Entries and a CRLF split across chunk boundaries.
  const split = Readable.from([Buffer.from('a/b'), Buffer.from('c.png\r'), Buffer.from('\nd.png\n\ne'), Buffer.from('.png')]);
  assert.deepEqual(await readPathList(split), ['a/bc.png', 'd.png', 'e.png']);
  const long = 'x'.repeat(PATH_LIST_ENTRY_MAX);
  assert.deepEqual(await readPathList(stdin(`a.png\n${long}\n`)), ['a.png', long], 'exactly the limit is an entry');
  const tooLong = /^the list on stdin has an entry longer than 65536 bytes after 1 paths: it is not a list of paths/;
  await assert.rejects(readPathList(stdin(`a.png\n${long}x\nb.png\n`)), (e: unknown) => e instanceof UsageError && tooLong.test(e.message));
  // An endless line (what /dev/zero gives) stops after the limit instead of being read to the end.
  let given = 0;
  const endless = Readable.from((function* () {
    yield Buffer.from('a.png\n');
    for (;;) {
      given += 4096;
      yield Buffer.alloc(4096);
    }
  })());
  await assert.rejects(readPathList(endless), (e: unknown) => e instanceof UsageError && tooLong.test(e.message));
  assert.ok(given < 1 << 20, `read ${given} bytes`);
});

test('inputs: a shard keeps its own paths as the list is read; over 125,000 inputs from a folder or beside other arguments do not overflow the stack', async () => {
  const many = Array.from({ length: 200_000 }, (_, i) => `/data/train/n${i % 1000}/img_${i}.JPEG`);
  // 64 KiB chunks, as a pipe gives them, so that entries straddle chunk boundaries.
  const chunked = (text: string) => Readable.from(Array.from({ length: Math.ceil(text.length / 65536) }, (_, i) => Buffer.from(text.slice(i * 65536, (i + 1) * 65536))));
  const third: Shard = { index: 3, count: 7, from: 'test' };
  let asked = 0;
  const kept = await readPathList(chunked(`${many.join('\n')}\n`), false, (p) => (asked++, inShard(third)(p)));
  assert.equal(asked, many.length);
  assert.deepEqual(kept, many.filter(inShard(third)));
  // "Maximum call stack size exceeded" from push(...list) before.
  const all = await collectInputs(['-', 'last.png'], { ...opts, stdin: chunked(many.join('\n')) });
  assert.equal(all.length, many.length + 1);
  assert.equal(all.at(-1), 'last.png');
  // A folder of 150,000 images: the same overflow (vit classify big/ said "Maximum call stack size exceeded").
  const big = join(root, 'big');
  mkdirSync(big);
  for (let i = 0; i < 150_000; i++) closeSync(openSync(join(big, `${i}.jpg`), 'w'));
  const walked = await collectInputs(['big', 'last.png'], opts);
  assert.equal(walked.length, 150_001);
  assert.deepEqual(walked.slice(0, 3), ['big/0.jpg', 'big/1.jpg', 'big/10.jpg']);
  rmSync(big, { recursive: true });
  assert.deepEqual(await collectInputs(['-', 'photos'], { ...opts, stdin: stdin('x.png\ny.png'), keep: (p) => !p.startsWith('photos/b') && p !== 'y.png' }),
    (await collectInputs(['-', 'photos'], { ...opts, stdin: stdin('x.png\ny.png') })).filter((p) => !p.startsWith('photos/b') && p !== 'y.png'));
});

test('inputs: vit classify - --shard 1/1000 over a list of 2 million paths holds its shard, not the list', async () => {
  const PRELOAD = pathToFileURL(join(PACKAGE_ROOT, 'dist', 'test', 'helpers', 'peak-rss.js')).href;
  const peakFile = join(root, 'peak-list');
  const child = spawn(process.execPath, ['--import', PRELOAD, VIT_BIN, 'classify', '-', '--shard', '1/1000', '-f', 'jsonl', '-q'], {
    env: { ...process.env, CI: 'true', XDG_CACHE_HOME: TEST_CACHE, VIT_TEST_PEAK_FILE: peakFile }, stdio: ['pipe', 'pipe', 'pipe'],
  });
  let rows = 0;
  child.stdout.on('data', (d: Buffer) => (rows += d.toString().split('\n').length - 1));
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d));
  const closed = new Promise<number | null>((res) => child.on('close', res));
  const N = 2_000_000;
  for (let i = 0; i < N; i += 10_000) {
    const block = Array.from({ length: 10_000 }, (_, j) => `/no/such/imagenet/train/n${String((i + j) % 1000).padStart(8, '0')}/img_${i + j}.JPEG\n`).join('');
    if (!child.stdin.write(block)) await once(child.stdin, 'drain');
  }
  child.stdin.end();
  const code = await closed;
  assert.equal(code, 3, stderr.slice(0, 500)); // every path is missing: a row each, exit 3
  const mine = Array.from({ length: N }, (_, i) => `/no/such/imagenet/train/n${String(i % 1000).padStart(8, '0')}/img_${i}.JPEG`).filter(inShard({ index: 1, count: 1000, from: 'test' })).length;
  assert.equal(rows, mine);
  const peakMiB = Number(readFileSync(peakFile, 'utf8')) / 1024;
  // The list is 110 MB; read whole, then cut to the shard, it took 750 MiB of RSS (now about 134).
  assert.ok(peakMiB < 300, `peak RSS ${peakMiB.toFixed(0)} MiB`);
});

test('inputs: /dev/zero as the stdin list is one line of usage error, at once (it filled 5.9 GB in 30 s)', () => {
  const zero = openSync('/dev/zero', 'r');
  try {
    const r = spawnSync(process.execPath, [VIT_BIN, 'classify', '-'], { stdio: [zero, 'pipe', 'pipe'], encoding: 'utf8', timeout: 60_000, env: { ...process.env, CI: 'true', XDG_CACHE_HOME: TEST_CACHE } });
    assert.equal(r.status, 2, r.stderr?.slice(0, 300));
    assert.match(r.stderr, /^vit: the list on stdin has an entry longer than 65536 bytes after 0 paths/);
    assert.ok(r.stderr.length < 1000);
    assert.equal(r.stdout, '');
  } finally {
    closeSync(zero);
  }
});

test('inputs: NUL-separated stdin keeps newlines and CRs inside names', async () => {
  const list = 'b.png\0with\nnewline.png\0ends with cr\r.png\0';
  assert.deepEqual(await collectInputs(['-'], { ...opts, nul: true, stdin: stdin(list) }), ['b.png', 'with\nnewline.png', 'ends with cr\r.png']);
});

test('inputs: no arguments read stdin on a pipe, and are a UsageError on a terminal', async () => {
  assert.deepEqual(await collectInputs([], { cwd: root, stdinIsTTY: false, stdin: stdin('x.png\ny.png\n') }), ['x.png', 'y.png']);
  await assert.rejects(collectInputs([], { cwd: root, stdinIsTTY: true, stdin: stdin('') }),
    (e: unknown) => e instanceof UsageError && /directories/.test(e.message) && /-/.test(e.message));
});

test('inputs: the extension list', () => {
  for (const e of ['jpg', 'jpeg', 'png', 'webp', 'gif', 'tif', 'tiff', 'avif']) assert.ok(imageExtensions().includes(e), e);
});

test('inputs: a path given twice is kept once, at its first place', () => {
  assert.deepEqual(uniquePaths(['a', 'b', 'a', 'c', 'b']), { paths: ['a', 'b', 'c'], repeated: 2 });
});

test('shards: a path\'s shard is the first 8 bytes of sha256(path) mod N, plus 1', () => {
  // Known answers computed with Python's hashlib: int.from_bytes(sha256(p).digest()[:8], 'big') % n + 1.
  assert.equal(shardOf('photos/a.jpg', 8), 8);
  assert.equal(shardOf('photos/b.jpg', 8), 7);
  assert.equal(shardOf('ünïcödé ☃.png', 3), 2);
  assert.equal(shardOf('x', 2), 1);
  assert.equal(shardOf('/data/img/000123.jpg', 1000), 36);
});

test('shards: every input is in exactly one shard, shards are even, and adding files moves none', () => {
  const paths = Array.from({ length: 10_000 }, (_, i) => `scrape/${i % 97}/img_${i}.jpg`);
  const N = 8;
  const shards = Array.from({ length: N }, (_, k) => paths.filter(inShard({ index: k + 1, count: N, from: 'test' })));
  assert.deepEqual(shards.flat().sort(), [...paths].sort(), 'a partition');
  for (const s of shards) assert.ok(Math.abs(s.length - paths.length / N) < 0.1 * paths.length / N, `shard of ${s.length}`);
  for (const s of shards) assert.deepEqual(s, paths.filter((p) => s.includes(p)), 'input order kept');
  const more = [...paths.slice(0, 5000), 'new/1.jpg', ...paths.slice(5000), 'new/2.jpg'];
  const third: Shard = { index: 3, count: N, from: 'test' };
  assert.deepEqual(more.filter(inShard(third)).filter((p) => !p.startsWith('new/')), shards[2]);
});

test('shards: --shard K/N, Kubernetes and Slurm environments, and bad values as usage errors', () => {
  const usage = (f: () => unknown, re: RegExp) => assert.throws(f, (e: unknown) => e instanceof UsageError && re.test(e.message), String(re));
  assert.deepEqual(parseShard('2/8'), { index: 2, count: 8, from: '--shard' });
  assert.deepEqual(parseShard(' 1 / 1 '), { index: 1, count: 1, from: '--shard' });
  for (const bad of ['0/8', '9/8', '2/0', '2', 'a/b', '-1/4', '1.5/4', '']) usage(() => parseShard(bad), /shard/);
  assert.equal(resolveShard({}, {}), null);
  // Kubernetes Indexed Job: a 0-based index, and a count it does not set.
  assert.deepEqual(resolveShard({}, { JOB_COMPLETION_INDEX: '0', VIT_SHARD_COUNT: '4' }), { index: 1, count: 4, from: 'JOB_COMPLETION_INDEX' });
  assert.deepEqual(resolveShard({ shardCount: 4 }, { JOB_COMPLETION_INDEX: '3' }), { index: 4, count: 4, from: 'JOB_COMPLETION_INDEX' });
  usage(() => resolveShard({}, { JOB_COMPLETION_INDEX: '3' }), /VIT_SHARD_COUNT/);
  usage(() => resolveShard({}, { JOB_COMPLETION_INDEX: '4', VIT_SHARD_COUNT: '4' }), /shard 5 of 4/);
  usage(() => resolveShard({}, { JOB_COMPLETION_INDEX: 'x', VIT_SHARD_COUNT: '4' }), /JOB_COMPLETION_INDEX/);
  usage(() => resolveShard({}, { JOB_COMPLETION_INDEX: '1', VIT_SHARD_COUNT: '0' }), /VIT_SHARD_COUNT/);
  // Slurm job arrays: --array=5-8 gives IDs 5..8, MIN 5, COUNT 4; --array=0-30:10 steps by 10.
  const slurm = (id: string, min: string, count: string, step?: string) =>
    resolveShard({}, { SLURM_ARRAY_TASK_ID: id, SLURM_ARRAY_TASK_MIN: min, SLURM_ARRAY_TASK_COUNT: count, SLURM_ARRAY_TASK_STEP: step });
  assert.deepEqual(slurm('6', '5', '4'), { index: 2, count: 4, from: 'SLURM_ARRAY_TASK_ID' });
  assert.deepEqual(slurm('30', '0', '4', '10'), { index: 4, count: 4, from: 'SLURM_ARRAY_TASK_ID' });
  usage(() => slurm('4', '5', '4'), /SLURM_ARRAY_TASK_ID 4/);
  usage(() => slurm('9', '5', '4'), /shard 5 of 4/);
  usage(() => resolveShard({}, { SLURM_ARRAY_TASK_ID: '1' }), /SLURM_ARRAY_TASK_COUNT/);
  // --shard wins over the environment; 1/1 is everything; --shard-count alone has nothing to count.
  assert.deepEqual(resolveShard({ shard: '1/1' }, { JOB_COMPLETION_INDEX: '3' }), { index: 1, count: 1, from: '--shard' });
  usage(() => resolveShard({ shard: '1/2', shardCount: 2 }, {}), /--shard-count/);
  usage(() => resolveShard({ shardCount: 2 }, {}), /--shard-count/);
});

/**
 * Tar archives as inputs (WebDataset shards): members become inputs TARPATH/MEMBER, decoded through the same
 * pool as files (so a tar of the fixture images gives the loose files' logits), broken archives become error
 * rows, --shard gives whole archives to one shard (which never opens the others), and --resume and
 * `vit merge --inputs` know the member names. Archives are written with tar-stream's packer.
 */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { gzipSync } from 'node:zlib';
import { shardOf } from '../src/io/inputs.js';
import { ByteBudget, listTar, TAR_MEMBER_LIMIT } from '../src/io/tar.js';
import { expandTars } from '../src/io/tar-inputs.js';
import { runVit } from './helpers/cli.js';
import { FIXTURES, maxAbsDiff, modelDir, readGolden } from './helpers/golden.js';
import { dataOffset, tarBytes, withSize, writeTar, type TarEntry } from './helpers/tars.js';

const g = readGolden('odd40');
const images = g.images.map((im) => join(FIXTURES, '..', '..', im.file));
const MODEL = ['-m', modelDir('odd40', 'hf')];
let tmp: string;

interface Row { path: string; predictions?: { index: number; logit: number }[]; error?: string }
const jsonl = (text: string): Row[] => text.trim().split('\n').filter(Boolean).map((l) => JSON.parse(l) as Row);
const logits = (r: Row) => {
  const out: number[] = [];
  for (const p of r.predictions!) out[p.index] = p.logit;
  return out;
};

/** The fixture images as members (named as in a WebDataset shard), with the sidecars a shard carries. */
const members = (prefix = ''): TarEntry[] => images.flatMap((file, i) => [
  { name: `${prefix}${String(i).padStart(6, '0')}.png`, data: readFileSync(file) },
  { name: `${prefix}${String(i).padStart(6, '0')}.json`, data: Buffer.from(`{"key": ${i}}`) },
]);

before(() => {
  tmp = mkdtempSync(join(tmpdir(), 'vit-tar-'));
});
after(() => rmSync(tmp, { recursive: true, force: true }));

test('tar inputs: a tar (and a .tar.gz) of the fixture images gives the loose files\' logits, members named TAR/MEMBER', async () => {
  const tar = join(tmp, '00000.tar');
  await writeTar(tar, members());
  const tgz = join(tmp, '00001.tar.gz');
  await writeTar(tgz, members(), true);
  const loose = await runVit(['classify', ...images, ...MODEL, '-k', '7', '-f', 'jsonl']);
  assert.equal(loose.code, 0, loose.stderr);
  for (const archive of [tar, tgz]) {
    const r = await runVit(['classify', archive, ...MODEL, '-k', '7', '-f', 'jsonl']);
    assert.equal(r.code, 0, r.stderr);
    const rows = jsonl(r.stdout);
    assert.deepEqual(rows.map((x) => x.path), images.map((_, i) => `${archive}/${String(i).padStart(6, '0')}.png`), 'image members only, in archive order');
    rows.forEach((row, i) => assert.deepEqual(logits(row), logits(jsonl(loose.stdout)[i]), `${row.path}: the same pixels as the loose file`));
    const worst = Math.max(...rows.map((row, i) => maxAbsDiff(logits(row), g.images[i].logits)));
    assert.ok(worst < 1e-4, `logits off the torchvision golden by ${worst}`);
  }
});

test('tar inputs: which members are inputs (images, regular files, not hidden, first of a repeated name)', async () => {
  const png = readFileSync(images[0]);
  const tar = join(tmp, 'members.tar');
  await writeTar(tar, [
    { name: './a/x.png', data: png },
    { name: 'a/', type: 'directory' },
    { name: 'a/notes.txt', data: Buffer.from('hi') },
    { name: 'a/._x.png', data: png },
    { name: '.cache/y.png', data: png },
    { name: 'UPPER.PNG', data: png },
    { name: 'link.png', type: 'symlink', linkname: 'UPPER.PNG' },
    { name: 'dup.png', data: png },
    { name: 'dup.png', data: Buffer.from('the second copy') },
    { name: `${'d'.repeat(120)}/long.png`, data: png },
  ]);
  const listing = await listTar(tar, new Set(['png']));
  assert.equal(listing.error, null);
  assert.deepEqual(listing.members, ['a/x.png', 'UPPER.PNG', 'dup.png', `${'d'.repeat(120)}/long.png`].map((m) => `${tar}/${m}`));
  const r = await runVit(['classify', tar, ...MODEL, '-f', 'jsonl']);
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(jsonl(r.stdout).map((x) => x.error ?? 'ok'), ['ok', 'ok', 'ok', 'ok'], 'dup.png decoded from its first copy');
});

test('tar inputs: a truncated archive gives an error row and the run goes on (exit 3)', async () => {
  const whole = await tarBytes(members());
  const cutInImage = join(tmp, 'cut-image.tar');
  writeFileSync(cutInImage, whole.subarray(0, dataOffset(whole, '000002.png') + 100));
  const cutInJson = join(tmp, 'cut-json.tar');
  writeFileSync(cutInJson, whole.subarray(0, dataOffset(whole, '000001.json') + 2));
  const notTar = join(tmp, 'photo.tar');
  writeFileSync(notTar, readFileSync(images[0]));
  const cutGzip = join(tmp, 'cut.tar.gz');
  const gz = gzipSync(whole);
  writeFileSync(cutGzip, gz.subarray(0, Math.floor(gz.length / 2)));
  // A zero-byte archive (a shard left empty by a failed copy) is refused, as GNU tar and Python's tarfile do.
  const empty = join(tmp, 'empty.tar');
  writeFileSync(empty, '');
  const r = await runVit(['classify', cutInImage, cutInJson, notTar, empty, cutGzip, images[0], ...MODEL, '-f', 'jsonl']);
  assert.equal(r.code, 3, r.stderr);
  const rows = jsonl(r.stdout);
  const show = rows.map((x) => [x.path.slice(tmp.length + 1), x.error ?? 'ok']);
  assert.deepEqual(show.slice(0, 3), [['cut-image.tar/000000.png', 'ok'], ['cut-image.tar/000001.png', 'ok'], ['cut-image.tar/000002.png', 'truncated tar archive']]);
  assert.deepEqual(show.slice(3, 6), [['cut-json.tar/000000.png', 'ok'], ['cut-json.tar/000001.png', 'ok'], ['cut-json.tar', 'truncated tar archive after 000001.png']]);
  assert.deepEqual(show[6], ['photo.tar', 'not a tar archive']);
  assert.deepEqual(show[7], ['empty.tar', 'not a tar archive (empty file)']);
  assert.match(show[show.length - 2][1], /truncated or corrupt gzip data/);
  assert.equal(rows[rows.length - 1].path, images[0]);
  assert.equal(rows[rows.length - 1].error, undefined, 'the run went on');
  assert.match(r.stderr, /inputs failed/);
});

test('tar inputs: a member over the size limit is an error row, read past without being held', async () => {
  const big = await tarBytes([{ name: 'a.png', data: readFileSync(images[0]) }, { name: 'big.png', data: Buffer.alloc(600) }, { name: 'c.png', data: readFileSync(images[1]) }]);
  // The header says more than the limit; the archive then ends early, so even a reader that tried would fail.
  const tar = join(tmp, 'big.tar');
  writeFileSync(tar, withSize(big, 'big.png', TAR_MEMBER_LIMIT + 1).subarray(0, dataOffset(big, 'big.png') + 512));
  const r = await runVit(['classify', tar, ...MODEL, '-f', 'jsonl']);
  assert.equal(r.code, 3, r.stderr);
  assert.deepEqual(jsonl(r.stdout).map((x) => x.error ?? 'ok'), ['ok', `member too large (${TAR_MEMBER_LIMIT + 1} bytes; the limit is ${TAR_MEMBER_LIMIT})`]);
});

test('tar inputs: found by a directory walk and by a glob; a directory named x.tar is walked', async () => {
  const dir = join(tmp, 'walk');
  mkdirSync(join(dir, 'dir.tar'), { recursive: true });
  await writeTar(join(dir, 'b.tar'), members());
  writeFileSync(join(dir, 'dir.tar', 'loose.png'), readFileSync(images[0]));
  writeFileSync(join(dir, 'a.png'), readFileSync(images[1]));
  const walked = await runVit(['classify', dir, ...MODEL, '-f', 'jsonl']);
  assert.equal(walked.code, 0, walked.stderr);
  assert.deepEqual(jsonl(walked.stdout).map((x) => x.path.slice(dir.length + 1)), ['a.png', 'b.tar/000000.png', 'b.tar/000001.png', 'b.tar/000002.png', 'b.tar/000003.png', 'dir.tar/loose.png']);
  // As the shell's expansion of the same pattern: the archive's members, and the directory dir.tar walked.
  const globbed = await runVit(['classify', join(dir, '*.tar'), ...MODEL, '-f', 'jsonl']);
  assert.equal(globbed.code, 0, globbed.stderr);
  assert.deepEqual(jsonl(globbed.stdout).map((x) => x.path.slice(dir.length + 1)), ['b.tar/000000.png', 'b.tar/000001.png', 'b.tar/000002.png', 'b.tar/000003.png', 'dir.tar/loose.png']);
});

test('tar inputs: --shard gives whole archives to one shard, which never opens the others', async () => {
  const dir = join(tmp, 'shards');
  mkdirSync(dir);
  const tars = Array.from({ length: 6 }, (_, i) => join(dir, `${String(i).padStart(5, '0')}.tar`));
  for (const t of tars) await writeTar(t, members());
  const full = await runVit(['classify', dir, ...MODEL, '-f', 'jsonl']);
  assert.equal(full.code, 0, full.stderr);
  const seen: string[] = [];
  for (const k of [1, 2]) {
    const r = await runVit(['classify', dir, ...MODEL, '-f', 'jsonl', '--shard', `${k}/2`]);
    assert.equal(r.code, 0, r.stderr);
    const rows = jsonl(r.stdout);
    const archives = new Set(rows.map((x) => x.path.slice(0, x.path.indexOf('.tar/') + 4)));
    for (const t of archives) assert.equal(shardOf(t, 2), k, `${t} belongs to shard ${shardOf(t, 2)}`);
    assert.equal(rows.length, archives.size * 4, 'every member of each of its archives');
    seen.push(...rows.map((x) => x.path));
  }
  assert.deepEqual(seen.sort(), jsonl(full.stdout).map((x) => x.path).sort(), 'the shards cover the run once');
  // The archives of shard 2 made unreadable: shard 1 still runs clean, having never opened them.
  for (const t of tars.filter((t) => shardOf(t, 2) === 2)) writeFileSync(t, 'not a tar');
  const one = await runVit(['classify', dir, ...MODEL, '-f', 'jsonl', '--shard', '1/2']);
  assert.equal(one.code, 0, one.stderr);
});

test('tar inputs: --resume skips members done; merge --inputs expands archives to their members', async () => {
  const dir = join(tmp, 'resume');
  mkdirSync(dir);
  await writeTar(join(dir, 'a.tar'), members());
  await writeTar(join(dir, 'b.tar'), members());
  writeFileSync(join(dir, 'c.png'), readFileSync(images[2]));
  const full = join(tmp, 'full.jsonl');
  assert.equal((await runVit(['classify', dir, ...MODEL, '-f', 'jsonl', '-o', full])).code, 0);
  const lines = readFileSync(full, 'utf8').split('\n');
  const out = join(tmp, 'resumed.jsonl');
  writeFileSync(out, lines.slice(0, 5).join('\n') + '\n');
  writeFileSync(`${out}.vit.json`, readFileSync(`${full}.vit.json`));
  const r = await runVit(['classify', dir, ...MODEL, '-f', 'jsonl', '-o', out, '--resume']);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stderr, /5 of 9 inputs already done/);
  assert.equal(readFileSync(out, 'utf8'), readFileSync(full, 'utf8'));

  const parts = [1, 2, 3].map((k) => join(tmp, `part-${k}.jsonl`));
  for (const [i, p] of parts.entries()) assert.equal((await runVit(['classify', dir, ...MODEL, '-f', 'jsonl', '-o', p, '--shard', `${i + 1}/3`])).code, 0);
  const merged = join(tmp, 'merged.jsonl');
  const m = await runVit(['merge', merged, ...parts, '--inputs', dir]);
  assert.equal(m.code, 0, m.stderr);
  assert.equal(readFileSync(merged, 'utf8'), readFileSync(full, 'utf8'));
});

test('tar inputs: --heatmap needs files to read again, so archives are refused up front (exit 2)', async () => {
  const tar = join(tmp, 'heat.tar');
  await writeTar(tar, members());
  const r = await runVit(['attention', tar, ...MODEL, '--heatmap', join(tmp, 'heat')]);
  assert.equal(r.code, 2, r.stderr);
  assert.match(r.stderr, /--heatmap reads each image again from its file; tar members are not files/);
});

test('tar inputs: expandTars keeps other inputs as they are; an unreadable "archive" stays a file input', async () => {
  const tar = join(tmp, 'x.tar');
  await writeTar(tar, members());
  const missing = join(tmp, 'missing.tar');
  const r = await expandTars([images[0], tar, missing]);
  assert.deepEqual(r.paths, [images[0], ...[0, 1, 2, 3].map((i) => `${tar}/00000${i}.png`), missing]);
  assert.deepEqual([...r.tars], [tar]);
  assert.equal(r.failed.size, 0);
});

test('tar inputs: an archive of 150,000 members expands (its listing was pushed as call arguments: "Maximum call stack size exceeded")', async () => {
  const tar = join(tmp, 'many.tar');
  await writeTar(tar, Array.from({ length: 150_000 }, (_, i) => ({ name: `${String(i).padStart(6, '0')}.jpg` })));
  const r = await expandTars([tar, images[0]]);
  assert.equal(r.paths.length, 150_001);
  assert.equal(r.paths[0], `${tar}/000000.jpg`);
  assert.equal(r.paths.at(-1), images[0]);
  rmSync(tar);
});

test('tar inputs: the read-ahead budget holds back a member until what is held fits', async () => {
  const budget = new ByteBudget(100);
  await budget.acquire(60);
  let second = false;
  const p = budget.acquire(60).then(() => (second = true));
  await new Promise((res) => setImmediate(res));
  assert.equal(second, false, 'waits: 60 + 60 > 100');
  budget.release(60);
  await p;
  assert.equal(second, true);
  budget.release(60);
  await budget.acquire(500);
  budget.release(500);
});

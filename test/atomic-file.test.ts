/**
 * Files written whole through a temporary name (src/io/atomic-file.ts) and every writer that goes through it:
 * a symbolic link planted under the temporary name (predictable: the process id) in a shared directory must be
 * replaced, never written through.
 */
import assert from 'node:assert/strict';
import { lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { replaceFile, writeNewFile } from '../src/io/atomic-file.js';
import { checkpointHash } from '../src/io/checkpoint-files.js';
import { writeHeatmap } from '../src/io/heatmap.js';
import { RepoCache } from '../src/io/hub-cache.js';
import { writeModelFolder } from '../src/io/model-folder.js';

const tmp = mkdtempSync(join(tmpdir(), 'vit-atomic-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

/** A directory with a file that must not change, and a function planting links to it. */
function scene(name: string): { dir: string; victim: string; plant(path: string): void; intact(): void } {
  const dir = mkdtempSync(join(tmp, `${name}-`));
  const victim = join(dir, 'victim');
  writeFileSync(victim, 'precious\n');
  return {
    dir,
    victim,
    plant: (path) => symlinkSync(victim, path),
    intact: () => assert.equal(readFileSync(victim, 'utf8'), 'precious\n'),
  };
}

test('atomic-file: writeNewFile never opens what is there; replaceFile replaces a planted link and leaves no temporary file', () => {
  const s = scene('direct');
  const target = join(s.dir, 'out.txt');
  s.plant(target);
  assert.throws(() => writeNewFile(target, { bytes: 'x' }), /EEXIST/);
  // A dangling link too: O_EXCL refuses it rather than creating its target.
  const dangling = join(s.dir, 'dangling');
  symlinkSync(join(s.dir, 'would-be-created'), dangling);
  assert.throws(() => writeNewFile(dangling, { bytes: 'x' }), /EEXIST/);
  assert.deepEqual(readdirSync(s.dir).sort(), ['dangling', 'out.txt', 'victim']);
  unlinkSync(target);

  s.plant(`${target}.${process.pid}.tmp`);
  replaceFile(target, { bytes: 'new\n' });
  s.intact();
  assert.equal(readFileSync(target, 'utf8'), 'new\n');
  // Chunks at their offsets, then cut to the size.
  replaceFile(target, { size: 6, chunks: [{ offset: 3, bytes: Buffer.from('def') }, { offset: 0, bytes: Buffer.from('abc') }] });
  assert.equal(readFileSync(target, 'utf8'), 'abcdef');
  assert.deepEqual(readdirSync(s.dir).sort(), ['dangling', 'out.txt', 'victim']);

  // A failure (a directory where the file goes) leaves no temporary file behind.
  const inDir = join(s.dir, 'sub');
  mkdirSync(inDir);
  assert.throws(() => replaceFile(inDir, { bytes: 'x' }));
  assert.deepEqual(readdirSync(s.dir).sort(), ['dangling', 'out.txt', 'sub', 'victim']);
});

test('atomic-file: vit attention --heatmap does not write through a planted link', () => {
  const h = scene('heatmap');
  const png = join(h.dir, 'a.png');
  h.plant(join(h.dir, `.a.png.${process.pid}.tmp`));
  writeHeatmap(png, Buffer.from('png bytes'));
  h.intact();
  assert.equal(readFileSync(png, 'utf8'), 'png bytes');
  assert.deepEqual(readdirSync(h.dir).sort(), ['a.png', 'victim']);
});

test('atomic-file: vit export does not write through planted links', () => {
  const e = scene('export');
  mkdirSync(join(e.dir, 'onnx'));
  e.plant(join(e.dir, `config.json.${process.pid}.tmp`));
  e.plant(join(e.dir, 'onnx', `model.onnx.${process.pid}.tmp`));
  writeModelFolder(e.dir, [
    { name: 'config.json', bytes: Buffer.from('{}') },
    { name: 'onnx/model.onnx', size: 4, chunks: [{ offset: 0, bytes: Buffer.from('onnx') }] },
  ]);
  e.intact();
  assert.equal(readFileSync(join(e.dir, 'config.json'), 'utf8'), '{}');
  assert.equal(readFileSync(join(e.dir, 'onnx', 'model.onnx'), 'utf8'), 'onnx');
  assert.deepEqual(readdirSync(join(e.dir, 'onnx')), ['model.onnx']);
});

test('atomic-file: the hub cache (shared between users on many clusters) does not write a ref through a planted link', () => {
  const r = scene('hub');
  const repo = new RepoCache(r.dir, 'org/model');
  const commit = 'a'.repeat(40);
  mkdirSync(join(repo.dir, 'refs'), { recursive: true });
  r.plant(join(repo.dir, 'refs', `main.${process.pid}.tmp`));
  repo.writeRef('main', commit);
  r.intact();
  assert.equal(repo.commitFor('main'), commit);
  assert.deepEqual(readdirSync(join(repo.dir, 'refs')), ['main']);
});

test('atomic-file: a checkpoint\'s remembered hash is not written through a planted link', () => {
  // Learn the memo's name, then plant a link under its temporary name.
  const c = scene('memo');
  const ckpt = join(c.dir, 'w.safetensors');
  writeFileSync(ckpt, 'weights');
  const memoDir = join(c.dir, 'memo');
  const digest = checkpointHash(ckpt, memoDir);
  const [memo] = readdirSync(memoDir);
  unlinkSync(join(memoDir, memo));
  c.plant(join(memoDir, `${memo}.${process.pid}.tmp`));
  assert.equal(checkpointHash(ckpt, memoDir), digest);
  c.intact();
  assert.deepEqual(readdirSync(memoDir), [memo]);
  assert.ok(lstatSync(join(memoDir, memo)).isFile());
});

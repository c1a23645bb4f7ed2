/**
 * The -o contract, end to end through bin/vit: what every kind of output path gets, what is refused before
 * any work, and how write errors, closed streams and quick failures end.
 */
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import {
  chmodSync, createReadStream, existsSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, readlinkSync, rmSync, statSync,
  symlinkSync, writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { PACKAGE_ROOT } from '../src/io/paths.js';
import { runVit, VIT_BIN, TEST_CACHE } from './helpers/cli.js';

const tmp = mkdtempSync(join(tmpdir(), 'vit-outputs-'));
after(() => rmSync(tmp, { recursive: true, force: true }));
const DIGITS = join(PACKAGE_ROOT, 'examples', 'digits');
const ONE = join(DIGITS, '0_0800.png');
const isRoot = process.getuid?.() === 0;

test('-o onto a character device writes into it: it stays a device, no sidecar, no temporary file', { skip: !isRoot && 'needs root for mknod' }, async () => {
  const dev = join(tmp, 'null');
  execFileSync('mknod', [dev, 'c', '1', '3']);
  const r = await runVit(['classify', ONE, '-o', dev]);
  assert.equal(r.code, 0, r.stderr);
  assert.ok(lstatSync(dev).isCharacterDevice());
  assert.ok(!existsSync(`${dev}.vit.json`));
  assert.deepEqual(execFileSync('ls', ['-a', tmp], { encoding: 'utf8' }).split('\n').filter((f) => f.endsWith('.tmp')), []);
});

test('-o onto a full device is one line naming the path and the errno, exit 1', { skip: !isRoot && 'needs root for mknod' }, async () => {
  const full = join(tmp, 'full');
  execFileSync('mknod', [full, 'c', '1', '7']);
  // Every format: parquet's last writes failed after the stream was closed, an 'error' nobody listened to.
  for (const [command, format] of [['classify', 'jsonl'], ['classify', 'csv'], ['embed', 'json'], ['embed', 'parquet'], ['embed', 'npy']]) {
    const r = await runVit([command, DIGITS, '-o', full, '-f', format]);
    assert.equal(r.code, 1, `${format}: ${r.stderr}`);
    assert.equal(r.stderr, `vit: cannot write ${full}: ENOSPC (no space left on device)\n`, format);
  }
  assert.ok(lstatSync(full).isCharacterDevice());
});

test('-o /dev/stdout on a pipe (and bash\'s >(cmd), /dev/fd/N) writes into the pipe', async () => {
  // stdout is a pipe here: /dev/stdout → /proc/self/fd/1 → "pipe:[N]", a link to no path.
  const r = await runVit(['classify', DIGITS, '-o', '/dev/stdout', '-f', 'jsonl', '-k', '1']);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout.trim().split('\n').length, 38);
  assert.equal(r.stderr, '');
});

test('an npy spool a killed run left in the temporary directory is removed by the next spooling run; a live one is kept', async () => {
  // A process that has ended: its id names no running process (ids are not reused this soon).
  const dead = spawn(process.execPath, ['-e', '']);
  await new Promise((res) => dead.on('exit', res));
  const stale = join(tmpdir(), `vit-spool.${dead.pid}.1700000000000.x1.tmp`);
  const live = join(tmpdir(), `vit-spool.${process.pid}.1700000000000.x2.tmp`);
  const other = join(tmpdir(), `vit-spool.${dead.pid}.notours.tmp`);
  for (const f of [stale, live, other]) writeFileSync(f, 'x');
  try {
    const r = await runVit(['embed', DIGITS, '-f', 'npy']);
    assert.equal(r.code, 0, r.stderr);
    assert.ok(!existsSync(stale), 'stale spool left');
    assert.ok(existsSync(live) && existsSync(other), 'removed what was not a stale spool');
  } finally {
    for (const f of [stale, live, other]) rmSync(f, { force: true });
  }
});

test('-o onto a FIFO streams into it and leaves the FIFO in place', async () => {
  const fifo = join(tmp, 'rows.fifo');
  execFileSync('mkfifo', [fifo]);
  const chunks: Buffer[] = [];
  const read = new Promise<void>((res, rej) => createReadStream(fifo).on('data', (c) => chunks.push(c as Buffer)).on('end', res).on('error', rej));
  const r = await runVit(['classify', DIGITS, '-o', fifo, '-f', 'jsonl', '-k', '1']);
  await read;
  assert.equal(r.code, 0, r.stderr);
  const rows = Buffer.concat(chunks).toString('utf8').trim().split('\n');
  assert.equal(rows.length, 38);
  assert.ok(lstatSync(fifo).isFIFO());
  assert.ok(!existsSync(`${fifo}.vit.json`));
});

test('-o through a symlink writes the file it points to; the link stays; -o - is stdout', async () => {
  mkdirSync(join(tmp, 'real'));
  const real = join(tmp, 'real', 'out.csv');
  writeFileSync(real, 'old\n');
  chmodSync(real, 0o640);
  const link = join(tmp, 'link.csv');
  symlinkSync(join('real', 'out.csv'), link);
  const r = await runVit(['classify', ONE, '-o', link, '-k', '1']);
  assert.equal(r.code, 0, r.stderr);
  assert.ok(lstatSync(link).isSymbolicLink());
  assert.equal(readlinkSync(link), join('real', 'out.csv'));
  assert.match(readFileSync(real, 'utf8'), /^path,rank,index,label,score,logit,error\n.*0_0800\.png,1,0,0,/);
  assert.equal(statSync(real).mode & 0o777, 0o640, 'the replaced file keeps its mode');
  assert.ok(existsSync(`${real}.vit.json`), 'provenance beside the file written');
  // A dangling link: the file it names is created.
  const dangling = join(tmp, 'dangling.jsonl');
  symlinkSync(join(tmp, 'real', 'new.jsonl'), dangling);
  assert.equal((await runVit(['classify', ONE, '-o', dangling, '-f', 'jsonl'])).code, 0);
  assert.ok(lstatSync(dangling).isSymbolicLink() && statSync(join(tmp, 'real', 'new.jsonl')).isFile());

  const dash = await runVit(['classify', ONE, '-o', '-', '-k', '1'], { cwd: tmp });
  assert.equal(dash.code, 0, dash.stderr);
  assert.match(dash.stdout, /^path,rank/);
  assert.ok(!existsSync(join(tmp, '-')));
});

test('-o refusals come before any work: a directory (2), an input (2), a missing parent (1), an unwritable place (1)', async () => {
  const dir = await runVit(['classify', ONE, '-o', tmp]);
  assert.equal(dir.code, 2);
  assert.match(dir.stderr, new RegExp(`^vit: -o ${tmp} is a directory`));
  const image = join(tmp, 'input.png');
  writeFileSync(image, readFileSync(ONE));
  for (const spelling of [image, join(tmp, '.', 'input.png')]) {
    const same = await runVit(['classify', image, '-o', spelling]);
    assert.equal(same.code, 2, same.stderr);
    assert.match(same.stderr, /is also an input/);
    assert.ok(readFileSync(image).equals(readFileSync(ONE)), 'the input is untouched');
  }
  const missing = await runVit(['classify', ONE, '-o', join(tmp, 'no', 'such', 'out.csv'), '--verbose']);
  assert.equal(missing.code, 1);
  assert.match(missing.stderr, /^vit: cannot write .*no\/such\/out\.csv: ENOENT \(no such file or directory\): the directory .* does not exist\n/);
  assert.doesNotMatch(missing.stderr, /engine:/, 'refused before the engine starts');
  if (!isRoot) {
    const locked = join(tmp, 'locked');
    mkdirSync(locked, { mode: 0o500 });
    const r = await runVit(['classify', ONE, '-o', join(locked, 'out.csv')]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /cannot write .*EACCES/);
  }
});

test('a write error after several batches is one line, the temporary file is removed, exit 1', { skip: !isRoot && 'needs root to mount a small tmpfs' }, async (t) => {
  const mnt = join(tmp, 'small');
  mkdirSync(mnt);
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=24k', 'tmpfs', mnt]);
  } catch (e) {
    t.skip(`cannot mount a tmpfs here: ${(e as Error).message.split('\n')[0]}`);
    return;
  }
  try {
    const out = join(mnt, 'emb.jsonl');
    const r = await runVit(['embed', DIGITS, '-b', '2', '-f', 'jsonl', '-o', out]);
    assert.equal(r.code, 1);
    assert.equal(r.stderr, `vit: cannot write ${out}: ENOSPC (no space left on device)\n`);
    assert.deepEqual(execFileSync('ls', ['-A', mnt], { encoding: 'utf8' }).trim(), '', 'nothing left behind');
  } finally {
    execFileSync('umount', [mnt]);
  }
});

test('a closed stderr never aborts the run: rows still reach stdout, the status is the run\'s', async () => {
  const bad = join(tmp, 'broken.png');
  writeFileSync(bad, 'not a png');
  const child = spawn(process.execPath, [VIT_BIN, 'classify', DIGITS, bad, '-k', '1', '-f', 'jsonl', '--verbose'], {
    env: { ...process.env, CI: 'true', XDG_CACHE_HOME: TEST_CACHE }, stdio: ['ignore', 'pipe', 'pipe'],
  });
  child.stderr.destroy();
  let out = '';
  child.stdout.on('data', (d) => (out += d));
  const [code, signal] = await new Promise<[number | null, string | null]>((res) => child.on('close', (c, s) => res([c, s])));
  assert.equal(signal, null);
  assert.equal(code, 3);
  assert.equal(out.trim().split('\n').length, 39);
});

/** Run `args` n times, `width` at a time; the exit statuses seen, with counts. */
async function statuses(args: string[], n: number, width = 4): Promise<Map<string, number>> {
  const seen = new Map<string, number>();
  let next = 0;
  const worker = async () => {
    while (next < n) {
      next++;
      const r = await runVit(args);
      const key = r.signal ? `signal ${r.signal}` : `exit ${r.code}`;
      seen.set(key, (seen.get(key) ?? 0) + 1);
    }
  };
  await Promise.all(Array.from({ length: width }, worker));
  return seen;
}

test('200 usage errors in a row exit 2, and 200 quick failures after the engine started exit 1: never a signal', { timeout: 600_000 }, async () => {
  assert.deepEqual([...await statuses(['classify', 'x.jpg', '-m', 'no-such-model'], 200)], [['exit 2', 200]]);
  // Weights that do not fit the model fail after onnxruntime-node has begun to load.
  const misfit = ['classify', ONE, '-m', 'Ti/16', '-w', join(PACKAGE_ROOT, 'models', 'vit-digits', 'model.safetensors')];
  assert.deepEqual([...await statuses(misfit, 200)], [['exit 1', 200]]);
});

test('--resume and merge refuse a FIFO in the place of a sidecar (the manifest, an npy\'s paths file) at once, exit 1', { timeout: 60_000 }, async () => {
  const dir = join(tmp, 'fifo-sidecars');
  mkdirSync(dir);
  const csv = join(dir, 'o.csv');
  assert.equal((await runVit(['classify', ONE, '-o', csv, '-k', '1'])).code, 0);
  rmSync(`${csv}.vit.json`);
  execFileSync('mkfifo', [`${csv}.vit.json`]);
  const resumed = await runVit(['classify', ONE, '-o', csv, '-k', '1', '--resume']);
  assert.equal(resumed.code, 1);
  assert.equal(resumed.stderr, `vit: ${csv}.vit.json is not a vit manifest (a FIFO (named pipe), not a regular file)\n`);
  const npy = join(dir, 'e.npy');
  assert.equal((await runVit(['embed', ONE, '-f', 'npy', '-o', npy])).code, 0);
  const paths = join(dir, 'e.paths.txt');
  rmSync(paths);
  execFileSync('mkfifo', [paths]);
  for (const args of [['embed', ONE, '-f', 'npy', '-o', npy, '--resume'], ['merge', join(dir, 'm.npy'), npy]]) {
    const r = await runVit(args);
    assert.equal(r.code, 1, args.join(' '));
    assert.match(r.stderr, /^vit: \S*e\.paths\.txt is not a regular file: outputs to continue or merge are files written by vit\n$/);
  }
  assert.ok(lstatSync(paths).isFIFO());
});

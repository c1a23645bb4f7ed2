/**
 * Sharding end to end: N shards (chosen by --shard, a Kubernetes Indexed Job's environment, a Slurm array's
 * environment) merged with `vit merge` are one unsharded run, byte for byte; merge refuses duplicates,
 * missing rows and unfinished parts.
 */
import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { mergeOutputs } from '../src/io/sinks/index.js';
import type { EmbedRow, ErrorRow } from '../src/io/sinks/rows.js';
import { testWriter } from './helpers/formats.js';
import { runVit, type RunResult } from './helpers/cli.js';
import { BAD, IMAGES, modelDir } from './helpers/golden.js';

const tmp = mkdtempSync(join(tmpdir(), 'vit-shard-'));
after(() => rmSync(tmp, { recursive: true, force: true }));
const DIR = join(tmp, 'photos');
const MODEL = ['-m', modelDir('odd40', 'hf'), '-b', '4'];

/** The three ways a shard learns who it is, for shards 1, 2 and 3 of 3. */
const SHARDS: { args: string[]; env: NodeJS.ProcessEnv }[] = [
  { args: ['--shard', '1/3'], env: {} },
  { args: [], env: { JOB_COMPLETION_INDEX: '1', VIT_SHARD_COUNT: '3' } },
  { args: [], env: { SLURM_ARRAY_TASK_ID: '12', SLURM_ARRAY_TASK_MIN: '10', SLURM_ARRAY_TASK_COUNT: '3' } },
];

before(() => {
  for (const sub of ['a', 'b/c']) mkdirSync(join(DIR, sub), { recursive: true });
  for (let i = 0; i < 36; i++) {
    copyFileSync(join(IMAGES, `odd40_${i % 4}.png`), join(DIR, ['', 'a', 'b/c'][i % 3], `img ${i}, "x".png`));
  }
  copyFileSync(join(BAD, 'truncated.jpg'), join(DIR, 'a', 'broken.jpg'));
  copyFileSync(join(BAD, 'text.jpg'), join(DIR, 'b', 'text.jpg'));
});

const ok = (r: RunResult) => assert.ok(r.code === 0 || r.code === 3, `exit ${r.code}: ${r.stderr}`);

/** Run the three shards side by side; returns their output files. */
async function runShards(command: string, format: string, extra: string[], inputs: string[], input?: string): Promise<string[]> {
  const parts = SHARDS.map((_, k) => join(tmp, `${command}-part${k + 1}.${format}`));
  const runs = await Promise.all(SHARDS.map((s, k) =>
    runVit([command, ...inputs, ...MODEL, ...extra, '-f', format, '-o', parts[k], ...s.args], { env: s.env, input })));
  runs.forEach(ok);
  return parts;
}

for (const [command, format, extra] of [
  ['classify', 'csv', ['-k', '3']], ['classify', 'jsonl', []], ['classify', 'json', []], ['embed', 'npy', []],
  ['classify', 'parquet', []], ['embed', 'parquet', []],
] as const) {
  test(`shards: 3 shards of ${command} ${format} merged = one unsharded run, byte for byte`, async () => {
    const full = join(tmp, `${command}-full.${format}`);
    ok(await runVit([command, DIR, ...MODEL, ...extra, '-f', format, '-o', full]));
    const parts = await runShards(command, format, [...extra], [DIR]);
    const sizes = format === 'npy'
      ? parts.map((p) => readFileSync(p.replace(/\.npy$/, '.paths.txt'), 'utf8').split('\n').length - 1)
      : [];
    for (const [i, args] of [[], ['--inputs', DIR]].entries()) {
      const merged = join(tmp, `${command}-merged${i}.${format}`);
      const m = await runVit(['merge', merged, ...parts, ...args]);
      assert.equal(m.code, 0, m.stderr);
      assert.ok(readFileSync(merged).equals(readFileSync(full)), `merged ${args.join(' ') || '(sorted)'} differs`);
      if (format === 'npy') assert.ok(readFileSync(merged.replace(/\.npy$/, '.paths.txt')).equals(readFileSync(full.replace(/\.npy$/, '.paths.txt'))));
    }
    if (format === 'npy') {
      assert.equal(sizes.reduce((a, b) => a + b, 0), 36, 'every good image in one shard');
      assert.ok(sizes.every((n) => n > 0), `shard sizes ${sizes}`);
    }
  });
}

test('shards: inputs in any order: merged rows are sorted by path, or in the input order given with --inputs -', async () => {
  // A stdin list in an order of its own (reversed): the unsharded run keeps it; merge sorts, unless told it.
  const listed = (await runVit(['classify', DIR, ...MODEL, '-f', 'jsonl'])).stdout.trim().split('\n').map((l) => JSON.parse(l).path as string);
  const list = `${[...listed].reverse().join('\n')}\n`;
  const full = await runVit(['classify', '-', ...MODEL, '-f', 'jsonl'], { input: list });
  const parts = await runShards('classify', 'jsonl', [], ['-'], list);
  const sorted = await runVit(['merge', '-', ...parts]);
  assert.equal(sorted.code, 0, sorted.stderr);
  const byPath = (text: string) => text.trim().split('\n').sort((a, b) => Buffer.compare(Buffer.from(JSON.parse(a).path), Buffer.from(JSON.parse(b).path)));
  assert.deepEqual(sorted.stdout.trim().split('\n'), byPath(full.stdout));
  const inOrder = await runVit(['merge', '-f', 'jsonl', '-', ...parts, '--inputs', '-'], { input: list });
  assert.equal(inOrder.code, 0, inOrder.stderr);
  assert.equal(inOrder.stdout, full.stdout);
});

test('merge: a path twice, a missing part (with --inputs), an unfinished part and a bad --shard are errors', async () => {
  const parts = await runShards('classify', 'csv', [], [DIR]);
  const dup = await runVit(['merge', join(tmp, 'dup.csv'), ...parts, parts[0]]);
  assert.equal(dup.code, 1);
  assert.match(dup.stderr, /".*photos\/.*" is twice: .*part1\.csv is named twice/);
  // The parts say how many shards there are: a missing one is found with or without --inputs.
  for (const extra of [[], ['--inputs', DIR]]) {
    const missing = await runVit(['merge', join(tmp, 'missing.csv'), parts[0], parts[2], ...extra]);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /shard 2\/3 missing: the parts cover 2 of 3/);
  }
  // Without provenance (parts written to stdout), --inputs still finds what is missing.
  const bare = parts.map((p, i) => {
    const copy = join(tmp, `bare-${i}.csv`);
    writeFileSync(copy, readFileSync(p));
    return copy;
  });
  const noProvenance = await runVit(['merge', join(tmp, 'missing.csv'), bare[0], bare[2]]);
  assert.equal(noProvenance.code, 2);
  assert.match(noProvenance.stderr, /no provenance .*--inputs/);
  const missing = await runVit(['merge', join(tmp, 'missing.csv'), bare[0], bare[2], '--inputs', DIR]);
  assert.equal(missing.code, 1);
  assert.match(missing.stderr, /\d+ of 38 inputs have no row: ".*photos\/.*"/);
  const cut = join(tmp, 'cut.csv');
  const bytes = readFileSync(parts[1]);
  writeFileSync(cut, bytes.subarray(0, bytes.length - 5));
  writeFileSync(`${cut}.vit.json`, readFileSync(`${parts[1]}.vit.json`));
  const unfinished = await runVit(['merge', join(tmp, 'unfinished.csv'), parts[0], cut, parts[2]]);
  assert.equal(unfinished.code, 1);
  assert.match(unfinished.stderr, /cut\.csv is incomplete .*--resume/);
  // The files beside a part are read too, so the merged output cannot go over them.
  const manifest = readFileSync(`${parts[0]}.vit.json`);
  const over = await runVit(['merge', '-f', 'csv', `${parts[0]}.vit.json`, ...parts]);
  assert.equal(over.code, 2);
  assert.match(over.stderr, /^vit: the merged output .*part1\.csv\.vit\.json is also an input: vit never writes over its inputs\n/);
  assert.ok(readFileSync(`${parts[0]}.vit.json`).equals(manifest));
  // Nor over one of the --inputs (an image of the run), nor put its npy paths file over a part's.
  const image = join(DIR, 'img 0, "x".png');
  const before = readFileSync(image);
  const overInput = await runVit(['merge', '-f', 'csv', image, ...parts, '--inputs', DIR]);
  assert.equal(overInput.code, 2);
  assert.match(overInput.stderr, /^vit: the merged output .*img 0, "x"\.png is also an input: vit never writes over its inputs\n/);
  assert.ok(readFileSync(image).equals(before));
  const npyParts = await runShards('embed', 'npy', [], [DIR]);
  const pathsFile = npyParts[0].replace(/\.npy$/, '.paths.txt');
  const listed = readFileSync(pathsFile);
  const overPaths = await runVit(['merge', '-f', 'npy', npyParts[0].replace(/\.npy$/, ''), ...npyParts]);
  assert.equal(overPaths.code, 2);
  assert.match(overPaths.stderr, /^vit: the paths file .*part1\.paths\.txt is also an input/);
  assert.ok(readFileSync(pathsFile).equals(listed));
  const bad = await runVit(['classify', DIR, ...MODEL, '--shard', '4/3']);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /shards go from 1 to 3/);
  const noCount = await runVit(['classify', DIR, ...MODEL], { env: { JOB_COMPLETION_INDEX: '0' } });
  assert.equal(noCount.code, 2);
  assert.match(noCount.stderr, /VIT_SHARD_COUNT/);
});

test('names that are not UTF-8 merge in the order of one run (their bytes); a name holding "\\xe9" resumes without repeating', async () => {
  const img = readFileSync(join(IMAGES, 'odd40_0.png'));
  const dir = join(tmp, 'names');
  mkdirSync(dir);
  for (const b of [0x80, 0x81, 0xe9, 0xfe, 0xff]) writeFileSync(Buffer.concat([Buffer.from(`${dir}/x`), Buffer.of(b), Buffer.from('.png')]), img);
  for (const name of ['xé.png', 'xz.png']) writeFileSync(join(dir, name), img);
  // A name that really holds a backslash, x, e and 9 (CSV and parquet write the byte 0xE9 the same way).
  const literal = join(tmp, 'literal');
  mkdirSync(literal);
  for (const name of ['a\\xe9.png', 'b.png', 'c.png']) writeFileSync(join(literal, name), img);
  for (const [format, inputs] of [['jsonl', [dir]], ['jsonl', [literal]], ['csv', [dir]], ['csv', [literal]], ['parquet', [dir]]] as const) {
    const full = join(tmp, `names-full.${format}`);
    ok(await runVit(['classify', ...inputs, ...MODEL, '-f', format, '-o', full]));
    const parts = await runShards('classify', format, [], [...inputs]);
    const merged = join(tmp, `names-merged.${format}`);
    const m = await runVit(['merge', merged, ...parts]);
    assert.equal(m.code, 0, m.stderr);
    assert.ok(readFileSync(merged).equals(readFileSync(full)), `${format} ${inputs}: merged rows not in the order of one run`);
    // Resuming the finished file only redoes what the format cannot tell finished (CSV's last row): no row twice.
    ok(await runVit(['classify', ...inputs, ...MODEL, '-f', format, '-o', full, '--resume']));
    if (format !== 'parquet') assert.ok(readFileSync(merged).equals(readFileSync(full)), `${format} ${inputs}: resume repeated rows`);
  }
});

test('merge: parts written through symbolic links (-o view/p.npy → real/p.npy) are found with their sidecars', async () => {
  const [real, view] = [join(tmp, 'real'), join(tmp, 'view')];
  mkdirSync(real);
  mkdirSync(view);
  const parts = [1, 2].map((k) => join(view, `p${k}.npy`));
  parts.forEach((p, i) => symlinkSync(join('..', 'real', `p${i + 1}.npy`), p));
  for (const [k, p] of parts.entries()) ok(await runVit(['embed', DIR, ...MODEL, '-f', 'npy', '--shard', `${k + 1}/2`, '-o', p]));
  const full = join(tmp, 'linked-full.npy');
  ok(await runVit(['embed', DIR, ...MODEL, '-f', 'npy', '-o', full]));
  const merged = join(tmp, 'linked-merged.npy');
  const m = await runVit(['merge', merged, ...parts]);
  assert.equal(m.code, 0, m.stderr);
  assert.ok(readFileSync(merged).equals(readFileSync(full)));
});

test('merge: a CSV part that saw only failed inputs (header without embedding columns) joins the others', async () => {
  const rows: (EmbedRow | ErrorRow)[] = [
    { path: 'a.png', error: 'not an image' }, { path: 'b.png', embedding: Float32Array.from([1, 2]) },
    { path: 'c.png', error: 'empty file' }, { path: 'd.png', embedding: Float32Array.from([3, 4]) },
  ];
  const write = async (file: string, subset: (EmbedRow | ErrorRow)[]) => {
    const w = await testWriter('embed', 'csv', { output: join(tmp, file), stdout: process.stdout });
    for (const r of subset) await w.write(r);
    await w.close();
    return join(tmp, file);
  };
  const whole = await write('whole.csv', rows);
  const failures = await write('failures.csv', [rows[0], rows[2]]);
  assert.equal(readFileSync(failures, 'utf8'), 'path,error\na.png,not an image\nc.png,empty file\n');
  const good = await write('good.csv', [rows[1], rows[3]]);
  const merged = join(tmp, 'merged-embed.csv');
  assert.equal(await mergeOutputs([failures, good], { format: 'csv', output: merged, stdout: process.stdout, note: () => undefined }), 4);
  assert.equal(readFileSync(merged, 'utf8'), readFileSync(whole, 'utf8'));
});

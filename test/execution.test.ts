/** Execution settings: the threads a run takes by default, --threads, --device, and their place in the graph cache key. */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { cgroupCpuQuota, int8WeightsFor } from '../src/io/cpus.js';
import { PACKAGE_ROOT } from '../src/io/paths.js';
import { graphKey } from '../src/model/engines/onnx.js';
import { defaultThreads, openModel, prepareModel } from '../src/pipeline/open-model.js';
import { runVit, TEST_CACHE, VIT_BIN } from './helpers/cli.js';

const tmp = mkdtempSync(join(tmpdir(), 'vit-exec-'));
after(() => rmSync(tmp, { recursive: true, force: true }));
const ONE = join(PACKAGE_ROOT, 'examples', 'digits', '0_0800.png');

/** A fake cgroup tree and /proc/self/cgroup; returns their paths. */
function cgroupTree(name: string, self: string, files: Record<string, string>): { root: string; proc: string } {
  const root = join(tmp, name);
  for (const [rel, text] of Object.entries(files)) {
    mkdirSync(join(root, rel, '..'), { recursive: true });
    writeFileSync(join(root, rel), text);
  }
  const proc = join(tmp, `${name}.cgroup`);
  writeFileSync(proc, self);
  return { root, proc };
}

test('the cgroup CPU quota: v2 cpu.max on the process\'s cgroup or an ancestor, v1 cfs quota/period, none', () => {
  const v2 = cgroupTree('v2', '0::/kubepods/pod1/ctr\n', { 'kubepods/pod1/ctr/cpu.max': 'max 100000\n', 'kubepods/pod1/cpu.max': '150000 100000\n' });
  assert.equal(cgroupCpuQuota(v2.root, v2.proc), 1.5);
  const v1 = cgroupTree('v1', '4:cpu,cpuacct:/docker/abc\n1:memory:/docker/abc\n', {
    'cpu/docker/abc/cpu.cfs_quota_us': '200000\n', 'cpu/docker/abc/cpu.cfs_period_us': '100000\n',
  });
  assert.equal(cgroupCpuQuota(v1.root, v1.proc), 2);
  const none = cgroupTree('none', '0::/user.slice\n', { 'user.slice/cpu.max': 'max 100000\n' });
  assert.equal(cgroupCpuQuota(none.root, none.proc), null);
  assert.equal(cgroupCpuQuota(join(tmp, 'missing'), join(tmp, 'missing.cgroup')), null);
});

test('VIT_THREADS sets the default; a bad value is a usage error', () => {
  assert.equal(defaultThreads({ VIT_THREADS: '3' }), 3);
  assert.throws(() => defaultThreads({ VIT_THREADS: 'lots' }), /VIT_THREADS must be a whole number/);
  assert.ok(defaultThreads({}) >= 1);
  assert.equal(defaultThreads({ VIT_THREADS: '1024' }), 1024);
  // Each thread is an OS thread with its stack: 100,000 of them took 16 GB and ignored SIGTERM.
  assert.throws(() => defaultThreads({ VIT_THREADS: '5000' }), { name: 'UsageError', message: /VIT_THREADS 5000 is more than 1024 \(the limit is 1 to 1024\)/ });
});

test('--threads sizes onnxruntime\'s pool; the default follows the affinity mask (taskset)', async () => {
  const one = await runVit(['classify', ONE, '--threads', '1', '--verbose']);
  assert.equal(one.code, 0, one.stderr);
  assert.match(one.stderr, /engine: onnx \(onnxruntime-node [\d.]+, cpu, 1 thread\)/);
  const pinned = spawnSync('taskset', ['-c', '0', process.execPath, VIT_BIN, 'classify', ONE, '--verbose'], {
    encoding: 'utf8', env: { ...process.env, CI: 'true', XDG_CACHE_HOME: TEST_CACHE },
  });
  assert.equal(pinned.status, 0, pinned.stderr);
  assert.match(pinned.stderr, /cpu, 1 thread\)/, 'one CPU in the affinity mask: one thread');
  const r = await runVit(['classify', ONE, '--threads', '0']);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /--threads must be a whole number ≥ 1, not "0"/);
  const many = await runVit(['classify', ONE, '--threads', '100000']);
  assert.equal(many.code, 2, many.stderr);
  assert.match(many.stderr, /^vit: --threads 100000 is more than 1024 \(the limit is 1 to 1024\)\n/);
  assert.equal(many.stdout, '');
  // The library checks the same way (onnxruntime took 0 as its default and said "'intraOpNumThreads' is invalid: -1").
  for (const threads of [0, -1, 1.5]) await assert.rejects(openModel({ model: 'B/16' }, { threads }), { name: 'UsageError', message: `--threads must be a whole number ≥ 1, not "${threads}"` });
  await assert.rejects(openModel({ model: 'B/16' }, { threads: 1025 }), { name: 'UsageError', message: /--threads 1025 is more than 1024/ });
});

test('reduceRange (library): 7-bit int8 weights on every CPU; int8 only, a boolean', async () => {
  const held = async (o: Parameters<typeof prepareModel>[1]) => (await prepareModel({ model: 'B/16' }, o)).settings.int8Weights;
  assert.equal(await held({ dtype: 'int8', reduceRange: true }), 'int7');
  assert.equal(await held({ dtype: 'int8' }), int8WeightsFor());
  assert.equal(await held({ dtype: 'int8', reduceRange: false }), int8WeightsFor());
  await assert.rejects(prepareModel({ model: 'B/16' }, { reduceRange: true }), { name: 'UsageError', message: /--reduce-range is for --dtype int8/ });
  // --verbose says why the weights are in 7 bits; on a CPU with VNNI it must not blame the CPU.
  const said = (args: string[]) => spawnSync(process.execPath, [VIT_BIN, 'classify', ONE, '--dtype', 'int8', '--verbose', ...args], {
    encoding: 'utf8', env: { ...process.env, CI: 'true', XDG_CACHE_HOME: TEST_CACHE },
  }).stderr;
  const asked = said(['--reduce-range']);
  assert.match(asked, /^vit: int8 weights in 7 bits: as asked \(--reduce-range\)$/m);
  assert.match(asked, /cpu, \d+ threads?, int8, weights in 7 bits\)/);
  if (int8WeightsFor() === 'int8') assert.doesNotMatch(asked, /VNNI/, 'a CPU with VNNI is not said to lack it');
  const plain = said([]);
  if (int8WeightsFor() === 'int7') assert.match(plain, /^vit: int8 weights in 7 bits: this CPU has no VNNI \(see --reduce-range\)$/m);
  else assert.doesNotMatch(plain, /7 bits/);
  await assert.rejects(prepareModel({ model: 'B/16' }, { dtype: 'int8', reduceRange: 'yes' as unknown as boolean }), { name: 'UsageError', message: 'reduceRange must be true or false, not "yes"' });
});

test('--device cuda without onnxruntime-node\'s CUDA binaries is one line, exit 1; dtype and device key the graph cache', async () => {
  const r = await runVit(['classify', ONE, '--device', 'cuda']);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /^vit: --device cuda: onnxruntime-node's CUDA provider is not installed; .*ONNXRUNTIME_NODE_INSTALL=cuda12/);
  assert.equal(r.stderr.trim().split('\n').length, 1);
  assert.equal(r.stdout, '');
  const s = { dtype: 'fp32', device: 'cpu', threads: 2 } as const;
  const keys = new Set([graphKey('m', s), graphKey('m', { ...s, dtype: 'int8' }), graphKey('m', { ...s, device: 'cuda' }), graphKey('n', s)]);
  assert.equal(keys.size, 4);
  assert.equal(graphKey('m', { ...s, threads: 1 }), graphKey('m', s), 'threads do not change the graph');
  const i8 = { ...s, dtype: 'int8' } as const;
  assert.notEqual(graphKey('m', { ...i8, int8Weights: 'uint8' }), graphKey('m', i8), 'int8 weights held as uint8 are another graph');
  assert.notEqual(graphKey('m', { ...i8, int8Weights: 'int7' }), graphKey('m', i8), 'weights in 7 bits are another graph');
  assert.notEqual(graphKey('m', { ...i8, int8Weights: 'int7' }), graphKey('m', { ...i8, int8Weights: 'uint8' }));
  assert.equal(graphKey('m', { ...i8, int8Weights: 'int8' }), graphKey('m', i8));
  assert.equal(graphKey('m', { ...s, int8Weights: 'uint8' }), graphKey('m', s), 'fp32 graphs have no int8 weights');
});

test('int8 weights: 8-bit on x86 CPUs with VNNI or AMX and on other architectures, in 7 bits on x86 without', () => {
  const cpu = (flags: string) => `processor\t: 0\nvendor_id\t: X\nflags\t\t: ${flags}\nbugs\t\t: spectre_v1\n\nprocessor\t: 1\nflags\t\t: ${flags}\n`;
  assert.equal(int8WeightsFor('x64', cpu('fpu sse2 avx avx2 fma avx512f avx512bw avx512_vnni')), 'int8');
  assert.equal(int8WeightsFor('x64', cpu('fpu sse2 avx avx2 fma avx_vnni')), 'int8');
  assert.equal(int8WeightsFor('x64', cpu('fpu avx2 avx512f amx_tile amx_int8')), 'int8');
  assert.equal(int8WeightsFor('x64', cpu('fpu sse2 avx f16c avx2 fma')), 'int7', 'AVX2 alone: vpmaddubsw saturates');
  assert.equal(int8WeightsFor('x64', cpu('fpu avx2 avx512f avx512bw avx512_vnni_x')), 'int7', 'whole flags only');
  assert.equal(int8WeightsFor('x64', ''), 'int7', 'unknown: the encoding exact everywhere');
  assert.equal(int8WeightsFor('arm64', ''), 'int8');
});

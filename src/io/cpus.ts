/**
 * How many CPUs this process may really use: the affinity mask (taskset, Slurm's task/affinity, a cpuset),
 * and the cgroup CPU quota a container runs under (a Kubernetes CPU limit), whichever is smaller. The
 * machine's core count is neither: a pod limited to 2 CPUs on a 64-core node that sized its thread pools to
 * 64 would spend its quota on contention.
 */
import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import type { Int8Weights } from '../model/engines/engine.js';

/** A quota as CPUs (quota / period), or null for none: cgroup v2 `cpu.max` ("max 100000" or "150000 100000"). */
function quotaV2(text: string): number | null {
  const [quota, period] = text.trim().split(/\s+/);
  const q = Number(quota);
  const p = Number(period);
  return quota === 'max' || !(q > 0) || !(p > 0) ? null : q / p;
}

/** cgroup v1: cpu.cfs_quota_us (-1 for none) over cpu.cfs_period_us. */
function quotaV1(dir: string): number | null {
  const q = Number(readFileSync(join(dir, 'cpu.cfs_quota_us'), 'utf8'));
  const p = Number(readFileSync(join(dir, 'cpu.cfs_period_us'), 'utf8'));
  return q > 0 && p > 0 ? q / p : null;
}

function tryRead<T>(f: () => T | null): T | null {
  try {
    return f();
  } catch {
    return null;
  }
}

/**
 * The tightest CPU quota over this process's cgroup and its ancestors (a limit may be set on any of them), or
 * null when there is none or it cannot be read. `root` is where the cgroup file system is mounted.
 */
export function cgroupCpuQuota(root = '/sys/fs/cgroup', procSelfCgroup = '/proc/self/cgroup'): number | null {
  const lines = tryRead(() => readFileSync(procSelfCgroup, 'utf8').split('\n')) ?? [];
  const quotas: number[] = [];
  for (const line of lines) {
    // "0::/kubepods/pod…/…" (v2) or "4:cpu,cpuacct:/docker/…" (v1).
    const m = /^\d+:([^:]*):(.*)$/.exec(line);
    if (!m) continue;
    const v2 = m[1] === '';
    if (!v2 && !m[1].split(',').includes('cpu')) continue;
    const base = v2 ? root : join(root, 'cpu');
    for (let path = m[2]; ; path = path.slice(0, Math.max(0, path.lastIndexOf('/')))) {
      const dir = join(base, path);
      const q = v2 ? tryRead(() => quotaV2(readFileSync(join(dir, 'cpu.max'), 'utf8'))) : tryRead(() => quotaV1(dir));
      if (q !== null) quotas.push(q);
      if (path === '' || path === '/') break;
    }
  }
  return quotas.length > 0 ? Math.min(...quotas) : null;
}

/** CPUs this process may use: the affinity mask's count, capped by the cgroup quota (rounded up), at least 1. */
export function usableCpus(): number {
  const affinity = availableParallelism();
  const quota = cgroupCpuQuota();
  return Math.max(1, quota === null ? affinity : Math.min(affinity, Math.ceil(quota)));
}

/**
 * How this CPU should hold int8 weights (see Int8Weights). x86 CPUs with VNNI (AVX512-VNNI, AVX-VNNI) or AMX
 * multiply u8·s8 exactly; those without (AVX2 alone, or AVX-512 before Cascade Lake) run onnxruntime's
 * vpmaddubsw kernel, whose 16-bit pair sums saturate, so their weights go in 7 bits (±64), which cannot
 * saturate. Measured on AVX2-only AMD EPYCs: with 8-bit weights the golden models' int8 logits were off by up
 * to 6.9% of the largest |logit| (Swin: 120%). Weights in 7 bits against the exact u8·u8 products of the same
 * 8-bit numbers stored as uint8 (the earlier choice): B/16 model only 1.24 times as fast (batch 8, 8
 * interleaved rounds: 1051 against 1344 ms a batch; the saturating 8-bit kernel 1086 ms); the trained digits
 * model's logits off fp32's by a mean 0.029 against 0.023 (top-1 as fp32's on 2001 and 2002 of 2004, right on
 * 1960 and 1962); the golden models' logits by 1.7–2.6% against 1.7–1.9% (ViT) and 2.3–8.7% against 1.9–4.8%
 * of the largest |logit| (the tiny Swins). Other architectures (arm64) multiply 8-bit weights exactly.
 * `cpuinfo`: the text of /proc/cpuinfo (read when not given; unreadable counts as no VNNI).
 */
export function int8WeightsFor(arch: string = process.arch, cpuinfo?: string): Int8Weights {
  if (arch !== 'x64' && arch !== 'ia32') return 'int8';
  const text = cpuinfo ?? tryRead(() => readFileSync('/proc/cpuinfo', 'utf8')) ?? '';
  const flags = new Set((/^flags\s*:(.*)$/m.exec(text)?.[1] ?? '').trim().split(/\s+/));
  return ['avx512_vnni', 'avx_vnni', 'amx_int8'].some((f) => flags.has(f)) ? 'int8' : 'int7';
}

import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PACKAGE_ROOT } from '../../src/io/paths.js';

export const VIT_BIN = join(PACKAGE_ROOT, 'bin', 'vit.js');

/** Caches the CLI writes (compiled ONNX graphs) go to a temp dir, not the user's ~/.cache. */
export const TEST_CACHE = mkdtempSync(join(tmpdir(), 'vit-test-cache-'));
process.on('exit', () => rmSync(TEST_CACHE, { recursive: true, force: true }));

export interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Spawn the real bin/vit with arguments (and optional stdin), collecting stdout and stderr separately. */
export function runVit(args: string[], opts: { input?: string | Buffer; env?: NodeJS.ProcessEnv; cwd?: string } = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [VIT_BIN, ...args], {
      cwd: opts.cwd ?? PACKAGE_ROOT,
      env: { ...process.env, CI: 'true', XDG_CACHE_HOME: TEST_CACHE, ...opts.env },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (d) => out.push(d));
    child.stderr.on('data', (d) => err.push(d));
    child.on('error', reject);
    child.on('close', (code, signal) =>
      resolve({ code, signal, stdout: Buffer.concat(out).toString('utf8'), stderr: Buffer.concat(err).toString('utf8') }));
    if (opts.input !== undefined) child.stdin.end(opts.input);
    else child.stdin.end();
  });
}

/** A vit process we can signal, its result once it ends, and whether it has. */
export function startVit(args: string[]): { child: ChildProcess; result: Promise<RunResult>; ended(): boolean } {
  const child = spawn(process.execPath, [VIT_BIN, ...args], {
    env: { ...process.env, CI: 'true', XDG_CACHE_HOME: TEST_CACHE },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  child.stdout!.on('data', (d) => out.push(d));
  child.stderr!.on('data', (d) => err.push(d));
  let ended = false;
  const result = new Promise<RunResult>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code, signal) => {
      ended = true;
      resolve({ code, signal, stdout: Buffer.concat(out).toString('utf8'), stderr: Buffer.concat(err).toString('utf8') });
    });
  });
  return { child, result, ended: () => ended };
}

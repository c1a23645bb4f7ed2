/**
 * Worker threads of this package's own modules. A worker inherits the process's Node options, but those that
 * describe the main script (`node --input-type=module -e '…'`, `-p`) make Node refuse to start a worker from
 * a file ("--input-type can only be used with string input"): a one-line script using the library would fail
 * on its first image. Those are left out; every other option (a loader, memory limits) is passed on.
 */
import { Worker, type WorkerOptions } from 'node:worker_threads';

/** Options of the main script, and whether each takes the next argument as its value. */
const SCRIPT_OPTIONS: Record<string, boolean> = { '--input-type': true, '-e': true, '--eval': true, '-p': true, '--print': true };

export function workerExecArgv(execArgv: readonly string[] = process.execArgv): string[] {
  const out: string[] = [];
  for (let i = 0; i < execArgv.length; i++) {
    const a = execArgv[i];
    const name = a.startsWith('--') && a.includes('=') ? a.slice(0, a.indexOf('=')) : a;
    if (!(name in SCRIPT_OPTIONS)) out.push(a);
    else if (name === a && SCRIPT_OPTIONS[name]) i++;
  }
  return out;
}

export function startWorker(file: URL, options: WorkerOptions = {}): Worker {
  return new Worker(file, { ...options, execArgv: workerExecArgv() });
}

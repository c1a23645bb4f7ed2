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

/** How long a worker asked to end may take to finish its task (an image decode, a session's release: milliseconds) before it is terminated. */
const END_GRACE_MS = 10_000;

/**
 * Keeps a worker ref'd exactly while something waits on it (a load, a request, a decode), so that a script
 * that used the library exits when its work is done, even without dispose(), and never while an answer is due.
 * (Node 20 refs a worker again whenever a 'message' listener is added: listeners go on before the first release.)
 */
export class WorkerHold {
  private count = 0;
  private ended = false;
  private exited = false;

  constructor(private readonly worker: Worker) {
    worker.once('exit', () => {
      this.exited = true;
    });
    worker.unref();
  }

  take(): void {
    if (!this.ended && this.count++ === 0) this.worker.ref();
  }

  release(): void {
    if (!this.ended && this.count > 0 && --this.count === 0) this.worker.unref();
  }

  /**
   * End the worker. It is ref'd first: terminate() resolves on the worker's exit event, and with an unref'd
   * worker the process could end in that wait, before its caller reports anything (seen: 4 of 200 quick
   * failures exited 0 with nothing on stderr). From here on it stays ref'd: an answer that arrives after the
   * end began (a decode finishing) must not release it.
   *
   * The worker is asked to end itself (`ask` posts it the message it understands so) and this waits for it
   * to exit; only a worker that has not exited within END_GRACE_MS is terminated. terminate() stops a thread
   * wherever it is, and inside a native addon's initialisation that aborts the whole process (koffi:
   * "FATAL ERROR: Error::ThrowAsJavaScriptException napi_throw", SIGABRT; a pool closed while its thread
   * met its first JPEG aborted in 5 of 5 runs of 100 tries), while a worker that ends itself does so between
   * two of its own tasks.
   */
  async end(ask: () => void): Promise<void> {
    this.ended = true;
    this.worker.ref();
    if (this.exited) return;
    const exited = new Promise<void>((resolve) => this.worker.once('exit', () => resolve()));
    ask();
    const timer = setTimeout(() => void this.worker.terminate(), END_GRACE_MS);
    await exited;
    clearTimeout(timer);
  }
}

/**
 * The main thread's side of onnx-worker.ts: one worker thread per engine, holding that engine's sessions,
 * and the probe that says whether onnxruntime-node loads here at all.
 */
import type { Worker } from 'node:worker_threads';
import { ModelError } from '../../errors.js';
import { startWorker, WorkerHold } from '../../worker-thread.js';
import { liveResources } from './live.js';
import { LOADED_ID } from './onnx-format.js';
import type { WorkerInit, WorkerOutputs, WorkerReply, WorkerRequest } from './onnx-worker.js';

type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;

/** A worker thread of onnx-worker.ts, and its word on whether onnxruntime-node loaded there. */
interface Spawned {
  worker: Worker;
  /** onnxruntime-node's version, or a rejection with the reason it does not load. */
  loaded: Promise<string>;
  /** Held while the load, or an engine's request, waits on the worker. */
  hold: WorkerHold;
}

function spawnWorker(): Spawned {
  const worker = startWorker(new URL('./onnx-worker.js', import.meta.url));
  const hold = new WorkerHold(worker);
  hold.take();
  const loaded = new Promise<string>((resolve, reject) => {
    const done = () => {
      worker.off('message', onMessage);
      worker.off('error', onError);
      worker.off('exit', onExit);
      hold.release();
    };
    const onMessage = (r: WorkerReply) => {
      if (r.id !== LOADED_ID) return;
      done();
      if ('error' in r) reject(new Error(r.error));
      else resolve('version' in r ? r.version : '');
    };
    const onError = (e: Error) => {
      done();
      reject(e);
    };
    const onExit = (code: number) => {
      done();
      reject(new Error(`the onnxruntime thread exited (${code})`));
    };
    worker.on('message', onMessage);
    worker.on('error', onError);
    worker.on('exit', onExit);
  });
  loaded.catch(() => undefined);
  return { worker, loaded, hold };
}

/**
 * End a worker: it is asked to, and exits itself between requests (WorkerHold.end). The ask waits for
 * onnxruntime-node's native library to load first, so that a slow load is not cut short by end's grace time:
 * a thread terminated inside the addon's initialisation aborts the whole process (SIGABRT, "terminate called
 * after throwing an instance of 'Napi::Error'"; seen in about 1 of 15 quick usage errors when the load was
 * started early). Waiting for the load costs at most its ~60 ms.
 */
async function endWorker(s: Spawned): Promise<void> {
  await s.loaded.catch(() => undefined);
  await s.hold.end(() => s.worker.postMessage(null));
}

/** The worker the availability probe started, until an engine takes it. */
let spare: Spawned | null = null;
/** Whether onnxruntime-node loads here, as the first worker found out (the answer holds for the process). */
let probe: Promise<string> | null = null;
const spareCloser = {
  async close(): Promise<void> {
    liveResources.delete(spareCloser);
    const s = spare;
    spare = null;
    if (s) await endWorker(s);
  },
};

/** onnxruntime-node's version, or a rejection saying why it does not load here. */
export function onnxRuntimeVersion(): Promise<string> {
  if (!probe) {
    spare = spawnWorker();
    probe = spare.loaded;
    liveResources.add(spareCloser);
  }
  return probe;
}

/** The probe's worker if no engine took it yet, else a new one. */
function takeWorker(): Spawned {
  if (!spare) return spawnWorker();
  const s = spare;
  spare = null;
  liveResources.delete(spareCloser);
  return s;
}

/** The onnxruntime sessions of one engine, in a worker thread (see onnx-worker.ts for why). */
export class SessionWorker {
  private readonly spawned: Spawned;
  private next = LOADED_ID + 1;
  private readonly pending = new Map<number, { resolve(r: WorkerReply): void; reject(e: Error): void }>();
  private failed: Error | null = null;

  constructor(init: WorkerInit, transfer: ArrayBuffer[] = []) {
    this.spawned = takeWorker();
    const worker = this.spawned.worker;
    worker.on('message', (r: WorkerReply) => {
      const p = this.pending.get(r.id);
      if (!p) return;
      this.pending.delete(r.id);
      this.spawned.hold.release();
      if ('error' in r) p.reject(new ModelError(`onnxruntime: ${r.error}`));
      else p.resolve(r);
    });
    const fail = (e: Error) => {
      this.failed = e;
      for (const p of this.pending.values()) {
        p.reject(e);
        this.spawned.hold.release();
      }
      this.pending.clear();
    };
    worker.on('error', (e) => fail(new ModelError(`onnxruntime worker failed: ${e.message}`)));
    worker.on('exit', (code) => fail(new ModelError(`onnxruntime worker exited (${code})`)));
    liveResources.add(this);
    // Requests sent now wait in the worker's queue until onnxruntime-node has loaded there.
    this.request({ type: 'init', ...init }, transfer).catch(() => undefined);
  }

  private request(msg: DistributiveOmit<WorkerRequest, 'id'>, transfer: ArrayBuffer[] = []): Promise<WorkerReply> {
    if (this.failed) return Promise.reject(this.failed);
    const id = this.next++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.spawned.hold.take();
      this.spawned.worker.postMessage({ ...msg, id }, transfer);
    });
  }

  /** Create the session of one graph file; resolves to onnxruntime's version and the graph's output names. */
  async open(file: string): Promise<{ version: string; outputs: string[] }> {
    // No need to wait for init's answer: the worker takes messages in order.
    const r = await this.request({ type: 'open', file });
    return 'outputs' in r && Array.isArray(r.outputs) ? { version: r.version, outputs: r.outputs } : { version: '', outputs: [] };
  }

  async run(file: string, pixels: Float32Array, dims: number[], fetches: string[]): Promise<WorkerOutputs> {
    // A compact copy is handed over (the caller reuses its buffer for the next batch while this one runs).
    const own = pixels.slice();
    const r = await this.request({ type: 'run', file, pixels: own, dims, fetches }, [own.buffer]);
    if (!('tensors' in r)) throw new ModelError('onnxruntime worker: no outputs');
    return r.tensors;
  }

  async close(): Promise<void> {
    liveResources.delete(this);
    if (!this.failed) await this.request({ type: 'close' }).catch(() => undefined);
    this.failed ??= new ModelError('onnx engine disposed');
    await endWorker(this.spawned);
  }
}

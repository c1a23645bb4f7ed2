/**
 * onnxruntime-node on its own thread. Its `run` computes synchronously on the calling thread, so in the main
 * thread it would stall everything else there — above all the resizing of the next batch, which then could not
 * overlap inference. Here a session blocks only this worker; the main thread keeps preparing images.
 *
 * The thread can be started before anyone knows what it will run (onnx-session.ts `onnxRuntimeVersion`): it imports
 * onnxruntime-node at once, whose native library takes a while to load, and says `{ id: 0, ok, version }`, or
 * `{ id: 0, error }` when the library does not load here (then every request is answered with that error).
 *
 * Messages in: init (where the graphs are, threads, execution providers), open (create the session of one
 * graph file; answered with its output names), run (one batch), close (release the sessions). Each is answered
 * with the same id, as `{ id, ok }`, `{ id, tensors }` or `{ id, error }`. A null message asks the thread to end.
 */
import { join } from 'node:path';
import { parentPort } from 'node:worker_threads';
import type * as Ort from 'onnxruntime-node';
import { LOADED_ID } from './onnx-format.js';
import { sessionOptions } from './onnx-options.js';

/** Where the graphs come from: a cache entry directory, or the graph and weights bytes handed over. */
export type WorkerSource =
  | { kind: 'path'; dir: string }
  | { kind: 'memory'; graphs: Record<string, Uint8Array>; weightsFile: string; weights: Uint8Array };

/** Where the graphs are, how many intra-op threads and which execution providers (in order) to use. */
export interface WorkerInit { source: WorkerSource; threads: number; providers: string[] }

export type WorkerRequest =
  | ({ id: number; type: 'init' } & WorkerInit)
  | { id: number; type: 'open'; file: string }
  | { id: number; type: 'run'; file: string; pixels: Float32Array; dims: number[]; fetches: string[] }
  | { id: number; type: 'close' };

export type WorkerOutputs = Record<string, { dims: number[]; data: Float32Array }>;

export type WorkerReply =
  | { id: number; ok: true; version: string; outputs?: string[] }
  | { id: number; tensors: WorkerOutputs }
  | { id: number; error: string };

let ort: typeof Ort | null = null;
let loadError = '';
try {
  ort = await import('onnxruntime-node');
} catch (e) {
  loadError = (e instanceof Error ? e.message : String(e)).split('\n')[0];
}
const version = ort ? ort.env.versions.node ?? ort.env.versions.common : '';
parentPort!.postMessage((ort ? { id: LOADED_ID, ok: true, version } : { id: LOADED_ID, error: loadError }) satisfies WorkerReply);

let init: WorkerInit | null = null;
const sessions = new Map<string, Promise<Ort.InferenceSession>>();

function session(ort: typeof Ort, file: string): Promise<Ort.InferenceSession> {
  let s = sessions.get(file);
  if (!s) {
    if (!init) throw new Error('no init message before the first session');
    const { source, threads, providers } = init;
    // From a path, onnxruntime resolves each initializer's `location` relative to the model file's directory;
    // from bytes there is no directory, so the weights file is handed over under the name the graph uses.
    s = source.kind === 'path'
      ? ort.InferenceSession.create(join(source.dir, file), sessionOptions(threads, providers))
      : ort.InferenceSession.create(source.graphs[file], { ...sessionOptions(threads, providers), externalData: [{ path: source.weightsFile, data: source.weights }] });
    sessions.set(file, s);
  }
  return s;
}

async function handle(msg: WorkerRequest): Promise<{ reply: WorkerReply; transfer: ArrayBuffer[] }> {
  if (!ort) throw new Error(loadError);
  switch (msg.type) {
    case 'init':
      init = { source: msg.source, threads: msg.threads, providers: msg.providers };
      return { reply: { id: msg.id, ok: true, version }, transfer: [] };
    case 'open': {
      const s = await session(ort, msg.file);
      return { reply: { id: msg.id, ok: true, version, outputs: [...s.outputNames] }, transfer: [] };
    }
    case 'run': {
      const s = await session(ort, msg.file);
      const out = await s.run({ [s.inputNames[0]]: new ort.Tensor('float32', msg.pixels, msg.dims) }, msg.fetches);
      const outputs: WorkerOutputs = {};
      const transfer: ArrayBuffer[] = [];
      for (const name of msg.fetches) {
        const data = out[name].data as Float32Array;
        outputs[name] = { dims: out[name].dims.slice(), data };
        if (data.byteOffset === 0 && data.byteLength === data.buffer.byteLength) transfer.push(data.buffer as ArrayBuffer);
      }
      return { reply: { id: msg.id, tensors: outputs }, transfer };
    }
    case 'close':
      for (const s of sessions.values()) await s.then((x) => x.release(), () => undefined);
      sessions.clear();
      return { reply: { id: msg.id, ok: true, version: '' }, transfer: [] };
  }
}

/** Requests being handled, and whether the engine asked this thread to end once they are answered. */
let inFlight = 0;
let ending = false;

function answer(reply: WorkerReply, transfer: ArrayBuffer[] = []): void {
  parentPort!.postMessage(reply, transfer);
  if (--inFlight === 0 && ending) process.exit(0);
}

/** A request, or null: end the thread, once the requests in hand are answered (see WorkerHold.end). */
parentPort!.on('message', (msg: WorkerRequest | null) => {
  if (msg === null) {
    ending = true;
    if (inFlight === 0) process.exit(0);
    return;
  }
  inFlight++;
  handle(msg).then(
    ({ reply, transfer }) => answer(reply, transfer),
    (e: unknown) => answer({ id: msg.id, error: e instanceof Error ? e.message : String(e) }),
  );
});

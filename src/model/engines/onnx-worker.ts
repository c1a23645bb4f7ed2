/**
 * onnxruntime-node on its own thread. Its `run` computes synchronously on the calling thread, so in the main
 * thread it would stall everything else there — above all the resizing of the next batch, which then could not
 * overlap inference. Here a session blocks only this worker; the main thread keeps preparing images.
 *
 * Messages in: open (create the session of one graph file), run (one batch), close. Each is answered with the
 * same id, as `{ id, ok }`, `{ id, outputs }` or `{ id, error }`.
 */
import { join } from 'node:path';
import { parentPort, workerData } from 'node:worker_threads';
import * as ort from 'onnxruntime-node';

/** Where the graphs come from: a cache entry directory, or the graph and weights bytes handed over. */
export type WorkerSource =
  | { kind: 'path'; dir: string }
  | { kind: 'memory'; graphs: Record<string, Uint8Array>; weightsFile: string; weights: Uint8Array };

export interface WorkerInit { source: WorkerSource; threads: number }

export type WorkerRequest =
  | { id: number; type: 'open'; file: string }
  | { id: number; type: 'run'; file: string; pixels: Float32Array; dims: number[]; fetches: string[] }
  | { id: number; type: 'close' };

export type WorkerOutputs = Record<string, { dims: number[]; data: Float32Array }>;

export type WorkerReply =
  | { id: number; ok: true; version: string }
  | { id: number; outputs: WorkerOutputs }
  | { id: number; error: string };

const { source, threads } = workerData as WorkerInit;
const sessions = new Map<string, Promise<ort.InferenceSession>>();

function options(): ort.InferenceSession.SessionOptions {
  return {
    executionProviders: ['cpu'],
    intraOpNumThreads: threads,
    interOpNumThreads: 1,
    executionMode: 'sequential',
    graphOptimizationLevel: 'all',
    // Warnings (e.g. about unused initializers) must not reach stderr between data rows; errors still throw.
    logSeverityLevel: 3,
    // Idle intra-op threads sleep instead of spinning: the cores they would burn are the ones decoding and
    // resizing the next batch. (Measured on B/32, 2 cores: no loss in model-only throughput, 40.3 → 42.6 img/s.)
    extra: { session: { intra_op: { allow_spinning: '0' } } },
  };
}

function session(file: string): Promise<ort.InferenceSession> {
  let s = sessions.get(file);
  if (!s) {
    // From a path, onnxruntime resolves each initializer's `location` relative to the model file's directory;
    // from bytes there is no directory, so the weights file is handed over under the name the graph uses.
    s = source.kind === 'path'
      ? ort.InferenceSession.create(join(source.dir, file), options())
      : ort.InferenceSession.create(source.graphs[file], { ...options(), externalData: [{ path: source.weightsFile, data: source.weights }] });
    sessions.set(file, s);
  }
  return s;
}

async function handle(msg: WorkerRequest): Promise<{ reply: WorkerReply; transfer: ArrayBuffer[] }> {
  switch (msg.type) {
    case 'open':
      await session(msg.file);
      return { reply: { id: msg.id, ok: true, version: ort.env.versions.node ?? ort.env.versions.common }, transfer: [] };
    case 'run': {
      const s = await session(msg.file);
      const out = await s.run({ [s.inputNames[0]]: new ort.Tensor('float32', msg.pixels, msg.dims) }, msg.fetches);
      const outputs: WorkerOutputs = {};
      const transfer: ArrayBuffer[] = [];
      for (const name of msg.fetches) {
        const data = out[name].data as Float32Array;
        outputs[name] = { dims: out[name].dims.slice(), data };
        if (data.byteOffset === 0 && data.byteLength === data.buffer.byteLength) transfer.push(data.buffer as ArrayBuffer);
      }
      return { reply: { id: msg.id, outputs }, transfer };
    }
    case 'close':
      for (const s of sessions.values()) await s.then((x) => x.release(), () => undefined);
      sessions.clear();
      return { reply: { id: msg.id, ok: true, version: '' }, transfer: [] };
  }
}

parentPort!.on('message', (msg: WorkerRequest) => {
  handle(msg).then(
    ({ reply, transfer }) => parentPort!.postMessage(reply, transfer),
    (e: unknown) => parentPort!.postMessage({ id: msg.id, error: e instanceof Error ? e.message : String(e) } satisfies WorkerReply),
  );
});

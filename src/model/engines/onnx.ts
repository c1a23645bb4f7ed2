import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import { ModelError } from '../../errors.js';
import type { ViTConfig } from '../config.js';
import type { HostTensor, TensorMap } from '../tensor.js';
import type { Engine, EngineFactoryOptions, RunOptions, RunResult } from './engine.js';
import { collectGarbage } from './gc.js';
import { liveResources } from './live.js';
import type { WorkerOutputs, WorkerReply, WorkerRequest, WorkerSource } from './onnx-worker.js';
import { BASE_OUTPUTS, GRAPH_FORMAT, LOADED_ID, WEIGHTS_FILE, type GraphDtype } from './onnx-format.js';
import type { VitGraph, WeightSlot } from './onnx-graph.js';

type GraphBuilder = typeof import('./onnx-graph.js');

/**
 * The graph builder, loaded only when a graph is built: it brings the protobuf encoder (onnx-proto,
 * protobufjs), which an engine started on a cached graph never needs.
 */
function graphBuilder(): Promise<GraphBuilder> {
  return import('./onnx-graph.js');
}

/** One file of a cache entry: small ones as bytes, the weights as chunks at their offsets (streamed). */
export type StoreFile =
  | { name: string; bytes: Uint8Array }
  | { name: string; size: number; chunks: Iterable<{ offset: number; bytes: Uint8Array }> };

/**
 * Where built graphs are kept between runs (src/io/onnx-cache.ts on disk). The model side only names files;
 * the store decides where they go, how entries are keyed and written atomically.
 */
export interface OnnxStore {
  /**
   * A key that changes whenever the config, the weights, the graph (its format version and dtype, as in
   * `2 int8`) or the tool's version do.
   */
  key(config: ViTConfig, weights: TensorMap, graph: string): string;
  /** The directory of a complete entry for key, or null. */
  find(key: string): Promise<string | null>;
  /** Write a new entry (atomically) and return its directory. */
  save(key: string, files: StoreFile[]): Promise<string>;
}

export interface OnnxEngineOptions extends EngineFactoryOptions {
  /**
   * Weights of at least this many bytes go through the store as an ONNX graph with external data (a weights
   * file beside it, which onnxruntime maps from disk); smaller ones are handed to onnxruntime from memory.
   */
  externalDataThreshold?: number;
  /** The cache for graphs with external data; without one, every model is built in memory. */
  store?: OnnxStore | null;
  /**
   * Drop each tensor from the weights map once it is on disk, so a big model is never held twice (the caller
   * must not use the map afterwards), and collect the garbage before onnxruntime allocates its own copy. Only
   * honoured on the external-data path; in memory the map is kept for building the attention graph later.
   */
  releaseWeights?: boolean;
  /** Intra-op threads; default: every available core. */
  threads?: number;
  /** The number format of the linear layers (see GraphOptions); default fp32. */
  dtype?: GraphDtype;
}

/**
 * Every model goes through the store by default, whatever its size: onnxruntime maps a weights file from disk
 * faster than it copies the same bytes from memory (B/32: session 0.3 s from a file vs 0.4–0.8 s from memory,
 * which also holds the weights twice), and a reused entry skips building and packing altogether.
 */
export const DEFAULT_EXTERNAL_DATA_THRESHOLD = 0;

/** What create spent its time on, and whether a stored graph was reused. */
export interface OnnxStartup {
  /** Cache entry directory on the external-data path; null when built in memory. */
  cacheDir: string | null;
  /** The entry existed and was loaded as it was: no graph building, no weight writing. */
  reused: boolean;
  graphMs: number;
  /** Hashing the weights for the cache key. */
  keyMs: number;
  /** Writing the cache entry (0 when it was reused); in memory, packing the weights counts as session time. */
  weightsMs: number;
  sessionMs: number;
}

/** How sessions are made: from a cache entry on disk, or from graphs and weights in memory. */
type SessionSource =
  | { kind: 'path'; dir: string }
  | { kind: 'memory'; weights: TensorMap; graphs: Record<GraphFile, VitGraph> };

const MODEL_FILE = 'model.onnx';
const ATTENTION_MODEL_FILE = 'model-attn.onnx';
type GraphFile = typeof MODEL_FILE | typeof ATTENTION_MODEL_FILE;

/** Both graphs, which must read the same weights file. */
function buildGraphs(g: GraphBuilder, cfg: ViTConfig, weights: TensorMap, dtype: GraphDtype): Record<GraphFile, VitGraph> {
  const shapeOf = (param: string) => {
    const t = weights.get(param);
    if (!t) throw new ModelError(`onnx engine: the weights have no "${param}" for model ${cfg.name}`);
    return t.shape;
  };
  const plain = g.buildVitGraph(cfg, shapeOf, { dtype });
  const withAttentions = g.buildVitGraph(cfg, shapeOf, { dtype, attentions: true });
  const [a, b] = [plain.slots, withAttentions.slots];
  if (a.length !== b.length || a.some((s, i) => s.name !== b[i].name || s.offset !== b[i].offset)) {
    throw new ModelError('onnx engine: the attention graph reads other weights than the plain one');
  }
  return { [MODEL_FILE]: plain, [ATTENTION_MODEL_FILE]: withAttentions };
}

/** The weights file in one buffer, for onnxruntime's in-memory external data. */
function packWeights(g: GraphBuilder, slots: WeightSlot[], weights: TensorMap): Uint8Array {
  const blob = new Uint8Array(g.weightFileSize(slots));
  for (const c of g.weightChunks(slots, weights)) blob.set(c.bytes, c.offset);
  return blob;
}

type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;

/** A worker thread of onnx-worker.ts, and its word on whether onnxruntime-node loaded there. */
interface Spawned {
  worker: Worker;
  /** onnxruntime-node's version, or a rejection with the reason it does not load. */
  loaded: Promise<string>;
}

function spawnWorker(): Spawned {
  const worker = new Worker(new URL('./onnx-worker.js', import.meta.url));
  // The worker must not keep the process alive on its own: a finished run exits even if dispose was skipped.
  worker.unref();
  const loaded = new Promise<string>((resolve, reject) => {
    const done = () => {
      worker.off('message', onMessage);
      worker.off('error', onError);
      worker.off('exit', onExit);
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
  return { worker, loaded };
}

/** The worker started by preloadOnnxRuntime, until an engine adopts it. */
let spare: Spawned | null = null;
/** Whether onnxruntime-node loads here, as the first worker found out (the answer holds for the process). */
let probe: Promise<string> | null = null;
/** Ends an unadopted spare worker with the command that started it. */
const spareCloser = {
  async close(): Promise<void> {
    liveResources.delete(spareCloser);
    const s = spare;
    spare = null;
    if (s) await s.worker.terminate();
  },
};

/**
 * Start a worker thread importing onnxruntime-node now, for the engine that will be made later: loading the
 * native library (~60 ms) then overlaps the command's other start-up work (reading arguments and inputs). The
 * worker is ended with the command if no engine takes it.
 */
export function preloadOnnxRuntime(): void {
  if (probe) return;
  spare = spawnWorker();
  probe = spare.loaded;
  liveResources.add(spareCloser);
}

/** onnxruntime-node's version, or a rejection saying why it does not load here. */
export function onnxRuntimeVersion(): Promise<string> {
  preloadOnnxRuntime();
  return probe!;
}

/** The preloaded worker if there is one, else a new one. */
function takeWorker(): Spawned {
  if (!spare) return spawnWorker();
  const s = spare;
  spare = null;
  liveResources.delete(spareCloser);
  return s;
}

/** The onnxruntime sessions of one engine, in a worker thread (see onnx-worker.ts for why). */
class SessionWorker {
  private readonly worker: Worker;
  private next = LOADED_ID + 1;
  private readonly pending = new Map<number, { resolve(r: WorkerReply): void; reject(e: Error): void }>();
  private failed: Error | null = null;

  constructor(source: WorkerSource, threads: number) {
    const transfer = source.kind === 'memory'
      ? [source.weights.buffer as ArrayBuffer, ...Object.values(source.graphs).map((g) => g.buffer as ArrayBuffer)]
      : [];
    this.worker = takeWorker().worker;
    this.worker.on('message', (r: WorkerReply) => {
      const p = this.pending.get(r.id);
      this.pending.delete(r.id);
      if (!p) return;
      if ('error' in r) p.reject(new ModelError(`onnxruntime: ${r.error}`));
      else p.resolve(r);
    });
    const fail = (e: Error) => {
      this.failed = e;
      for (const p of this.pending.values()) p.reject(e);
      this.pending.clear();
    };
    this.worker.on('error', (e) => fail(new ModelError(`onnxruntime worker failed: ${e.message}`)));
    this.worker.on('exit', (code) => fail(new ModelError(`onnxruntime worker exited (${code})`)));
    liveResources.add(this);
    // Requests sent now wait in the worker's queue until onnxruntime-node has loaded there.
    this.request({ type: 'init', source, threads }, transfer).catch(() => undefined);
  }

  private request(msg: DistributiveOmit<WorkerRequest, 'id'>, transfer: ArrayBuffer[] = []): Promise<WorkerReply> {
    if (this.failed) return Promise.reject(this.failed);
    const id = this.next++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.worker.postMessage({ ...msg, id }, transfer);
    });
  }

  /** Create the session of one graph file; resolves to onnxruntime's version. */
  async open(file: GraphFile): Promise<string> {
    // No need to wait for init's answer: the worker takes messages in order.
    const r = await this.request({ type: 'open', file });
    return 'version' in r ? r.version : '';
  }

  async run(file: GraphFile, pixels: Float32Array, dims: number[], fetches: string[]): Promise<WorkerOutputs> {
    // A compact copy is handed over (the caller reuses its buffer for the next batch while this one runs).
    const own = pixels.slice();
    const r = await this.request({ type: 'run', file, pixels: own, dims, fetches }, [own.buffer]);
    if (!('outputs' in r)) throw new ModelError('onnxruntime worker: no outputs');
    return r.outputs;
  }

  async close(): Promise<void> {
    liveResources.delete(this);
    if (!this.failed) await this.request({ type: 'close' }).catch(() => undefined);
    this.failed ??= new ModelError('onnx engine disposed');
    await this.worker.terminate();
  }
}

/** What the worker needs to open sessions: a directory, or both graphs and the weights file as bytes. */
async function toWorkerSource(source: SessionSource): Promise<WorkerSource> {
  if (source.kind === 'path') return source;
  const g = await graphBuilder();
  const plain = source.graphs[MODEL_FILE];
  return {
    kind: 'memory',
    graphs: { [MODEL_FILE]: g.encodeModel(plain.model), [ATTENTION_MODEL_FILE]: g.encodeModel(source.graphs[ATTENTION_MODEL_FILE].model) },
    weightsFile: WEIGHTS_FILE,
    weights: packWeights(g, plain.slots, source.weights),
  };
}

/**
 * The ViT of vit.ts as an ONNX graph on onnxruntime-node (CPU provider, every core, all graph optimisations).
 * Two graphs share one weights file: the plain one, and one that also outputs each layer's attention
 * probabilities. The second is only loaded when attentions are first asked for, because keeping the
 * probabilities of every layer alive as graph outputs costs memory on every batch (onnxruntime computes the
 * whole graph whatever is fetched).
 */
export class OnnxEngine implements Engine {
  readonly name = 'onnx' as const;
  readonly backend: string;
  private attentionSession: Promise<string> | null = null;

  private constructor(
    readonly config: ViTConfig,
    private readonly sessions: SessionWorker,
    readonly threads: number,
    readonly startup: OnnxStartup,
    readonly dtype: GraphDtype,
  ) {
    this.backend = `cpu, ${threads} thread${threads === 1 ? '' : 's'}${dtype === 'fp32' ? '' : `, ${dtype}`}`;
  }

  static async create(cfg: ViTConfig, weights: TensorMap, opts: OnnxEngineOptions = {}): Promise<OnnxEngine> {
    const threads = opts.threads ?? availableParallelism();
    let t0 = performance.now();
    const lap = () => {
      const now = performance.now();
      const ms = now - t0;
      t0 = now;
      return ms;
    };
    const startup: OnnxStartup = { cacheDir: null, reused: false, graphMs: 0, keyMs: 0, weightsMs: 0, sessionMs: 0 };
    let source: SessionSource | null = null;
    let bytes = 0;
    for (const t of weights.values()) bytes += t.data.byteLength;
    if (opts.store && bytes >= (opts.externalDataThreshold ?? DEFAULT_EXTERNAL_DATA_THRESHOLD)) {
      source = await OnnxEngine.fromStore(opts.store, cfg, weights, opts, startup, lap);
    }
    if (!source) {
      source = { kind: 'memory', weights, graphs: buildGraphs(await graphBuilder(), cfg, weights, opts.dtype ?? 'fp32') };
      startup.graphMs += lap();
    }
    const { engine, version } = await OnnxEngine.start(cfg, source, threads, startup, opts.dtype ?? 'fp32');
    startup.sessionMs = lap();
    const where = startup.cacheDir ? `${startup.reused ? 'reused' : 'wrote'} ${startup.cacheDir}` : 'in memory';
    opts.verbose?.(`engine: onnx (onnxruntime-node ${version}, ${engine.backend})`);
    opts.verbose?.(
      `onnx: graph ${startup.graphMs.toFixed(0)} ms, key ${startup.keyMs.toFixed(0)} ms, weights ${startup.weightsMs.toFixed(0)} ms ` +
      `(${where}), session ${startup.sessionMs.toFixed(0)} ms`,
    );
    return engine;
  }

  /** A worker with the plain graph's session open. */
  private static async start(cfg: ViTConfig, source: SessionSource, threads: number, startup: OnnxStartup, dtype: GraphDtype) {
    const sessions = new SessionWorker(await toWorkerSource(source), threads);
    try {
      const version = await sessions.open(MODEL_FILE);
      return { engine: new OnnxEngine(cfg, sessions, threads, startup, dtype), version };
    } catch (e) {
      await sessions.close();
      throw e;
    }
  }

  /** An engine straight from a complete cache entry: no weights in memory, no graph building. */
  static async fromEntry(cfg: ViTConfig, dir: string, opts: OnnxEngineOptions = {}): Promise<OnnxEngine> {
    const threads = opts.threads ?? availableParallelism();
    const t0 = performance.now();
    const source: SessionSource = { kind: 'path', dir };
    const startup: OnnxStartup = { cacheDir: dir, reused: true, graphMs: 0, keyMs: 0, weightsMs: 0, sessionMs: 0 };
    const { engine, version } = await OnnxEngine.start(cfg, source, threads, startup, opts.dtype ?? 'fp32');
    startup.sessionMs = performance.now() - t0;
    opts.verbose?.(`engine: onnx (onnxruntime-node ${version}, ${engine.backend})`);
    opts.verbose?.(`onnx: reused ${dir} without reading the checkpoint, session ${startup.sessionMs.toFixed(0)} ms`);
    return engine;
  }

  /**
   * The cache entry for these weights: found as it is (no graph building, no weight writing), or built and
   * written. Null when the store cannot be written and the model can still be built in memory.
   */
  private static async fromStore(
    store: OnnxStore, cfg: ViTConfig, weights: TensorMap, opts: OnnxEngineOptions, startup: OnnxStartup, lap: () => number,
  ): Promise<SessionSource | null> {
    const dtype = opts.dtype ?? 'fp32';
    const key = store.key(cfg, weights, `${GRAPH_FORMAT} ${dtype}`);
    startup.keyMs = lap();
    const tensors = weights.size;
    try {
      let dir = await store.find(key);
      if (dir) {
        startup.reused = true;
        if (opts.releaseWeights) weights.clear();
      } else {
        const g = await graphBuilder();
        const graphs = buildGraphs(g, cfg, weights, dtype);
        const slots = graphs[MODEL_FILE].slots;
        startup.graphMs = lap();
        dir = await store.save(key, [
          { name: MODEL_FILE, bytes: g.encodeModel(graphs[MODEL_FILE].model) },
          { name: ATTENTION_MODEL_FILE, bytes: g.encodeModel(graphs[ATTENTION_MODEL_FILE].model) },
          { name: WEIGHTS_FILE, size: g.weightFileSize(slots), chunks: g.weightChunks(slots, weights, opts.releaseWeights) },
        ]);
      }
      if (opts.releaseWeights) collectGarbage();
      startup.weightsMs = lap();
      startup.cacheDir = dir;
      return { kind: 'path', dir };
    } catch (e) {
      // An unwritable cache only costs start-up time, as long as the weights are still all here.
      if (weights.size !== tensors) throw e;
      opts.verbose?.(`onnx: ${(e as Error).message}; building the model in memory instead`);
      lap();
      return null;
    }
  }

  /** The attention graph's session, opened the first time attentions are asked for. */
  private attentions(): Promise<string> {
    this.attentionSession ??= this.sessions.open(ATTENTION_MODEL_FILE);
    return this.attentionSession;
  }

  async run(pixels: Float32Array, batch: number, opts: RunOptions = {}): Promise<RunResult> {
    const cfg = this.config;
    const [h, w] = cfg.imgSize;
    const n = batch * cfg.inChans * h * w;
    if (!Number.isInteger(batch) || batch < 1 || pixels.length < n) {
      throw new ModelError(`onnx engine: expected ${batch} images of ${cfg.inChans}x${h}x${w} (${n} floats), got ${pixels.length} floats`);
    }
    if (opts.attentions) await this.attentions();
    const fetches = BASE_OUTPUTS.filter((o) => o !== 'logits' || cfg.numClasses > 0) as string[];
    if (opts.attentions) for (let i = 0; i < cfg.depth; i++) fetches.push(`attn_${i}`);
    const out = await this.sessions.run(opts.attentions ? ATTENTION_MODEL_FILE : MODEL_FILE, pixels.subarray(0, n), [batch, cfg.inChans, h, w], fetches);
    const host = (name: string): HostTensor => ({ shape: out[name].dims, data: out[name].data });
    return {
      logits: cfg.numClasses > 0 ? host('logits') : null,
      cls: host('cls'),
      avg: host('avg'),
      preLogits: host('preLogits'),
      attentions: opts.attentions ? Array.from({ length: cfg.depth }, (_, i) => host(`attn_${i}`)) : [],
    };
  }

  async dispose(): Promise<void> {
    this.attentionSession = null;
    await this.sessions.close();
  }

}

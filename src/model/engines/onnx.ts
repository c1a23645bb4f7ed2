/**
 * The model's forward as an ONNX graph on onnxruntime-node. Up to three graphs share one weights file: the
 * plain one (logits and every feature); where the architecture can skip work for runs that read only the
 * prefix tokens' outputs (ViT: classify, embed --pool cls), one built with ForwardOptions.prefixOnly; and one
 * that also outputs each layer's attention probabilities. A session is opened for a graph only when a run
 * needs it (the one the expected runs need at start), because each holds its own packed copy of the weights,
 * and keeping every layer's probabilities alive as graph outputs costs memory on every batch (onnxruntime
 * computes the whole graph whatever is fetched).
 *
 * Graphs are kept in the injected GraphStore, keyed by the model's identity and the execution settings: a run
 * whose graph is stored starts onnxruntime on it without reading, converting or hashing the checkpoint, which
 * is most of the start-up time of a big model.
 */
import { createHash } from 'node:crypto';
import { ModelError } from '../../errors.js';
import { archOf, prefixOnlyRun } from '../arch/index.js';
import type { ModelConfig } from '../config.js';
import type { HostTensor, TensorMap } from '../tensor.js';
import { INT8_WEIGHTS_WORDS, type Dtype, type Engine, type EngineRequest, type ExecutionSettings, type RunOptions, type RunResult, type StoreFile } from './engine.js';
import { providersFor } from './execution.js';
import { collectGarbage } from './gc.js';
import { GRAPH_FORMAT, WEIGHTS_FILE } from './onnx-format.js';
import type { ModelGraph, WeightSlot } from './onnx-graph.js';
import { onnxRuntimeVersion, SessionWorker } from './onnx-session.js';
import type { WorkerSource } from './onnx-worker.js';

export { onnxRuntimeVersion };

type GraphBuilder = typeof import('./onnx-graph.js');

/**
 * The graph builder, loaded only when a graph is built: it brings the protobuf encoder (onnx-proto,
 * protobufjs), which an engine started on a stored graph never needs.
 */
function graphBuilder(): Promise<GraphBuilder> {
  return import('./onnx-graph.js');
}

const MODEL_FILE = 'model.onnx';
const PREFIX_MODEL_FILE = 'model-prefix.onnx';
const ATTENTION_MODEL_FILE = 'model-attn.onnx';
type GraphFile = typeof MODEL_FILE | typeof PREFIX_MODEL_FILE | typeof ATTENTION_MODEL_FILE;

/** The graph a run with these options uses (the prefix graph exists exactly where prefixOnlyRun can hold). */
function graphFor(cfg: ModelConfig, run: RunOptions): GraphFile {
  if (run.attentions) return ATTENTION_MODEL_FILE;
  return prefixOnlyRun(cfg, run) ? PREFIX_MODEL_FILE : MODEL_FILE;
}

/** The store key of a model run with these settings. */
export function graphKey(identity: string, s: ExecutionSettings): string {
  // The weights' encoding only where there are int8 weights (fp32 keys stay as they were).
  const dtype = s.dtype === 'int8' && (s.int8Weights ?? 'int8') !== 'int8' ? `int8 as ${s.int8Weights}` : s.dtype;
  return createHash('sha256').update(`graph ${GRAPH_FORMAT}\n${identity}\n${dtype}\n${s.device}`).digest('hex').slice(0, 32);
}

type Graphs = Partial<Record<GraphFile, ModelGraph>> & { [MODEL_FILE]: ModelGraph };

/** The model's graphs, which must all read the same weights file. */
function buildGraphs(g: GraphBuilder, cfg: ModelConfig, weights: TensorMap, s: ExecutionSettings): Graphs {
  const { dtype, int8Weights } = s;
  const shapeOf = (param: string) => {
    const t = weights.get(param);
    if (!t) throw new ModelError(`onnx engine: the weights have no "${param}" for model ${cfg.name}`);
    return t.shape;
  };
  const graphs: Graphs = { [MODEL_FILE]: g.buildGraph(cfg, shapeOf, { dtype, int8Weights }) };
  if (archOf(cfg).prefixPools(cfg) !== null) graphs[PREFIX_MODEL_FILE] = g.buildGraph(cfg, shapeOf, { dtype, int8Weights, prefixOnly: true });
  graphs[ATTENTION_MODEL_FILE] = g.buildGraph(cfg, shapeOf, { dtype, int8Weights, attentions: true });
  const a = graphs[MODEL_FILE].slots;
  for (const [file, graph] of Object.entries(graphs)) {
    const b = graph.slots;
    if (a.length !== b.length || a.some((s, i) => s.name !== b[i].name || s.offset !== b[i].offset)) {
      throw new ModelError(`onnx engine: ${file} reads other weights than ${MODEL_FILE}`);
    }
  }
  return graphs;
}

/** The graphs encoded, by file name. */
function encodeGraphs(g: GraphBuilder, graphs: Graphs): Record<string, Uint8Array> {
  return Object.fromEntries(Object.entries(graphs).map(([file, graph]) => [file, g.encodeModel(graph.model)]));
}

/** The entry's files: the graphs and the weights file, streamed slot by slot (released as they go when asked). */
function entryFiles(g: GraphBuilder, graphs: Graphs, weights: TensorMap, release: boolean): StoreFile[] {
  const slots = graphs[MODEL_FILE].slots;
  return [
    ...Object.entries(encodeGraphs(g, graphs)).map(([name, bytes]) => ({ name, bytes })),
    { name: WEIGHTS_FILE, size: g.weightFileSize(slots), chunks: g.weightChunks(slots, weights, release) },
  ];
}

/** The graphs and the weights file as bytes, for sessions made in memory (no store, or one that cannot be written). */
function inMemory(g: GraphBuilder, graphs: Graphs, weights: TensorMap): WorkerSource {
  const slots: WeightSlot[] = graphs[MODEL_FILE].slots;
  const blob = new Uint8Array(g.weightFileSize(slots));
  for (const c of g.weightChunks(slots, weights)) blob.set(c.bytes, c.offset);
  return { kind: 'memory', graphs: encodeGraphs(g, graphs), weightsFile: WEIGHTS_FILE, weights: blob };
}

const firstLine = (e: unknown) => (e instanceof Error ? e.message : String(e)).split('\n')[0];

/**
 * Start the engine for a request: from the stored graph when there is one (falling back to the checkpoint if
 * onnxruntime cannot load it), else by loading the weights, building both graphs and storing them. Every
 * model goes through the store when there is one, whatever its size: onnxruntime maps a weights file from
 * disk faster than it copies the same bytes from memory (B/32: session 0.3 s from a file vs 0.4–0.8 s from
 * memory, which also holds the weights twice).
 */
export async function startOnnx(req: EngineRequest): Promise<Engine> {
  const t0 = performance.now();
  const key = req.identity && req.cache ? graphKey(req.identity, req.settings) : null;
  const stored = key ? await req.cache!.find(key) : null;
  if (stored) {
    try {
      const engine = await OnnxEngine.open(stored.config, { kind: 'path', dir: stored.dir }, req);
      req.verbose(`onnx: reused ${stored.dir} without reading the checkpoint, session ${(performance.now() - t0).toFixed(0)} ms`);
      return engine;
    } catch (e) {
      req.verbose(`onnx: stored graph unusable (${firstLine(e)}); loading the checkpoint`);
      req.cache!.discard(stored.dir);
    }
  }
  const { config, weights } = await req.load();
  const t1 = performance.now();
  const g = await graphBuilder();
  const graphs = buildGraphs(g, config, weights, req.settings);
  const t2 = performance.now();
  let source: WorkerSource | null = null;
  if (key) {
    const tensors = weights.size;
    try {
      // Each tensor is dropped from the map once it is on disk, so a big model is never held twice, and the
      // garbage is collected before onnxruntime allocates its own copy.
      const dir = await req.cache!.save(key, config, entryFiles(g, graphs, weights, true));
      collectGarbage();
      source = { kind: 'path', dir };
      req.verbose(`onnx: wrote ${dir}`);
    } catch (e) {
      // An unwritable store only costs start-up time, as long as the weights are still all here.
      if (weights.size !== tensors) throw e;
      req.verbose(`onnx: ${firstLine(e)}; building the model in memory instead`);
    }
  }
  source ??= inMemory(g, graphs, weights);
  const t3 = performance.now();
  const engine = await OnnxEngine.open(config, source, req);
  req.verbose(
    `onnx: checkpoint ${(t1 - t0).toFixed(0)} ms, graph ${(t2 - t1).toFixed(0)} ms, weights ${(t3 - t2).toFixed(0)} ms, ` +
    `session ${(performance.now() - t3).toFixed(0)} ms`,
  );
  return engine;
}

class OnnxEngine implements Engine {
  readonly name = 'onnx' as const;
  /** The sessions opened so far, each answering with onnxruntime's version and its graph's output names. */
  private readonly opened = new Map<GraphFile, Promise<{ version: string; outputs: string[] }>>();

  private constructor(
    readonly config: ModelConfig,
    readonly backend: string,
    private readonly sessions: SessionWorker,
  ) {}

  /** The session of one graph, opened on first use. */
  private session(file: GraphFile): Promise<{ version: string; outputs: string[] }> {
    let s = this.opened.get(file);
    if (!s) {
      s = this.sessions.open(file);
      this.opened.set(file, s);
    }
    return s;
  }

  /** A worker with the session open of the graph the expected runs need (the plain one unless told). */
  static async open(config: ModelConfig, source: WorkerSource, req: EngineRequest): Promise<OnnxEngine> {
    const { threads, device, dtype, int8Weights = 'int8' } = req.settings;
    const transfer = source.kind === 'memory'
      ? [source.weights.buffer as ArrayBuffer, ...Object.values(source.graphs).map((g) => g.buffer as ArrayBuffer)]
      : [];
    const sessions = new SessionWorker({ source, threads, providers: providersFor(device) }, transfer);
    try {
      // Why weights are in 7 bits (this CPU, or reduceRange) prepareModel says: only it knows which.
      const held = dtype === 'fp32' || int8Weights === 'int8' ? '' : `, weights in ${int8Weights === 'int7' ? '7 bits' : INT8_WEIGHTS_WORDS[int8Weights]}`;
      const backend = `${device}, ${threads} thread${threads === 1 ? '' : 's'}${dtype === 'fp32' ? '' : `, ${dtype}`}${held}`;
      const engine = new OnnxEngine(config, backend, sessions);
      const { version } = await engine.session(graphFor(config, req.expect ?? {}));
      req.verbose(`engine: onnx (onnxruntime-node ${version}, ${backend})`);
      return engine;
    } catch (e) {
      await sessions.close();
      throw e;
    }
  }

  async run(pixels: Float32Array, batch: number, opts: RunOptions = {}): Promise<RunResult> {
    const cfg = this.config;
    const [h, w] = cfg.imgSize;
    const n = batch * cfg.inChans * h * w;
    if (!Number.isInteger(batch) || batch < 1 || pixels.length < n) {
      throw new ModelError(`onnx engine: expected ${batch} images of ${cfg.inChans}x${h}x${w} (${n} floats), got ${pixels.length} floats`);
    }
    const file = graphFor(cfg, opts);
    const fetches = (await this.session(file)).outputs;
    const out = await this.sessions.run(file, pixels.subarray(0, n), [batch, cfg.inChans, h, w], fetches);
    const host = (name: string): HostTensor => ({ shape: out[name].dims, data: out[name].data });
    const attentions: HostTensor[] = [];
    for (let i = 0; `attn_${i}` in out; i++) attentions.push(host(`attn_${i}`));
    return {
      logits: 'logits' in out ? host('logits') : null,
      features: Object.fromEntries(archOf(cfg).pools.filter((p) => p in out).map((p) => [p, host(p)])),
      attentions,
    };
  }

  async dispose(): Promise<void> {
    this.opened.clear();
    await this.sessions.close();
  }
}

import type { ModelConfig } from '../config.js';
import type { HostTensor, TensorMap } from '../tensor.js';

export type EngineName = 'onnx' | 'tfjs';
export const DTYPES = ['fp32', 'int8'] as const;
export type Dtype = (typeof DTYPES)[number];
/**
 * How int8 weights are quantized and stored. int8: each row's largest |w| at ±127, zero point 0, multiplied as
 * u8·s8. int7: the same with the largest |w| at ±64, for x86 CPUs without VNNI, where onnxruntime's u8·s8
 * kernel (AVX2 vpmaddubsw) adds pairs of products in 16-bit sums that saturate: 2·255·64 = 32640 fits, so
 * the products are exact (see src/io/cpus.ts). uint8: the int8 numbers plus 128 (zero point 128), multiplied
 * as u8·u8, exact everywhere but slower; only to check an int8 export's numbers on such a CPU.
 */
export type Int8Weights = 'int8' | 'int7' | 'uint8';
/**
 * The weights of an int8 run in words, where they are not the usual 8 bits: for --verbose, and (int7 only)
 * for a run's manifest, since those results then depend on the CPU kind.
 */
export const INT8_WEIGHTS_WORDS: Record<Exclude<Int8Weights, 'int8'>, string> = { int7: '7 bits (a CPU without VNNI)', uint8: '8 bits held as uint8' };
export const DEVICES = ['cpu', 'cuda'] as const;
export type Device = (typeof DEVICES)[number];

/** How a model runs: numeric type, device and intra-op threads. */
export interface ExecutionSettings {
  dtype: Dtype;
  device: Device;
  threads: number;
  /** How int8 weights are held on this CPU (src/io/cpus.ts decides); default int8. */
  int8Weights?: Int8Weights;
}

export interface RunOptions {
  /** Also return the per-layer attention probabilities. */
  attentions?: boolean;
  /**
   * The features the caller reads (default: all of the architecture's pools; [] for logits alone). Naming
   * them lets an engine skip work only other features need (ViT: see ForwardOptions.prefixOnly); the result
   * may then lack the others.
   */
  pools?: readonly string[];
}

/** Host copies of what a forward produced for one batch. */
export interface RunResult {
  logits: HostTensor | null;
  /** [B, width] pooled features by the architecture's pool names. */
  features: Record<string, HostTensor>;
  /** Per attention layer, in the architecture's layout; empty unless asked for. */
  attentions: HostTensor[];
}

/** A model ready to run: built from a config and canonical weights by one of the engines. */
export interface Engine {
  readonly name: EngineName;
  /** What actually runs the kernels: tfjs backend ("tensorflow", "wasm", "cpu") or ORT's provider. */
  readonly backend: string;
  /** The config as fitted to the checkpoint (its head size may differ from a preset's). */
  readonly config: ModelConfig;
  /** pixels: float32 NCHW [batch, C, H, W] at the config's image size. */
  run(pixels: Float32Array, batch: number, opts?: RunOptions): Promise<RunResult>;
  dispose(): Promise<void>;
}

/** One file of a graph cache entry: small ones as bytes, big ones as chunks at their offsets (streamed). */
export type StoreFile =
  | { name: string; bytes: Uint8Array }
  | { name: string; size: number; chunks: Iterable<{ offset: number; bytes: Uint8Array }> };

/**
 * Where built graphs are kept between runs. The model side names files and keys; the store (injected by the
 * caller, src/io/graph-cache.ts on disk) decides where they go and writes them atomically.
 */
export interface GraphStore {
  /** The directory of a complete entry and the config it was built for, or null. */
  find(key: string): Promise<{ dir: string; config: ModelConfig } | null>;
  /** Write a new entry (atomically) and return its directory. */
  save(key: string, config: ModelConfig, files: StoreFile[]): Promise<string>;
  /** Drop an entry the runtime could not load, so the next build writes it afresh. */
  discard(dir: string): void;
}

/** What an engine is started from. */
export interface EngineRequest {
  /** The resolved config (before the checkpoint was read: a preset's head, the requested image size). */
  config: ModelConfig;
  /**
   * What the loaded model depends on — the weights' content hash, the config and what was asked of it — or
   * null when it cannot be known without loading. Equal keys load to the same model.
   */
  identity: string | null;
  /** Read, convert and check the weights, with the config fitted to them; called only when they are needed. */
  load(): Promise<{ config: ModelConfig; weights: TensorMap }>;
  settings: ExecutionSettings;
  /** Built graphs kept between runs (onnx); null builds every model in memory. */
  cache: GraphStore | null;
  /** The runs to come, if known: the engine readies what they need first (onnx: that graph's session). */
  expect?: RunOptions;
  verbose(msg: string): void;
}

/** A row of the engine table (src/model/engines/index.ts). */
export interface EngineKind {
  name: EngineName;
  dtypes: readonly Dtype[];
  devices: readonly Device[];
  /** Null when the engine can run here, else why not (one line). */
  unavailable(): Promise<string | null>;
  start(req: EngineRequest): Promise<Engine>;
}

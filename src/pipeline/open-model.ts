/**
 * One way to open a model: resolve what the spec names (local config files, the hub), work out what the model
 * is (a content hash of its weights, its config, what was asked of it), then start an engine for it — from a
 * stored graph when one was built before, else by loading and checking the weights.
 *
 * prepareModel does the first two steps, cheaply and before any input is read, so that a bad model name or an
 * output that cannot be resumed is reported before anything runs; `start` does the rest. openModel is both.
 */
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import type { ModelConfig } from '../model/config.js';
import { DEVICES, DTYPES, type Device, type Dtype, type Engine, type GraphStore, type Int8Weights, type RunOptions } from '../model/engines/engine.js';
import { deviceMissing } from '../model/engines/execution.js';
import { ENGINE_NAMES, startEngine, type EngineChoice } from '../model/engines/index.js';
import { providerInstalled } from '../io/onnx-binaries.js';
import { checkpointHash } from '../io/checkpoint-files.js';
import { int8WeightsFor, usableCpus } from '../io/cpus.js';
import { defaultGraphCacheDir, openGraphCache } from '../io/graph-cache.js';
import { loadWeights, resolveModel, type ModelSpec, type ResolvedModel } from '../io/model-source.js';
import { toolVersion } from '../io/paths.js';
import { UsageError, wholeNumber, wrongType } from '../errors.js';
import { imageSizeProblem, LIMITS, rangeProblem } from '../model/limits.js';

export interface OpenOptions {
  /** onnx, tfjs, or auto (default): the first of them that runs the dtype on the device here. */
  engine?: EngineChoice;
  dtype?: Dtype;
  device?: Device;
  /** Intra-op threads; default VIT_THREADS, else the CPUs this process may use (affinity mask, cgroup quota). */
  threads?: number;
  /**
   * int8 only: weights in 7 bits on every CPU, as x86 CPUs without VNNI hold them anyway (default: there
   * only), so that runs on mixed CPUs give the same numbers and their outputs resume and merge together.
   */
  reduceRange?: boolean;
  /** Where built graphs are kept; default the on-disk cache ($VIT_GRAPH_CACHE, ~/.cache/vit/onnx), null for none. */
  graphCache?: GraphStore | null;
  verbose?: (msg: string) => void;
}

/** The threads a run uses: --threads (checked), else VIT_THREADS, else the CPUs this process may use. */
export function runThreads(threads: number | undefined): number {
  return threads === undefined ? defaultThreads() : checkedThreads(String(threads), '--threads');
}

/** VIT_THREADS, else the CPUs this process may use (at most LIMITS.threads). */
export function defaultThreads(env: NodeJS.ProcessEnv = process.env): number {
  const v = env.VIT_THREADS;
  if (v !== undefined && v !== '') return checkedThreads(v, 'VIT_THREADS');
  return Math.min(usableCpus(), LIMITS.threads.max);
}

function checkedThreads(value: string, field: string): number {
  const n = wholeNumber(value, field, LIMITS.threads.min);
  const problem = rangeProblem(field, n, LIMITS.threads);
  if (problem !== null) throw new UsageError(problem);
  return n;
}

/** A model resolved and identified, not started. */
export interface PreparedModel {
  resolved: ResolvedModel;
  /** The config as resolved: preprocessing, image size and channels, which the engine does not change. */
  config: ModelConfig;
  /**
   * What the model is, independent of paths and of this tool's version: sha256 over the weights' content hash,
   * the resolved config and the class count asked for. Equal ids give equal outputs.
   */
  modelId: string;
  settings: { dtype: Dtype; device: Device; threads: number; int8Weights: Int8Weights; engine: EngineChoice };
  /** Start the engine (loading the weights unless its graph is stored), readied for runs like `expect`. */
  start(expect?: RunOptions): Promise<Engine>;
}

/** The sha256 of the weights, or a name for seeded random ones. */
function weightsId(spec: ModelSpec, r: ResolvedModel, memoDir: string | null): string | null {
  if (spec.randomWeights) return 'random weights, seed 0';
  return r.weightsPath ? checkpointHash(r.weightsPath, memoDir) : null;
}

function choice<T extends string>(value: T | undefined, allowed: readonly T[], flag: string, fallback: T): T {
  const v = value ?? fallback;
  if (!allowed.includes(v)) throw new UsageError(`unknown ${flag} "${v}"; choose one of ${allowed.join(', ')}`);
  return v;
}

/** --reduce-range (run commands and vit export alike) sets how int8 weights are held: it takes --dtype int8. */
export function checkReduceRange(reduceRange: unknown, dtype: Dtype): void {
  if (reduceRange !== undefined && typeof reduceRange !== 'boolean') throw wrongType('reduceRange', 'true or false', reduceRange);
  if (reduceRange === true && dtype !== 'int8') throw new UsageError('--reduce-range is for --dtype int8 (it sets how int8 weights are held)');
}

export async function prepareModel(spec: ModelSpec, opts: OpenOptions = {}): Promise<PreparedModel> {
  const verbose = opts.verbose ?? (() => {});
  const chosen = {
    engine: choice(opts.engine, ENGINE_NAMES, '--engine', 'auto'),
    dtype: choice(opts.dtype, DTYPES, '--dtype', 'fp32'),
    device: choice(opts.device, DEVICES, '--device', 'cpu'),
    threads: runThreads(opts.threads),
  };
  checkReduceRange(opts.reduceRange, chosen.dtype);
  // The CPU (/proc/cpuinfo) is asked only where there are int8 weights to hold and 7 bits were not asked for.
  const int8Weights = chosen.dtype !== 'int8' ? 'int8' as const : opts.reduceRange ? 'int7' as const : int8WeightsFor();
  if (int8Weights === 'int7') verbose(`int8 weights in 7 bits: ${opts.reduceRange ? 'as asked (--reduce-range)' : 'this CPU has no VNNI (see --reduce-range)'}`);
  const settings = { ...chosen, int8Weights };
  if (!providerInstalled(settings.device)) throw deviceMissing(settings.device);
  const resolved = await resolveModel(spec);
  const cache = opts.graphCache === undefined ? openGraphCache() : opts.graphCache;
  const cacheDir = opts.graphCache === undefined ? defaultGraphCacheDir() : null;
  const weights = weightsId(spec, resolved, cacheDir === null ? null : join(cacheDir, 'ids'));
  const { name: _name, ...config } = resolved.config;
  const modelId = createHash('sha256').update(JSON.stringify({ weights, config, numClasses: spec.numClasses ?? null })).digest('hex');
  return {
    resolved,
    config: resolved.config,
    modelId,
    settings,
    start: (expect) => startEngine(settings.engine, {
      config: resolved.config,
      // Unknown weights (a missing file is reported by load) are never looked up in the store.
      identity: weights === null ? null : `vit ${toolVersion()}\n${modelId}`,
      load: () => loadWeights(resolved, spec, verbose),
      settings,
      cache,
      expect,
      verbose,
    }),
  };
}

/** Resolve, identify, load, check and start: an engine ready to run (readied for runs like `opts.expect`). */
export async function openModel(spec: ModelSpec, opts: OpenOptions & { expect?: RunOptions } = {}): Promise<Engine> {
  return (await prepareModel(spec, opts)).start(opts.expect);
}

/** The model options as the command line gives them. */
export interface ModelArgs {
  model?: string;
  weights?: string;
  randomWeights?: boolean;
  numClasses?: number;
  /** S or HxW. */
  imageSize?: string;
}

/** "384" or "384x512" → [h, w]. */
export function parseImageSize(s: string | undefined): [number, number] | undefined {
  if (s === undefined) return undefined;
  const m = /^(\d+)(?:[x×,](\d+))?$/i.exec(s.trim());
  if (!m) throw new UsageError(`--image-size takes S or HxW (e.g. 384 or 384x512), not "${s}"`);
  const h = Number(m[1]);
  const w = m[2] === undefined ? h : Number(m[2]);
  if (h <= 0 || w <= 0) throw new UsageError(`--image-size must be positive, not "${s}"`);
  const problem = imageSizeProblem([h, w]);
  if (problem !== null) throw new UsageError(problem);
  return [h, w];
}

/** The model the model options name. */
export function modelSpec(a: ModelArgs): ModelSpec {
  return { model: a.model, weights: a.weights, randomWeights: a.randomWeights, numClasses: a.numClasses, imageSize: parseImageSize(a.imageSize) };
}

import { ModelError, UsageError } from '../../errors.js';
import type { ViTConfig } from '../config.js';
import type { TensorMap } from '../tensor.js';
import type { Engine, EngineFactoryOptions } from './engine.js';
import type { GraphDtype } from './onnx-format.js';
import { collectGarbage } from './gc.js';

/** The values of `--engine`: auto picks onnx where onnxruntime-node loads, else tfjs. */
export const ENGINE_NAMES = ['auto', 'onnx', 'tfjs'] as const;
export type EngineChoice = (typeof ENGINE_NAMES)[number];

export interface CreateEngineOptions extends EngineFactoryOptions {
  /** onnx: weights of at least this many bytes go through the on-disk graph cache (default: all). */
  externalDataThreshold?: number;
  /** onnx: the graph cache directory; default $XDG_CACHE_HOME/vit/onnx or ~/.cache/vit/onnx. */
  cacheDir?: string;
  /**
   * The caller is done with the weights map: the engine may empty it once the weights live elsewhere (in the
   * onnx cache file, in tfjs tensors), so a big model is not held twice.
   */
  releaseWeights?: boolean;
  /** onnx: the number format of the linear layers; default fp32. */
  dtype?: GraphDtype;
}

function firstLine(e: unknown): string {
  return (e instanceof Error ? e.message : String(e)).split('\n')[0];
}

/**
 * Whether a run with this choice uses the onnx engine: false for tfjs; for auto, whether onnxruntime-node
 * loads here (said in verbose mode when it does not); for onnx, true or a ModelError saying why it cannot.
 * The answer comes from the worker thread that will run the sessions, started now if it was not preloaded.
 */
export async function usesOnnx(choice: EngineChoice, verbose?: (m: string) => void): Promise<boolean> {
  if (!ENGINE_NAMES.includes(choice)) throw new UsageError(`unknown engine "${choice}"; choose one of ${ENGINE_NAMES.join(', ')}`);
  if (choice === 'tfjs') return false;
  try {
    await (await import('./onnx.js')).onnxRuntimeVersion();
    return true;
  } catch (e) {
    if (choice === 'onnx') throw new ModelError(`the onnx engine needs onnxruntime-node, which does not load here: ${firstLine(e)}`);
    verbose?.(`engine: onnxruntime-node does not load (${firstLine(e)}); falling back to tfjs`);
    return false;
  }
}

/**
 * Start loading what a run with this choice will need before the model is known (onnxruntime-node, on the
 * thread its sessions will run on), so that it overlaps reading the inputs.
 */
export function preloadEngine(choice: EngineChoice): void {
  if (choice === 'tfjs' || !ENGINE_NAMES.includes(choice)) return;
  import('./onnx.js').then((m) => m.preloadOnnxRuntime(), () => undefined);
}

/**
 * Build the named engine. Both are imported lazily: a run pays only for the runtime it uses, and a machine
 * where onnxruntime-node's native library cannot load still runs on tfjs (which picks its own best backend).
 */
export async function createEngine(choice: EngineChoice, cfg: ViTConfig, weights: TensorMap, opts: CreateEngineOptions = {}): Promise<Engine> {
  const int8 = (opts.dtype ?? 'fp32') !== 'fp32';
  if (int8 && choice === 'tfjs') throw new UsageError(`--dtype ${opts.dtype} needs the onnx engine; the tfjs engine computes in fp32 only`);
  if (await usesOnnx(int8 ? 'onnx' : choice, opts.verbose)) {
    const { OnnxEngine } = await import('./onnx.js');
    // The cache touches the file system, which the model layer leaves to src/io.
    const { openOnnxCache } = await import('../../io/onnx-cache.js');
    return OnnxEngine.create(cfg, weights, { ...opts, store: openOnnxCache(opts.cacheDir) });
  }
  const { TfjsEngine } = await import('./tfjs.js');
  const engine = await TfjsEngine.create(cfg, weights, opts);
  if (opts.releaseWeights) {
    weights.clear();
    collectGarbage();
  }
  return engine;
}

import { createHash } from 'node:crypto';
import { existsSync, realpathSync, statSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { ModelError, UsageError, WeightsError } from '../errors.js';
import { validateConfig, withImageSize, type ViTConfig } from '../model/config.js';
import { configFromJson } from '../model/config-readers.js';
import { isPresetName, presetConfig } from '../model/presets.js';
import type { TensorMap } from '../model/tensor.js';
import type { WeightsBudget } from '../model/weights/budget.js';
import { modelResolvers } from './model-resolvers.js';
import { DEFAULT_MODEL_DIR, toolVersion } from './paths.js';
import { FILE_LIMITS, readFailure, readRegularText } from './regular-file.js';
import { readFileBytes } from './streams.js';

/** How a command names its model: the shared options of every command. */
export interface ModelSpec {
  /** A preset name, a model directory, or (with the hub) ORG/NAME; undefined = the bundled model. */
  model?: string;
  weights?: string;
  randomWeights?: boolean;
  numClasses?: number;
  /** Run at another resolution (position embeddings are resampled on load). */
  imageSize?: [number, number];
}

export interface ResolvedModel {
  config: ViTConfig;
  /** The checkpoint file to load, when there is one. */
  weightsPath: string | null;
  /** Where the model came from, for messages. */
  source: string;
}

/** Weight files a model directory may hold, in order of preference. */
const WEIGHT_FILES = ['model.safetensors', 'model.safetensors.index.json', 'pytorch_model.bin', 'model.pth', 'model.pt', 'model.bin', 'model.npz'];

/** A JSON object from a regular file of bounded size (a FIFO or /dev/zero named config.json is refused). */
function readJson(path: string, maxBytes: number = FILE_LIMITS.config): Record<string, unknown> {
  let v: unknown;
  try {
    v = JSON.parse(readRegularText(path, maxBytes));
  } catch (e) {
    throw new ModelError(`${path}: ${readFailure(e)}`);
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new ModelError(`${path}: expected a JSON object, found ${JSON.stringify(v)?.slice(0, 40)}`);
  return v as Record<string, unknown>;
}

function isDir(p: string): boolean {
  try {
    return statSync(p).isDirectory();
  } catch {
    return false;
  }
}

/** A model directory: config.json (HF or timm) + optional preprocessor_config.json + a weights file. */
export function configFromDir(dir: string): ResolvedModel {
  const cfgPath = join(dir, 'config.json');
  if (!existsSync(cfgPath)) throw new UsageError(`${dir}: a model directory needs a config.json (Hugging Face or timm)`);
  const ppPath = join(dir, 'preprocessor_config.json');
  const config = configFromJson(readJson(cfgPath), existsSync(ppPath) ? readJson(ppPath) : null, basename(dir.replace(/\/+$/, '')) || dir);
  const file = WEIGHT_FILES.map((f) => join(dir, f)).find((f) => existsSync(f)) ?? null;
  return { config, weightsPath: file, source: dir };
}

/** The model is a directory or a preset: resolving it reads local files only, never the network. */
export function isLocalModel(spec: ModelSpec): boolean {
  const name = spec.model ?? DEFAULT_MODEL_DIR;
  return isDir(name) || isPresetName(name);
}

export async function resolveModel(spec: ModelSpec): Promise<ResolvedModel> {
  const name = spec.model ?? DEFAULT_MODEL_DIR;
  let resolved: ResolvedModel | null = null;
  if (isDir(name)) resolved = configFromDir(name);
  else if (isPresetName(name)) resolved = { config: presetConfig(name), weightsPath: null, source: name };
  else {
    for (const r of modelResolvers) {
      const dir = await r(name);
      if (dir) {
        const fromDir = configFromDir(dir);
        resolved = { ...fromDir, config: { ...fromDir.config, name }, source: name };
        break;
      }
    }
  }
  if (!resolved) {
    if (spec.model === undefined) throw new ModelError(`the bundled model is missing at ${DEFAULT_MODEL_DIR}; reinstall, or pass --model`);
    presetConfig(name); // throws the usage error that lists every valid name
    throw new UsageError(`unknown model "${name}"`);
  }
  if (spec.weights) resolved.weightsPath = spec.weights;
  if (spec.numClasses !== undefined) {
    resolved.config = validateConfig({ ...resolved.config, numClasses: spec.numClasses, labels: null });
  }
  if (spec.imageSize) resolved.config = withImageSize(resolved.config, spec.imageSize);
  return resolved;
}

/**
 * A preset says nothing of the checkpoint's head; take its size from the weights (fine-tuned heads, headless
 * feature extractors, in21k pre-logits), unless the user fixed the class count.
 */
function adaptToCheckpoint(cfg: ViTConfig, w: TensorMap, fromPreset: boolean, fixedClasses: boolean): ViTConfig {
  const out = { ...cfg };
  const pre = w.get('pre_logits.fc.weight');
  if (pre && out.representationSize === null) out.representationSize = pre.shape[0];
  if (fromPreset && !fixedClasses) {
    const head = w.get('head.weight');
    out.numClasses = head ? head.shape[0] : w.has('head_dist.weight') ? out.numClasses : 0;
    if (out.numClasses !== cfg.numClasses) out.labels = null;
  }
  return validateConfig(out);
}

/**
 * The checkpoint readers, naming schemes and checks, loaded when weights are first needed: resolving a model
 * (summary, a run on a cached ONNX graph) uses none of them.
 */
async function weightTools() {
  const [budget, check, formats, random, resample, schemes] = await Promise.all([
    import('../model/weights/budget.js'),
    import('../model/weights/check.js'),
    import('../model/weights/formats.js'),
    import('../model/weights/random.js'),
    import('../model/weights/resample.js'),
    import('../model/weights/schemes.js'),
    // For its effect: registers every format and scheme beyond safetensors / timm / hf.
    import('../model/weights/index.js'),
  ]);
  return {
    checkWeights: check.checkWeights, readWeights: formats.readWeights, randomWeights: random.randomWeights,
    fitPosEmbed: resample.fitPosEmbed, detectScheme: schemes.detectScheme,
    weightsBudget: budget.weightsBudget, maxFileBytes: budget.maxFileBytes,
  };
}
type ReadWeights = Awaited<ReturnType<typeof weightTools>>['readWeights'];

/** The budget, and the most bytes a file within it can take (budget.ts: maxFileBytes). */
interface FileBudget { budget: WeightsBudget; maxBytes: number }

function readOne(path: string, readWeights: ReadWeights, { budget, maxBytes }: FileBudget): TensorMap {
  let bytes: Uint8Array;
  try {
    bytes = readFileBytes(path, maxBytes);
  } catch (e) {
    throw new WeightsError(`cannot read weights ${path}: ${readFailure(e)}`);
  }
  return readWeights(bytes, path, budget);
}

/** A checkpoint file, or a sharded one: `*.index.json` whose weight_map names the shard of every tensor. */
function readCheckpoint(path: string, readWeights: ReadWeights, budget: FileBudget): TensorMap {
  if (!path.endsWith('.index.json')) return readOne(path, readWeights, budget);
  const index = readJson(path, FILE_LIMITS.index) as { weight_map?: Record<string, string> };
  if (!index.weight_map) throw new WeightsError(`${path}: a sharded checkpoint index needs a weight_map`);
  const out: TensorMap = new Map();
  for (const shard of new Set(Object.values(index.weight_map))) {
    if (shard.includes('/') || shard.includes('\\')) throw new WeightsError(`${path}: shard "${shard}" is not a file beside the index`);
    for (const [k, v] of readOne(join(dirname(path), shard), readWeights, budget)) out.set(k, v);
  }
  return out;
}

export interface LoadedModel {
  config: ViTConfig;
  weights: TensorMap;
  /** Naming scheme the checkpoint used, or "random". */
  scheme: string;
  source: string;
}

/** Resolve, read, convert to canonical names and check the weights: ready for an engine. */
export async function loadModel(spec: ModelSpec, verbose: (m: string) => void = () => {}, resolved?: ResolvedModel): Promise<LoadedModel> {
  const r = resolved ?? await resolveModel(spec);
  const { checkWeights, detectScheme, fitPosEmbed, maxFileBytes, randomWeights, readWeights, weightsBudget } = await weightTools();
  if (spec.randomWeights) {
    verbose(`model: ${r.config.name} with random weights (seed 0)`);
    const weights = randomWeights(r.config);
    fitPosEmbed(r.config, weights);
    return { config: r.config, weights, scheme: 'random', source: r.source };
  }
  if (!r.weightsPath) {
    throw new UsageError(
      `model "${r.source}" has no weights: pass --weights FILE (safetensors, .pth/.bin, .npz), a model directory ` +
      'with config.json and weights, or --random-weights for a benchmark',
    );
  }
  const t0 = performance.now();
  const fromPreset = isPresetName(r.source) && !isDir(r.source);
  // Every size the checkpoint claims is checked against this before it is allocated or inflated.
  const budget = weightsBudget(r.config, fromPreset && spec.numClasses === undefined);
  const raw = readCheckpoint(r.weightsPath, readWeights, { budget, maxBytes: maxFileBytes(budget) });
  const scheme = detectScheme(raw);
  const weights = scheme.toCanonical(raw, r.config);
  const config = adaptToCheckpoint(r.config, weights, fromPreset, spec.numClasses !== undefined);
  checkWeights(config, weights, r.weightsPath);
  // Checked against the checkpoint's own grid (posEmbedGrid); resampled to the requested size only then.
  fitPosEmbed(config, weights);
  verbose(`weights: ${r.weightsPath} (${scheme.name} names), read in ${(performance.now() - t0).toFixed(0)} ms`);
  return { config, weights, scheme: scheme.name, source: r.source };
}

/**
 * What a loaded model depends on, without reading the checkpoint: the weight file(s) by real path, size and
 * modification time, the request (class count, image size) and the resolved config. Equal identities load to
 * the same model, so caches keyed by it (the ONNX graph cache) can skip loading; rewriting the file changes it.
 */
export function weightsIdentity(spec: ModelSpec, r: ResolvedModel): string | null {
  let files: unknown;
  if (spec.randomWeights) files = 'random weights, seed 0';
  else if (!r.weightsPath) return null;
  else {
    const stamp = (p: string) => {
      const st = statSync(p);
      return [realpathSync(p), st.size, st.mtimeMs];
    };
    try {
      const shards = r.weightsPath.endsWith('.index.json')
        ? [...new Set(Object.values((readJson(r.weightsPath, FILE_LIMITS.index) as { weight_map?: Record<string, string> }).weight_map ?? {}))]
          .map((f) => join(dirname(r.weightsPath!), f))
        : [];
      files = [r.weightsPath, ...shards].map(stamp);
    } catch {
      return null;
    }
  }
  const request = { numClasses: spec.numClasses, imageSize: spec.imageSize };
  return createHash('sha256').update(JSON.stringify({ v: toolVersion(), files, request, config: r.config })).digest('hex').slice(0, 32);
}

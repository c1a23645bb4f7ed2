/**
 * What `--model` (with `--weights`, `--num-classes`, `--image-size`, `--random-weights`) names: a preset, a
 * model directory (config.json + preprocessor_config.json + weights) or, through a registered resolver, a
 * hub id. Resolving reads local config files only; the weights are read by loadWeights when an engine
 * needs them.
 */
import { existsSync, statSync } from 'node:fs';
import { basename, join } from 'node:path';
import { ModelError, UsageError, wrongType } from '../errors.js';
import { archOf, configFromJson, findPreset, presetConfig } from '../model/arch/index.js';
import { fromCheckpoint, fromRandom, weightsBudget, type LoadedWeights } from '../model/checkpoint.js';
import type { ModelConfig } from '../model/config.js';
import { imageSizeProblem } from '../model/limits.js';
import { WEIGHT_FILES, onnxExportNote, readCheckpoint } from './checkpoint-files.js';
import { modelResolvers } from './model-resolvers.js';
import { DEFAULT_MODEL_DIR } from './paths.js';
import { FILE_LIMITS, readFailure, readRegularText } from './regular-file.js';

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
  config: ModelConfig;
  /** The checkpoint file to load (a shard index for sharded ones), when there is one. */
  weightsPath: string | null;
  /** Where the model came from, for messages. */
  source: string;
  /** The config is a preset's, which says nothing of the checkpoint's head. */
  fromPreset: boolean;
}

/** A JSON object from a regular file of bounded size (a FIFO or /dev/zero named config.json is refused). */
function readJson(path: string): Record<string, unknown> {
  let v: unknown;
  try {
    v = JSON.parse(readRegularText(path, FILE_LIMITS.config));
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
export function configFromDir(dir: string, name = basename(dir.replace(/\/+$/, '')) || dir): ResolvedModel {
  const cfgPath = join(dir, 'config.json');
  if (!existsSync(cfgPath)) throw new UsageError(`${dir}: a model directory needs a config.json (Hugging Face or timm)`);
  const ppPath = join(dir, 'preprocessor_config.json');
  const config = configFromJson(readJson(cfgPath), existsSync(ppPath) ? readJson(ppPath) : null, name);
  const file = WEIGHT_FILES.map((f) => join(dir, f)).find((f) => existsSync(f)) ?? null;
  return { config, weightsPath: file, source: dir, fromPreset: false };
}

/** The model is a directory or a preset: resolving it reads local files only, never the network. */
export function isLocalModel(spec: ModelSpec): boolean {
  const name = spec.model ?? DEFAULT_MODEL_DIR;
  return isDir(name) || findPreset(name) !== null;
}

/**
 * A config changed by an option: it was valid before, so what is wrong now is the option's value (e.g. an
 * --image-size giving too many patches), a usage error (exit 2) naming the option.
 */
function byOption<C>(option: string, make: () => C): C {
  try {
    return make();
  } catch (e) {
    throw e instanceof ModelError ? new UsageError(`${option}: ${e.message}`) : e;
  }
}

/**
 * The spec's fields have their types (the CLI builds it so; a library caller in plain JS may not):
 * `model: 42` failed as "name.trim is not a function".
 */
function checkSpec(spec: ModelSpec): void {
  for (const field of ['model', 'weights'] as const) {
    const v: unknown = spec[field];
    if (v !== undefined && (typeof v !== 'string' || v === '')) throw wrongType(field, 'a non-empty string', v);
  }
  if (spec.randomWeights !== undefined && typeof spec.randomWeights !== 'boolean') throw wrongType('randomWeights', 'true or false', spec.randomWeights);
  const size: unknown = spec.imageSize;
  if (size !== undefined) {
    if (!Array.isArray(size) || size.length !== 2) throw wrongType('imageSize', '[height, width]', size);
    const problem = imageSizeProblem(size as [number, number]);
    if (problem !== null) throw new UsageError(problem);
  }
  // Its bounds are the architecture's to check (with the config it changes).
  if (spec.numClasses !== undefined && typeof spec.numClasses !== 'number') throw wrongType('numClasses', 'a number', spec.numClasses);
}

export async function resolveModel(spec: ModelSpec): Promise<ResolvedModel> {
  checkSpec(spec);
  const name = spec.model ?? DEFAULT_MODEL_DIR;
  let resolved: ResolvedModel | null = null;
  const preset = isDir(name) ? null : findPreset(name);
  if (isDir(name)) resolved = configFromDir(name);
  else if (preset) resolved = { config: preset, weightsPath: null, source: name, fromPreset: true };
  else {
    for (const r of modelResolvers) {
      const dir = await r(name);
      if (dir) {
        resolved = { ...configFromDir(dir, name), source: name };
        break;
      }
    }
  }
  if (!resolved) {
    if (spec.model === undefined) throw new ModelError(`the bundled model is missing at ${DEFAULT_MODEL_DIR}; reinstall, or pass --model`);
    presetConfig(name); // throws the usage error that lists every valid name
    throw new UsageError(`unknown model "${name}"`);
  }
  const arch = archOf(resolved.config);
  if (spec.weights) resolved.weightsPath = spec.weights;
  const { numClasses, imageSize } = spec;
  let config = resolved.config;
  if (numClasses !== undefined) config = byOption(`--num-classes ${numClasses}`, () => arch.validate({ ...config, numClasses, labels: null }));
  if (imageSize) config = byOption(`--image-size ${imageSize.join('x')}`, () => arch.withImageSize(config, imageSize));
  return { ...resolved, config };
}

/**
 * The checkpoint readers, loaded when weights are first needed: resolving a model (summary, a run on a stored
 * graph) uses none of them.
 */
async function weightReader() {
  // For its effect: registers every format beyond safetensors.
  await import('../model/weights/index.js');
  return (await import('../model/weights/formats.js')).readWeights;
}

/** Read, convert to canonical names and check the weights: ready for an engine. */
export async function loadWeights(r: ResolvedModel, spec: ModelSpec, verbose: (m: string) => void = () => {}): Promise<LoadedWeights> {
  if (spec.randomWeights) {
    verbose(`model: ${r.config.name} with random weights (seed 0)`);
    return fromRandom(r.config);
  }
  if (!r.weightsPath && !r.fromPreset && !isDir(r.source)) {
    // Found by a resolver (the hub cache, offline: a snapshot may hold only config.json).
    throw new ModelError(`model "${r.source}" has no weights in the cache (only its config was found): fetch them where the hub is reachable (vit fetch ${r.source})`);
  }
  if (!r.weightsPath) {
    const note = isDir(r.source) ? onnxExportNote((f) => existsSync(join(r.source, f))) : '';
    throw new UsageError(
      `model "${r.source}" has no weights${note}: pass --weights FILE (safetensors, .pth/.bin, .npz), a model directory ` +
      'with config.json and weights, or --random-weights for a benchmark',
    );
  }
  const t0 = performance.now();
  // Every size the checkpoint claims is checked against what this config can need before it is allocated.
  const budget = weightsBudget(r.config, r.fromPreset && spec.numClasses === undefined);
  const raw = readCheckpoint(r.weightsPath, await weightReader(), budget);
  const loaded = fromCheckpoint(r.config, raw, { fromPreset: r.fromPreset, fixedClasses: spec.numClasses !== undefined, source: r.weightsPath });
  verbose(`weights: ${r.weightsPath} (${loaded.scheme} names), read in ${(performance.now() - t0).toFixed(0)} ms`);
  return loaded;
}

/** A model's weights with its fitted config: resolve, then load (tests, scripts and training use the weights themselves). */
export async function loadModel(spec: ModelSpec, verbose?: (m: string) => void): Promise<LoadedWeights & { source: string }> {
  const r = await resolveModel(spec);
  return { ...await loadWeights(r, spec, verbose), source: r.source };
}

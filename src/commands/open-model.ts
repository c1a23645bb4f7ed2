import { discardEntry, readAlias, writeAlias } from '../io/onnx-cache.js';
import { isLocalModel, loadModel, resolveModel, weightsIdentity, type LoadedModel, type ModelSpec, type ResolvedModel } from '../io/model-source.js';
import type { ViTConfig } from '../model/config.js';
import { ModelError } from '../errors.js';
import type { Engine } from '../model/engines/engine.js';
import { createEngine, usesOnnx, type EngineChoice } from '../model/engines/index.js';

/** A model whose engine may still be starting (onnxruntime creating its session, tfjs loading weights). */
export interface StartedModel {
  model: LoadedModel;
  engine: Promise<Engine>;
}

/**
 * A model and an engine for it. Where the ONNX engine may run and this very checkpoint (same file, size and
 * modification time, same request) was built before, onnxruntime starts on the cached graph directly: the
 * checkpoint is not read, converted or hashed, which is most of the start-up time of a big model. The engine
 * is returned still starting, so that the caller can read inputs meanwhile.
 */
export async function startModel(spec: ModelSpec, choice: EngineChoice, verbose: (m: string) => void): Promise<StartedModel> {
  const resolved = await resolveModel(spec);
  // Settled first, so that a cached graph is never blamed (and discarded) for onnxruntime-node not loading.
  const engineChoice = (await usesOnnx(choice, verbose)) ? 'onnx' : 'tfjs';
  const identity = engineChoice === 'onnx' ? weightsIdentity(spec, resolved) : null;
  const hit = identity ? readAlias(identity) : null;
  if (hit) return startCached(spec, resolved, hit, verbose);
  const model = await loadModel(spec, verbose, resolved);
  const engine = createEngine(engineChoice, model.config, model.weights, { verbose, releaseWeights: true }).then((e) => {
    const dir = (e as { startup?: { cacheDir: string | null } }).startup?.cacheDir;
    if (identity && dir) writeAlias(identity, dir, model.config);
    return e;
  });
  return { model, engine };
}

/**
 * startModel for a model on local disk whose graph is cached, else null: cheap enough to do before the
 * inputs are read, so that onnxruntime creates its session meanwhile (and while a pipe on stdin is still
 * being read). Never throws: whatever went wrong is found and reported again by startModel.
 */
export async function startCachedModel(spec: ModelSpec, choice: EngineChoice, verbose: (m: string) => void): Promise<StartedModel | null> {
  try {
    if (choice === 'tfjs' || !isLocalModel(spec)) return null;
    const resolved = await resolveModel(spec);
    if (!(await usesOnnx(choice))) return null;
    const identity = weightsIdentity(spec, resolved);
    const hit = identity ? readAlias(identity) : null;
    return hit ? startCached(spec, resolved, hit, verbose) : null;
  } catch {
    return null;
  }
}

/** The engine from a cached graph, falling back to the checkpoint if onnxruntime cannot load that graph. */
function startCached(spec: ModelSpec, resolved: ResolvedModel, hit: { dir: string; config: ViTConfig }, verbose: (m: string) => void): StartedModel {
  const fromCheckpoint = async () => {
    const model = await loadModel(spec, verbose, resolved);
    if (JSON.stringify(model.config) !== JSON.stringify(hit.config)) {
      throw new ModelError(`the checkpoint of ${resolved.source} no longer reads as it did when its graph was cached; run again`);
    }
    return createEngine('onnx', model.config, model.weights, { verbose, releaseWeights: true });
  };
  const engine = import('../model/engines/onnx.js')
    .then(({ OnnxEngine }) => OnnxEngine.fromEntry(hit.config, hit.dir, { verbose }))
    .catch((e: unknown) => {
      verbose(`onnx: cached graph unusable (${(e as Error).message.split('\n')[0]}); loading the checkpoint`);
      discardEntry(hit.dir);
      return fromCheckpoint();
    });
  return { model: { config: hit.config, weights: new Map(), scheme: 'cached', source: resolved.source }, engine };
}

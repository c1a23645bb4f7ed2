import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { PACKAGE_ROOT } from '../../src/io/paths.js';
import { loadModel } from '../../src/io/model-source.js';
import { validateSwinConfig, type SwinConfig, type WindowRule } from '../../src/model/arch/swin/config.js';
import { fromCheckpoint } from '../../src/model/checkpoint.js';
import { IMAGENET_MEAN, IMAGENET_STD } from '../../src/model/config.js';
import type { RunResult } from '../../src/model/engines/engine.js';
import { timmPreprocess } from '../../src/model/preprocess.js';
import type { TensorMap } from '../../src/model/tensor.js';
import { readWeights } from '../../src/model/weights/formats.js';
import '../../src/model/weights/index.js';
import { engineFor, withEngine } from './golden.js';

export const SWIN_FIXTURES = join(PACKAGE_ROOT, 'test', 'fixtures', 'swin');

/** What scripts/make_swin_goldens.py wrote for one model. */
export interface SwinReference {
  logits: number[];
  avg: number[];
  /** One block's window attention for the first image, [nW, heads, N, N]. */
  attention: { stage: number; block: number; shape: number[]; data: number[] };
}

export interface SwinGolden {
  name: string;
  config: {
    imgSize: number; patchSize: number; embedDim: number; depths: number[]; numHeads: number[]; windowSize: number;
    mlpRatio: number; numClasses: number; layerNormEps: number; patchNormEps: number;
  };
  inputs: { shape: number[]; steps: number; data: number[] };
  references: Record<string, SwinReference>;
  layouts: Record<string, { weights?: string; dir?: string; rule: WindowRule; reference: string }>;
}

export const SWIN_GOLDENS = ['swin_shift', 'swin_pad', 'swin_small', 'swin_eps'] as const;

export function readSwinGolden(name: string): SwinGolden {
  return JSON.parse(readFileSync(join(SWIN_FIXTURES, name, 'golden.json'), 'utf8'));
}

export function goldenInputs(g: SwinGolden): Float32Array {
  return Float32Array.from(g.inputs.data, (v) => v / g.inputs.steps);
}

/** The config a golden describes, for checkpoints that come without a config file. */
export function goldenConfig(g: SwinGolden, rule: WindowRule): SwinConfig {
  const c = g.config;
  return validateSwinConfig({
    arch: 'swin', name: g.name, imgSize: [c.imgSize, c.imgSize], patchSize: c.patchSize, inChans: 3, embedDim: c.embedDim,
    depths: c.depths, numHeads: c.numHeads, windowSize: c.depths.map(() => c.windowSize), mlpRatio: c.mlpRatio, qkvBias: true,
    layerNormEps: c.layerNormEps, patchNormEps: c.patchNormEps, numClasses: c.numClasses, windowRule: rule,
    preprocess: timmPreprocess([c.imgSize, c.imgSize], 0.9, 'bicubic', IMAGENET_MEAN, IMAGENET_STD), labels: null, problemType: null,
  });
}

/**
 * A layout of a golden through the loader: a model directory as `vit -m DIR` reads it, a bare checkpoint
 * file with the golden's config (as `-m PRESET -w FILE` would, the class count fixed).
 */
export async function loadLayout(g: SwinGolden, layout: string): Promise<{ cfg: SwinConfig; weights: TensorMap; scheme: string }> {
  const l = g.layouts[layout];
  if (l.dir) {
    const m = await loadModel({ model: join(PACKAGE_ROOT, l.dir) });
    return { cfg: m.config as SwinConfig, weights: m.weights, scheme: m.scheme };
  }
  const file = join(PACKAGE_ROOT, l.weights!);
  const m = fromCheckpoint(goldenConfig(g, 'timm'), readWeights(new Uint8Array(readFileSync(file)), file), { fromPreset: false, fixedClasses: true, source: file });
  return { cfg: m.config as SwinConfig, weights: m.weights, scheme: m.scheme };
}

/** One forward on an engine started as the commands start it. */
export function runSwin(engine: 'tfjs' | 'onnx', cfg: SwinConfig, weights: TensorMap, x: Float32Array, batch: number, attentions = false): Promise<RunResult> {
  return withEngine(engineFor(engine, cfg, weights), (e) => e.run(x, batch, { attentions }));
}

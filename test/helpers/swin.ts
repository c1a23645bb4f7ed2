import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { PACKAGE_ROOT } from '../../src/io/paths.js';
import { IMAGENET_MEAN, IMAGENET_STD } from '../../src/model/config.js';
import { numFeatures, validateSwinConfig, type SwinConfig, type WindowRule } from '../../src/model/arch/swin/config.js';
import { swinForward } from '../../src/model/arch/swin/forward.js';
import { expectedSwinParams } from '../../src/model/arch/swin/params.js';
import { swinFromHf, swinFromTimm } from '../../src/model/arch/swin/readers.js';
import { adaptSwinToCheckpoint, detectSwinScheme } from '../../src/model/arch/swin/schemes.js';
import { BATCH_DIM, finishGraph, INPUT_NAME, OnnxGraphOps, encodeModel, weightChunks, weightFileSize, type GraphOutput } from '../../src/model/engines/onnx-graph.js';
import { WEIGHTS_FILE } from '../../src/model/engines/onnx-format.js';
import { initTfjs, tf } from '../../src/model/engines/tfjs-backend.js';
import { TfjsOps } from '../../src/model/engines/tfjs-ops.js';
import { timmPreprocess } from '../../src/model/presets.js';
import type { HostTensor, TensorMap } from '../../src/model/tensor.js';
import { checkExpected } from '../../src/model/weights/check.js';
import { readWeights } from '../../src/model/weights/formats.js';
import '../../src/model/weights/index.js';

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
    preprocess: timmPreprocess([c.imgSize, c.imgSize], 0.9, 'bicubic', IMAGENET_MEAN, IMAGENET_STD), labels: null,
  });
}

function readJson(path: string): Record<string, unknown> {
  return JSON.parse(readFileSync(path, 'utf8'));
}

/** A layout of a golden as the loader would see it: config (from its config.json, or the golden), canonical weights. */
export function loadLayout(g: SwinGolden, layout: string): { cfg: SwinConfig; weights: TensorMap; scheme: string } {
  const l = g.layouts[layout];
  let cfg: SwinConfig;
  let file: string;
  if (l.dir) {
    const dir = join(PACKAGE_ROOT, l.dir);
    const json = readJson(join(dir, 'config.json'));
    cfg = json.model_type === 'swin' ? swinFromHf(json, readJson(join(dir, 'preprocessor_config.json')), g.name) : swinFromTimm(json, g.name);
    file = join(dir, 'model.safetensors');
  } else {
    cfg = goldenConfig(g, 'timm');
    file = join(PACKAGE_ROOT, l.weights!);
  }
  const raw = readWeights(new Uint8Array(readFileSync(file)), file);
  const scheme = detectSwinScheme(raw);
  const canonical = scheme.toCanonical(raw, cfg);
  const fitted = adaptSwinToCheckpoint(cfg, canonical, scheme, { fromPreset: false, fixedClasses: true });
  checkExpected(expectedSwinParams(fitted), fitted.name, canonical, file);
  return { cfg: fitted, weights: canonical, scheme: scheme.name };
}

export interface SwinRun {
  logits: HostTensor | null;
  avg: HostTensor;
  attentions: HostTensor[];
}

/** The forward on tfjs through the engine's ops, every block in its own tidy as the engine runs it. */
export async function runSwinTfjs(cfg: SwinConfig, weights: TensorMap, x: Float32Array, batch: number, attentions = false): Promise<SwinRun> {
  await initTfjs();
  const params = new Map([...weights].map(([k, t]) => [k, tf.tensor(t.data, t.shape, 'float32')]));
  const ops = new TfjsOps(tf, (n) => {
    const p = params.get(n);
    if (!p) throw new Error(`no parameter ${n}`);
    return p;
  }, { scoped: true });
  // As the engine does: linear weights pre-transposed for the wasm backend's fast matMul.
  for (const [k, t] of params) if (t.rank === 2 && k.endsWith('.weight')) ops.transposed.set(t, tf.transpose(t));
  try {
    const [h, w] = cfg.imgSize;
    const outs = tf.tidy(() => {
      const o = swinForward(ops, cfg, tf.tensor4d(x, [batch, cfg.inChans, h, w]), { attentions });
      return [o.avg, ...(o.logits ? [o.logits] : []), ...o.attentions];
    });
    const host = await Promise.all(outs.map(async (t) => ({ shape: t.shape.slice(), data: (await t.data()) as Float32Array })));
    tf.dispose(outs);
    const n = cfg.numClasses > 0 ? 2 : 1;
    return { avg: host[0], logits: cfg.numClasses > 0 ? host[1] : null, attentions: host.slice(n) };
  } finally {
    for (const t of params.values()) {
      ops.transposed.get(t)?.dispose();
      t.dispose();
    }
  }
}

/** The ONNX graph the same forward emits, with the block attentions as outputs attn_0 …, and its weights file. */
export function buildSwinGraph(cfg: SwinConfig, weights: TensorMap, attentions: boolean): { model: Uint8Array; weights: Uint8Array; outputs: string[] } {
  const ops = new OnnxGraphOps((p) => {
    const t = weights.get(p);
    if (!t) throw new Error(`no parameter ${p}`);
    return t.shape;
  });
  const o = swinForward(ops, cfg, ops.input(INPUT_NAME, 4), { attentions });
  const outputs: GraphOutput[] = [{ name: 'avg', value: o.avg, dims: [BATCH_DIM, numFeatures(cfg)] }];
  if (o.logits) outputs.push({ name: 'logits', value: o.logits, dims: [BATCH_DIM, cfg.numClasses] });
  o.attentions.forEach((a, i) => outputs.push({ name: `attn_${i}`, value: a, dims: [BATCH_DIM, 'nW', 'heads', 'N', 'N'] }));
  const g = finishGraph(ops, cfg.name, [BATCH_DIM, cfg.inChans, ...cfg.imgSize], outputs);
  const blob = new Uint8Array(weightFileSize(g.slots));
  for (const c of weightChunks(g.slots, weights)) blob.set(c.bytes, c.offset);
  return { model: encodeModel(g.model), weights: blob, outputs: g.outputs };
}

/** That graph on onnxruntime-node (in this thread: tests need no worker). */
export async function runSwinOnnx(cfg: SwinConfig, weights: TensorMap, x: Float32Array, batch: number, attentions = false): Promise<SwinRun> {
  const g = buildSwinGraph(cfg, weights, attentions);
  const session = await ort.InferenceSession.create(g.model, { externalData: [{ path: WEIGHTS_FILE, data: g.weights }], logSeverityLevel: 3 });
  try {
    const [h, w] = cfg.imgSize;
    const out = await session.run({ [INPUT_NAME]: new ort.Tensor('float32', x, [batch, cfg.inChans, h, w]) });
    const host = (n: string): HostTensor => ({ shape: out[n].dims.slice(), data: out[n].data as Float32Array });
    return {
      avg: host('avg'),
      logits: cfg.numClasses > 0 ? host('logits') : null,
      attentions: g.outputs.filter((n) => n.startsWith('attn_')).map(host),
    };
  } finally {
    await session.release();
  }
}

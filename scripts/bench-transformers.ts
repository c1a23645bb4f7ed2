/**
 * The transformers.js side of `npm run bench`, run as a child process per measurement: the image-classification
 * pipeline of @huggingface/transformers on a folder written by `vit export`, offline.
 *
 *   node dist/scripts/bench-transformers.js classify FOLDER DTYPE BATCH INPUT [THREADS]     one JSON row per image on stdout
 *   node dist/scripts/bench-transformers.js model-only FOLDER DTYPE BATCH IMAGES [THREADS]  images/s of the model alone
 *
 * DTYPE is transformers.js's: fp32 (onnx/model.onnx) or q8 (onnx/model_quantized.onnx). classify hands the
 * pipeline BATCH paths at a time, which it decodes, preprocesses and runs as one batch, like `vit classify -b`.
 * THREADS, when given, is passed to onnxruntime as its intra-op thread count (`session_options`); without it
 * transformers.js leaves onnxruntime its own default, which is not always every usable CPU.
 */
import { readdirSync, statSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { env, pipeline, Tensor, type ImageClassificationPipeline } from '@huggingface/transformers';

const [mode, folder, dtype, batchArg, last, threads] = process.argv.slice(2);
const batch = Number(batchArg);
env.allowRemoteModels = false;
env.localModelPath = dirname(folder);
env.useFSCache = false;

const classifier = (await pipeline('image-classification', basename(folder), {
  dtype: dtype as 'fp32' | 'q8',
  ...(threads === undefined ? {} : { session_options: { intraOpNumThreads: Number(threads) } }),
})) as ImageClassificationPipeline;

if (mode === 'classify') {
  // A folder's images in name order (as vit lists them), or one image.
  const files = statSync(last).isDirectory() ? readdirSync(last).sort().map((f) => join(last, f)) : [last];
  for (let i = 0; i < files.length; i += batch) {
    const paths = files.slice(i, i + batch);
    const out = (await classifier(paths, { top_k: 5 })) as { label: string; score: number }[][];
    const rows = paths.map((path, k) => JSON.stringify({ path, predictions: out[k] }));
    if (!process.stdout.write(rows.join('\n') + '\n')) await new Promise((r) => process.stdout.once('drain', r));
  }
} else if (mode === 'model-only') {
  const images = Number(last);
  const size = (classifier.model.config as unknown as { image_size: number }).image_size;
  const dims = [batch, 3, size, size];
  const pixels = new Tensor('float32', Float32Array.from({ length: batch * 3 * size * size }, (_, i) => Math.sin(i) * 0.5), dims);
  await classifier.model({ pixel_values: pixels });
  const runs = Math.max(1, Math.ceil(images / batch));
  const t0 = performance.now();
  for (let i = 0; i < runs; i++) await classifier.model({ pixel_values: pixels });
  console.log((runs * batch) / ((performance.now() - t0) / 1000));
} else {
  throw new Error(`unknown mode ${mode}: classify or model-only`);
}
await classifier.dispose();

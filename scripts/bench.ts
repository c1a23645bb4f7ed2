/**
 * npm run bench: throughput, start-up and memory of `vit classify` on random-weight B/32 and B/16 models in the
 * Hugging Face layout, over a folder of generated photo-like JPEGs of mixed sizes. Nothing is downloaded.
 *
 *   (a) model only: the engine's run() on a ready-made batch, in process
 *   (b) end to end: `vit classify DIR -f jsonl > /dev/null`, process start included
 *   (c) time to first result: spawn → first row on stdout, for one image (cold cache, then warm)
 *   (d) peak RSS of the end-to-end run (/usr/bin/time's maximum resident set size)
 *
 * (a) and (b) are measured in turn, --rounds times for onnx (once for tfjs, which is slow), with one more (a)
 * at the end, and the medians reported: on a shared machine the speed drifts by several per cent from one minute to the next, and one
 * (a) beside one (b) measures the drift as much as the tool. Every round's figures are printed too.
 *
 * Options: --images N (default 500), --tfjs-images N (default 16), --models b32,b16, --batch N (default 8),
 * --rounds N (default 5).
 */
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { PACKAGE_ROOT } from '../src/io/paths.js';
import { turboJpeg } from '../src/io/jpeg-turbo.js';
import { loadModel } from '../src/io/model-source.js';
import { wasmResamplerAvailable } from '../src/io/resample-wasm.js';
import type { EngineChoice } from '../src/model/engines/index.js';
import { openModel } from '../src/pipeline/open-model.js';
import { vitPreset as presetConfig } from '../src/model/arch/vit/presets.js';
import { hfConfigJson, toHfWeights } from '../src/model/arch/vit/hf-export.js';
import { randomWeights } from '../src/model/weights/random.js';
import { writeSafetensors } from '../src/model/weights/safetensors.js';

const args = process.argv.slice(2);
const opt = (name: string, def: string) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : def;
};
const N_IMAGES = Number(opt('images', '500'));
const N_TFJS = Number(opt('tfjs-images', '16'));
const BATCH = Number(opt('batch', '8'));
const MODELS = opt('models', 'b32,b16').split(',');
const ROUNDS = Math.max(1, Number(opt('rounds', '5')));
const PRESETS: Record<string, string> = { b32: 'B/32', b16: 'B/16' };
const VIT = join(PACKAGE_ROOT, 'bin', 'vit.js');
const work = mkdtempSync(join(tmpdir(), 'vit-bench-'));
const cache = process.env.XDG_CACHE_HOME && process.argv.includes('--model-only') ? process.env.XDG_CACHE_HOME : join(work, 'cache');

/** A random-weight HF model directory (config.json + model.safetensors + preprocessor_config.json). */
function writeModel(key: string): string {
  const cfg = presetConfig(PRESETS[key]);
  const dir = join(work, key);
  mkdirSync(dir);
  writeFileSync(join(dir, 'config.json'), JSON.stringify(hfConfigJson(cfg)));
  writeFileSync(join(dir, 'preprocessor_config.json'), JSON.stringify({
    do_resize: true, size: { height: 224, width: 224 }, resample: 2, do_rescale: true, rescale_factor: 1 / 255,
    do_normalize: true, image_mean: [0.5, 0.5, 0.5], image_std: [0.5, 0.5, 0.5], image_processor_type: 'ViTImageProcessor',
  }));
  writeFileSync(join(dir, 'model.safetensors'), writeSafetensors(toHfWeights(randomWeights(cfg, 1))));
  return dir;
}

/**
 * Photo-like JPEGs: the fixture photos scaled to a spread of camera-ish sizes (320 to 1280 px on the long
 * side), some rotated, with noise so that every file decodes differently.
 */
async function writeImages(dir: string, n: number): Promise<void> {
  mkdirSync(dir, { recursive: true });
  const sources = ['astronaut.png', 'chelsea.png', 'coffee.png'].map((f) => join(PACKAGE_ROOT, 'test', 'fixtures', 'photos', f));
  for (let i = 0; i < n; i++) {
    const long = 320 + ((i * 97) % 961);
    const aspect = [4 / 3, 3 / 2, 1, 16 / 9][i % 4];
    const [w, h] = i % 3 === 0 ? [Math.round(long / aspect), long] : [long, Math.round(long / aspect)];
    const noise = await sharp({ create: { width: w, height: h, channels: 3, background: '#808080', noise: { type: 'gaussian', mean: 128, sigma: 12 } } }).raw().toBuffer();
    const photo = await sharp(sources[i % 3])
      .resize(w, h, { fit: 'fill' })
      .composite([{ input: noise, raw: { width: w, height: h, channels: 3 }, blend: 'overlay' }])
      .png()
      .toBuffer();
    await sharp(photo).rotate([0, 90, 180, 270][i % 4]).jpeg({ quality: 88 }).toFile(join(dir, `img_${String(i).padStart(4, '0')}.jpg`));
  }
}

/**
 * (a): images/s of the engine alone on a ready batch, after a warm-up run. Measured in a child process of its
 * own (`--model-only DIR ENGINE IMAGES`), so one engine's memory (tfjs's wasm heap only grows) cannot
 * affect the next measurement.
 */
function modelOnly(dir: string, engine: EngineChoice, images: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [process.argv[1], '--model-only', dir, engine, String(images), '--batch', String(BATCH)], {
      env: { ...process.env, XDG_CACHE_HOME: cache }, stdio: ['ignore', 'pipe', 'inherit'],
    });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve(Number(out.trim())) : reject(new Error(`model-only run exited ${code}`))));
  });
}

async function measureModelOnly(dir: string, engine: EngineChoice, images: number): Promise<number> {
  // The same path as the CLI's: the model opened (from the graph cache the end-to-end runs share), then run.
  const e = await openModel({ model: dir }, { engine });
  const cfg = e.config;
  const pixels = Float32Array.from({ length: BATCH * cfg.inChans * cfg.imgSize[0] * cfg.imgSize[1] }, (_, i) => Math.sin(i) * 0.5);
  await e.run(pixels, BATCH);
  const runs = Math.max(1, Math.ceil(images / BATCH));
  const t0 = performance.now();
  for (let i = 0; i < runs; i++) await e.run(pixels, BATCH);
  const secs = (performance.now() - t0) / 1000;
  await e.dispose();
  return (runs * BATCH) / secs;
}

interface Spawned { wall: number; firstRow: number; rssMb: number; code: number | null }

/** Run `vit classify` under /usr/bin/time; wall time, time to the first stdout byte, peak RSS. */
function classify(input: string, model: string, engine: EngineChoice, extra: string[] = []): Promise<Spawned> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    let firstRow = NaN;
    const child = spawn('/usr/bin/time', ['-f', 'VIT_BENCH_RSS %M', process.execPath, VIT, 'classify', input, '-m', model,
      '-f', 'jsonl', '-b', String(BATCH), '--engine', engine, ...extra], {
      env: { ...process.env, CI: 'true', XDG_CACHE_HOME: cache },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let err = '';
    child.stdout.on('data', () => {
      if (Number.isNaN(firstRow)) firstRow = performance.now() - t0;
    });
    child.stderr.on('data', (d) => (err += d));
    child.on('error', reject);
    child.on('close', (code) => {
      const m = /VIT_BENCH_RSS (\d+)/.exec(err);
      if (code !== 0) process.stderr.write(err);
      resolve({ wall: (performance.now() - t0) / 1000, firstRow: firstRow / 1000, rssMb: m ? Number(m[1]) / 1024 : NaN, code });
    });
  });
}

function median(xs: number[]): number {
  const s = [...xs].sort((x, y) => x - y);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

interface Row { model: string; engine: string; images: number; a: number; b: number; ttfrCold: number; ttfrWarm: number; rss: number }

async function main(): Promise<void> {
  console.error(`bench: ${N_IMAGES} images (tfjs: ${N_TFJS}), batch ${BATCH}, in ${work}`);
  // What the end-to-end figures depend on besides the engine: which decoder and resampler this install has.
  console.error(`  JPEG decoding: ${turboJpeg() ? 'libjpeg-turbo, called directly' : 'sharp'}; resizing: ${wasmResamplerAvailable() ? 'WebAssembly SIMD' : 'JavaScript'}`);
  const imgDir = join(work, 'images');
  await writeImages(imgDir, N_IMAGES);
  const small = join(work, 'images-small');
  mkdirSync(small);
  await writeImages(small, N_TFJS);
  const one = join(imgDir, 'img_0001.jpg');
  const rows: Row[] = [];
  for (const key of MODELS) {
    const dir = writeModel(key);
    for (const engine of ['onnx', 'tfjs'] as EngineChoice[]) {
      const count = engine === 'tfjs' ? N_TFJS : N_IMAGES;
      rmSync(cache, { recursive: true, force: true });
      const cold = await classify(one, dir, engine);
      const warm = await classify(one, dir, engine);
      const as: number[] = [];
      const bs: number[] = [];
      let rss = 0;
      for (let r = 0; r < (engine === 'tfjs' ? 1 : ROUNDS); r++) {
        as.push(await modelOnly(dir, engine, Math.min(count, engine === 'tfjs' ? 16 : 200)));
        const run = await classify(engine === 'tfjs' ? small : imgDir, dir, engine);
        if (run.code !== 0) throw new Error(`vit classify exited ${run.code}`);
        bs.push(count / run.wall);
        rss = Math.max(rss, run.rssMb);
        console.error(`  ${PRESETS[key]} ${engine}, round ${r + 1}: a ${as[r].toFixed(2)}/s, b ${bs[r].toFixed(2)}/s, (b)/(a) ${(bs[r] / as[r]).toFixed(2)}, peak RSS ${run.rssMb.toFixed(0)} MB`);
      }
      // One more (a) after the last (b), so that every (b) has an (a) on either side.
      if (engine !== 'tfjs') as.push(await modelOnly(dir, engine, Math.min(count, 200)));
      const [a, b] = [median(as), median(bs)];
      rows.push({ model: PRESETS[key], engine, images: count, a, b, ttfrCold: cold.firstRow, ttfrWarm: warm.firstRow, rss });
      console.error(`  ${PRESETS[key]} ${engine}: a ${a.toFixed(2)}/s (${as.map((x) => x.toFixed(2)).join(', ')}), b ${b.toFixed(2)}/s (medians), first result ${cold.firstRow.toFixed(2)} s cold / ${warm.firstRow.toFixed(2)} s warm, peak RSS ${rss.toFixed(0)} MB`);
    }
  }
  console.log(`(a) and (b): medians of ${ROUNDS} interleaved rounds for onnx (a: ${ROUNDS + 1} runs), one for tfjs; (d): the largest of the rounds.`);
  const head = '| model | engine | images | (a) model only, img/s | (b) end to end, img/s | (b)/(a) | (c) first result, cold / warm | (d) peak RSS |';
  console.log(head);
  console.log('|---|---|---|---|---|---|---|---|');
  for (const r of rows) {
    console.log(`| ${r.model} | ${r.engine} | ${r.images} | ${r.a.toFixed(2)} | ${r.b.toFixed(2)} | ${(r.b / r.a).toFixed(2)} | ${r.ttfrCold.toFixed(2)} s / ${r.ttfrWarm.toFixed(2)} s | ${r.rss.toFixed(0)} MB |`);
  }
}

const modelOnlyAt = args.indexOf('--model-only');
const run = modelOnlyAt >= 0
  ? measureModelOnly(args[modelOnlyAt + 1], args[modelOnlyAt + 2] as EngineChoice, Number(args[modelOnlyAt + 3])).then((r) => console.log(r))
  : main();
run.then(() => rmSync(work, { recursive: true, force: true }), (e) => {
  console.error(e);
  rmSync(work, { recursive: true, force: true });
  process.exitCode = 1;
});

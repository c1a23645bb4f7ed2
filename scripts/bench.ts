/**
 * npm run bench: throughput, start-up and memory of `vit classify` on random-weight B/32 and B/16 models in the
 * Hugging Face layout, over a folder of generated photo-like JPEGs of mixed sizes, and of transformers.js's
 * image-classification pipeline on the same models exported with `vit export`. Nothing is downloaded.
 *
 *   (a) model only: the engine's run() (transformers.js: its model's forward) on a ready-made batch, in process
 *   (b) end to end: `vit classify DIR -f jsonl > /dev/null` (transformers.js: scripts/bench-transformers.ts over
 *       the same files, same batch size), process start included
 *   (c) time to first result: spawn → first row on stdout, for one image (cold cache, then warm)
 *   (d) peak RSS of the end-to-end run (/usr/bin/time's maximum resident set size)
 *
 * Rows: vit onnx fp32 and int8, transformers.js fp32 and q8 (the int8 export, 7-bit where vit's are) with
 * onnxruntime's default threads, q8 again with vit's thread count (tjs-q8-threads), tfjs. Per
 * model, every row is measured in each round, in turn: (a) then (b) of the first row, of the second, and so on,
 * --rounds times (tfjs, which is slow, once after them), with one more (a) of each row at the end; medians are
 * reported, and each ratio between two figures also as the median of its per-round values, since on a shared
 * machine the speed drifts by several per cent from one minute to the next and rows measured far apart measure
 * the drift as much as the tool. Every round's figures are printed, with the load average. The top-1 of every
 * row's last end-to-end run is compared with vit fp32's.
 *
 * Options: --images N (default 500), --tfjs-images N (default 16), --models b32,b16, --batch N (default 8),
 * --rounds N (default 5), --rows onnx,onnx-int8,tjs-fp32,tjs-q8,tjs-q8-threads,tfjs (default all).
 */
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import sharp from 'sharp';
import { PACKAGE_ROOT } from '../src/io/paths.js';
import { turboJpeg } from '../src/io/jpeg-turbo.js';
import { int8WeightsFor, usableCpus } from '../src/io/cpus.js';
import { loadModel } from '../src/io/model-source.js';
import { wasmResamplerAvailable } from '../src/io/resample-wasm.js';
import type { Dtype } from '../src/model/engines/engine.js';
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
const TJS = join(PACKAGE_ROOT, 'dist', 'scripts', 'bench-transformers.js');
const work = mkdtempSync(join(tmpdir(), 'vit-bench-'));
/** Each row has a graph cache of its own (its cold start empties it); the model-only child is told which. */
const cacheOf = (model: string, row: string) => join(work, 'cache', `${model}-${row}`);

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
 * own (`--model-only DIR ENGINE DTYPE IMAGES`; transformers.js: bench-transformers.js model-only), so one engine's memory (tfjs's wasm heap only grows) cannot
 * affect the next measurement.
 */
function modelOnly(command: string[], cache: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, command, {
      env: { ...process.env, XDG_CACHE_HOME: cache }, stdio: ['ignore', 'pipe', 'inherit'],
    });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve(Number(out.trim())) : reject(new Error(`model-only run exited ${code}`))));
  });
}

async function measureModelOnly(dir: string, engine: EngineChoice, dtype: Dtype, images: number): Promise<number> {
  // The same path as the CLI's: the model opened (from the graph cache the end-to-end runs share), then run.
  // Runs as classify makes them: logits only (ViT: the prefix-only graph).
  const run = { pools: [] };
  const e = await openModel({ model: dir }, { engine, dtype, expect: run });
  const cfg = e.config;
  const pixels = Float32Array.from({ length: BATCH * cfg.inChans * cfg.imgSize[0] * cfg.imgSize[1] }, (_, i) => Math.sin(i) * 0.5);
  await e.run(pixels, BATCH, run);
  const runs = Math.max(1, Math.ceil(images / BATCH));
  const t0 = performance.now();
  for (let i = 0; i < runs; i++) await e.run(pixels, BATCH, run);
  const secs = (performance.now() - t0) / 1000;
  await e.dispose();
  return (runs * BATCH) / secs;
}

interface Spawned { wall: number; firstRow: number; rssMb: number; code: number | null; top1: Map<string, string> }

/** Run a command under /usr/bin/time: wall time, time to the first stdout byte, peak RSS, top-1 label per path. */
function timed(command: string[], cache: string): Promise<Spawned> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    let firstRow = NaN;
    const child = spawn('/usr/bin/time', ['-f', 'VIT_BENCH_RSS %M', process.execPath, ...command], {
      env: { ...process.env, CI: 'true', XDG_CACHE_HOME: cache },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let err = '';
    let out = '';
    child.stdout.on('data', (d) => {
      if (Number.isNaN(firstRow)) firstRow = performance.now() - t0;
      out += d;
    });
    child.stderr.on('data', (d) => (err += d));
    child.on('error', reject);
    child.on('close', (code) => {
      const m = /VIT_BENCH_RSS (\d+)/.exec(err);
      if (code !== 0) process.stderr.write(err);
      const top1 = new Map<string, string>();
      for (const line of out.split('\n').filter(Boolean)) {
        const row = JSON.parse(line) as { path: string; predictions?: { label: string }[] };
        // Keyed by file name: tfjs's small folder holds the first images of the big one, under the same names.
        if (row.predictions?.length) top1.set(basename(row.path), row.predictions[0].label);
      }
      resolve({ wall: (performance.now() - t0) / 1000, firstRow: firstRow / 1000, rssMb: m ? Number(m[1]) / 1024 : NaN, code, top1 });
    });
  });
}

function median(xs: number[]): number {
  const s = [...xs].sort((x, y) => x - y);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

/** One row of the table: how to measure (a) and (b) for a model directory. */
interface Runner {
  key: string;
  name: string;
  /** tfjs is slow: fewer images, one round. */
  slow: boolean;
  /** Prepare once per model (transformers.js: export the folder it reads); returns what the commands take. */
  setup(dir: string, cache: string): Promise<string>;
  modelOnly(target: string, images: number): string[];
  endToEnd(target: string, input: string): string[];
}

const vitRow = (key: string, name: string, engine: EngineChoice, dtype: Dtype): Runner => ({
  key, name, slow: engine === 'tfjs',
  setup: async (dir) => dir,
  modelOnly: (dir, images) => [process.argv[1], '--batch', String(BATCH), '--model-only', dir, engine, dtype, String(images)],
  endToEnd: (dir, input) => [VIT, 'classify', input, '-m', dir, '-f', 'jsonl', '-b', String(BATCH), '--engine', engine, '--dtype', dtype],
});

/** The intra-op threads vit's own runs use by default here (--threads): the CPUs this process may use. */
const VIT_THREADS = usableCpus();

/**
 * transformers.js on the folder `vit export` writes (both dtypes go to one folder, next to the model). On a CPU
 * where vit holds int8 weights in 7 bits (x86 without VNNI), q8 runs the `--reduce-range` export of them, so
 * both run the same numbers. With `threads`, onnxruntime is given vit's thread count; without, transformers.js
 * keeps onnxruntime's default, which a user gets (on a 2-core AMD EPYC VM of 2026-12-07 it was one thread).
 */
const tjsRow = (key: string, dtype: 'fp32' | 'q8', threads?: number): Runner => ({
  key, name: `transformers.js ${dtype}${threads === undefined ? '' : `, ${threads} thread${threads === 1 ? '' : 's'}`}`, slow: false,
  setup: async (dir, cache) => {
    const folder = `${dir}-export`;
    const how = dtype === 'fp32' ? ['fp32'] : int8WeightsFor() === 'int7' ? ['int8', '--reduce-range'] : ['int8'];
    const run = await timed([VIT, 'export', '-m', dir, folder, '--dtype', ...how], cache);
    if (run.code !== 0) throw new Error(`vit export exited ${run.code}`);
    return folder;
  },
  modelOnly: (folder, images) => [TJS, 'model-only', folder, dtype, String(BATCH), String(images), ...(threads === undefined ? [] : [String(threads)])],
  endToEnd: (folder, input) => [TJS, 'classify', folder, dtype, String(BATCH), input, ...(threads === undefined ? [] : [String(threads)])],
});

const TJS_Q8_THREADS = tjsRow('tjs-q8-threads', 'q8', VIT_THREADS);
const RUNNERS: Runner[] = [
  vitRow('onnx', 'vit onnx fp32', 'onnx', 'fp32'),
  vitRow('onnx-int8', 'vit onnx int8', 'onnx', 'int8'),
  tjsRow('tjs-fp32', 'fp32'),
  tjsRow('tjs-q8', 'q8'),
  TJS_Q8_THREADS,
  vitRow('tfjs', 'vit tfjs', 'tfjs', 'fp32'),
];
const ROWS = opt('rows', RUNNERS.map((r) => r.key).join(',')).split(',');

interface Row {
  model: string; runner: string; images: number; a: number; b: number; ttfrCold: number; ttfrWarm: number; rss: number;
  top1: Map<string, string>;
  /** Every round's figures, in order: the (b) of round i ran between (a) i and (a) i + 1. */
  as: number[]; bs: number[];
}

const load = () => loadavg().map((l) => l.toFixed(2)).join(' ');

/** A row being measured: its runner, what its commands take, and its figures so far. */
interface Pending { r: Runner; target: string; cache: string; cold: Spawned; warm: Spawned; as: number[]; bs: number[]; rss: number; top1: Map<string, string> }

/** Set a row up and time its first result, cold (its cache emptied) and warm. */
async function prepare(key: string, dir: string, r: Runner, one: string): Promise<Pending> {
  const cache = cacheOf(key, r.key);
  rmSync(cache, { recursive: true, force: true });
  const target = await r.setup(dir, cache);
  const cold = await timed(r.endToEnd(target, one), cache);
  const warm = await timed(r.endToEnd(target, one), cache);
  return { r, target, cache, cold, warm, as: [], bs: [], rss: 0, top1: new Map() };
}

/** Images of a row's end-to-end runs (tfjs, slow, gets the small folder) and of its model-only runs. */
const endToEndImages = (r: Runner) => (r.slow ? N_TFJS : N_IMAGES);
const modelOnlyImages = (r: Runner) => Math.min(endToEndImages(r), r.slow ? 16 : 200);

/** One (a) and one (b) of a row. */
async function round(key: string, p: Pending, imgDir: string, small: string, i: number): Promise<void> {
  const count = endToEndImages(p.r);
  p.as.push(await modelOnly(p.r.modelOnly(p.target, modelOnlyImages(p.r)), p.cache));
  const run = await timed(p.r.endToEnd(p.target, p.r.slow ? small : imgDir), p.cache);
  if (run.code !== 0) throw new Error(`${p.r.name} exited ${run.code}`);
  p.bs.push(count / run.wall);
  p.rss = Math.max(p.rss, run.rssMb);
  p.top1 = run.top1;
  console.error(`  ${PRESETS[key]} ${p.r.name}, round ${i + 1}: a ${p.as[i].toFixed(2)}/s, b ${p.bs[i].toFixed(2)}/s, (b)/(a) ${(p.bs[i] / p.as[i]).toFixed(2)}, peak RSS ${run.rssMb.toFixed(0)} MB; load average ${load()}`);
}

/**
 * Every row of one model, interleaved: each round runs (a) then (b) of every row in turn, so that rows are
 * compared within a round, minutes apart at most, rather than across the whole run. tfjs (slow) runs once.
 */
async function measureModel(key: string, dir: string, runners: Runner[], imgDir: string, small: string, one: string): Promise<Row[]> {
  const pending: Pending[] = [];
  for (const r of runners) pending.push(await prepare(key, dir, r, one));
  const fast = pending.filter((p) => !p.r.slow);
  for (let i = 0; i < ROUNDS; i++) for (const p of fast) await round(key, p, imgDir, small, i);
  // One more (a) after the last (b), so that every (b) has an (a) on either side.
  for (const p of fast) p.as.push(await modelOnly(p.r.modelOnly(p.target, modelOnlyImages(p.r)), p.cache));
  for (const p of pending.filter((x) => x.r.slow)) await round(key, p, imgDir, small, 0);
  return pending.map((p) => {
    const [a, b] = [median(p.as), median(p.bs)];
    console.error(`  ${PRESETS[key]} ${p.r.name}: a ${a.toFixed(2)}/s (${p.as.map((x) => x.toFixed(2)).join(', ')}), b ${b.toFixed(2)}/s (${p.bs.map((x) => x.toFixed(2)).join(', ')}), first result ${p.cold.firstRow.toFixed(2)} s cold / ${p.warm.firstRow.toFixed(2)} s warm, peak RSS ${p.rss.toFixed(0)} MB`);
    return {
      model: PRESETS[key], runner: p.r.name, images: endToEndImages(p.r), a, b, ttfrCold: p.cold.firstRow, ttfrWarm: p.warm.firstRow,
      rss: p.rss, top1: p.top1, as: p.as, bs: p.bs,
    };
  });
}

/**
 * A ratio between two rows' figures: of their medians, and the median of the ratio within each round (the
 * same round's runs, minutes apart), with the rounds' own values.
 */
function ratio(x: number[], y: number[], xMedian: number, yMedian: number): string {
  const n = Math.min(x.length, y.length);
  const per = Array.from({ length: n }, (_, i) => x[i] / y[i]);
  return `${(xMedian / yMedian).toFixed(2)} (per round ${median(per).toFixed(2)}: ${per.map((v) => v.toFixed(2)).join(', ')})`;
}

/** The ratios the issue's targets are stated in, per model, where both rows were measured. */
function ratios(rows: Row[]): string[] {
  const lines: string[] = [];
  for (const model of new Set(rows.map((r) => r.model))) {
    const get = (name: string) => rows.find((r) => r.model === model && r.runner === name);
    const [fp32, int8, q8] = [get('vit onnx fp32'), get('vit onnx int8'), get('transformers.js q8')];
    const say = (what: string, x: string | undefined) => x !== undefined && lines.push(`- ${model}: ${what} ${x}`);
    // (b) of round i against the (a) before it.
    say('fp32 end to end / model only', fp32 && ratio(fp32.bs, fp32.as, fp32.b, fp32.a));
    say('int8 / fp32, model only', int8 && fp32 && ratio(int8.as, fp32.as, int8.a, fp32.a));
    say('int8 / fp32, end to end', int8 && fp32 && ratio(int8.bs, fp32.bs, int8.b, fp32.b));
    say('vit int8 / transformers.js q8, end to end', int8 && q8 && ratio(int8.bs, q8.bs, int8.b, q8.b));
    say('vit int8 / transformers.js q8, model only', int8 && q8 && ratio(int8.as, q8.as, int8.a, q8.a));
    const q8t = get(TJS_Q8_THREADS.name);
    say(`vit int8 / ${q8t?.runner}, end to end`, int8 && q8t && ratio(int8.bs, q8t.bs, int8.b, q8t.b));
    say(`vit int8 / ${q8t?.runner}, model only`, int8 && q8t && ratio(int8.as, q8t.as, int8.a, q8t.a));
    const tjs = get('transformers.js fp32');
    say('vit fp32 / transformers.js fp32, end to end', fp32 && tjs && ratio(fp32.bs, tjs.bs, fp32.b, tjs.b));
    for (const r of rows.filter((x) => x.model === model && x !== fp32 && fp32)) {
      const same = [...r.top1].filter(([path, label]) => fp32!.top1.get(path) === label).length;
      lines.push(`- ${model}: top-1 of ${r.runner} = vit onnx fp32's on ${same}/${r.top1.size} images`);
    }
  }
  return lines;
}

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
    console.error(`  ${PRESETS[key]}: load average ${load()}`);
    rows.push(...await measureModel(key, dir, RUNNERS.filter((x) => ROWS.includes(x.key)), imgDir, small, one));
  }
  console.log(`(a) and (b): medians of ${ROUNDS} rounds, each running every row in turn (a: ${ROUNDS + 1} runs), one for tfjs; (d): the largest of the rounds.`);
  console.log('| model | engine | images | (a) model only, img/s | (b) end to end, img/s | (b)/(a) | (c) first result, cold / warm | (d) peak RSS |');
  console.log('|---|---|---|---|---|---|---|---|');
  for (const r of rows) {
    console.log(`| ${r.model} | ${r.runner} | ${r.images} | ${r.a.toFixed(2)} | ${r.b.toFixed(2)} | ${(r.b / r.a).toFixed(2)} | ${r.ttfrCold.toFixed(2)} s / ${r.ttfrWarm.toFixed(2)} s | ${r.rss.toFixed(0)} MB |`);
  }
  console.log('');
  for (const line of ratios(rows)) console.log(line);
}

const modelOnlyAt = args.indexOf('--model-only');
const run = modelOnlyAt >= 0
  ? measureModelOnly(args[modelOnlyAt + 1], args[modelOnlyAt + 2] as EngineChoice, args[modelOnlyAt + 3] as Dtype, Number(args[modelOnlyAt + 4])).then((r) => console.log(r))
  : main();
run.then(() => rmSync(work, { recursive: true, force: true }), (e) => {
  console.error(e);
  rmSync(work, { recursive: true, force: true });
  process.exitCode = 1;
});

/**
 * Model-only speed of the ONNX graphs vit emits, against torch.onnx.export's graph of the same ViT with the same
 * weights, all on this onnxruntime-node with the engine's session options:
 *
 *   /usr/bin/python3 scripts/export_torch_vit.py DIR b32 b16      (torchvision ViT-B/32, B/16; random weights)
 *   node dist/scripts/bench-graphs.js DIR [--models b32,b16] [--rounds 15] [--runs 2] [--batch 8] [--threads N]
 *
 * Graphs: `torch` (torch.onnx.export, opset 17), `fp32 standard` (vit's graph in standard ONNX ops only, as
 * `vit export` writes it), `fp32` (the engine's graph for logits: classify), `fp32 all tokens` (the engine's graph
 * with every feature, whose last block computes every token as torch's does: embed --pool avg), `int8`
 * (classify at int8), `int8 standard` (the same in standard ops: `vit export --dtype int8`, which transformers.js
 * runs in `npm run bench`). Each runs `runs` batches per turn,
 * in turn, for `rounds` rounds; reported are the medians of images/s (wall clock) and of CPU time per image (all
 * threads; it moves less than the wall clock when other processes share the cores). The load averages before
 * and after are printed beside the table: figures taken on a busy machine are provisional.
 * vit's graphs are written to DIR/NAME/vit-* (hundreds of MB: keep DIR out of the repository).
 *
 * Before timing, every image of --photos (default test/fixtures/photos) is classified by each graph in batches
 * of --batch, and the top-1 of each graph is compared with that of the fp32 graph (int8: its agreement figure).
 */
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import * as ort from 'onnxruntime-node';
import { int8WeightsFor } from '../src/io/cpus.js';
import { loadImage } from '../src/io/images.js';
import { loadModel } from '../src/io/model-source.js';
import { PACKAGE_ROOT } from '../src/io/paths.js';
import type { ModelConfig } from '../src/model/config.js';
import { buildGraph, encodeModel, weightChunks, weightFileSize, type GraphOptions } from '../src/model/engines/onnx-graph.js';
import { WEIGHTS_FILE } from '../src/model/engines/onnx-format.js';
import { providersFor } from '../src/model/engines/execution.js';
import { sessionOptions } from '../src/model/engines/onnx-options.js';
import type { TensorMap } from '../src/model/tensor.js';

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    models: { type: 'string', default: 'b32,b16' },
    rounds: { type: 'string', default: '15' },
    runs: { type: 'string', default: '2' },
    batch: { type: 'string', default: '8' },
    threads: { type: 'string', default: '2' },
    photos: { type: 'string', default: join(PACKAGE_ROOT, 'test', 'fixtures', 'photos') },
  },
});
const dir = positionals[0];
if (!dir) throw new Error('usage: bench-graphs DIR (written by scripts/export_torch_vit.py) [--models b32,b16]');
const PRESETS: Record<string, string> = { b32: 'B/32', b16: 'B/16' };
const BATCH = Number(values.batch);
const ROUNDS = Number(values.rounds);
const RUNS = Number(values.runs);
const THREADS = Number(values.threads);

/** The vit graphs measured beside torch's: a name and how the builder is asked for it. */
const VIT_GRAPHS: { name: string; opts: GraphOptions }[] = [
  { name: 'fp32 standard', opts: { portable: true, prefixOnly: true } },
  { name: 'fp32', opts: { prefixOnly: true } },
  { name: 'fp32 all tokens', opts: {} },
  // With the weights as classify holds them on this CPU (7 bits where it has no VNNI).
  { name: 'int8', opts: { dtype: 'int8', int8Weights: int8WeightsFor(), prefixOnly: true } },
  // The same in standard ONNX ops, as `vit export --dtype int8` writes it for transformers.js.
  { name: 'int8 standard', opts: { dtype: 'int8', int8Weights: int8WeightsFor(), portable: true, prefixOnly: true } },
];

/** Write one vit graph with its weights file into its own directory; returns the model path. */
function writeGraph(cfg: ModelConfig, weights: TensorMap, out: string, opts: GraphOptions): string {
  const g = buildGraph(cfg, (p: string) => weights.get(p)!.shape, opts);
  mkdirSync(out, { recursive: true });
  const blob = new Uint8Array(weightFileSize(g.slots));
  for (const c of weightChunks(g.slots, weights)) blob.set(c.bytes, c.offset);
  writeFileSync(join(out, WEIGHTS_FILE), blob);
  writeFileSync(join(out, 'model.onnx'), encodeModel(g.model));
  return join(out, 'model.onnx');
}

function quantile(xs: number[], q: number): number {
  const s = [...xs].sort((a, b) => a - b);
  const at = q * (s.length - 1);
  const lo = Math.floor(at);
  return s[lo] + (s[Math.min(lo + 1, s.length - 1)] - s[lo]) * (at - lo);
}
const median = (xs: number[]) => quantile(xs, 0.5);

function argmax(row: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < row.length; i++) if (row[i] > row[best]) best = i;
  return best;
}

const load = () => loadavg().map((l) => l.toFixed(2)).join(' ');

/** Top-1 of every graph on every photo, against the fp32 graph's. */
async function photoAgreement(cfg: ModelConfig, names: string[], sessions: ort.InferenceSession[]): Promise<void> {
  const files = readdirSync(values.photos!).sort().map((f) => join(values.photos!, f));
  const [h, w] = cfg.imgSize;
  const per = 3 * h * w;
  const tops: number[][] = sessions.map(() => []);
  let used = 0;
  for (let i = 0; i < files.length; i += BATCH) {
    const pixels = new Float32Array(BATCH * per);
    let n = 0;
    for (const f of files.slice(i, i + BATCH)) {
      try {
        await loadImage(f, { preprocess: cfg.preprocess, size: cfg.imgSize, channels: cfg.inChans }, pixels, n * per);
        n++;
      } catch {
        // Not an image this tool reads: not counted.
      }
    }
    if (n === 0) continue;
    used += n;
    for (const [k, s] of sessions.entries()) {
      const out = (await s.run({ [s.inputNames[0]]: new ort.Tensor('float32', pixels.subarray(0, n * per), [n, 3, h, w]) }, ['logits'])).logits.data as Float32Array;
      for (let b = 0; b < n; b++) tops[k].push(argmax(out.subarray(b * cfg.numClasses, (b + 1) * cfg.numClasses)));
    }
  }
  const ref = names.indexOf('fp32');
  const line = names.map((name, k) => `${name} ${tops[k].filter((c, j) => c === tops[ref][j]).length}/${used}`).join(', ');
  console.log(`  top-1 as the fp32 graph's on the ${used} images of ${values.photos}: ${line}`);
}

async function benchModel(key: string): Promise<void> {
  const root = join(dir, key);
  const m = await loadModel({ model: PRESETS[key], weights: join(root, 'model.safetensors') });
  const graphs = [{ name: 'torch', path: join(root, 'torch.onnx') }];
  for (const g of VIT_GRAPHS) graphs.push({ name: g.name, path: writeGraph(m.config, m.weights, join(root, `vit-${g.name.replace(/ /g, '-')}`), g.opts) });
  m.weights.clear();
  const sessions = [];
  for (const g of graphs) sessions.push(await ort.InferenceSession.create(g.path, sessionOptions(THREADS, providersFor('cpu'))));
  const [h, w] = m.config.imgSize;
  const dims = [BATCH, 3, h, w];
  // The export script's reference input is this pattern for 2 images; a bigger batch continues it.
  const x = Float32Array.from({ length: BATCH * 3 * h * w }, (_, i) => Math.sin(i / 1000));
  const feeds = (s: ort.InferenceSession) => ({ [s.inputNames[0]]: new ort.Tensor('float32', x, dims) });
  const logits: Float32Array[] = [];
  for (const s of sessions) logits.push((await s.run(feeds(s), ['logits'])).logits.data as Float32Array);

  const reference = (JSON.parse(readFileSync(join(root, 'reference.json'), 'utf8')) as { logits: number[][] }).logits.flat();
  const classes = m.config.numClasses;
  console.log(`${PRESETS[key]}: logits of the first ${reference.length / classes} images against torch's own run (reference.json):`);
  graphs.forEach((g, i) => {
    let d = 0;
    reference.forEach((v, j) => (d = Math.max(d, Math.abs(v - logits[i][j]))));
    let agree = 0;
    for (let b = 0; b < BATCH; b++) {
      const row = (k: number) => logits[k].subarray(b * classes, (b + 1) * classes);
      agree += argmax(row(i)) === argmax(row(0)) ? 1 : 0;
    }
    console.log(`  ${g.name.padEnd(14)} max |Δ| ${d.toExponential(2)}; top-1 as torch's graph on ${agree}/${BATCH} of the batch`);
  });

  await photoAgreement(m.config, graphs.map((g) => g.name), sessions);

  const wall: number[][] = graphs.map(() => []);
  const cpu: number[][] = graphs.map(() => []);
  const before = load();
  for (let r = 0; r < ROUNDS; r++) {
    for (const [i, s] of sessions.entries()) {
      const f = feeds(s);
      const c0 = process.cpuUsage();
      const t0 = performance.now();
      for (let k = 0; k < RUNS; k++) await s.run(f, ['logits']);
      const seconds = (performance.now() - t0) / 1000;
      const c = process.cpuUsage(c0);
      wall[i].push((RUNS * BATCH) / seconds);
      cpu[i].push((c.user + c.system) / 1000 / (RUNS * BATCH));
    }
  }
  const after = load();
  for (const s of sessions) await s.release();
  const base = median(wall[0]);
  const baseCpu = median(cpu[0]);
  console.log(`\n${PRESETS[key]}, batch ${BATCH}, ${THREADS} threads, medians of ${ROUNDS} interleaved rounds of ${RUNS} batches; load average (1, 5, 15 min) ${before} before, ${after} after`);
  // Each round's pair (this graph, torch's, run one after the other) shares the machine's load of the moment:
  // the median of the per-round ratios, with its quartiles, says more than the ratio of the medians.
  const paired = (i: number) => {
    const r = wall[i].map((v, k) => v / wall[0][k]);
    return `${median(r).toFixed(3)} (${quantile(r, 0.25).toFixed(3)}–${quantile(r, 0.75).toFixed(3)})`;
  };
  console.log('| graph | img/s | × torch | × torch, per round (quartiles) | CPU ms/img | × torch (CPU) | rounds, img/s |');
  console.log('|---|---|---|---|---|---|---|');
  graphs.forEach((g, i) => {
    const [a, c] = [median(wall[i]), median(cpu[i])];
    console.log(`| ${g.name} | ${a.toFixed(2)} | ${(a / base).toFixed(3)} | ${paired(i)} | ${c.toFixed(1)} | ${(baseCpu / c).toFixed(3)} | ${wall[i].map((v) => v.toFixed(1)).join(' ')} |`);
  });
  console.log('');
}

for (const key of values.models!.split(',')) {
  if (!PRESETS[key]) throw new Error(`unknown model ${key}; choose from ${Object.keys(PRESETS).join(', ')}`);
  await benchModel(key);
}

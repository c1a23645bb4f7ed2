/**
 * Start-up and memory check of the onnx engine on one model (random weights unless --weights is given):
 *   node dist/scripts/onnx-check.js H/14 --batch 1 --runs 0          (under /usr/bin/time -v for peak RSS)
 *   node dist/scripts/onnx-check.js B/32 --batch 8 --runs 5 --cache-dir /tmp/vit-cache
 * Prints where the time goes (checkpoint, graph, weights file, session, first batch) and the steady
 * images/s over the given runs. A second run with the same cache dir shows the cached start-up.
 */
import { parseArgs } from 'node:util';
import { openGraphCache } from '../src/io/graph-cache.js';
import type { EngineChoice } from '../src/model/engines/index.js';
import { openModel } from '../src/pipeline/open-model.js';

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    batch: { type: 'string', default: '8' },
    runs: { type: 'string', default: '5' },
    weights: { type: 'string' },
    engine: { type: 'string', default: 'onnx' },
    dtype: { type: 'string', default: 'fp32' },
    'cache-dir': { type: 'string' },
  },
});
const model = positionals[0] ?? 'B/32';
const batch = Number(values.batch);
const runs = Number(values.runs);
const mb = (bytes: number) => `${(bytes / 2 ** 20).toFixed(0)} MiB`;
const rss = () => mb(process.memoryUsage().rss);

const t0 = performance.now();
const engine = await openModel({ model, weights: values.weights, randomWeights: !values.weights }, {
  engine: values.engine as EngineChoice,
  dtype: values.dtype as 'fp32',
  graphCache: values['cache-dir'] ? openGraphCache(values['cache-dir']) : undefined,
  verbose: (s) => console.log(s),
});
const tEngine = performance.now();
console.log(`${engine.config.name}: engine ready in ${(tEngine - t0).toFixed(0)} ms, rss ${rss()}`);

const [h, w] = engine.config.imgSize;
const x = Float32Array.from({ length: batch * engine.config.inChans * h * w }, (_, i) => Math.sin(i * 0.001));
let t = performance.now();
await engine.run(x, batch);
console.log(`first batch of ${batch}: ${(performance.now() - t).toFixed(0)} ms (${(performance.now() - t0).toFixed(0)} ms since start), rss ${rss()}`);
if (runs > 0) {
  t = performance.now();
  for (let i = 0; i < runs; i++) await engine.run(x, batch);
  const s = (performance.now() - t) / 1000;
  console.log(`steady: ${((runs * batch) / s).toFixed(2)} images/s at batch ${batch} over ${runs} runs, rss ${rss()}`);
}
await engine.dispose();

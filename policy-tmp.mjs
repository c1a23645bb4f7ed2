// Same process, same engine: whole runBatches passes over a folder, alternating overlap modes.
import { readdirSync } from 'node:fs';
import { loadModel } from './dist/src/io/model-source.js';
import { createEngine } from './dist/src/model/engines/index.js';
import { runBatches } from './dist/src/commands/batches.js';
const [dir, imgDir, roundsStr, limitStr] = process.argv.slice(2);
const m = await loadModel({ model: dir });
const e = await createEngine('onnx', m.config, m.weights, { cacheDir: process.env.XDG_CACHE_HOME });
const paths = readdirSync(imgDir).sort().map((f) => `${imgDir}/${f}`).slice(0, Number(limitStr ?? 1e9));
const res = { true: [], false: [], auto: [] };
for (let r = 0; r < Number(roundsStr ?? 3); r++) {
  for (const mode of r % 2 ? [true, false, undefined] : [undefined, false, true]) {
    const t0 = performance.now();
    await runBatches({ paths, config: e.config, engine: e, batchSize: 8, emit: async () => true, overlap: mode });
    res[mode ?? 'auto'].push(performance.now() - t0);
  }
}
const med = (a) => { const s = [...a].sort((x, y) => x - y); return s[s.length >> 1]; };
for (const k of Object.keys(res)) console.log(`overlap=${k}: ${res[k].map((x) => x.toFixed(0)).join(' ')}  median ${med(res[k]).toFixed(0)} ms  (${(paths.length / med(res[k]) * 1000).toFixed(2)} img/s)`);
await e.dispose();

/**
 * A child process for memory bounds: writes N synthetic rows of a kind (classify: 5 predictions; embed: 768
 * floats) to a file through the writer a run opens (parquet, or another format to compare), checkpointing every
 * 8 rows as a run's batches do. Usage: node [--expose-gc] [--import peak-rss.js] parquet-rows-child.js classify|embed N OUT [FORMAT]
 */
import { testWriter } from './formats.js';

const [kind, count, out, format = 'parquet'] = process.argv.slice(2) as ['classify' | 'embed', string, string, string?];
const n = Number(count);
const w = await testWriter(kind, format, { output: out, stdout: process.stdout });
for (let i = 0; i < n; i++) {
  const path = `shards/${String(i >> 10).padStart(5, '0')}.tar/${String(i).padStart(9, '0')}.jpg`;
  if (kind === 'embed') await w.write({ path, embedding: Float32Array.from({ length: 768 }, (_, j) => Math.sin(i * 0.37 + j)) } as never);
  else await w.write({ path, predictions: Array.from({ length: 5 }, (_, k) => ({ index: (i + k) % 1000, label: `class ${(i + k) % 1000}`, score: 1 / (k + 2), logit: 5 - k })) } as never);
  if (i % 8 === 7) await w.checkpoint?.();
  // With --expose-gc: the memory still in use every 5,000 rows (what the writer holds, garbage collected): the JS
  // heap and the buffers outside it (typed arrays, the file's write buffers).
  const gc = (globalThis as { gc?: () => void }).gc;
  if (gc && (i + 1) % 5000 === 0) {
    gc();
    console.log(JSON.stringify({ rows: i + 1, heapMiB: ((m) => (m.heapUsed + m.external) / 2 ** 20)(process.memoryUsage()) }));
  }
}
await w.close();

/**
 * npm run bench:datalake — the data-lake formats against the plain ones, as ratios of end-to-end wall times
 * (process start included) measured in turn on the same machine:
 *
 *   tar vs loose: `vit classify shard.tar` against `vit classify DIR/` over the same JPEGs;
 *   parquet vs JSONL: `vit embed DIR/ -f parquet -o F` against `-f jsonl -o F`.
 *
 * Each pair runs --rounds times, alternating, and the medians are compared: a shared machine drifts from one
 * minute to the next. Models: the bundled digits ViT (tiny, so decoding and writing are most of the time)
 * and a random-weight B/32 (where inference dominates). The load average is printed before and after.
 *
 * Options: --images N (default 400), --rounds N (default 3), --models digits,b32.
 */
import { spawn } from 'node:child_process';
import { createWriteStream, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import sharp from 'sharp';
import tarStream from 'tar-stream';
import { PACKAGE_ROOT } from '../src/io/paths.js';

const args = process.argv.slice(2);
const opt = (name: string, def: string) => (args.includes(`--${name}`) ? args[args.indexOf(`--${name}`) + 1] : def);
const N_IMAGES = Number(opt('images', '400'));
const ROUNDS = Math.max(1, Number(opt('rounds', '3')));
const MODELS: Record<string, string[]> = { digits: [], b32: ['-m', 'B/32', '--random-weights'] };
const chosen = opt('models', 'digits,b32').split(',');
const VIT = join(PACKAGE_ROOT, 'bin', 'vit.js');
const work = mkdtempSync(join(tmpdir(), 'vit-bench-datalake-'));

/** JPEGs of 480–960 px from the fixture photos, each rotated and recompressed differently. */
async function writePhotos(dir: string): Promise<void> {
  mkdirSync(dir);
  const photos = ['astronaut.png', 'chelsea.png', 'coffee.png'].map((f) => readFileSync(join(PACKAGE_ROOT, 'test', 'fixtures', 'photos', f)));
  for (let i = 0; i < N_IMAGES; i++) {
    const side = 480 + ((i * 53) % 481);
    await sharp(photos[i % photos.length]).resize(side, Math.round(side * 0.75), { fit: 'fill' }).rotate(90 * (i % 4))
      .jpeg({ quality: 80 + (i % 15) }).toFile(join(dir, `${String(i).padStart(6, '0')}.jpg`));
  }
}

/** The folder's files as one uncompressed WebDataset-style shard. */
async function writeShard(dir: string, file: string): Promise<void> {
  const pack = tarStream.pack();
  const written = pipeline(pack as unknown as NodeJS.ReadableStream, createWriteStream(file));
  for (const name of readdirSync(dir).sort()) {
    await new Promise<void>((res, rej) => pack.entry({ name }, readFileSync(join(dir, name)), (e) => (e ? rej(e) : res())));
  }
  pack.finalize();
  await written;
}

/** Wall seconds of one `vit …` run (its exit must be 0). */
function wall(argv: string[]): Promise<number> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const child = spawn(process.execPath, [VIT, ...argv], { env: { ...process.env, CI: 'true', XDG_CACHE_HOME: join(work, 'cache') }, stdio: ['ignore', 'ignore', 'inherit'] });
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve((performance.now() - t0) / 1000) : reject(new Error(`vit ${argv.join(' ')} exited ${code}`))));
  });
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

/** Medians of the two commands run in turn, after one warm-up run of each (graph cache, page cache). */
async function pair(a: string[], b: string[]): Promise<[number, number]> {
  await wall(a);
  await wall(b);
  const ta: number[] = [];
  const tb: number[] = [];
  for (let r = 0; r < ROUNDS; r++) {
    ta.push(await wall(a));
    tb.push(await wall(b));
  }
  return [median(ta), median(tb)];
}

async function main(): Promise<void> {
  const load = () => loadavg().map((l) => l.toFixed(2)).join(' ');
  console.error(`bench:datalake: ${N_IMAGES} JPEGs, ${ROUNDS} rounds, in ${work}; load average ${load()}`);
  const dir = join(work, 'photos');
  await writePhotos(dir);
  const shard = join(work, 'shard.tar');
  await writeShard(dir, shard);
  const lines = ['| model | loose, s | tar, s | tar/loose | JSONL, s | parquet, s | parquet/JSONL |', '|---|---|---|---|---|---|---|'];
  for (const name of chosen) {
    const m = MODELS[name];
    const [loose, tar] = await pair(['classify', dir, ...m, '-f', 'jsonl', '-o', join(work, 'c.jsonl')], ['classify', shard, ...m, '-f', 'jsonl', '-o', join(work, 'c.jsonl')]);
    const [jsonl, parquet] = await pair(['embed', dir, ...m, '-f', 'jsonl', '-o', join(work, 'e.jsonl')], ['embed', dir, ...m, '-f', 'parquet', '-o', join(work, 'e.parquet')]);
    lines.push(`| ${name} | ${loose.toFixed(2)} | ${tar.toFixed(2)} | ${(tar / loose).toFixed(3)} | ${jsonl.toFixed(2)} | ${parquet.toFixed(2)} | ${(parquet / jsonl).toFixed(3)} |`);
    console.error(lines[lines.length - 1]);
  }
  console.log(lines.join('\n'));
  console.error(`load average after: ${load()}`);
}

main().finally(() => rmSync(work, { recursive: true, force: true }));

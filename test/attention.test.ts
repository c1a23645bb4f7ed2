import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { test } from 'node:test';
import sharp from 'sharp';
import { PACKAGE_ROOT } from '../src/io/paths.js';
import { runVit } from './helpers/cli.js';
import { readNpy } from './helpers/formats.js';
import { attentionDistance, rollout } from '../src/model/attention.js';
import type { HostTensor } from '../src/model/tensor.js';
import { FIXTURES, maxAbsDiff, modelDir, PHOTOS, readAttentionGolden } from './helpers/golden.js';

/** Nested [heads][T][T] → a [1, heads, T, T] host tensor. */
function asTensor(heads: number[][][]): HostTensor {
  return { shape: [1, heads.length, heads[0].length, heads[0].length], data: Float32Array.from(heads.flat(2)) };
}

for (const name of ['odd40', 'eps32']) {
  test(`${name}: rollout and attention distance of the reference probabilities match numpy`, () => {
    const g = readAttentionGolden(name);
    const img = g.images[0];
    const attn = img.attentions!.map(asTensor);
    const r = rollout(attn, 0, 1);
    assert.equal(r.length, img.grid[0] * img.grid[1]);
    assert.ok(maxAbsDiff(r, img.rollout) < 1e-6, 'rollout');
    const d = attentionDistance(attn, 0, img.grid, g.patchSize, 1);
    assert.ok(maxAbsDiff(d.flat(), img.distance.flat()) < 1e-4, 'distance');
  });
}

const fixturePath = (file: string) => join(PACKAGE_ROOT, file);
const lines = <T>(text: string): T[] => text.trim().split('\n').map((l) => JSON.parse(l) as T);

for (const engine of ['onnx', 'tfjs']) {
  for (const name of ['odd40', 'eps32']) {
    test(`vit attention (${engine}, ${name}): rollout, distance and raw probabilities match torchvision`, async () => {
      const g = readAttentionGolden(name);
      const files = g.images.map((im) => fixturePath(im.file));
      const m = ['-m', modelDir(name, 'hf'), '--engine', engine, '-f', 'jsonl'];
      const ro = await runVit(['attention', ...files, ...m]);
      assert.equal(ro.code, 0, ro.stderr);
      const rows = lines<{ path: string; grid: number[]; rollout: number[] }>(ro.stdout);
      let worst = 0;
      rows.forEach((r, i) => {
        assert.deepEqual(r.grid, g.images[i].grid);
        worst = Math.max(worst, maxAbsDiff(r.rollout, g.images[i].rollout));
      });
      assert.ok(worst < 1e-5, `rollout off by ${worst}`);
      const di = await runVit(['attention', ...files, ...m, '--distance']);
      assert.equal(di.code, 0, di.stderr);
      const dRows = lines<{ distance: number[][] }>(di.stdout);
      const dWorst = Math.max(...dRows.map((r, i) => maxAbsDiff(r.distance.flat(), g.images[i].distance.flat())));
      assert.ok(dWorst < 1e-5, `distance off by ${dWorst} pixels`);
      const raw = await runVit(['attention', files[0], ...m, '--raw']);
      assert.equal(raw.code, 0, raw.stderr);
      const layers = lines<{ layers: { layer: number; heads: number[][][] }[] }>(raw.stdout)[0].layers;
      const rWorst = Math.max(...layers.map((l, i) => maxAbsDiff(l.heads.flat(2), g.images[0].attentions![i].flat(2))));
      assert.ok(rWorst < 1e-5, `raw off by ${rWorst}`);
      console.log(`attention ${engine}/${name}: max |Δ| rollout ${worst.toExponential(2)}, distance ${dWorst.toExponential(2)} px, raw ${rWorst.toExponential(2)}`);
    });
  }
}

test('vit attention: npy shapes, --layer/--head selection, the distance summary', async () => {
  const tmp = mkdtempSync(join(tmpdir(), 'vit-attn-'));
  try {
    const g = readAttentionGolden('odd40');
    const files = g.images.map((im) => fixturePath(im.file));
    const m = ['-m', modelDir('odd40', 'hf')];
    const out = join(tmp, 'r.npy');
    assert.equal((await runVit(['attention', ...files, ...m, '-f', 'npy', '-o', out])).code, 0);
    const npy = readNpy(readFileSync(out));
    assert.deepEqual(npy.shape, [4, 6, 6]);
    assert.ok(maxAbsDiff(npy.data, g.images.map((im) => im.rollout)) < 1e-5);
    const rawOut = join(tmp, 'raw.npy');
    assert.equal((await runVit(['attention', files[0], ...m, '--raw', '-f', 'npy', '-o', rawOut])).code, 0);
    assert.deepEqual(readNpy(readFileSync(rawOut)).shape, [1, 3, 5, 37, 37]);
    const one = await runVit(['attention', files[0], ...m, '--raw', '--layer', '1', '--head', 'mean', '-f', 'jsonl']);
    const sel = lines<{ layers: { layer: number; heads: number[][][] }[] }>(one.stdout)[0].layers;
    assert.equal(sel.length, 1);
    assert.equal(sel[0].layer, 1);
    assert.equal(sel[0].heads.length, 1);
    const ref = g.images[0].attentions![1];
    const mean = ref[0].map((row, i) => row.map((_, j) => ref.reduce((s, h) => s + h[i][j], 0) / ref.length));
    assert.ok(maxAbsDiff(sel[0].heads[0].flat(), mean.flat()) < 1e-5);
    const bad = await runVit(['attention', files[0], ...m, '--raw', '--layer', '3']);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /from 0 to 2/);
    const sum = await runVit(['attention', ...files, ...m, '--distance', '--summary', '--json']);
    assert.equal(sum.code, 0, sum.stderr);
    const s = JSON.parse(sum.stdout) as { images: number; distance: number[][] };
    assert.equal(s.images, 4);
    const want = g.images[0].distance.map((h, l) => h.map((_, i) => g.images.reduce((acc, im) => acc + im.distance[l][i], 0) / 4));
    assert.ok(maxAbsDiff(s.distance.flat(), want.flat()) < 1e-4);
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
});

test('vit attention --heatmap: one PNG per image, the size of the (EXIF-rotated) input, changed where attention is high', async () => {
  const tmp = mkdtempSync(join(tmpdir(), 'vit-heat-'));
  try {
    const photo = join(PHOTOS, readdirSync(PHOTOS).find((f) => f.endsWith('.png'))!);
    const meta = await sharp(photo).metadata();
    // The same photo stored sideways with an EXIF orientation tag: the overlay must come out upright.
    const rotated = join(tmp, 'sideways.jpg');
    await sharp(photo).rotate(-90).withMetadata({ orientation: 6 }).jpeg({ quality: 95 }).toFile(rotated);
    const a = join(tmp, 'a');
    const b = join(tmp, 'b');
    mkdirSync(a);
    mkdirSync(b);
    copyFileSync(photo, join(a, 'same.png'));
    copyFileSync(photo, join(b, 'same.png'));
    const out = join(tmp, 'heat');
    const r = await runVit(['attention', photo, rotated, join(a, 'same.png'), join(b, 'same.png'), '-m', modelDir('odd40', 'hf'), '--heatmap', out, '-f', 'jsonl']);
    assert.equal(r.code, 0, r.stderr);
    const written = readdirSync(out).sort();
    assert.equal(written.length, 4, written.join(', '));
    assert.ok(written.includes('sideways.attention.png'));
    assert.ok(written.includes('same.attention.png'));
    assert.ok(written.some((f) => /^same-[0-9a-f]{8}\.attention\.png$/.test(f)));
    const stem = basename(photo, '.png');
    const heat = await sharp(join(out, `${stem}.attention.png`)).raw().toBuffer({ resolveWithObject: true });
    assert.deepEqual([heat.info.width, heat.info.height], [meta.width, meta.height]);
    const side = await sharp(join(out, 'sideways.attention.png')).metadata();
    assert.deepEqual([side.width, side.height], [meta.width, meta.height], 'EXIF rotation applied');
    // Where the rollout peaks, the overlay differs from the photo; where it is lowest, it barely does.
    const rollout = lines<{ rollout: number[]; grid: [number, number] }>(r.stdout)[0];
    const orig = await sharp(photo).removeAlpha().raw().toBuffer();
    const [gh, gw] = rollout.grid;
    const cellDiff = (cell: number) => {
      const cy = Math.floor(((Math.floor(cell / gw) + 0.5) / gh) * heat.info.height);
      const cx = Math.floor((((cell % gw) + 0.5) / gw) * heat.info.width);
      const p = (cy * heat.info.width + cx) * 3;
      return Math.abs(heat.data[p] - orig[p]) + Math.abs(heat.data[p + 1] - orig[p + 1]) + Math.abs(heat.data[p + 2] - orig[p + 2]);
    };
    const order = rollout.rollout.map((v, i) => [v, i]).sort((x, y) => y[0] - x[0]).map(([, i]) => i);
    assert.ok(cellDiff(order[0]) > 60, `peak cell changed by ${cellDiff(order[0])}`);
    assert.ok(cellDiff(order[order.length - 1]) < 20, `weakest cell changed by ${cellDiff(order[order.length - 1])}`);
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
});

test('vit attention --heatmap onto a file, a FIFO or a path under a file: one usage line, exit 2, nothing made', async () => {
  const tmp = mkdtempSync(join(tmpdir(), 'vit-heat-'));
  try {
    const image = join(PACKAGE_ROOT, 'examples', 'digits', '0_0800.png');
    const file = join(tmp, 'a-file');
    writeFileSync(file, 'keep');
    const fifo = join(tmp, 'a-fifo');
    execFileSync('mkfifo', [fifo]);
    const cases: [string, string][] = [
      [file, `vit: --heatmap ${file} is not a directory`],
      [fifo, `vit: --heatmap ${fifo} is not a directory`],
      [join(file, 'sub'), `vit: --heatmap ${join(file, 'sub')}: cannot make the directory: ENOTDIR (not a directory)`],
    ];
    for (const [dir, line] of cases) {
      const r = await runVit(['attention', image, '--heatmap', dir]);
      assert.equal(r.code, 2, r.stderr);
      assert.equal(r.stderr.split('\n')[0], line);
      assert.equal(r.stdout, '');
    }
    assert.equal(readFileSync(file, 'utf8'), 'keep');
    assert.deepEqual(readdirSync(tmp).sort(), ['a-fifo', 'a-file']);
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
});

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { computeTaps, FILTERS, resampleHorizontal, resampleVertical, type RgbImage, type Taps } from '../src/io/images.js';
import { resampleSeparableWasm, wasmResamplerAvailable, wasmResamplerMemoryBytes } from '../src/io/resample-wasm.js';
import { rng } from '../src/model/weights/random.js';

type FilterName = keyof typeof FILTERS;
const FILTER_NAMES = Object.keys(FILTERS) as FilterName[];


type Content = 'noise' | 'checkerboard' | 'binary noise';

/** An RGB image: uniform noise, or only 0 and 255 (cells of a checkerboard, or per-value coin flips). */
function makeImage(width: number, height: number, content: Content, rand: () => number, cell = 1): RgbImage {
  const data = new Uint8Array(width * height * 3);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      for (let c = 0; c < 3; c++) {
        const i = (y * width + x) * 3 + c;
        if (content === 'noise') data[i] = Math.floor(rand() * 256);
        else if (content === 'binary noise') data[i] = rand() < 0.5 ? 0 : 255;
        // Channels are shifted by a cell against each other so that they differ.
        else data[i] = (Math.floor(x / cell) + Math.floor(y / cell) + c) % 2 ? 255 : 0;
      }
    }
  }
  return { data, width, height };
}

/** Output pixels [from, from + n) of a set of taps; the weights view runs on to the end, as a caller's may. */
function tapsWindow(t: Taps, from: number, n: number): Taps {
  const { ksize } = t;
  return { start: t.start.slice(from, from + n), count: t.count.slice(from, from + n), weights: t.weights.subarray(from * ksize), ksize };
}

interface Case {
  label: string;
  img: RgbImage;
  tapsX: Taps | null;
  tapsY: Taps | null;
}

/** A window of a resize of img to outW × outH: the source rows and taps resample() of images.ts would use. */
function windowCase(
  label: string, img: RgbImage, outW: number, outH: number, filter: FilterName,
  win: { left: number; top: number; width: number; height: number }, passes: 'x' | 'y' | 'xy',
): Case {
  const tapsX = passes === 'y' ? null : tapsWindow(computeTaps(img.width, outW, FILTERS[filter]), win.left, win.width);
  if (passes === 'x') return { label, img, tapsX, tapsY: null };
  const tapsY = tapsWindow(computeTaps(img.height, outH, FILTERS[filter]), win.top, win.height);
  const y0 = tapsY.start[0];
  const y1 = tapsY.start[win.height - 1] + tapsY.count[win.height - 1];
  for (let i = 0; i < win.height; i++) tapsY.start[i] -= y0;
  const stride = img.width * 3;
  // Rows [y0, y1) of the source: the only ones the window's vertical taps read.
  const rows = { data: img.data.subarray(y0 * stride, y1 * stride), width: img.width, height: y1 - y0 };
  return { label: `${label} rows ${y0}..${y1}`, img: rows, tapsX, tapsY };
}

function jsResample({ img, tapsX, tapsY }: Case): Uint8Array {
  const mid = tapsX ? resampleHorizontal(img, tapsX.start.length, tapsX) : img;
  return tapsY ? resampleVertical(mid, tapsY.start.length, tapsY).data : mid.data;
}

function assertExact(c: Case, sharedLimit?: number): void {
  const want = jsResample(c);
  const got = resampleSeparableWasm(c.img.data, c.img.width, c.img.height, c.tapsX, c.tapsY, sharedLimit);
  assert.equal(got.length, want.length, `${c.label}: output length`);
  const i = got.findIndex((v, k) => v !== want[k]);
  assert.equal(i, -1, `${c.label}: byte ${i} is ${got[i]}, the JS passes give ${want[i]}`);
}

/** A random resize (up to 2.5× up, 12× down) of a random image, whole or a window, one or both passes. */
function randomCase(rand: () => number, n: number): Case {
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)];
  const size = () => 1 + Math.floor(rand() ** 2 * 700);
  const scaled = (s: number) => Math.max(1, Math.round(s / pick([1 / 2.5, 1 / 1.7, 0.9, 1, 1.5, 2, 3.3, 5, 8, 12])));
  const w = size();
  const h = size();
  const content = pick(['noise', 'checkerboard', 'binary noise'] as const);
  const cell = 1 + Math.floor(rand() * 6);
  const img = makeImage(w, h, content, rand, cell);
  const [outW, outH] = [scaled(w), scaled(h)];
  const filter = pick(FILTER_NAMES);
  const passes = pick(['x', 'y', 'xy'] as const);
  // Half the cases take the whole output, the others a random window of it (a crop).
  const whole = rand() < 0.5;
  const ww = whole ? outW : 1 + Math.floor(rand() * outW);
  const wh = whole ? outH : 1 + Math.floor(rand() * outH);
  const win = { left: Math.floor(rand() * (outW - ww + 1)), top: Math.floor(rand() * (outH - wh + 1)), width: ww, height: wh };
  const label = `case ${n}: ${content}/${cell} ${w}×${h} → ${outW}×${outH} ${filter} ${passes} window ${JSON.stringify(win)}`;
  return windowCase(label, img, outW, outH, filter, win, passes);
}

test('the wasm resampler loads here (Node has WebAssembly SIMD; npm run build compiles the .wat)', () => {
  assert.equal(wasmResamplerAvailable(), true);
});

test('random resizes (1..700 px, 2.5× up to 12× down, crops, one or both passes) match the JS passes byte for byte', () => {
  const rand = rng(20240611);
  for (let n = 0; n < 150; n++) assertExact(randomCase(rand, n));
});

test('tiny images and every row length mod 16 match the JS passes', () => {
  const rand = rng(7);
  for (let w = 1; w <= 19; w++) {
    for (const h of [1, 2, 3, 4]) {
      const img = makeImage(w, h, 'noise', rand);
      for (const filter of FILTER_NAMES) {
        for (const [outW, outH] of [[1, 1], [w + 5, h + 2], [w, 2 * h + 1]]) {
          const whole = { left: 0, top: 0, width: outW, height: outH };
          for (const passes of ['x', 'y', 'xy'] as const) {
            assertExact(windowCase(`${w}×${h} → ${outW}×${outH} ${filter} ${passes}`, img, outW, outH, filter, whole, passes));
          }
        }
      }
    }
  }
});

/** Smallest and largest fixed-point sum of the horizontal pass, before clip8, computed as PIL does. */
function accumulatorRange(img: RgbImage, t: Taps): [number, number] {
  let [lo, hi] = [Infinity, -Infinity];
  for (let y = 0; y < img.height; y++) {
    for (let x = 0; x < t.start.length; x++) {
      for (let c = 0; c < 3; c++) {
        let acc = 2 ** 21;
        for (let k = 0; k < t.count[x]; k++) {
          acc = (acc + Math.imul(img.data[(y * img.width + t.start[x] + k) * 3 + c], t.weights[x * t.ksize + k])) | 0;
        }
        [lo, hi] = [Math.min(lo, acc), Math.max(hi, acc)];
      }
    }
  }
  return [lo, hi];
}

test('bicubic and lanczos over- and undershoot on 0/255 checkerboards clip exactly as the JS does', () => {
  const rand = rng(3);
  for (const filter of ['bicubic', 'lanczos'] as const) {
    for (const [w, h, outW, outH, cell] of [[40, 30, 117, 95, 4], [301, 157, 71, 40, 20], [64, 64, 64 * 3, 25, 3]]) {
      const img = makeImage(w, h, 'checkerboard', rand, cell);
      // The case really leaves 0..255 on both sides, so the saturating narrows are what is tested.
      const [lo, hi] = accumulatorRange(img, computeTaps(w, outW, FILTERS[filter]));
      assert.ok(lo < 0 && hi >= 256 * 2 ** 22, `${filter} ${w}×${h} → ${outW}×${outH}: accumulators ${lo}..${hi}`);
      assertExact(windowCase(`checkerboard ${filter} ${w}×${h} → ${outW}×${outH}`, img, outW, outH, filter,
        { left: 0, top: 0, width: outW, height: outH }, 'xy'));
    }
  }
});

test('calls of different sizes in a row reuse one memory and are all exact', () => {
  const rand = rng(11);
  const whole = (w: number, h: number) => ({ left: 0, top: 0, width: w, height: h });
  const big = windowCase('big', makeImage(413, 290, 'noise', rand), 150, 101, 'bilinear', whole(150, 101), 'xy');
  const small = windowCase('small', makeImage(37, 23, 'noise', rand), 90, 70, 'lanczos', whole(90, 70), 'xy');
  assertExact(big);
  const bytes = wasmResamplerMemoryBytes();
  assertExact(small);
  assertExact(big);
  assertExact(small);
  assert.equal(wasmResamplerMemoryBytes(), bytes, 'the shared memory grew for calls that fit in it');
});

test('a call above the shared-memory limit runs in a throwaway instance and is exact', () => {
  const rand = rng(5);
  assertExact(windowCase('warm-up', makeImage(20, 20, 'noise', rand), 10, 10, 'bilinear', { left: 0, top: 0, width: 10, height: 10 }, 'xy'));
  const before = wasmResamplerMemoryBytes();
  // A source larger than the shared memory now is, so keeping it would have to grow that memory.
  const h = Math.ceil(before / (600 * 3)) + 50;
  const c = windowCase(`600×${h}`, makeImage(600, h, 'noise', rand), 211, 80, 'bicubic', { left: 0, top: 0, width: 211, height: 80 }, 'xy');
  assertExact(c, 2 ** 20);
  assert.equal(wasmResamplerMemoryBytes(), before, 'the shared memory grew for a call above the limit');
  assertExact(c);
  assert.ok(wasmResamplerMemoryBytes() > before, 'the same call under the default limit uses the shared memory');
});

test('taps that reach outside the source, and sources of the wrong length, are refused', () => {
  const img = makeImage(10, 10, 'noise', rng(1));
  const taps = computeTaps(10, 4, FILTERS.bilinear);
  const outside = { ...taps, start: taps.start.map((s) => s + 3) };
  assert.throws(() => resampleSeparableWasm(img.data, 10, 10, outside, null), /horizontal tap 2: expected ≤ 7 source pixels inside \[0, 10\), found 5 from 7/);
  assert.throws(() => resampleSeparableWasm(img.data, 10, 9, null, taps), /expected 10×9×3 = 270 bytes of RGB, found 300/);
  assert.throws(() => resampleSeparableWasm(img.data, 10, 10, null, null), RangeError);
});

/**
 * PIL's separable resampling (resampleHorizontal, then resampleVertical of images.ts) in WebAssembly SIMD:
 * the same integer arithmetic, so the same bytes, several times faster. The module (wasm/resample.wat,
 * compiled to dist/ by scripts/build-wasm.mjs) works on one linear memory that holds the source, both sets
 * of taps, the 8-bit intermediate and the result; the source is copied in once and the result out once.
 */
import { readFileSync } from 'node:fs';
import type { Taps } from './images.js';

interface ResampleExports {
  memory: WebAssembly.Memory;
  horizontal(src: number, w: number, h: number, dst: number, outW: number, start: number, count: number, weights: number, ksize: number): void;
  vertical(src: number, w: number, dst: number, outH: number, start: number, count: number, weights: number, ksize: number): void;
}

/**
 * Calls that need more linear memory than this get an instance of their own, dropped afterwards: a wasm
 * memory never shrinks, and one giant image should not keep hundreds of MB for the rest of a run.
 */
export const SHARED_MEMORY_LIMIT = 256 * 2 ** 20;

const WASM_PAGE = 65536;
/** Both passes read and write up to 16 bytes past the end of an image (see resample.wat). */
const SLACK = 16;

/** undefined: not tried yet; null: the file is missing or this runtime lacks WebAssembly SIMD. */
let compiled: WebAssembly.Module | null | undefined;
let shared: ResampleExports | null = null;

function wasmModule(): WebAssembly.Module | null {
  if (compiled === undefined) {
    try {
      compiled = new WebAssembly.Module(readFileSync(new URL('./wasm/resample.wasm', import.meta.url)));
    } catch {
      compiled = null;
    }
  }
  return compiled;
}

/** Whether resampleSeparableWasm can run here; when not, use the JS passes of images.ts. */
export function wasmResamplerAvailable(): boolean {
  return wasmModule() !== null;
}

/** Bytes of the shared linear memory (0 before the first call): lets tests see that it is reused, or not grown. */
export function wasmResamplerMemoryBytes(): number {
  return shared ? shared.memory.buffer.byteLength : 0;
}

function instantiate(): ResampleExports {
  const mod = wasmModule();
  if (!mod) throw new Error('the WebAssembly resampler is not available (see wasmResamplerAvailable)');
  return new WebAssembly.Instance(mod).exports as unknown as ResampleExports;
}

/** An instance whose memory holds at least `bytes`: the shared one, or a throwaway one above `limit`. */
function instanceFor(bytes: number, limit: number): ResampleExports {
  const inst = bytes > limit ? instantiate() : (shared ??= instantiate());
  const pages = Math.ceil(bytes / WASM_PAGE) - inst.memory.buffer.byteLength / WASM_PAGE;
  if (pages > 0) inst.memory.grow(pages);
  return inst;
}

/** Taps for inSize → out pixels that stay inside the source and inside their weight rows. */
function checkTaps(t: Taps, inSize: number, axis: string): number {
  const n = t.start.length;
  if (t.count.length !== n || t.weights.length < n * t.ksize) {
    throw new RangeError(`${axis} taps: expected ${n} counts and ${n}×${t.ksize} weights, found ${t.count.length} and ${t.weights.length}`);
  }
  for (let i = 0; i < n; i++) {
    const s = t.start[i];
    const c = t.count[i];
    if (!(s >= 0 && c >= 0 && c <= t.ksize && s + c <= inSize)) {
      throw new RangeError(`${axis} tap ${i}: expected ≤ ${t.ksize} source pixels inside [0, ${inSize}), found ${c} from ${s}`);
    }
  }
  return n;
}

/** Bump allocation of 16-byte-aligned regions of linear memory, from address 0. */
class Layout {
  bytes = 0;
  take(n: number): number {
    const at = this.bytes;
    this.bytes = at + Math.ceil(n / 16) * 16;
    return at;
  }
}

interface TapsAt { start: number; count: number; weights: number; ksize: number }

function placeTaps(layout: Layout, t: Taps): TapsAt {
  const n = t.start.length;
  return { start: layout.take(4 * n), count: layout.take(4 * n), weights: layout.take(4 * n * t.ksize), ksize: t.ksize };
}

function writeTaps(buf: ArrayBuffer, t: Taps, at: TapsAt): void {
  const n = t.start.length;
  new Int32Array(buf, at.start, n).set(t.start);
  new Int32Array(buf, at.count, n).set(t.count);
  new Int32Array(buf, at.weights, n * t.ksize).set(t.weights.subarray(0, n * t.ksize));
}

/**
 * Resample an 8-bit RGB image [height, width, 3] along x with tapsX, then along y with tapsY; a null set of
 * taps skips that pass (at least one must be given). The result, [tapsY ? outH : height, tapsX ? outW :
 * width, 3], is byte for byte that of
 *   tapsY ? resampleVertical(tapsX ? resampleHorizontal(img, outW, tapsX) : img, outH, tapsY)
 *         : resampleHorizontal(img, outW, tapsX)
 * with tapsY.start counted from the first row of `src`. `sharedLimit` is the most linear memory a call may
 * keep for later calls (SHARED_MEMORY_LIMIT; lower it only to test the other path).
 */
export function resampleSeparableWasm(
  src: Uint8Array, width: number, height: number, tapsX: Taps | null, tapsY: Taps | null, sharedLimit = SHARED_MEMORY_LIMIT,
): Uint8Array {
  if (!tapsX && !tapsY) throw new RangeError('resampleSeparableWasm needs horizontal or vertical taps, found neither');
  if (src.length !== width * height * 3) {
    throw new RangeError(`expected ${width}×${height}×3 = ${width * height * 3} bytes of RGB, found ${src.length}`);
  }
  const outW = tapsX ? checkTaps(tapsX, width, 'horizontal') : width;
  const outH = tapsY ? checkTaps(tapsY, height, 'vertical') : height;

  const layout = new Layout();
  const srcAt = layout.take(src.length + SLACK);
  const xAt = tapsX && placeTaps(layout, tapsX);
  const yAt = tapsY && placeTaps(layout, tapsY);
  // The intermediate [height, outW, 3] exists only when both passes run.
  const midAt = xAt && yAt ? layout.take(height * outW * 3 + SLACK) : srcAt;
  const outBytes = outH * outW * 3;
  const outAt = layout.take(outBytes + SLACK);
  if (layout.bytes > 2 ** 32) {
    throw new RangeError(`resampling ${width}×${height} → ${outW}×${outH} needs ${layout.bytes} bytes, more than a wasm memory holds`);
  }

  const wasm = instanceFor(layout.bytes, sharedLimit);
  const buf = wasm.memory.buffer;
  new Uint8Array(buf).set(src, srcAt);
  if (tapsX && xAt) {
    writeTaps(buf, tapsX, xAt);
    wasm.horizontal(srcAt, width, height, yAt ? midAt : outAt, outW, xAt.start, xAt.count, xAt.weights, xAt.ksize);
  }
  if (tapsY && yAt) {
    writeTaps(buf, tapsY, yAt);
    wasm.vertical(midAt, outW, outAt, outH, yAt.start, yAt.count, yAt.weights, yAt.ksize);
  }
  return new Uint8Array(buf, outAt, outBytes).slice();
}

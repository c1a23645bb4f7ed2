/**
 * Decode and preprocess images the way the reference pipelines (timm's eval transform, Hugging Face image
 * processors) do with PIL, so that a checkpoint sees the pixels it was trained and evaluated on.
 *
 * sharp does the decoding (every format, EXIF orientation, colour conversion to 8-bit RGB), except for JPEGs
 * where libjpeg-turbo can be called directly (jpeg-turbo.ts: the same pixels for half the CPU). Resampling is our
 * own port of PIL's algorithm, not sharp's: measured on real photos, sharp's `linear`/`cubic` kernels agree
 * with PIL for ~2x downscales (mean 0.2 grey levels, max 2) but not for upscales (max 50+: different sample
 * grid) or strong downscales (max 6-10: libvips shrinks by a box filter first). PIL's separable convolution
 * with 22-bit fixed-point weights and an 8-bit intermediate image is reproduced step by step, so the output
 * is bit-identical to PIL's `Image.resize` (see test/images.test.ts and scripts/make_resize_goldens.py).
 */
import { closeSync, constants, fstatSync, openSync, readFileSync, type Stats } from 'node:fs';
import { open } from 'node:fs/promises';
import { crc32 } from 'node:zlib';
import { createRequire } from 'node:module';
import type sharpModule from 'sharp';
import type { Metadata } from 'sharp';
import { InputError } from '../errors.js';
import type { Channels, Interpolation, Preprocess } from '../model/config.js';
import { fsPath } from './fs-names.js';
import { turboJpeg } from './jpeg-turbo.js';
import { resampleSeparableWasm, wasmResamplerAvailable } from './resample-wasm.js';

/** An 8-bit RGB image, interleaved (HWC): pixel (x, y) channel c is data[(y * width + x) * 3 + c]. */
export interface RgbImage {
  data: Uint8Array;
  width: number;
  height: number;
}

/**
 * Images with more pixels than this are refused before decoding (decompression bombs): 16384² = 268M
 * pixels, already 805 MB as RGB, far beyond any photo a ViT is run on.
 */
export const DEFAULT_PIXEL_LIMIT = 16384 * 16384;

export interface DecodeOptions {
  /** Refuse images with more than this many pixels (width × height); default DEFAULT_PIXEL_LIMIT. */
  pixelLimit?: number;
  /** Decode JPEGs with libjpeg-turbo directly where it is available (default), else everything with sharp. */
  turbo?: boolean;
  /**
   * Read the file with blocking calls on this thread instead of libuv's pool: for a thread that does nothing
   * else (the preprocessing pool's), which then spends no time waiting on hand-offs.
   */
  blockingRead?: boolean;
}

/** Raster formats (sharp's names) an image pipeline reads; sharp would also rasterise SVG, which PIL cannot. */
const RASTER_FORMATS = new Set(['jpeg', 'png', 'webp', 'gif', 'tiff', 'heif', 'jp2']);

let sharpLib: typeof sharpModule | null = null;

/** sharp, loaded on first use: JPEGs decoded by libjpeg-turbo directly never need it (nor its start-up time). */
function sharp(...args: Parameters<typeof sharpModule>): ReturnType<typeof sharpModule> {
  sharpLib ??= createRequire(import.meta.url)('sharp') as typeof sharpModule;
  return sharpLib(...args);
}

/** An fs error → the short reason an error row shows. */
export function fsReason(e: unknown): InputError {
  const code = (e as NodeJS.ErrnoException)?.code;
  switch (code) {
    case 'ENOENT':
    case 'ENOTDIR':
      return new InputError('no such file');
    case 'EACCES':
    case 'EPERM':
      return new InputError('permission denied');
    case 'EISDIR':
      return new InputError('is a directory');
    default:
      // Node refuses a name with a NUL byte, which no file can have, before asking the system.
      if (code === 'ERR_INVALID_ARG_VALUE' && /null bytes/.test((e as Error).message)) return new InputError('not a file name (has a NUL byte)');
      return new InputError(`cannot read file (${code ?? (e as Error).message})`);
  }
}

/**
 * A sharp/libvips error → a short reason. Once the format is recognised, any failure to decode is bad data:
 * libvips words it many ways ("Premature end of JPEG file", "libpng read error", "Unknown error", ...).
 */
function decodeReason(e: unknown): InputError {
  const msg = String((e as Error)?.message ?? e);
  if (/unsupported image format/i.test(msg)) return new InputError('not an image');
  if (/pixel limit/i.test(msg)) return new InputError('image too large');
  if (/out of memory/i.test(msg)) return new InputError('out of memory decoding the image');
  return new InputError('truncated or corrupt image');
}

/**
 * Decode an encoded image to 8-bit RGB the way PIL's `Image.open(...).convert('RGB')` sees it, plus EXIF
 * orientation (which the reference pipelines apply through their loaders, and which photos need):
 * - grayscale is replicated, palette expanded, CMYK converted with PIL's formula (no colour management);
 * - alpha is discarded, not composited (convert('RGB') semantics);
 * - 16-bit samples keep their high byte, as PIL does for 16-bit RGB and grey+alpha. (PIL clips 16-bit
 *   greyscale to 255, which turns most such images white; we take the high byte there too.)
 * - embedded ICC profiles are ignored, as PIL ignores them: the model was trained on the stored values;
 * - animated images give their first frame.
 */
export async function decodeRgbBuffer(buf: Uint8Array, opts: DecodeOptions = {}): Promise<RgbImage> {
  const limit = opts.pixelLimit ?? DEFAULT_PIXEL_LIMIT;
  if (buf.length === 0) throw new InputError('empty file');
  checkPngHeaderChunks(buf);
  const head = sniffHeader(buf) ?? await sharpHeader(buf);
  if (head.width * head.height > limit) throw new InputError(`image too large (${head.width}×${head.height} pixels)`);
  if (head.jpegOrientation !== null && !head.cmyk && opts.turbo !== false) {
    // Anything libjpeg-turbo refuses (truncated, corrupt, 12-bit) goes on to sharp, which words the reason.
    const rgb = turboJpeg()?.decode(buf);
    if (rgb) return orientRgb(rgb, head.jpegOrientation);
  }
  const source = () => sharp(buf, { limitInputPixels: limit, failOn: 'truncated', autoOrient: true, ignoreIcc: true });
  try {
    if (head.cmyk) {
      // Keep the stored CMYK values (no ICC conversion) and convert them as PIL does.
      const { data, info } = await source().pipelineColourspace('cmyk').toColourspace('cmyk').raw({ depth: 'uchar' })
        .toBuffer({ resolveWithObject: true });
      return { data: cmykToRgb(data, info.channels), width: info.width, height: info.height };
    }
    const { data, info } = await source().removeAlpha().toColourspace('srgb').raw({ depth: 'uchar' })
      .toBuffer({ resolveWithObject: true });
    if (info.channels !== 3) throw new InputError(`decoded to ${info.channels} channels, expected 3 (RGB)`);
    return { data: new Uint8Array(data.buffer, data.byteOffset, data.length), width: info.width, height: info.height };
  } catch (e) {
    throw e instanceof InputError ? e : decodeReason(e);
  }
}

/** What decoding needs to know first: the stored size (for the pixel limit) and whether the data is CMYK. */
interface Header {
  width: number;
  height: number;
  cmyk: boolean;
  /**
   * For a JPEG read directly: its EXIF orientation (1 when it has none). Null when the format is not JPEG or
   * the orientation is not plain to read; such files go through sharp, which applies it.
   */
  jpegOrientation: number | null;
}

/** The header as libvips reads it: any format it knows, refused unless it is a raster format PIL reads too. */
async function sharpHeader(buf: Uint8Array): Promise<Header> {
  let meta: Metadata;
  try {
    meta = await sharp(buf, { limitInputPixels: false }).metadata();
  } catch (e) {
    throw decodeReason(e);
  }
  if (!RASTER_FORMATS.has(meta.format ?? '')) throw new InputError(`not an image (${meta.format ?? 'unknown'} format)`);
  return { width: meta.width ?? 0, height: meta.height ?? 0, cmyk: meta.space === 'cmyk', jpegOrientation: null };
}

/**
 * The header of a JPEG or PNG, read directly: almost every input is one of the two, and asking libvips for
 * the header costs a round trip through its thread pool per image. Null when the bytes are anything else, or
 * when the header is unusual (no frame header before the end, a height defined later by a DNL marker); libvips
 * then reads it, and reports what is wrong with it.
 */
export function sniffHeader(buf: Uint8Array): Header | null {
  if (buf.length >= 24 && PNG_SIGNATURE.every((b, i) => buf[i] === b) && String.fromCharCode(...buf.subarray(12, 16)) === 'IHDR') {
    const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
    const width = view.getUint32(16);
    const height = view.getUint32(20);
    return width > 0 && height > 0 ? { width, height, cmyk: false, jpegOrientation: null } : null;
  }
  if (buf.length < 4 || buf[0] !== 0xff || buf[1] !== 0xd8 || buf[2] !== 0xff) return null;
  // JPEG: walk the marker segments (FF, code, 2-byte length counting itself) up to the first frame header.
  let orientation: number | null = 1;
  let exifSeen = false;
  for (let at = 2; at + 4 <= buf.length;) {
    if (buf[at] !== 0xff) return null;
    const code = buf[at + 1];
    if (code === 0xff) {
      at++; // a fill byte before a marker
      continue;
    }
    if (code === 0x01 || (code >= 0xd0 && code <= 0xd8)) {
      at += 2; // markers without a segment
      continue;
    }
    if (code === 0xd9 || code === 0xda) return null; // end of image or scan data before any frame header
    const len = (buf[at + 2] << 8) | buf[at + 3];
    // SOF0..SOF15 except DHT (C4), JPG (C8) and DAC (CC): precision, height, width, component count.
    if (code >= 0xc0 && code <= 0xcf && code !== 0xc4 && code !== 0xc8 && code !== 0xcc) {
      if (at + 10 > buf.length || len < 8) return null;
      const height = (buf[at + 5] << 8) | buf[at + 6];
      const width = (buf[at + 7] << 8) | buf[at + 8];
      const components = buf[at + 9];
      // Four components are CMYK or YCCK, which libjpeg hands over as CMYK; anything but 1, 3 or 4 is for libvips to judge.
      if (height === 0 || width === 0 || ![1, 3, 4].includes(components)) return null;
      return { width, height, cmyk: components === 4, jpegOrientation: orientation };
    }
    if (len < 2) return null;
    if (code === 0xe1 && isExif(buf, at + 4, len - 2)) {
      // Only the first EXIF segment counts; a second one makes the orientation a matter for libvips to settle.
      orientation = exifSeen ? null : exifOrientation(buf.subarray(at + 10, Math.min(buf.length, at + 2 + len)));
      exifSeen = true;
    }
    at += 2 + len;
  }
  return null;
}

function isExif(buf: Uint8Array, at: number, len: number): boolean {
  return len >= 6 && at + 6 <= buf.length && String.fromCharCode(...buf.subarray(at, at + 6)) === 'Exif\0\0';
}

/**
 * The Orientation tag (0x0112) of IFD0 in a TIFF structure (the body of an EXIF segment): 1 when absent, null
 * when the structure is damaged or the value is not 1..8 (left to libvips).
 */
function exifOrientation(tiff: Uint8Array): number | null {
  if (tiff.length < 8) return null;
  const little = tiff[0] === 0x49 && tiff[1] === 0x49;
  if (!little && !(tiff[0] === 0x4d && tiff[1] === 0x4d)) return null;
  const view = new DataView(tiff.buffer, tiff.byteOffset, tiff.byteLength);
  if (view.getUint16(2, little) !== 42) return null;
  const ifd = view.getUint32(4, little);
  if (ifd + 2 > tiff.length) return null;
  const entries = view.getUint16(ifd, little);
  for (let i = 0; i < entries; i++) {
    const e = ifd + 2 + i * 12;
    if (e + 12 > tiff.length) return null;
    if (view.getUint16(e, little) !== 0x0112) continue;
    // A SHORT, one value, held in the first two bytes of the value field.
    if (view.getUint16(e + 2, little) !== 3 || view.getUint32(e + 4, little) !== 1) return null;
    const value = view.getUint16(e + 8, little);
    return value >= 1 && value <= 8 ? value : null;
  }
  return 1;
}

/**
 * An image as displayed under EXIF orientation o (1..8), as libvips' autorotation gives it: 2 mirrors, 3
 * turns 180°, 4 flips, 5 transposes, 6 turns 90° clockwise, 7 transverses, 8 turns 90° anticlockwise.
 */
export function orientRgb(img: RgbImage, o: number): RgbImage {
  if (o === 1) return img;
  const { data: src, width: w, height: h } = img;
  const swap = o >= 5;
  const [ow, oh] = swap ? [h, w] : [w, h];
  const dst = new Uint8Array(src.length);
  // Where output pixel (x, y) comes from: stored pixel (sx, sy) = (ax * x + bx * y + cx, ay * x + by * y + cy).
  const [ax, bx, cx, ay, by, cy] = ({
    2: [-1, 0, w - 1, 0, 1, 0],
    3: [-1, 0, w - 1, 0, -1, h - 1],
    4: [1, 0, 0, 0, -1, h - 1],
    5: [0, 1, 0, 1, 0, 0],
    6: [0, 1, 0, -1, 0, h - 1],
    7: [0, -1, w - 1, -1, 0, h - 1],
    8: [0, -1, w - 1, 1, 0, 0],
  } as Record<number, number[]>)[o];
  let p = 0;
  for (let y = 0; y < oh; y++) {
    for (let x = 0; x < ow; x++, p += 3) {
      const q = ((ay * x + by * y + cy) * w + (ax * x + bx * y + cx)) * 3;
      dst[p] = src[q];
      dst[p + 1] = src[q + 1];
      dst[p + 2] = src[q + 2];
    }
  }
  return { data: dst, width: ow, height: oh };
}

const PNG_SIGNATURE = Uint8Array.from([137, 80, 78, 71, 13, 10, 26, 10]);

/**
 * PIL verifies the CRC of every PNG chunk before the image data and refuses the file on a mismatch (a damaged
 * header); libpng, as sharp sets it up, lets a bad checksum pass. We refuse as PIL does. IDAT checksums are
 * not checked by either: damaged pixel data still fails zlib's own check. A chunk that runs past the end is
 * left to the decoder, which reports the truncation.
 */
function checkPngHeaderChunks(buf: Uint8Array): void {
  if (buf.length < 8 || PNG_SIGNATURE.some((b, i) => buf[i] !== b)) return;
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  for (let at = 8; at + 12 <= buf.length;) {
    const len = view.getUint32(at);
    const type = String.fromCharCode(...buf.subarray(at + 4, at + 8));
    if (type === 'IDAT' || !/^[A-Za-z]{4}$/.test(type) || at + 12 + len > buf.length) return;
    if (crc32(buf.subarray(at + 4, at + 8 + len)) !== view.getUint32(at + 8 + len)) {
      throw new InputError(`corrupt image (bad checksum in the PNG ${type} chunk)`);
    }
    at += 12 + len;
  }
}

/**
 * PIL's CMYK → RGB (no colour management): each channel is (255 - K) * (255 - C) / 255 with PIL's integer
 * rounding of the division. `channels` is 4, or 5 when there is an alpha channel, which is dropped.
 */
export function cmykToRgb(cmyk: Uint8Array, channels: number): Uint8Array {
  const n = Math.floor(cmyk.length / channels);
  const rgb = new Uint8Array(n * 3);
  for (let i = 0; i < n; i++) {
    const p = i * channels;
    const nk = 255 - cmyk[p + 3];
    for (let c = 0; c < 3; c++) {
      // a * b / 255 rounded, without a division: PIL's MULDIV255.
      const t = cmyk[p + c] * nk + 128;
      rgb[i * 3 + c] = nk - (((t >> 8) + t) >> 8);
    }
  }
  return rgb;
}

/** Read and decode an image file to 8-bit RGB after EXIF orientation (see decodeRgbBuffer). */
export async function decodeRgb(path: string, opts: DecodeOptions = {}): Promise<RgbImage> {
  return decodeRgbBuffer(opts.blockingRead ? readImageFileSync(path) : await readImageFile(path), opts);
}

/**
 * O_NONBLOCK keeps the open of a FIFO from waiting for a writer; it changes nothing for regular files. Anything
 * but a regular file is then refused from its fstat before reading: a directory, and FIFOs and devices, which
 * a scrape can contain and which would block or never end.
 */
const OPEN_FLAGS = constants.O_RDONLY | constants.O_NONBLOCK;

function requireRegularFile(st: Stats): void {
  if (st.isDirectory()) throw new InputError('is a directory');
  if (!st.isFile()) throw new InputError('not a regular file');
}

/** The bytes of a regular file (see OPEN_FLAGS). */
async function readImageFile(path: string): Promise<Buffer> {
  const fh = await open(fsPath(path), OPEN_FLAGS).catch((e: unknown) => {
    throw fsReason(e);
  });
  try {
    requireRegularFile(await fh.stat());
    return await fh.readFile();
  } catch (e) {
    throw e instanceof InputError ? e : fsReason(e);
  } finally {
    await fh.close();
  }
}

/** readImageFile with blocking calls, for a thread of its own. */
function readImageFileSync(path: string): Buffer {
  let fd;
  try {
    fd = openSync(fsPath(path), OPEN_FLAGS);
  } catch (e) {
    throw fsReason(e);
  }
  try {
    requireRegularFile(fstatSync(fd));
    return readFileSync(fd);
  } catch (e) {
    throw e instanceof InputError ? e : fsReason(e);
  } finally {
    closeSync(fd);
  }
}

// ---------------------------------------------------------------------------------------------------------
// Geometry: the sizes and offsets of torchvision's Resize and CenterCrop.

/**
 * Size [h, w] after a Preprocess resize of a w×h image. Shortest edge: the short side becomes S and the long
 * side int(S * long / short), as torchvision's Resize(int) and Hugging Face's get_resize_output_image_size.
 */
export function resizedSize(width: number, height: number, resize: Preprocess['resize']): [number, number] {
  if (resize === null) return [height, width];
  if ('shortestEdge' in resize) {
    const s = resize.shortestEdge;
    // Math.floor of a positive quotient is Python's int(); the multiplication comes first as in the reference.
    return width <= height ? [Math.floor((s * height) / width), s] : [s, Math.floor((s * width) / height)];
  }
  if ('keepRatio' in resize) {
    // timm's ResizeKeepRatio.get_params (longest = 0, no random scale): the same float steps, Python's round.
    const ratio = Math.min(height / resize.keepRatio.height, width / resize.keepRatio.width);
    return [roundHalfEven(height / ratio), roundHalfEven(width / ratio)];
  }
  return [resize.height, resize.width];
}

/** Python's round(): halves go to the even neighbour (round(8.5) = 8, round(9.5) = 10). */
function roundHalfEven(x: number): number {
  const f = Math.floor(x);
  const diff = x - f;
  if (diff > 0.5) return f + 1;
  if (diff < 0.5) return f;
  return f % 2 === 0 ? f : f + 1;
}

/**
 * Offset of a centre crop of `crop` pixels out of `size` along one axis. torchvision's CenterCrop (timm's
 * eval transform) takes int(round((size - crop) / 2)) with Python's half-to-even round; Hugging Face's
 * center_crop takes (size - crop) // 2. They differ by one pixel when size - crop ≡ 3 (mod 4). We follow
 * torchvision: timm's crop_pct crops, and transformers' fast image processors, which crop with torchvision;
 * transformers' slow ones take the floor, which agrees with it on the released DeiT and BEiT configs (an
 * exact 256×256 resize cropped to 224) but can be a pixel off after a shortest-edge resize (Bit, CLIP,
 * ConvNext). A negative offset means the image is padded (with zeros) on that side.
 */
export function centerCropOffset(size: number, crop: number): number {
  if (crop > size) return -Math.floor((crop - size) / 2);
  return roundHalfEven((size - crop) / 2);
}

// ---------------------------------------------------------------------------------------------------------
// Resampling: PIL's algorithm (Resample.c), restated.

export interface Filter {
  /** Half-width of the kernel at scale 1, in source pixels. */
  support: number;
  weight(x: number): number;
}

function sinc(x: number): number {
  if (x === 0) return 1;
  const px = Math.PI * x;
  return Math.sin(px) / px;
}

/** PIL's kernels; bicubic is Keys' cubic with a = -0.5 (Catmull-Rom), lanczos has 3 lobes. */
export const FILTERS: Record<Exclude<Interpolation, 'nearest'>, Filter> = {
  bilinear: {
    support: 1,
    weight: (x) => {
      const a = Math.abs(x);
      return a < 1 ? 1 - a : 0;
    },
  },
  bicubic: {
    support: 2,
    weight: (x) => {
      const a = -0.5;
      const t = Math.abs(x);
      if (t < 1) return ((a + 2) * t - (a + 3)) * t * t + 1;
      if (t < 2) return (((t - 5) * t + 8) * t - 4) * a;
      return 0;
    },
  },
  lanczos: {
    support: 3,
    // Half-open interval as PIL has it: sin(-3π) is not exactly 0 in floating point.
    weight: (x) => (x >= -3 && x < 3 ? sinc(x) * sinc(x / 3) : 0),
  },
};

/** PIL's fixed-point precision for 8-bit images: 32 bits minus 8 for the pixel and 2 for headroom. */
const PRECISION_BITS = 22;
const ONE = 2 ** PRECISION_BITS;
const HALF = 2 ** (PRECISION_BITS - 1);

/** Per output pixel along one axis: the first source pixel, how many are used, and their integer weights. */
export interface Taps {
  start: Int32Array;
  count: Int32Array;
  /** [outSize, ksize], row i holds the weights of output pixel i, zero-padded. */
  weights: Int32Array;
  ksize: number;
}

/**
 * Convolution taps for resizing inSize → outSize. When downscaling the kernel is stretched by the scale
 * factor (antialiasing); weights are normalised to sum 1, then rounded half away from zero to 22-bit fixed
 * point, exactly as PIL does (its float → int cast after adding ±0.5).
 */
export function computeTaps(inSize: number, outSize: number, filter: Filter): Taps {
  const scale = inSize / outSize;
  const filterScale = Math.max(scale, 1);
  const support = filter.support * filterScale;
  const ksize = Math.ceil(support) * 2 + 1;
  const inv = 1 / filterScale;
  const start = new Int32Array(outSize);
  const count = new Int32Array(outSize);
  const weights = new Int32Array(outSize * ksize);
  const w = new Float64Array(ksize);
  for (let i = 0; i < outSize; i++) {
    const center = (i + 0.5) * scale;
    const lo = Math.max(Math.trunc(center - support + 0.5), 0);
    const hi = Math.min(Math.trunc(center + support + 0.5), inSize);
    const n = hi - lo;
    let sum = 0;
    for (let k = 0; k < n; k++) {
      w[k] = filter.weight((k + lo - center + 0.5) * inv);
      sum += w[k];
    }
    for (let k = 0; k < n; k++) {
      const v = sum !== 0 ? w[k] / sum : w[k];
      weights[i * ksize + k] = Math.trunc(v < 0 ? v * ONE - 0.5 : v * ONE + 0.5);
    }
    start[i] = lo;
    count[i] = n;
  }
  return { start, count, weights, ksize };
}

/**
 * A fixed-point accumulator → an 8-bit value (the shifted sum, clamped). Accumulators are int32 as in PIL:
 * 255 · Σ|w| stays below 2^31 for every kernel here, so the integer sums are exact.
 */
function clip8(acc: number): number {
  if (acc <= 0) return 0;
  if (acc >= 256 * ONE) return 255;
  return acc >> PRECISION_BITS;
}

/** Convolve along x: [h, w, 3] → [h, outW, 3]. */
export function resampleHorizontal(img: RgbImage, outW: number, taps: Taps): RgbImage {
  const { data: src, width: w, height: h } = img;
  const dst = new Uint8Array(h * outW * 3);
  const { start, count, weights, ksize } = taps;
  for (let y = 0; y < h; y++) {
    const row = y * w * 3;
    let o = y * outW * 3;
    for (let x = 0; x < outW; x++) {
      let r = HALF;
      let g = HALF;
      let b = HALF;
      const kb = x * ksize;
      const n = count[x];
      let p = row + start[x] * 3;
      for (let k = 0; k < n; k++, p += 3) {
        const wk = weights[kb + k];
        r = (r + Math.imul(src[p], wk)) | 0;
        g = (g + Math.imul(src[p + 1], wk)) | 0;
        b = (b + Math.imul(src[p + 2], wk)) | 0;
      }
      dst[o++] = clip8(r);
      dst[o++] = clip8(g);
      dst[o++] = clip8(b);
    }
  }
  return { data: dst, width: outW, height: h };
}

/** Convolve along y: [h, w, 3] → [outH, w, 3]; each output value is summed in a register over its taps. */
export function resampleVertical(img: RgbImage, outH: number, taps: Taps): RgbImage {
  const { data: src, width: w } = img;
  const stride = w * 3;
  const dst = new Uint8Array(outH * stride);
  const { start, count, weights, ksize } = taps;
  for (let y = 0; y < outH; y++) {
    const n = count[y];
    const kb = y * ksize;
    const base = start[y] * stride;
    const o = y * stride;
    for (let j = 0; j < stride; j++) {
      let acc = HALF;
      let p = base + j;
      for (let k = 0; k < n; k++, p += stride) acc = (acc + Math.imul(src[p], weights[kb + k])) | 0;
      dst[o + j] = clip8(acc);
    }
  }
  return { data: dst, width: w, height: outH };
}

/**
 * Source index of each output pixel for PIL's NEAREST: the centre of output pixel i is at (i + 0.5) * scale,
 * but PIL reaches it by adding `scale` step by step from scale / 2, and the rounding of that running sum
 * decides ties (e.g. 7.5 * 0.4 lands just below 3), so the sum is kept here too.
 */
function nearestIndex(inSize: number, outSize: number): Int32Array {
  const idx = new Int32Array(outSize);
  const scale = inSize / outSize;
  let pos = scale * 0.5;
  for (let i = 0; i < outSize; i++, pos += scale) idx[i] = Math.min(Math.trunc(pos), inSize - 1);
  return idx;
}

/** PIL's NEAREST resize. */
function resampleNearest(img: RgbImage, outW: number, outH: number): RgbImage {
  const { data: src, width: w, height: h } = img;
  const xs = nearestIndex(w, outW);
  const ys = nearestIndex(h, outH);
  const dst = new Uint8Array(outH * outW * 3);
  let o = 0;
  for (let y = 0; y < outH; y++) {
    const row = ys[y] * w * 3;
    for (let x = 0; x < outW; x++) {
      const p = row + xs[x] * 3;
      dst[o++] = src[p];
      dst[o++] = src[p + 1];
      dst[o++] = src[p + 2];
    }
  }
  return { data: dst, width: outW, height: outH };
}

/** Output pixels [from, from + n) of a set of taps. */
function sliceTaps(t: Taps, from: number, n: number): Taps {
  return {
    start: t.start.slice(from, from + n),
    count: t.count.subarray(from, from + n),
    weights: t.weights.subarray(from * t.ksize, (from + n) * t.ksize),
    ksize: t.ksize,
  };
}

/** Rows [y0, y1) of an image, sharing its pixels. */
function rowsOf(img: RgbImage, y0: number, y1: number): RgbImage {
  if (y0 === 0 && y1 === img.height) return img;
  const stride = img.width * 3;
  return { data: img.data.subarray(y0 * stride, y1 * stride), width: img.width, height: y1 - y0 };
}

/** A window of the output of a resize, in output pixels. */
export interface Window { left: number; top: number; width: number; height: number }

/**
 * Resize to width × height as PIL's Image.resize(size, resample) does (no reducing gap): a horizontal pass,
 * then a vertical pass over the 8-bit intermediate, each skipped when its dimension does not change.
 *
 * With a window (inside the output), only that part of the output is computed — exactly the pixels that
 * resizing everything and cropping would give, since each output pixel depends on the source alone. A centre
 * crop after the resize then costs nothing for the columns and rows it throws away, and the horizontal pass
 * runs only over the source rows the window's vertical taps read (as PIL limits it to the rows it needs).
 */
export function resample(img: RgbImage, width: number, height: number, interpolation: Interpolation, window?: Window): RgbImage {
  if (!(Number.isInteger(width) && Number.isInteger(height) && width > 0 && height > 0)) {
    throw new InputError(`cannot resize to ${width}×${height}`);
  }
  const win = window ?? { left: 0, top: 0, width, height };
  if (interpolation === 'nearest') {
    const full = width === img.width && height === img.height ? img : resampleNearest(img, width, height);
    return window ? cropWindow(full, win) : full;
  }
  const filter = FILTERS[interpolation];
  let out = img;
  let tapsY: Taps | null = null;
  let [y0, y1] = [win.top, win.top + win.height];
  if (height !== img.height) {
    tapsY = sliceTaps(computeTaps(img.height, height, filter), win.top, win.height);
    y0 = tapsY.start[0];
    y1 = tapsY.start[win.height - 1] + tapsY.count[win.height - 1];
    for (let i = 0; i < win.height; i++) tapsY.start[i] -= y0;
  }
  out = rowsOf(out, y0, y1);
  const tapsX = width !== img.width ? sliceTaps(computeTaps(img.width, width, filter), win.left, win.width) : null;
  if (!tapsX) out = cropWindow(out, { left: win.left, top: 0, width: win.width, height: out.height });
  if (wasmResamplerAvailable() && (tapsX || tapsY)) {
    // The same passes in WebAssembly SIMD: the same bytes, several times faster (test/resample-wasm.test.ts).
    const data = resampleSeparableWasm(out.data, out.width, out.height, tapsX, tapsY);
    return { data, width: win.width, height: tapsY ? win.height : out.height };
  }
  if (tapsX) out = resampleHorizontal(out, win.width, tapsX);
  if (tapsY) out = resampleVertical(out, win.height, tapsY);
  return out;
}

/** A window inside an image, copied out (the whole image when the window is all of it). */
function cropWindow(img: RgbImage, w: Window): RgbImage {
  if (w.left === 0 && w.top === 0 && w.width === img.width && w.height === img.height) return img;
  const dst = new Uint8Array(w.width * w.height * 3);
  for (let y = 0; y < w.height; y++) {
    const from = ((y + w.top) * img.width + w.left) * 3;
    dst.set(img.data.subarray(from, from + w.width * 3), y * w.width * 3);
  }
  return { data: dst, width: w.width, height: w.height };
}

/** Centre crop to [h, w] with torchvision's offsets; where the crop is larger than the image, pad with 0. */
export function centerCrop(img: RgbImage, height: number, width: number): RgbImage {
  if (height === img.height && width === img.width) return img;
  const top = centerCropOffset(img.height, height);
  const left = centerCropOffset(img.width, width);
  const dst = new Uint8Array(height * width * 3);
  // Rows/columns of the crop window that fall inside the image; the rest stays 0 (padding).
  const y0 = Math.max(0, -top);
  const y1 = Math.min(height, img.height - top);
  const x0 = Math.max(0, -left);
  const x1 = Math.min(width, img.width - left);
  for (let y = y0; y < y1; y++) {
    const from = ((y + top) * img.width + (x0 + left)) * 3;
    dst.set(img.data.subarray(from, from + (x1 - x0) * 3), (y * width + x0) * 3);
  }
  return { data: dst, width, height };
}

/**
 * The 8-bit pixels the model will see, before normalisation: resize and centre crop per `pp`. An image
 * already at `size` (the model's [h, w]) passes through untouched, so inputs prepared at the model size are
 * used exactly. Throws InputError when the preprocessing does not end at `size`.
 */
export function preprocessRgb(img: RgbImage, pp: Preprocess, size: [number, number]): RgbImage {
  const [h, w] = size;
  if (img.height === h && img.width === w) return img;
  const [rh, rw] = resizedSize(img.width, img.height, pp.resize);
  let out: RgbImage;
  const crop = pp.crop;
  if (pp.resize !== null && crop !== null && crop.height <= rh && crop.width <= rw) {
    // Resize only the part the crop keeps (same pixels as resizing everything, then cropping).
    const window = { top: centerCropOffset(rh, crop.height), left: centerCropOffset(rw, crop.width), height: crop.height, width: crop.width };
    out = resample(img, rw, rh, pp.interpolation, window);
  } else {
    out = pp.resize === null ? img : resample(img, rw, rh, pp.interpolation);
    if (crop !== null) out = centerCrop(out, crop.height, crop.width);
  }
  if (out.height !== h || out.width !== w) {
    throw new InputError(`image is ${out.width}×${out.height} after preprocessing, the model takes ${w}×${h}`);
  }
  return out;
}

/**
 * PIL's `convert('L')` (ITU-R 601-2 luma in its fixed-point form, L = (19595 R + 38470 G + 7471 B + 2¹⁵) >> 16,
 * the same bytes as PIL for every colour), kept in all three channels: resampling treats channels apart, so
 * resizing this image gives, in each channel, exactly what PIL's resize of the L image gives.
 */
export function toLuma(img: RgbImage): RgbImage {
  const src = img.data;
  const dst = new Uint8Array(src.length);
  for (let p = 0; p < src.length; p += 3) {
    const l = (src[p] * 19595 + src[p + 1] * 38470 + src[p + 2] * 7471 + 0x8000) >> 16;
    dst[p] = dst[p + 1] = dst[p + 2] = l;
  }
  return { data: dst, width: img.width, height: img.height };
}

/** Per channel, the normalised float32 value of each 8-bit level: (v * rescale - mean[c]) / std[c]. */
export function normalizationTable(pp: Preprocess): Float32Array[] {
  return pp.mean.map((mean, c) => {
    const t = new Float32Array(256);
    for (let v = 0; v < 256; v++) t[v] = (v * pp.rescale - mean) / pp.std[c];
    return t;
  });
}

/**
 * Write an RGB image as normalised float32 planes (CHW) at out[offset, offset + C*h*w), one plane per table
 * (C = 1 takes channel 0, which toLuma made the grey value): the layout of one item of an NCHW batch.
 */
export function writeNormalizedChw(img: RgbImage, table: Float32Array[], out: Float32Array, offset: number): void {
  const plane = img.width * img.height;
  const planes = table.length;
  if (offset < 0 || offset + planes * plane > out.length) {
    throw new RangeError(`image of ${planes}×${img.height}×${img.width} does not fit at offset ${offset} of ${out.length} floats`);
  }
  const src = img.data;
  for (let c = 0; c < planes; c++) {
    const t = table[c];
    const dst = out.subarray(offset + c * plane, offset + (c + 1) * plane);
    // HWC → CHW: channel c of pixel i (byte 3i + c) goes to plane c, position i.
    for (let i = 0, j = c; i < plane; i++, j += 3) dst[i] = t[src[j]];
  }
}

/** Tables are tiny but rebuilt per image otherwise; a Preprocess is shared by every image of a run. */
const tables = new WeakMap<Preprocess, Float32Array[]>();

function tableFor(pp: Preprocess): Float32Array[] {
  let t = tables.get(pp);
  if (!t) {
    t = normalizationTable(pp);
    tables.set(pp, t);
  }
  return t;
}

/** What a model takes: its preprocessing, its [h, w] and its channels (mean/std have one value per channel). */
export interface ImageSpec {
  preprocess: Preprocess;
  size: [number, number];
  channels: Channels;
}

/**
 * Decode, preprocess and normalise one image — a file, or encoded bytes already read (a tar member) — into a
 * batch buffer: float32 CHW at out[offset, offset + C*h*w). Any failure is an InputError with a short reason
 * (no such file, not an image, truncated or corrupt image, permission denied, image too large (W×H pixels),
 * is a directory, not a regular file).
 */
export async function loadImage(source: string | Uint8Array, spec: ImageSpec, out: Float32Array, offset: number, opts: DecodeOptions = {}): Promise<void> {
  const rgb = typeof source === 'string' ? await decodeRgb(source, opts) : await decodeRgbBuffer(source, opts);
  const img = preprocessRgb(spec.channels === 1 ? toLuma(rgb) : rgb, spec.preprocess, spec.size);
  writeNormalizedChw(img, tableFor(spec.preprocess), out, offset);
}

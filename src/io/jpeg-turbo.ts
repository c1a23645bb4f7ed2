/**
 * JPEG decoding straight through libjpeg-turbo's TurboJPEG API, called with koffi (a foreign-function
 * interface) from the main thread.
 *
 * Why not sharp for JPEGs: libvips wraps the same decoder in a pipeline of its own threads and buffers, which
 * on photos of 0.3–1.6 MP costs about twice the CPU of the decode itself (3.0 vs 1.7 ms per image, measured
 * here), and inference needs every core. The pixels are the same: libjpeg-turbo with the accurate integer
 * IDCT and smooth chroma upsampling, which is also what PIL decodes with (test/jpeg-turbo.test.ts compares
 * with sharp byte for byte).
 *
 * The library is the libturbojpeg.so that @julusian/jpeg-turbo ships for Linux (its own binding hard-codes
 * the fast IDCT, which changes pixels, so only the library is used). Both packages are optional: where either
 * is missing, on other platforms, or with VIT_JPEG_DECODER=sharp, every image goes through sharp as before.
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';

/** TurboJPEG's parameter numbers (enum TJPARAM of turbojpeg.h, libjpeg-turbo 3). */
const TJPARAM = { STOPONWARNING: 0, JPEGWIDTH: 5, JPEGHEIGHT: 6, PRECISION: 7, COLORSPACE: 8, FASTUPSAMPLE: 9, FASTDCT: 10 } as const;
const TJINIT_DECOMPRESS = 1;
const TJPF_RGB = 0;
/** JPEG colour spaces this decoder takes: RGB, YCbCr, grey. CMYK and YCCK are converted as PIL does elsewhere. */
const TJCS_DECODED = new Set([0, 1, 2]);

export interface TurboJpeg {
  /** Interleaved 8-bit RGB of a JPEG as stored (no EXIF orientation), or null if libjpeg-turbo refuses it. */
  decode(buf: Uint8Array): { data: Uint8Array; width: number; height: number } | null;
  /** The library file in use (for --verbose). */
  readonly library: string;
}

/**
 * The part of koffi used here, declared locally: koffi is an optional dependency, and the build must not need
 * its types where it is not installed.
 */
interface Koffi {
  load(path: string): { func(declaration: string): (...args: unknown[]) => unknown };
}

/** undefined: not tried yet; null: unavailable here. */
let loaded: TurboJpeg | null | undefined;

/**
 * The directories @julusian/jpeg-turbo may keep this platform's prebuilt library in. On x64 the glibc build
 * comes first and the musl one second: the one that does not match this system fails to load and is passed
 * over (asking Node which libc runs costs a whole diagnostic report, ~5 ms per thread).
 */
function platformDirs(): string[] {
  if (process.platform !== 'linux') return [];
  return process.arch === 'x64' ? ['jpeg-turbo-linux-x64', 'jpeg-turbo-linux-x64-musl'] : [`jpeg-turbo-linux-${process.arch}`];
}

function load(): TurboJpeg | null {
  if (process.env.VIT_JPEG_DECODER === 'sharp') return null;
  for (const dir of platformDirs()) {
    const decoder = loadFrom(dir);
    if (decoder) return decoder;
  }
  return null;
}

function loadFrom(dir: string): TurboJpeg | null {
  try {
    const require = createRequire(import.meta.url);
    const library = join(dirname(require.resolve('@julusian/jpeg-turbo/package.json')), 'prebuilds', dir, 'libturbojpeg.so.0');
    if (!existsSync(library)) return null;
    const koffi = require('koffi') as Koffi;
    const lib = koffi.load(library);
    const init = lib.func('void *tj3Init(int initType)') as (type: number) => unknown;
    const set = lib.func('int tj3Set(void *handle, int param, int value)') as (h: unknown, param: number, value: number) => number;
    const get = lib.func('int tj3Get(void *handle, int param)') as (h: unknown, param: number) => number;
    const header = lib.func('int tj3DecompressHeader(void *handle, const uint8_t *jpegBuf, size_t jpegSize)') as
      (h: unknown, buf: Uint8Array, size: number) => number;
    const decompress = lib.func(
      'int tj3Decompress8(void *handle, const uint8_t *jpegBuf, size_t jpegSize, _Out_ uint8_t *dstBuf, int pitch, int pixelFormat)',
    ) as (h: unknown, buf: Uint8Array, size: number, out: Uint8Array, pitch: number, format: number) => number;
    const handle = init(TJINIT_DECOMPRESS);
    if (!handle) return null;
    // Warnings (a truncated scan, bad data filled with grey) are failures: PIL refuses such files too, and sharp
    // then decides with its own wording. The accurate IDCT and smooth upsampling are the defaults; set anyway.
    for (const [param, value] of [[TJPARAM.STOPONWARNING, 1], [TJPARAM.FASTDCT, 0], [TJPARAM.FASTUPSAMPLE, 0]]) {
      if (set(handle, param, value) !== 0) return null;
    }
    return {
      library,
      decode(buf) {
        if (header(handle, buf, buf.length) !== 0) return null;
        if (get(handle, TJPARAM.PRECISION) !== 8 || !TJCS_DECODED.has(get(handle, TJPARAM.COLORSPACE))) return null;
        const width = get(handle, TJPARAM.JPEGWIDTH);
        const height = get(handle, TJPARAM.JPEGHEIGHT);
        if (!(width > 0 && height > 0)) return null;
        // [height, width, 3]: pitch 0 means rows of width * 3 bytes, packed.
        const data = Buffer.allocUnsafe(width * height * 3);
        if (decompress(handle, buf, buf.length, data, 0, TJPF_RGB) !== 0) return null;
        return { data, width, height };
      },
    };
  } catch {
    // Not installed, or the library does not load here: sharp decodes instead.
    return null;
  }
}

/** The TurboJPEG decoder, or null where it is not available (see the module comment). */
export function turboJpeg(): TurboJpeg | null {
  if (loaded === undefined) loaded = load();
  return loaded;
}

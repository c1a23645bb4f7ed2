import { createHash } from 'node:crypto';
import { closeSync, constants, lstatSync, mkdirSync, openSync, readdirSync, readSync, statSync, type Stats } from 'node:fs';
import { basename, dirname, extname, join, resolve } from 'node:path';
import { crc32 } from 'node:zlib';
import sharp from 'sharp';
import { UsageError } from '../errors.js';
import type { Preprocess } from '../model/config.js';
import { replaceFile } from './atomic-file.js';
import { decodeFsName, fsPath } from './fs-names.js';
import { errnoText, writeError } from './sinks/target.js';

/** Inferno, a perceptually uniform colour map (dark purple → yellow), as control points for linear blending. */
const INFERNO: [number, number, number][] = [
  [0, 0, 4], [31, 12, 72], [85, 15, 109], [136, 34, 106], [186, 54, 85],
  [227, 89, 51], [249, 140, 10], [249, 201, 50], [252, 255, 164],
];

export function inferno(t: number): [number, number, number] {
  const x = Math.min(1, Math.max(0, t)) * (INFERNO.length - 1);
  const i = Math.min(INFERNO.length - 2, Math.floor(x));
  const f = x - i;
  const a = INFERNO[i];
  const b = INFERNO[i + 1];
  return [a[0] + (b[0] - a[0]) * f, a[1] + (b[1] - a[1]) * f, a[2] + (b[2] - a[2]) * f];
}

/**
 * The part of the original image the model saw, in original pixels: the inverse of the resize and centre
 * crop of preprocessing (the whole image when it was squashed to size).
 */
export function seenRegion(width: number, height: number, pp: Preprocess): { left: number; top: number; width: number; height: number } {
  if (!pp.crop) return { left: 0, top: 0, width, height };
  let sx = 1;
  let sy = 1;
  if (pp.resize && 'shortestEdge' in pp.resize) sx = sy = pp.resize.shortestEdge / Math.min(width, height);
  else if (pp.resize && 'keepRatio' in pp.resize) sx = sy = Math.max(pp.resize.keepRatio.height / height, pp.resize.keepRatio.width / width);
  else if (pp.resize) {
    sx = pp.resize.width / width;
    sy = pp.resize.height / height;
  }
  const w = Math.min(width, Math.round(pp.crop.width / sx));
  const h = Math.min(height, Math.round(pp.crop.height / sy));
  return { left: Math.round((width - w) / 2), top: Math.round((height - h) / 2), width: w, height: h };
}

/**
 * Blend a colour-mapped attention grid over an RGB image: the grid (min-max scaled) is upsampled bicubically
 * onto the region the model saw, and each pixel takes the colour with an opacity that grows with attention,
 * so weakly attended areas keep the photo as it was.
 */
export async function overlay(rgb: { data: Uint8Array; width: number; height: number }, grid: ArrayLike<number>, gh: number, gw: number, pp: Preprocess): Promise<Buffer> {
  let lo = Infinity;
  let hi = -Infinity;
  for (let i = 0; i < grid.length; i++) {
    lo = Math.min(lo, grid[i]);
    hi = Math.max(hi, grid[i]);
  }
  const span = hi - lo || 1;
  const cells = Buffer.alloc(gh * gw);
  for (let i = 0; i < cells.length; i++) cells[i] = Math.round(((grid[i] - lo) / span) * 255);
  const r = seenRegion(rgb.width, rgb.height, pp);
  const { data: heat, info } = await sharp(cells, { raw: { width: gw, height: gh, channels: 1 } })
    .resize(r.width, r.height, { fit: 'fill', kernel: 'cubic' })
    .raw()
    .toBuffer({ resolveWithObject: true });
  const step = info.channels;
  const out = Buffer.from(rgb.data.buffer, rgb.data.byteOffset, rgb.data.byteLength);
  const blended = Buffer.alloc(out.length);
  out.copy(blended);
  const maxAlpha = 0.75;
  for (let y = 0; y < r.height; y++) {
    for (let x = 0; x < r.width; x++) {
      const t = heat[(y * r.width + x) * step] / 255;
      const [cr, cg, cb] = inferno(t);
      const a = maxAlpha * t;
      const p = ((r.top + y) * rgb.width + (r.left + x)) * 3;
      blended[p] = Math.round((1 - a) * out[p] + a * cr);
      blended[p + 1] = Math.round((1 - a) * out[p + 1] + a * cg);
      blended[p + 2] = Math.round((1 - a) * out[p + 2] + a * cb);
    }
  }
  return markPng(await sharp(blended, { raw: { width: rgb.width, height: rgb.height, channels: 3 } }).png().toBuffer());
}

/**
 * Output names DIR/<name>.attention.png: the input's base name, and for a base name an earlier input of the
 * run already took (same name, other folder), a short hash of its full path, so the name is the same on
 * every run.
 */
export class HeatmapNames {
  private readonly used = new Set<string>();
  constructor(private readonly dir: string) {}

  next(path: string): string {
    const stem = basename(path, extname(path)) || 'image';
    let name = stem;
    if (this.used.has(name)) name = `${stem}-${createHash('sha256').update(path).digest('hex').slice(0, 8)}`;
    this.used.add(name);
    return join(this.dir, `${name}.attention.png`);
  }
}

/**
 * Every heatmap a run writes bears this PNG text chunk, so that a later run knows which files in the heatmap
 * directory it may replace: its own earlier heatmaps, and nothing else.
 */
const MARK_KEY = 'Software';
const MARK = 'vit attention heatmap';
const PNG_HEADER_BYTES = 8 + 25; // signature + IHDR chunk

function markPng(png: Buffer): Buffer {
  const body = Buffer.from(`tEXt${MARK_KEY}\0${MARK}`, 'latin1');
  const chunk = Buffer.alloc(body.length + 8);
  chunk.writeUInt32BE(body.length - 4, 0);
  body.copy(chunk, 4);
  chunk.writeUInt32BE(crc32(body), 4 + body.length);
  return Buffer.concat([png.subarray(0, PNG_HEADER_BYTES), chunk, png.subarray(PNG_HEADER_BYTES)]);
}

function isVitHeatmap(path: string): boolean {
  try {
    const fd = openSync(fsPath(path), constants.O_RDONLY | constants.O_NONBLOCK);
    try {
      const head = Buffer.alloc(PNG_HEADER_BYTES + 64);
      const n = readSync(fd, head, 0, head.length, 0);
      return head.subarray(0, n).includes(Buffer.from(`tEXt${MARK_KEY}\0${MARK}`, 'latin1'));
    } finally {
      closeSync(fd);
    }
  } catch {
    return false;
  }
}

/**
 * Every heatmap file of a run, planned before any work: DIR/<name>.attention.png for each input. Refused
 * (usage error) when one would be an input or another output of the run, or is already there and is not a
 * heatmap vit wrote (a regular PNG with vit's mark): a run never replaces what it did not write.
 */
export function planHeatmaps(dir: string, inputs: readonly string[], outputs: readonly string[]): Map<string, string> {
  let st: Stats | undefined;
  try {
    st = statSync(dir, { throwIfNoEntry: false });
    if (!st) mkdirSync(dir, { recursive: true });
  } catch (e) {
    throw new UsageError(`--heatmap ${dir}: cannot make the directory: ${errnoText(e)}`);
  }
  if (st && !st.isDirectory()) throw new UsageError(`--heatmap ${dir} is not a directory`);
  const taken = new Set([...inputs, ...outputs].map((p) => resolve(p)));
  const present = new Set(readdirSync(dir, { encoding: 'buffer' }).map(decodeFsName));
  const names = new HeatmapNames(dir);
  const plan = new Map<string, string>();
  for (const input of inputs) {
    const file = names.next(input);
    if (taken.has(resolve(file))) throw new UsageError(`--heatmap would write ${file}, which is also an input or output of this run`);
    if (present.has(basename(file)) && !(lstatSync(fsPath(file)).isFile() && isVitHeatmap(file))) {
      throw new UsageError(`--heatmap: ${file} is already there and is not a heatmap vit wrote; move it, or choose another directory`);
    }
    plan.set(input, file);
  }
  return plan;
}

/** Write one heatmap atomically (a temporary file renamed over it). */
export function writeHeatmap(file: string, png: Buffer): void {
  try {
    replaceFile(fsPath(file), { bytes: png }, fsPath(join(dirname(file), `.${basename(file)}.${process.pid}.tmp`)));
  } catch (e) {
    throw writeError(file, e);
  }
}

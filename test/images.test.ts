import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import sharp from 'sharp';
import { InputError } from '../src/errors.js';
import {
  centerCrop, centerCropOffset, decodeRgb, decodeRgbBuffer, loadImage, preprocessRgb, resample, resizedSize, sniffHeader,
  type RgbImage,
} from '../src/io/images.js';
import type { Interpolation, Preprocess } from '../src/model/config.js';
import { preprocessToHf, scalePreprocess, timmPreprocess } from '../src/model/preprocess.js';
import { archOf, presetConfig } from '../src/model/arch/index.js';
import { be16, png, pngChunk as chunk } from './helpers/png.js';
import { BAD, FIXTURES, IMAGES, PHOTOS } from './helpers/golden.js';

const RESIZE = join(FIXTURES, 'resize');
const tmp = mkdtempSync(join(tmpdir(), 'vit-images-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

/** Preprocess with identity normalisation, for tests that look at 8-bit pixels. */
function pp8(resize: Preprocess['resize'], crop: Preprocess['crop'], interpolation: Interpolation = 'bicubic'): Preprocess {
  return { resize, crop, interpolation, rescale: 1 / 255, mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5] };
}

function rgbOf(img: RgbImage): number[] {
  return Array.from(img.data);
}

// ---- resizing against PIL -----------------------------------------------------------------------------

interface ResizeCase {
  source: string;
  interpolation: Interpolation;
  resize: Preprocess['resize'];
  crop: Preprocess['crop'];
  output: string;
  outputSize: [number, number];
}

test('images: resize + crop match PIL (through torchvision) on real photos', async (t) => {
  const cases = JSON.parse(readFileSync(join(RESIZE, 'cases.json'), 'utf8')) as ResizeCase[];
  assert.ok(cases.length >= 8);
  const kinds = new Set<string>();
  for (const c of cases) {
    const src = await decodeRgb(join(PHOTOS, c.source));
    const want = await decodeRgb(join(RESIZE, c.output));
    const got = preprocessRgb(src, pp8(c.resize, c.crop, c.interpolation), c.outputSize);
    assert.deepEqual([got.height, got.width], [want.height, want.width], c.output);
    let sum = 0;
    let max = 0;
    for (let i = 0; i < got.data.length; i++) {
      const d = Math.abs(got.data[i] - want.data[i]);
      sum += d;
      max = Math.max(max, d);
    }
    const mean = sum / got.data.length;
    t.diagnostic(`${c.output}: mean |diff| ${mean.toFixed(4)}, max ${max}`);
    assert.ok(mean <= 0.5, `${c.output}: mean abs diff ${mean} > 0.5`);
    assert.ok(max <= 3, `${c.output}: max abs diff ${max} > 3`);
    const scale = (c.outputSize[0] * c.outputSize[1]) / (src.width * src.height);
    kinds.add(`${c.interpolation} ${scale > 1 ? 'up' : 'down'}`);
  }
  for (const k of ['bilinear up', 'bilinear down', 'bicubic up', 'bicubic down']) assert.ok(kinds.has(k), `no ${k} case`);
});

test('images: crop_pct arithmetic is timm\'s floor(img_size / crop_pct)', () => {
  const mean: [number, number, number] = [0.5, 0.5, 0.5];
  for (const [size, pct, want] of [[224, 0.9, 248], [384, 1.0, 384], [224, 0.875, 256], [256, 0.95, 269], [448, 0.9, 497]]) {
    const pp = timmPreprocess([size, size], pct, 'bicubic', mean, mean);
    assert.deepEqual(pp.resize, { shortestEdge: want }, `${size} / ${pct}`);
    assert.deepEqual(pp.crop, { height: size, width: size });
  }
  // The short side goes to S, the long one to int(S * long / short).
  assert.deepEqual(resizedSize(451, 300, { shortestEdge: 248 }), [248, 372]);
  assert.deepEqual(resizedSize(300, 451, { shortestEdge: 248 }), [372, 248]);
  assert.deepEqual(resizedSize(640, 480, { shortestEdge: 256 }), [256, 341]);
  assert.deepEqual(resizedSize(640, 480, { height: 224, width: 200 }), [224, 200]);
  assert.deepEqual(resizedSize(640, 480, null), [480, 640]);
});

test('images: timm at a non-square size (ResizeKeepRatio, bilinear) and every preprocessing at another --image-size', () => {
  const mean = [0.5, 0.5, 0.5];
  // Not square: timm's transforms_factory covers ⌊size / crop_pct⌋ keeping the aspect, built without an
  // interpolation, so bilinear; each side round(side / min(h / H, w / W)) with Python's round.
  const wide = timmPreprocess([224, 320], 0.9, 'bicubic', mean, mean);
  assert.deepEqual([wide.resize, wide.interpolation, wide.crop], [{ keepRatio: { height: 248, width: 355 } }, 'bilinear', { height: 224, width: 320 }]);
  assert.deepEqual(resizedSize(640, 480, wide.resize), [266, 355]);
  assert.deepEqual(resizedSize(300, 451, wide.resize), [534, 355]);
  assert.deepEqual(resizedSize(2, 5, { keepRatio: { height: 2, width: 1 } }), [2, 1]); // 2.5 → 2
  assert.deepEqual(resizedSize(2, 7, { keepRatio: { height: 3, width: 1 } }), [4, 1]); // 3.5 → 4
  assert.deepEqual(timmPreprocess([224, 320], 0.9, 'bicubic', mean, mean, 'squash').resize, { height: 248, width: 355 });
  // Another input size: timm's preprocessing is made again from its crop_pct (validate.py --img-size), so
  // B/16's 248 → 224 becomes 426 → 384, not 384 → 384.
  const b16 = presetConfig('B/16');
  const at = (size: [number, number]) => archOf(b16).withImageSize(b16, size).preprocess;
  assert.deepEqual([at([384, 384]).resize, at([384, 384]).crop, at([384, 384]).interpolation], [{ shortestEdge: 426 }, { height: 384, width: 384 }, 'bicubic']);
  assert.deepEqual([at([224, 320]).resize, at([224, 320]).interpolation], [{ keepRatio: { height: 248, width: 355 } }, 'bilinear']);
  // Others keep their resize's ratio to the crop per side: an exact resize to the model's size follows it,
  // DeiT's 256 → 224 becomes 438 → 384.
  const hf: Preprocess = { resize: { height: 224, width: 224 }, crop: null, interpolation: 'bilinear', rescale: 1 / 255, mean, std: mean };
  assert.deepEqual(scalePreprocess(hf, [224, 224], [384, 512]).resize, { height: 384, width: 512 });
  const deit: Preprocess = { ...hf, resize: { height: 256, width: 256 }, crop: { height: 224, width: 224 } };
  assert.deepEqual(scalePreprocess(deit, [224, 224], [384, 384]), { ...deit, resize: { height: 438, width: 438 }, crop: { height: 384, width: 384 } });
  // transformers has nothing that resizes as ResizeKeepRatio does: vit export says so.
  assert.throws(() => preprocessToHf(wide), /keep-ratio resize of a non-square input has no transformers image processor/);
});

test('images: centre-crop offsets are torchvision\'s int(round((size - crop) / 2)), halves to even', () => {
  assert.equal(centerCropOffset(248, 224), 12);
  assert.equal(centerCropOffset(225, 224), 0); // 0.5 → 0
  assert.equal(centerCropOffset(227, 224), 2); // 1.5 → 2
  assert.equal(centerCropOffset(229, 224), 2); // 2.5 → 2 (Hugging Face's // 2 also gives 2)
  assert.equal(centerCropOffset(231, 224), 4); // 3.5 → 4 (Hugging Face's // 2 gives 3)
  assert.equal(centerCropOffset(224, 224), 0);
  // A crop larger than the image pads, (crop - size) // 2 before.
  assert.equal(centerCropOffset(220, 224), -2);
  assert.equal(centerCropOffset(221, 224), -1);
  const img: RgbImage = { width: 3, height: 1, data: new Uint8Array([1, 1, 1, 2, 2, 2, 3, 3, 3]) };
  assert.deepEqual(rgbOf(centerCrop(img, 1, 5)), [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3, 0, 0, 0]);
  assert.deepEqual(rgbOf(centerCrop(img, 1, 1)), [2, 2, 2]);
});

test('images: an image already at the model size passes through, exactly (v * rescale - mean) / std', async () => {
  const path = join(IMAGES, 'odd40_0.png');
  const { data, info } = await sharp(path).removeAlpha().raw().toBuffer({ resolveWithObject: true });
  const [h, w] = [info.height, info.width];
  // A timm-style preprocess that would resize and crop anything else.
  const pp: Preprocess = { resize: { shortestEdge: Math.floor(h / 0.9) }, crop: { height: h, width: w }, interpolation: 'bicubic', rescale: 1 / 255, mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225] };
  const plane = h * w;
  const out = new Float32Array(2 + 3 * plane + 2).fill(7);
  await loadImage(path, { preprocess: pp, size: [h, w], channels: 3 }, out, 2);
  assert.deepEqual([out[0], out[1], out[out.length - 2], out[out.length - 1]], [7, 7, 7, 7], 'writes only its own range');
  for (let c = 0; c < 3; c++) {
    for (let i = 0; i < plane; i++) {
      const want = Math.fround((data[i * 3 + c] * pp.rescale - pp.mean[c]) / pp.std[c]);
      assert.equal(out[2 + c * plane + i], want, `channel ${c} pixel ${i}`);
    }
  }
});

test('images: loadImage resizes, crops and lays out CHW planes', async () => {
  // 4x2 image, left half red, right half blue; nearest to 2x2 keeps the halves apart.
  const rgb = Buffer.from([255, 0, 0, 255, 0, 0, 0, 0, 255, 0, 0, 255, 255, 0, 0, 255, 0, 0, 0, 0, 255, 0, 0, 255]);
  const path = join(tmp, 'halves.png');
  writeFileSync(path, png(4, 2, 8, 2, [rgb.subarray(0, 12), rgb.subarray(12)]));
  const pp: Preprocess = { resize: { height: 2, width: 2 }, crop: null, interpolation: 'nearest', rescale: 1 / 255, mean: [0, 0, 0], std: [1, 1, 1] };
  const out = new Float32Array(12);
  await loadImage(path, { preprocess: pp, size: [2, 2], channels: 3 }, out, 0);
  // [R plane, G plane, B plane], each row-major 2x2.
  assert.deepEqual(Array.from(out), [1, 0, 1, 0, 0, 0, 0, 0, 0, 1, 0, 1]);
  await assert.rejects(loadImage(path, { preprocess: { ...pp, resize: { height: 3, width: 3 } }, size: [2, 2], channels: 3 }, out, 0),
    (e: unknown) => e instanceof InputError && /3×3 after preprocessing/.test(e.message) && /2×2/.test(e.message));
});

test('images: EXIF orientation is applied', async () => {
  // 3 wide, 2 high: R G B / W K grey; orientation 6 = rotate 90° clockwise for display.
  const raw = Buffer.from([255, 0, 0, 0, 255, 0, 0, 0, 255, 255, 255, 255, 0, 0, 0, 9, 9, 9]);
  const buf = await sharp(raw, { raw: { width: 3, height: 2, channels: 3 } }).png().withMetadata({ orientation: 6 }).toBuffer();
  const img = await decodeRgbBuffer(buf);
  assert.deepEqual([img.width, img.height], [2, 3]);
  // Displayed (x, y) is stored (y, H - 1 - x): the left column is the old bottom row.
  assert.deepEqual(rgbOf(img), [255, 255, 255, 255, 0, 0, 0, 0, 0, 0, 255, 0, 9, 9, 9, 0, 0, 255]);
});

test('images: grey, grey+alpha, palette, RGBA and 16-bit PNGs become 8-bit RGB; alpha is dropped, not composited', async () => {
  const grey = await decodeRgbBuffer(png(2, 1, 8, 0, [Buffer.from([0, 200])]));
  assert.deepEqual(rgbOf(grey), [0, 0, 0, 200, 200, 200]);
  const greyAlpha = await decodeRgbBuffer(png(2, 1, 8, 4, [Buffer.from([100, 0, 200, 128])]));
  assert.deepEqual(rgbOf(greyAlpha), [100, 100, 100, 200, 200, 200]);
  // Fully transparent pixels keep their colour (PIL's convert('RGB')), they do not turn black or white.
  const rgba = await decodeRgbBuffer(png(2, 1, 8, 6, [Buffer.from([10, 20, 30, 0, 40, 50, 60, 128])]));
  assert.deepEqual(rgbOf(rgba), [10, 20, 30, 40, 50, 60]);
  const plte = chunk('PLTE', Buffer.from([10, 20, 30, 200, 100, 50]));
  const trns = chunk('tRNS', Buffer.from([0, 255]));
  const palette = await decodeRgbBuffer(png(3, 1, 8, 3, [Buffer.from([1, 0, 1])], [plte, trns]));
  assert.deepEqual(rgbOf(palette), [200, 100, 50, 10, 20, 30, 200, 100, 50]);
  // 16-bit samples keep the high byte, as PIL does for 16-bit RGB.
  const rgb16 = await decodeRgbBuffer(png(1, 1, 16, 2, [be16(0x80ff, 0x0180, 0xfe7f)]));
  assert.deepEqual(rgbOf(rgb16), [0x80, 0x01, 0xfe]);
  const grey16 = await decodeRgbBuffer(png(2, 1, 16, 0, [be16(0x80ff, 0x0180)]));
  assert.deepEqual(rgbOf(grey16), [0x80, 0x80, 0x80, 0x01, 0x01, 0x01]);
  const greyAlpha16 = await decodeRgbBuffer(png(1, 1, 16, 4, [be16(0x7f00, 0x0000)]));
  assert.deepEqual(rgbOf(greyAlpha16), [0x7f, 0x7f, 0x7f]);
});

test('images: CMYK JPEG and animated GIF decode as PIL\'s convert("RGB")', async () => {
  const want = JSON.parse(readFileSync(join(RESIZE, 'decode.json'), 'utf8')) as Record<string, { width: number; height: number; rgb: number[] }>;
  for (const name of ['cmyk.jpg', 'anim.gif']) {
    const img = await decodeRgb(join(PHOTOS, name));
    assert.deepEqual([img.width, img.height], [want[name].width, want[name].height], name);
    assert.deepEqual(rgbOf(img), want[name].rgb, name);
  }
});

test('images: failures are InputErrors with short reasons', async () => {
  const reason = async (p: Promise<unknown>) => {
    try {
      await p;
    } catch (e) {
      assert.ok(e instanceof InputError, `not an InputError: ${e}`);
      return e.message;
    }
    assert.fail('no error');
  };
  assert.equal(await reason(decodeRgb(join(tmp, 'missing.jpg'))), 'no such file');
  writeFileSync(join(tmp, 'text.jpg'), 'this is a text file, not a JPEG\n');
  assert.equal(await reason(decodeRgb(join(tmp, 'text.jpg'))), 'not an image');
  writeFileSync(join(tmp, 'empty.png'), '');
  assert.equal(await reason(decodeRgb(join(tmp, 'empty.png'))), 'empty file');
  const jpeg = await sharp(join(PHOTOS, 'coffee.png')).jpeg().toBuffer();
  writeFileSync(join(tmp, 'truncated.jpg'), jpeg.subarray(0, Math.floor(jpeg.length / 2)));
  assert.equal(await reason(decodeRgb(join(tmp, 'truncated.jpg'))), 'truncated or corrupt image');
  // libvips words a cut-off PNG differently depending on where the cut is.
  const pngBytes = readFileSync(join(PHOTOS, 'coffee.png'));
  for (const n of [30, 60, 100, 200, Math.floor(pngBytes.length / 2)]) {
    writeFileSync(join(tmp, 'truncated.png'), pngBytes.subarray(0, n));
    assert.equal(await reason(decodeRgb(join(tmp, 'truncated.png'))), 'truncated or corrupt image', `cut at ${n}`);
  }
  assert.equal(await reason(decodeRgb(tmp)), 'is a directory');
  assert.equal(await reason(decodeRgb(join(PHOTOS, 'coffee.png'), { pixelLimit: 1000 })), 'image too large (96×64 pixels)');
  writeFileSync(join(tmp, 'vector.png'), '<svg xmlns="http://www.w3.org/2000/svg" width="4" height="4"/>');
  assert.match(await reason(decodeRgb(join(tmp, 'vector.png'))), /^not an image/);
  // loadImage reports the same reasons.
  assert.equal(await reason(loadImage(join(tmp, 'missing.jpg'), { preprocess: pp8(null, null), size: [2, 2], channels: 3 }, new Float32Array(12), 0)), 'no such file');
});

test('images: a PNG with a wrong checksum before its pixel data is refused (as PIL does); in IDAT it is not', async () => {
  const rows = [Buffer.from([1, 2, 3, 4, 5, 6])];
  const text = chunk('tEXt', Buffer.from('Comment\0hello', 'latin1'));
  const good = png(2, 1, 8, 2, rows, [text]);
  const at = good.indexOf('tEXt', 8, 'latin1');
  const badText = Buffer.from(good);
  badText[at + 4 + text.length - 12] ^= 1;
  await assert.rejects(decodeRgbBuffer(badText), (e: unknown) => e instanceof InputError && e.message === 'corrupt image (bad checksum in the PNG tEXt chunk)');
  const idat = good.indexOf('IDAT', 8, 'latin1');
  const badIdat = Buffer.from(good);
  badIdat[idat + 4 + good.readUInt32BE(idat - 4)] ^= 1;
  assert.deepEqual(rgbOf(await decodeRgbBuffer(badIdat)), [1, 2, 3, 4, 5, 6]);
  // A chunk length running past the end is the decoder's to report, as truncation.
  await assert.rejects(decodeRgbBuffer(good.subarray(0, at + 6)), (e: unknown) => e instanceof InputError && /truncated or corrupt/.test(e.message));
});

test('images: only regular files are read: a FIFO is refused at once instead of blocking', async () => {
  const fifo = join(tmp, 'pipe.png');
  const mk = spawnSync('mkfifo', [fifo]);
  assert.equal(mk.status, 0);
  await assert.rejects(decodeRgb(fifo), (e: unknown) => e instanceof InputError && e.message === 'not a regular file');
  await assert.rejects(decodeRgb('/dev/zero'), (e: unknown) => e instanceof InputError && e.message === 'not a regular file');
});

test('images: unreadable file is "permission denied"', { skip: process.getuid?.() === 0 ? 'running as root' : false }, async () => {
  const p = join(tmp, 'secret.png');
  writeFileSync(p, png(1, 1, 8, 0, [Buffer.from([1])]));
  chmodSync(p, 0o000);
  await assert.rejects(decodeRgb(p), (e: unknown) => e instanceof InputError && e.message === 'permission denied');
});

test('images: resample leaves unchanged axes alone and handles 1-pixel images', () => {
  const img: RgbImage = { width: 2, height: 1, data: new Uint8Array([0, 0, 0, 255, 255, 255]) };
  assert.equal(resample(img, 2, 1, 'bicubic'), img);
  const up = resample(img, 4, 1, 'bilinear');
  // PIL bilinear 2 → 4: weights (1, 0), (0.75, 0.25), (0.25, 0.75), (0, 1) of the two sources.
  assert.deepEqual(Array.from(up.data.filter((_, i) => i % 3 === 0)), [0, 64, 191, 255]);
  const dot: RgbImage = { width: 1, height: 1, data: new Uint8Array([9, 8, 7]) };
  for (const interp of ['nearest', 'bilinear', 'bicubic', 'lanczos'] as const) {
    assert.deepEqual(rgbOf(resample(dot, 3, 2, interp)), [9, 8, 7, 9, 8, 7, 9, 8, 7, 9, 8, 7, 9, 8, 7, 9, 8, 7], interp);
  }
});

test('JPEG and PNG headers read directly agree with libvips on size and CMYK, and anything odd is left to libvips', async () => {
  const dirs = [BAD, PHOTOS, IMAGES];
  const files = dirs.flatMap((d) => readdirSync(d).filter((f) => /\.(jpe?g|png)$/.test(f)).map((f) => readFileSync(join(d, f))));
  // Encoder variants: progressive, restart markers, EXIF and ICC segments before the frame, greyscale, CMYK.
  const base = sharp(join(PHOTOS, 'chelsea.png')).resize(67, 45);
  files.push(
    await base.clone().jpeg({ progressive: true }).toBuffer(),
    await base.clone().withMetadata({ orientation: 6 }).jpeg().toBuffer(),
    await base.clone().withIccProfile('p3').jpeg().toBuffer(),
    await base.clone().greyscale().jpeg().toBuffer(),
    await base.clone().toColourspace('cmyk').jpeg().toBuffer(),
  );
  let sniffed = 0;
  for (const buf of files) {
    const head = sniffHeader(buf);
    if (head === null) continue;
    const meta = await sharp(buf, { limitInputPixels: false }).metadata().catch(() => null);
    sniffed++;
    assert.ok(meta, 'a header read directly must be one libvips reads too');
    assert.deepEqual({ width: head.width, height: head.height, cmyk: head.cmyk }, { width: meta.width, height: meta.height, cmyk: meta.space === 'cmyk' });
    if (meta.format === 'jpeg' && head.jpegOrientation !== null) assert.equal(head.jpegOrientation, meta.orientation ?? 1);
    if (meta.format !== 'jpeg') assert.equal(head.jpegOrientation, null);
  }
  assert.ok(sniffed >= 20, `only ${sniffed} headers read directly`);
  assert.equal(sniffHeader(Buffer.from([0xff, 0xd8, 0xff, 0xd9])), null);
  assert.equal(sniffHeader(Buffer.from('GIF89a')), null);
  // A truncated frame header, and a height left to a DNL marker.
  const jpeg = await base.clone().jpeg().toBuffer();
  const sof = jpeg.indexOf(Buffer.from([0xff, 0xc0]));
  assert.equal(sniffHeader(jpeg.subarray(0, sof + 6)), null);
  const dnl = Buffer.from(jpeg);
  dnl[sof + 5] = 0;
  dnl[sof + 6] = 0;
  assert.equal(sniffHeader(dnl), null);
});

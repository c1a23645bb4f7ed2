import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import sharp from 'sharp';
import { decodeRgbBuffer, orientRgb, sniffHeader } from '../src/io/images.js';
import { turboJpeg } from '../src/io/jpeg-turbo.js';
import { BAD, PHOTOS } from './helpers/golden.js';

const turbo = turboJpeg();
const skip = turbo ? false : 'libjpeg-turbo is not available here (optional dependencies, Linux only)';

test('libjpeg-turbo is used where the optional packages ship it (Linux x64 with glibc)', { skip: process.env.VIT_JPEG_DECODER === 'sharp' }, () => {
  const glibc = (process.report.getReport() as { header?: { glibcVersionRuntime?: string } }).header?.glibcVersionRuntime;
  if (process.platform === 'linux' && process.arch === 'x64' && glibc) assert.ok(turbo, 'expected the TurboJPEG decoder to load');
});

/** JPEG encodings that exercise different decoder paths, from the fixture photos. */
async function variants(): Promise<{ name: string; buf: Buffer }[]> {
  const out: { name: string; buf: Buffer }[] = [];
  for (const [photo, w, h] of [['chelsea.png', 451, 300], ['astronaut.png', 67, 45], ['coffee.png', 17, 9], ['chelsea.png', 1, 1]] as const) {
    const base = sharp(join(PHOTOS, photo)).resize(w, h, { fit: 'fill' });
    out.push(
      { name: `${photo} ${w}x${h} 4:2:0`, buf: await base.clone().jpeg({ quality: 85 }).toBuffer() },
      { name: `${photo} ${w}x${h} 4:4:4 q100`, buf: await base.clone().jpeg({ quality: 100, chromaSubsampling: '4:4:4' }).toBuffer() },
      { name: `${photo} ${w}x${h} progressive`, buf: await base.clone().jpeg({ progressive: true }).toBuffer() },
      { name: `${photo} ${w}x${h} grey`, buf: await base.clone().greyscale().jpeg().toBuffer() },
    );
  }
  return out;
}

test('libjpeg-turbo decodes JPEGs to the same bytes as sharp (and PIL): subsampling, progressive, grey, odd sizes', { skip }, async () => {
  for (const { name, buf } of await variants()) {
    const direct = turbo!.decode(buf);
    assert.ok(direct, `${name}: refused`);
    const viaSharp = await decodeRgbBuffer(buf, { turbo: false });
    assert.equal(direct.width, viaSharp.width, name);
    assert.equal(direct.height, viaSharp.height, name);
    assert.ok(Buffer.from(direct.data).equals(Buffer.from(viaSharp.data)), `${name}: pixels differ`);
  }
});

test('EXIF orientations 1-8 come out as libvips autorotates them', { skip }, async () => {
  const stored = sharp(join(PHOTOS, 'chelsea.png')).resize(37, 23, { fit: 'fill' });
  for (let o = 1; o <= 8; o++) {
    const buf = await stored.clone().withMetadata({ orientation: o }).jpeg().toBuffer();
    assert.equal(sniffHeader(buf)?.jpegOrientation, o);
    const mine = await decodeRgbBuffer(buf);
    const viaSharp = await decodeRgbBuffer(buf, { turbo: false });
    assert.deepEqual([mine.width, mine.height], [viaSharp.width, viaSharp.height], `orientation ${o}`);
    assert.ok(Buffer.from(mine.data).equals(Buffer.from(viaSharp.data)), `orientation ${o}: pixels differ`);
  }
});

test('orientRgb on a 3x2 image, against the EXIF definitions', () => {
  // Pixels a..f, one grey level each:  a b c
  //                                    d e f
  const img = { data: Uint8Array.from([1, 2, 3, 4, 5, 6].flatMap((v) => [v, v, v])), width: 3, height: 2 };
  const grid = (o: number) => {
    const r = orientRgb(img, o);
    return Array.from({ length: r.height }, (_, y) => Array.from({ length: r.width }, (_, x) => r.data[(y * r.width + x) * 3]));
  };
  assert.deepEqual(grid(1), [[1, 2, 3], [4, 5, 6]]);
  assert.deepEqual(grid(2), [[3, 2, 1], [6, 5, 4]]);
  assert.deepEqual(grid(3), [[6, 5, 4], [3, 2, 1]]);
  assert.deepEqual(grid(4), [[4, 5, 6], [1, 2, 3]]);
  assert.deepEqual(grid(5), [[1, 4], [2, 5], [3, 6]]);
  assert.deepEqual(grid(6), [[4, 1], [5, 2], [6, 3]]);
  assert.deepEqual(grid(7), [[6, 3], [5, 2], [4, 1]]);
  assert.deepEqual(grid(8), [[3, 6], [2, 5], [1, 4]]);
});

test('damaged JPEGs are refused by libjpeg-turbo and get the same result as through sharp', { skip }, async () => {
  const files = readdirSync(BAD).filter((f) => f.endsWith('.jpg'));
  assert.ok(files.length >= 5);
  for (const f of files) {
    const buf = readFileSync(join(BAD, f));
    const outcome = (p: Promise<{ data: Uint8Array }>) => p.then((r) => Buffer.from(r.data).toString('base64'), (e: Error) => `error: ${e.message}`);
    assert.equal(await outcome(decodeRgbBuffer(buf)), await outcome(decodeRgbBuffer(buf, { turbo: false })), f);
  }
  const truncated = readFileSync(join(BAD, 'truncated.jpg'));
  assert.equal(turbo!.decode(truncated), null, 'a truncated JPEG must not decode with grey filling');
});

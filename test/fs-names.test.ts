import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { decodeFsName, displayPath, fsPath, pathBytes } from '../src/io/fs-names.js';
import { collectInputs, readPathList, shardOf } from '../src/io/inputs.js';
import { Readable } from 'node:stream';

const root = mkdtempSync(join(tmpdir(), 'vit-names-'));
after(() => rmSync(root, { recursive: true, force: true }));
const hex = (h: string) => Buffer.from(h.replace(/ /g, ''), 'hex');

// Expected strings as Python 3 gives them: bytes.decode('utf-8', 'surrogateescape') and 'backslashreplace'.
const CASES: [string, string, string][] = [
  ['63 61 66 e9 2e 70 6e 67', 'caf\udce9.png', 'caf\\xe9.png'], // Latin-1 é
  ['6f 6b c3 a9', 'ok\u00e9', 'ok\u00e9'], // valid UTF-8 stays as it is
  ['e4 b8', '\udce4\udcb8', '\\xe4\\xb8'], // truncated sequence: each byte escaped
  ['e4 b8 41', '\udce4\udcb8A', '\\xe4\\xb8A'],
  ['ed a0 80', '\udced\udca0\udc80', '\\xed\\xa0\\x80'], // an encoded surrogate is not UTF-8
  ['f0 9f 98 80 78', '\ud83d\ude00x', '\ud83d\ude00x'], // astral character (its low surrogate is not an escape)
  ['c0 af', '\udcc0\udcaf', '\\xc0\\xaf'], // overlong
  ['f4 90 80 80', '\udcf4\udc90\udc80\udc80', '\\xf4\\x90\\x80\\x80'], // past U+10FFFF
  ['e0 80 af', '\udce0\udc80\udcaf', '\\xe0\\x80\\xaf'],
  ['ff fe', '\udcff\udcfe', '\\xff\\xfe'],
];

test('file names: bytes decode as Python\'s surrogateescape, encode back exactly, display as backslashreplace', () => {
  for (const [bytes, decoded, shown] of CASES) {
    assert.equal(decodeFsName(hex(bytes)), decoded, bytes);
    assert.deepEqual(pathBytes(decoded), hex(bytes), bytes);
    assert.equal(displayPath(decoded), shown, bytes);
  }
  assert.equal(fsPath('plain/é.png'), 'plain/é.png');
  // Every byte string survives the round trip.
  let seed = 7;
  for (let i = 0; i < 2000; i++) {
    const b = Buffer.alloc(1 + (i % 13));
    for (let k = 0; k < b.length; k++) b[k] = (seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) >>> 24;
    assert.deepEqual(pathBytes(decodeFsName(b)), b, b.toString('hex'));
  }
  // JSON shows the escape as \udcNN, which Python's json.loads + os.fsencode turns back into the byte.
  assert.equal(JSON.stringify('caf\udce9.png'), '"caf\\udce9.png"');
});

test('file names: a name that is not UTF-8 is found in a directory walk and in a stdin list, and opens', async () => {
  const dir = join(root, 'latin1');
  mkdirSync(dir);
  const raw = Buffer.concat([Buffer.from(`${dir}/caf`), hex('e9'), Buffer.from('.png')]);
  writeFileSync(raw, 'bytes of the image');
  writeFileSync(join(dir, 'plain.png'), 'x');
  const walked = await collectInputs([dir], { stdinIsTTY: true });
  assert.deepEqual(walked, [`${dir}/caf\udce9.png`, `${dir}/plain.png`]);
  assert.equal(readFileSync(fsPath(walked[0])).toString(), 'bytes of the image');
  const listed = await readPathList(Readable.from([Buffer.concat([raw, Buffer.from('\0')])]), true);
  assert.deepEqual(listed, [walked[0]]);
  // The shard of a name is that of its bytes.
  assert.equal(shardOf('a/\u00e9.png', 7), shardOf(decodeFsName(Buffer.from('a/\u00e9.png')), 7));
});

test('inputs: a chain of 1,000 nested directories is walked in linear time (here: well under 20 s)', { timeout: 60_000 }, async () => {
  const deep = join(root, 'deep');
  const leaf = join(deep, ...new Array(1000).fill('d'));
  mkdirSync(leaf, { recursive: true });
  writeFileSync(join(leaf, 'x.png'), 'x');
  // A loop at the bottom, back to the top: cut, not followed 1,000 times over.
  symlinkSync(deep, join(leaf, 'loop'));
  const t0 = performance.now();
  const got = await collectInputs([deep], { stdinIsTTY: true });
  const ms = performance.now() - t0;
  assert.deepEqual(got, [join(leaf, 'x.png')]);
  const viaGlob = await collectInputs([`${deep}/**/*.png`], { stdinIsTTY: true });
  assert.deepEqual(viaGlob, [join(leaf, 'x.png')]);
  console.log(`1,000-deep walk: ${ms.toFixed(0)} ms`);
  assert.ok(ms < 20_000, `${ms} ms`);
});

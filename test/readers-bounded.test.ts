/** The checkpoint and file readers refuse what no model needs before allocating it (in-process; see hostile.test.ts for the CLI). */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { WeightsError } from '../src/errors.js';
import { FileRefusedError, readRegularFile } from '../src/io/regular-file.js';
import { vitParams } from '../src/model/arch/vit/params.js';
import { vitPreset } from '../src/model/arch/vit/presets.js';
import { weightsBudget } from '../src/model/checkpoint.js';
import { shortList } from '../src/model/weights/check.js';
import { PICKLE_LIMITS, unpickle } from '../src/model/weights/pickle.js';
import { readSafetensors, writeSafetensors } from '../src/model/weights/safetensors.js';

const root = mkdtempSync(join(tmpdir(), 'vit-bounded-'));
after(() => rmSync(root, { recursive: true, force: true }));

const load = (bytes: Uint8Array) => unpickle(bytes, { source: 'test.pkl', globals: new Map() }).value;
const cat = (...parts: (string | Uint8Array)[]) => Buffer.concat(parts.map((p) => (typeof p === 'string' ? Buffer.from(p, 'latin1') : p)));
const u32 = (n: number) => {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n);
  return b;
};

test('pickle: integers up to 32 bytes read, wider ones are refused at once whatever their length', () => {
  assert.equal(load(cat('\x80\x02\x8a\x20', Buffer.alloc(31), '\x01.')), 2n ** 248n);
  assert.throws(() => load(cat('\x80\x02\x8a\x21', Buffer.alloc(33), '.')), /a 33-byte integer is wider than any shape or offset/);
  const t0 = performance.now();
  assert.throws(() => load(cat('\x80\x02\x8b', u32(2 ** 24), Buffer.alloc(2 ** 24, 0x7f), '.')), /a 16777216-byte integer/);
  assert.throws(() => load(cat('I', '9'.repeat(2 ** 20), '\n.')), /a 1048576-digit INT is wider/);
  assert.throws(() => load(cat('L', '9'.repeat(100), 'L\n.')), /a 100-digit LONG/);
  assert.equal(load(cat('L', '9'.repeat(40), 'L\n.')), 10n ** 40n - 1n);
  assert.ok(performance.now() - t0 < 5000, 'refusing reads no digit');
});

test('pickle: strings, bytes and the number of values are capped', () => {
  const big = PICKLE_LIMITS.stringBytes + 1;
  assert.throws(() => load(cat('\x80\x02X', u32(big), Buffer.alloc(big, 0x61), '.')), /a 16777217-byte string is longer than any checkpoint needs/);
  assert.throws(() => load(cat('\x80\x02B', u32(big), Buffer.alloc(big), '.')), /16777217-byte string/);
  assert.throws(() => load(cat('V', Buffer.alloc(big, 0x61), '\n.')), /text field is longer than any checkpoint needs/);
  // Each DUP is one more value: a few MB of them would be hundreds of MB of references.
  assert.throws(() => load(cat('\x80\x02N', '2'.repeat(PICKLE_LIMITS.values), '.')), /more than 2000000 values/);
  assert.throws(() => load(cat('\x80\x02]', '(N'.repeat(PICKLE_LIMITS.values / 2), '.')), /more than 2000000 values/);
  assert.equal((load(cat('\x80\x02]', '(NNe'.repeat(1000), '.')) as unknown[]).length, 2000);
});

/** A safetensors file from a header object and a data length. */
function st(header: unknown, dataBytes: number): Uint8Array {
  const json = Buffer.from(JSON.stringify(header));
  const n = Buffer.alloc(8);
  n.writeBigUInt64LE(BigInt(json.length));
  return cat(n, json, Buffer.alloc(dataBytes));
}
const f32 = (shape: number[], begin: number, end: number) => ({ dtype: 'F32', shape, data_offsets: [begin, end] });

test('safetensors: the layout the reference library requires, every error naming the file', () => {
  const read = (h: unknown, n: number) => readSafetensors(st(h, n), 'x.safetensors');
  assert.deepEqual([...read({ b: f32([2], 8, 16), a: f32([2], 0, 8), z: f32([0], 16, 16) }, 16).keys()], ['b', 'a', 'z']);
  const refuses = (h: unknown, n: number, re: RegExp) => assert.throws(() => read(h, n), (e: unknown) => e instanceof WeightsError && e.message.startsWith('x.safetensors: ') && re.test(e.message), String(re));
  refuses({ a: f32([2], 0, 8), b: f32([2], 4, 12) }, 12, /tensor "b" has data_offsets \[4, 12\], which overlaps the tensor before it/);
  refuses({ a: f32([2], 0, 8), b: f32([2], 12, 20) }, 20, /tensor "b" .* leaves a gap after byte 8/);
  refuses({ a: f32([2], 4, 12) }, 12, /leaves a gap after byte 0/);
  refuses({ a: f32([2], 0, 8) }, 12, /the tensors cover 8 bytes of data but the file has 12 after the header/);
  refuses({ a: f32([3], 0, 8) }, 8, /F32 \[3\] \(12 bytes\) but data_offsets span 8/);
  refuses({ a: f32([2], 8, 0) }, 8, /ends before it begins|leaves a gap/);
  refuses(null, 0, /the header is null, not a JSON object/);
  refuses([1, 2], 0, /the header is \[1,2\], not a JSON object/);
  refuses({ a: null }, 0, /tensor "a" is null, not an object/);
  refuses({ a: { dtype: 'F32', shape: [1] } }, 4, /tensor "a" has data_offsets undefined/);
  refuses({ a: { dtype: 'F99', shape: [1], data_offsets: [0, 4] } }, 4, /tensor "a" has dtype "F99"/);
  refuses({ a: { dtype: 'F32', shape: [-1], data_offsets: [0, 4] } }, 4, /has shape \[-1\]/);
  refuses({ __metadata__: { format: 1 } }, 0, /__metadata__ must be an object of strings/);
  // Laid out right, but another float dtype than the ones read: named, not a TypeError.
  refuses({ a: { dtype: 'F8_E4M3', shape: [1], data_offsets: [0, 1] } }, 1, /tensor "a" has dtype F8_E4M3; supported: F32, F16, BF16, F64/);
  // Integer tensors are buffers (Swin's relative_position_index): checked with the layout, then left out.
  assert.deepEqual([...read({ a: f32([2], 0, 8), idx: { dtype: 'I64', shape: [2], data_offsets: [8, 24] } }, 24).keys()], ['a']);
  refuses({ idx: { dtype: 'I64', shape: [2], data_offsets: [0, 8] } }, 8, /I64 \[2\] \(16 bytes\) but data_offsets span 8/);
});

test('budget: what the model can need bounds every tensor and the whole file', () => {
  const b16 = vitPreset('B/16');
  const fixed = weightsBudget(b16, false);
  const shapes = [...vitParams(b16).values()].map((s) => s.reduce((a, d) => a * d, 1));
  assert.equal(fixed.maxTensorElements, Math.max(...shapes));
  assert.equal(fixed.totalElements, 2 * 86_567_656 + 2 ** 24);
  // A preset's head comes from the checkpoint: an in21k head (21,843 classes) must fit.
  assert.ok(weightsBudget(b16, true).maxTensorElements >= 21843 * 768);
  assert.ok(fixed.maxFileBytes > 86_567_656 * 8, 'a float64 checkpoint of the model fits');
  const file = writeSafetensors(new Map([['w', { shape: [11], data: new Float32Array(11) }], ['v', { shape: [8], data: new Float32Array(8) }]]));
  assert.throws(() => readSafetensors(file, 'big.safetensors', { maxTensorElements: 10, totalElements: 100 }),
    /big\.safetensors: tensor "w": \[11\] is 11 elements, more than the largest tensor the model has \(10\); refused before allocating it/);
  assert.throws(() => readSafetensors(file, 'big.safetensors', { maxTensorElements: 11, totalElements: 15 }),
    /big\.safetensors: tensor "v": 8 more elements would make 19 in all, more than the model could need \(15\)/);
  assert.equal(readSafetensors(file, 'ok.safetensors', { maxTensorElements: 11, totalElements: 19 }).size, 2);
});

test('check: long lists of names are cut to the first few and a count', () => {
  assert.equal(shortList(['a', 'b']), 'a, b');
  const many = Array.from({ length: 200_000 }, (_, i) => `t${i}`);
  assert.equal(shortList(many, ', ', 3), 't0, t1, t2, and 199997 more');
  assert.ok(shortList(many).length < 200);
});

test('regular files: FIFOs, devices and directories are refused at once; sizes before allocating', () => {
  const fifo = join(root, 'pipe');
  execFileSync('mkfifo', [fifo]);
  const refused = (path: string, re: RegExp) => assert.throws(() => readRegularFile(path, 1 << 20), (e: unknown) => e instanceof FileRefusedError && re.test(e.message), path);
  refused(fifo, /^a FIFO \(named pipe\), not a regular file$/);
  refused('/dev/zero', /^a character device, not a regular file$/);
  refused(root, /^a directory, not a regular file$/);
  const file = join(root, 'big');
  writeFileSync(file, Buffer.alloc(5000));
  assert.throws(() => readRegularFile(file, 4999), /^Error: 5000 bytes, more than the 4999 allowed$/);
  assert.equal(readRegularFile(file, 5000).length, 5000);
  assert.throws(() => readRegularFile(join(root, 'nope'), 10), (e: unknown) => (e as NodeJS.ErrnoException).code === 'ENOENT');
  // /proc files say size 0 but have content: read up to the cap.
  assert.match(readRegularFile('/proc/self/status', 1 << 20).toString(), /VmHWM/);
  assert.throws(() => readRegularFile('/proc/self/status', 16), /more than the 16 bytes allowed/);
});

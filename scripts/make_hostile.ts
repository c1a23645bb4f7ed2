/**
 * Writes the hostile inputs of test/hostile.test.ts into a directory: files small on disk that claim (or
 * expand to) gigabytes, configs with impossible values, FIFOs where files belong, a 1,000-deep directory
 * chain and names that are not UTF-8. None is committed: the tests run this into a temporary directory,
 * and each file is built in milliseconds (the zip bombs repeat one compressed block; their CRC-32 is worked
 * out without inflating them).
 *
 * Run: npm run build && node dist/scripts/make_hostile.js OUT_DIR
 */
import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import * as zlib from 'node:zlib';
import { PACKAGE_ROOT } from '../src/io/paths.js';
import { readSafetensors, writeSafetensors } from '../src/model/weights/safetensors.js';

const FIXTURES = join(PACKAGE_ROOT, 'test', 'fixtures');
/** The small model the weights cases are loaded into (D=32, depth 2, 32×32), and one image for it. */
export const TINY_MODEL = join(FIXTURES, 'models', 'eps32', 'timm');
export const TINY_IMAGE = join(FIXTURES, 'images', 'eps32_0.png');
const TINY_HF = join(FIXTURES, 'models', 'eps32', 'hf');

// ---- CRC-32 of long runs of zeros, without touching them: the register update for a zero byte is linear,
// so n zero bytes are one 32×32 matrix over GF(2), raised to the n-th power by squaring.

function gf2Apply(mat: number[], vec: number): number {
  let sum = 0;
  for (let i = 0; vec !== 0; i++, vec >>>= 1) if (vec & 1) sum ^= mat[i];
  return sum >>> 0;
}

function gf2Square(mat: number[]): number[] {
  return mat.map((col) => gf2Apply(mat, col));
}

/** zlib.crc32(n zero bytes, crc). */
function crc32Zeros(crc: number, n: number): number {
  // The operator for one zero bit: shift right, folding the polynomial in when the low bit was set.
  let op = Array.from({ length: 32 }, (_, i) => (i === 0 ? 0xedb88320 : 2 ** (i - 1)));
  for (let i = 0; i < 3; i++) op = gf2Square(op); // one zero byte
  let c = ~crc >>> 0;
  for (let left = n; left > 0; left = Math.floor(left / 2)) {
    if (left % 2 === 1) c = gf2Apply(op, c);
    op = gf2Square(op);
  }
  return ~c >>> 0;
}

// ---- zip archives, stored or deflated, with sizes that may lie

interface ZipMember {
  name: string;
  /** What is written as the member's data. */
  data: Uint8Array;
  method: 0 | 8;
  /** What the directory claims the member inflates to, and its CRC-32. */
  size: number;
  crc: number;
}

const stored = (name: string, data: Uint8Array): ZipMember => ({ name, data, method: 0, size: data.length, crc: zlib.crc32(data) });

/**
 * A deflate stream inflating to `prefix` followed by zeros, `total` bytes in all (sizes in MiB steps past the
 * prefix): one compressed MiB of zeros (about 1 kB) repeated, so a 3.5 GiB member takes 3.6 MB.
 */
function zeroBomb(name: string, prefix: Uint8Array, mib: number, declared?: number): ZipMember {
  const flush = { flush: zlib.constants.Z_FULL_FLUSH, finishFlush: zlib.constants.Z_FULL_FLUSH };
  const first = zlib.deflateRawSync(Buffer.concat([prefix, Buffer.alloc(2 ** 20 - prefix.length)]), flush);
  const block = zlib.deflateRawSync(Buffer.alloc(2 ** 20), flush);
  const data = Buffer.concat([first, ...new Array<Buffer>(mib - 1).fill(block), zlib.deflateRawSync(Buffer.alloc(0))]);
  const size = mib * 2 ** 20;
  const crc = crc32Zeros(zlib.crc32(prefix), size - prefix.length);
  return { name, data, method: 8, size: declared ?? size, crc };
}

function le(width: 2 | 4, v: number): Buffer {
  const b = Buffer.alloc(width);
  if (width === 2) b.writeUInt16LE(v);
  else b.writeUInt32LE(v >>> 0);
  return b;
}

/** A zip archive; sizes past 4 GiB are not needed here (the bombs claim 3.5 GiB). */
function zip(members: ZipMember[]): Buffer {
  const local: Buffer[] = [];
  const central: Buffer[] = [];
  let offset = 0;
  for (const m of members) {
    const name = Buffer.from(m.name);
    const common = [le(2, 20), le(2, 0), le(2, m.method), le(2, 0), le(2, 0x21), le(4, m.crc), le(4, m.data.length), le(4, m.size), le(2, name.length), le(2, 0)];
    const header = Buffer.concat([le(4, 0x04034b50), ...common, name]);
    local.push(header, Buffer.from(m.data));
    central.push(Buffer.concat([le(4, 0x02014b50), le(2, 20), ...common, le(2, 0), le(2, 0), le(2, 0), le(4, 0), le(4, offset), name]));
    offset += header.length + m.data.length;
  }
  const dir = Buffer.concat(central);
  const end = Buffer.concat([le(4, 0x06054b50), le(2, 0), le(2, 0), le(2, members.length), le(2, members.length), le(4, dir.length), le(4, offset), le(2, 0)]);
  return Buffer.concat([...local, dir, end]);
}

// ---- pickles of a state dict, as torch.save writes them (protocol 2)

const op = (s: string) => Buffer.from(s, 'latin1');
const binint = (n: number) => Buffer.concat([op('J'), le(4, n)]);
const unicode = (s: string) => Buffer.concat([op('X'), le(4, Buffer.byteLength(s)), Buffer.from(s)]);
const tuple = (items: Buffer[]) => Buffer.concat([op('('), ...items, op('t')]);
const global = (module: string, name: string) => op(`c${module}\n${name}\n`);
/** LONG4 of `bytes` bytes (a positive number: the last byte clear). */
const long4 = (bytes: number) => Buffer.concat([op('\x8b'), le(4, bytes), Buffer.alloc(bytes, 0x11).fill(0x01, bytes - 1)]);

interface PickledTensor { key: string; numel: number; offset?: Buffer; size: number[] }

/** {name: _rebuild_tensor_v2(storage, offset, size, stride, False, OrderedDict())} for each tensor. */
function stateDictPickle(tensors: PickledTensor[]): Buffer {
  const items = tensors.map((t) => {
    const storage = Buffer.concat([tuple([unicode('storage'), global('torch', 'FloatStorage'), unicode(t.key), unicode('cpu'), binint(t.numel)]), op('Q')]);
    const stride = t.size.map((_, i) => t.size.slice(i + 1).reduce((a, d) => a * d, 1));
    const args = tuple([storage, t.offset ?? binint(0), tuple(t.size.map(binint)), tuple(stride.map(binint)), op('\x89'), global('collections', 'OrderedDict'), op(')R')]);
    return Buffer.concat([unicode(`t${t.key}`), global('torch._utils', '_rebuild_tensor_v2'), args, op('R')]);
  });
  return Buffer.concat([op('\x80\x02}('), ...items, op('u.')]);
}

const torchZip = (pickle: ZipMember, storages: ZipMember[]) => zip([pickle, ...storages]);

// ---- safetensors with a raw header

function safetensors(header: string, data: Uint8Array = new Uint8Array(0)): Buffer {
  const padded = header + ' '.repeat((8 - (Buffer.byteLength(header) % 8)) % 8);
  const n = Buffer.alloc(8);
  n.writeBigUInt64LE(BigInt(Buffer.byteLength(padded)));
  return Buffer.concat([n, Buffer.from(padded), data]);
}

// ---- model directories: a fixture's files, one JSON field changed

function modelDir(dir: string, from: string, edit: (file: string, json: Record<string, any>) => void): string {
  mkdirSync(dir, { recursive: true });
  for (const f of ['config.json', 'preprocessor_config.json']) {
    let text: string;
    try {
      text = readFileSync(join(from, f), 'utf8');
    } catch {
      continue;
    }
    const json = JSON.parse(text);
    edit(f, json);
    writeFileSync(join(dir, f), JSON.stringify(json, null, 2));
  }
  symlinkSync(join(from, 'model.safetensors'), join(dir, 'model.safetensors'));
  return dir;
}

/** Everything written, by case name → path. */
export type HostileFiles = Record<string, string>;

export function makeHostile(out: string): HostileFiles {
  mkdirSync(out, { recursive: true });
  const files: HostileFiles = {};
  const put = (name: string, bytes: Uint8Array) => {
    writeFileSync(join(out, name), bytes);
    files[name] = join(out, name);
  };
  const GIB_35 = 3584; // MiB: 3.5 GiB, a 3.6 MB member

  // Pickles: one huge integer where a storage offset belongs.
  for (const [name, bytes] of [['long4-256k.pth', 2 ** 18], ['long4-1m.pth', 2 ** 20]] as const) {
    const pkl = stateDictPickle([{ key: '0', numel: 32, offset: long4(bytes), size: [32] }]);
    put(name, torchZip(stored('archive/data.pkl', pkl), [stored('archive/data/0', new Uint8Array(128))]));
  }
  // Zip bombs in .pth: a storage that honestly claims 3.5 GiB; one whose member alone claims it; one whose
  // member claims 4 kB but inflates to 3.5 GiB; and data.pkl itself as the bomb.
  const small = stateDictPickle([{ key: '0', numel: 1024, size: [1024] }]);
  const huge = stateDictPickle([{ key: '0', numel: (GIB_35 * 2 ** 20) / 4, size: [GIB_35 * 2 ** 18] }]);
  put('bomb-storage.pth', torchZip(stored('archive/data.pkl', huge), [zeroBomb('archive/data/0', new Uint8Array(0), GIB_35)]));
  put('bomb-member.pth', torchZip(stored('archive/data.pkl', small), [zeroBomb('archive/data/0', new Uint8Array(0), GIB_35)]));
  put('bomb-lying.pth', torchZip(stored('archive/data.pkl', small), [zeroBomb('archive/data/0', new Uint8Array(0), GIB_35, 4096)]));
  put('bomb-pickle.pth', torchZip(zeroBomb('archive/data.pkl', small.subarray(0, small.length - 1), GIB_35), []));
  // Zip bombs in .npz: an array declared at 3.5 GiB, and one declared at 4 kB that inflates to it.
  const npyHeader = (() => {
    const dict = `{'descr': '<f4', 'fortran_order': False, 'shape': (${(GIB_35 * 2 ** 20 - 128) / 4},), }`;
    const text = dict + ' '.repeat(128 - 10 - dict.length - 1) + '\n';
    return Buffer.concat([Buffer.from('\x93NUMPY\x01\x00', 'latin1'), le(2, text.length), Buffer.from(text, 'latin1')]);
  })();
  put('bomb.npz', zip([zeroBomb('pos_embed.npy', npyHeader, GIB_35)]));
  put('bomb-lying.npz', zip([zeroBomb('pos_embed.npy', npyHeader, GIB_35, 4096)]));

  // safetensors: overlapping offsets, a null header, a null entry, and 200,000 tensors the model lacks.
  put('overlap.safetensors', safetensors(JSON.stringify({
    a: { dtype: 'F32', shape: [4], data_offsets: [0, 16] }, b: { dtype: 'F32', shape: [4], data_offsets: [8, 24] },
  }), new Uint8Array(24)));
  put('null-header.safetensors', safetensors('null'));
  put('null-entry.safetensors', safetensors('{"cls_token": null}'));
  const real = readSafetensors(readFileSync(join(TINY_MODEL, 'model.safetensors')));
  for (let i = 0; i < 200_000; i++) real.set(`extra.${i}.weight`, { shape: [0], data: new Float32Array(0) });
  put('unexpected-200k.safetensors', writeSafetensors(real));

  // Configs with impossible values (each in its own model directory, the fixture's weights linked).
  files['pp-shortest-edge'] = modelDir(join(out, 'pp-shortest-edge'), TINY_HF, (f, j) => {
    if (f === 'preprocessor_config.json') j.size = 1_000_000_000;
  });
  files['pp-std-zero'] = modelDir(join(out, 'pp-std-zero'), TINY_HF, (f, j) => {
    if (f === 'preprocessor_config.json') j.image_std = [0, 0, 0];
  });
  files['crop-pct'] = modelDir(join(out, 'crop-pct'), TINY_MODEL, (f, j) => {
    if (f === 'config.json') j.pretrained_cfg.crop_pct = 1e-6;
  });
  files['depth'] = modelDir(join(out, 'depth'), TINY_HF, (f, j) => {
    if (f === 'config.json') j.num_hidden_layers = 1_000_000_000;
  });

  // FIFOs where a file belongs (mkfifo inside `out`, never under /dev), and a model whose config.json is one.
  const fifo = (path: string) => {
    execFileSync('mkfifo', [path]);
    return path;
  };
  files['fifo.safetensors'] = fifo(join(out, 'fifo.safetensors'));
  files['labels.fifo'] = fifo(join(out, 'labels.fifo'));
  const fifoModel = join(out, 'fifo-config');
  mkdirSync(fifoModel);
  fifo(join(fifoModel, 'config.json'));
  symlinkSync(join(TINY_MODEL, 'model.safetensors'), join(fifoModel, 'model.safetensors'));
  files['fifo-config'] = fifoModel;

  // A chain of 1,000 nested directories with one image at the bottom.
  const deep = join(out, 'deep');
  const leaf = join(deep, ...new Array<string>(1000).fill('d'));
  mkdirSync(leaf, { recursive: true });
  copyFileSync(TINY_IMAGE, join(leaf, 'bottom.png'));
  files['deep'] = deep;

  // Names that are not UTF-8: Latin-1 "café.png", and a byte that starts no character at all.
  const names = join(out, 'names');
  mkdirSync(names);
  for (const raw of [Buffer.from('caf\xe9.png', 'latin1'), Buffer.from('\xff-bad.png', 'latin1'), Buffer.from('plain.png')]) {
    copyFileSync(TINY_IMAGE, Buffer.concat([Buffer.from(`${names}/`), raw]));
  }
  files['names'] = names;
  return files;
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const out = process.argv[2];
  if (!out) throw new Error('usage: node dist/scripts/make_hostile.js OUT_DIR');
  for (const [name, path] of Object.entries(makeHostile(out))) console.log(`${name}\t${path}`);
}

import assert from 'node:assert/strict';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import * as zlib from 'node:zlib';
import { WeightsError } from '../src/errors.js';
import { readWeights } from '../src/model/weights/formats.js';
import '../src/model/weights/index.js';
import { PyCallable, RefusedGlobalError, unpickle } from '../src/model/weights/pickle.js';
import { readZip } from '../src/model/weights/zip.js';
import { FIXTURES } from './helpers/golden.js';

const WEIGHTS = join(FIXTURES, 'weights');

/** The malicious fixtures, the global each one names, and the file it would create if anything ran. */
const EVIL = [
  { file: 'evil_system.pth', global: 'posix.system', marker: '/tmp/vit_pwned_system' },
  { file: 'evil_exec.pth', global: 'builtins.exec', marker: '/tmp/vit_pwned_exec' },
  { file: 'evil_legacy.pth', global: 'posix.system', marker: '/tmp/vit_pwned_legacy' },
];

for (const { file, global, marker } of EVIL) {
  test(`${file} is refused, naming ${global}, and runs nothing`, () => {
    rmSync(marker, { force: true });
    const path = join(WEIGHTS, file);
    assert.throws(() => readWeights(readFileSync(path), path), (e: Error) => {
      assert.ok(e instanceof RefusedGlobalError, String(e));
      assert.equal(e.qualname, global);
      assert.match(e.message, new RegExp(`refusing to load: checkpoint references ${global.replace('.', '\\.')}`));
      assert.ok(e.message.startsWith(path));
      return true;
    });
    assert.equal(existsSync(marker), false, `${marker} was created`);
  });
}

// ---- plain containers in every protocol, as CPython writes them

/** pickle.dumps of one dict (ints of every width, floats, None, bools, unicode, nesting) for protocols 0–5. */
const PLAIN: Record<number, string> = {
  0: '286470300a56696e74730a70310a286c70320a49300a6149310a61492d310a61493235350a61493235360a614936353533350a614936353533360a61492d323134373438333634380a614c323134373438333634384c0a614c343631313638363031383432373338373930344c0a614c2d313138303539313632303731373431313330333432344c0a614c313236373635303630303232383232393430313439363730333230353337364c0a617356666c6f6174730a70330a286c70340a46302e350a61462d31652b3330300a6146332e3134313539323635333538393739330a6173566e6f6e650a70350a4e7356666c6167730a70360a284930310a4930300a7470370a7356746578740a70380a56636166e9205c75323630330a70390a73566e65737465640a7031300a28647031310a56610a7031320a286c7031330a49310a612849320a49330a747031340a617356620a7031350a28647031360a737356656d7074790a7031370a282874286c7031380a28647031390a747032300a732e',
  1: '7d7100285804000000696e747371015d7102284b004b014affffffff4bff4d00014dffff4a000001004a000000804c323134373438333634384c0a4c343631313638363031383432373338373930344c0a4c2d313138303539313632303731373431313330333432344c0a4c313236373635303630303232383232393430313439363730333230353337364c0a655806000000666c6f61747371035d710428473fe000000000000047fe37e43c8800759c47400921fb54442d186558040000006e6f6e6571054e5805000000666c6167737106284930310a4930300a74710758040000007465787471085809000000636166c3a920e29883710958060000006e6573746564710a7d710b28580100000061710c5d710d284b01284b024b0374710e65580100000062710f7d7110755805000000656d707479711128295d71127d7113747114752e',
  2: '80027d7100285804000000696e747371015d7102284b004b014affffffff4bff4d00014dffff4a000001004a000000808a0500000080008a0800000000000000408a090000000000000000c08a0d00000000000000000000000010655806000000666c6f61747371035d710428473fe000000000000047fe37e43c8800759c47400921fb54442d186558040000006e6f6e6571054e5805000000666c6167737106888986710758040000007465787471085809000000636166c3a920e29883710958060000006e6573746564710a7d710b28580100000061710c5d710d284b014b024b0386710e65580100000062710f7d7110755805000000656d7074797111295d71127d7113877114752e',
  3: '80037d7100285804000000696e747371015d7102284b004b014affffffff4bff4d00014dffff4a000001004a000000808a0500000080008a0800000000000000408a090000000000000000c08a0d00000000000000000000000010655806000000666c6f61747371035d710428473fe000000000000047fe37e43c8800759c47400921fb54442d186558040000006e6f6e6571054e5805000000666c6167737106888986710758040000007465787471085809000000636166c3a920e29883710958060000006e6573746564710a7d710b28580100000061710c5d710d284b014b024b0386710e65580100000062710f7d7110755805000000656d7074797111295d71127d7113877114580500000062797465737115430400ff61627116752e',
  4: '80049500010000000000007d94288c04696e7473945d94284b004b014affffffff4bff4d00014dffff4a000001004a000000808a0500000080008a0800000000000000408a090000000000000000c08a0d00000000000000000000000010658c06666c6f617473945d9428473fe000000000000047fe37e43c8800759c47400921fb54442d18658c046e6f6e65944e8c05666c61677394888986948c0474657874948c09636166c3a920e29883948c066e6573746564947d94288c0161945d94284b014b024b038694658c0162947d94758c05656d70747994295d947d9487948c05627974657394430400ff6162948c03736574948f94284b07908c0666726f7a656e94284b089194752e',
  5: '80059500010000000000007d94288c04696e7473945d94284b004b014affffffff4bff4d00014dffff4a000001004a000000808a0500000080008a0800000000000000408a090000000000000000c08a0d00000000000000000000000010658c06666c6f617473945d9428473fe000000000000047fe37e43c8800759c47400921fb54442d18658c046e6f6e65944e8c05666c61677394888986948c0474657874948c09636166c3a920e29883948c066e6573746564947d94288c0161945d94284b014b024b038694658c0162947d94758c05656d70747994295d947d9487948c05627974657394430400ff6162948c03736574948f94284b07908c0666726f7a656e94284b089194752e',
};

const NONE = new Map<string, unknown>();
const load = (bytes: Uint8Array, globals: ReadonlyMap<string, unknown> = NONE) => unpickle(bytes, { source: 'test', globals }).value;
const hex = (h: string) => Uint8Array.from(Buffer.from(h.replace(/\s+/g, ''), 'hex'));
const ascii = (s: string) => Uint8Array.from(Buffer.from(s, 'latin1'));

for (const [protocol, h] of Object.entries(PLAIN)) {
  test(`plain containers of pickle protocol ${protocol} read exactly`, () => {
    const d = load(hex(h)) as Map<string, unknown>;
    assert.deepEqual(d.get('ints'), [0, 1, -1, 255, 256, 65535, 65536, -(2 ** 31), 2 ** 31, 2n ** 62n, -(2n ** 70n), 2n ** 100n]);
    assert.deepEqual(d.get('floats'), [0.5, -1e300, Math.PI]);
    assert.equal(d.get('none'), null);
    assert.deepEqual(d.get('flags'), [true, false]);
    assert.equal(d.get('text'), 'café ☃');
    const nested = d.get('nested') as Map<string, unknown>;
    assert.deepEqual(nested.get('a'), [1, [2, 3]]);
    assert.deepEqual(nested.get('b'), new Map());
    assert.deepEqual(d.get('empty'), [[], [], new Map()]);
    if (Number(protocol) >= 3) assert.deepEqual(d.get('bytes'), Uint8Array.from([0, 255, 0x61, 0x62]));
    if (Number(protocol) >= 4) {
      assert.deepEqual(d.get('set'), new Set([7]));
      assert.deepEqual(d.get('frozen'), new Set([8]));
    }
  });
}

// ---- every way a pickle can name or call something

test('GLOBAL, STACK_GLOBAL, INST and the extension registry are refused by name', () => {
  const refuses = (bytes: Uint8Array, name: string) =>
    assert.throws(() => load(bytes), (e: Error) => e instanceof RefusedGlobalError && e.qualname === name);
  refuses(ascii('cos\nsystem\n(S"touch /tmp/x"\ntR.'), 'os.system');
  refuses(ascii('\x80\x04\x8c\x08builtins\x94\x8c\x04eval\x94\x93\x94.'), 'builtins.eval');
  refuses(ascii('(isubprocess\nPopen\n.'), 'subprocess.Popen');
  // A global that is allowed must still be a callable we supply to be called.
  const allowed = new Map<string, unknown>([['torch.FloatStorage', { marker: true }]]);
  assert.throws(() => load(ascii('ctorch\nFloatStorage\n)R.'), allowed), /cannot call/);
  assert.throws(() => load(ascii('\x80\x02\x82\x01.')), /extension-registry/);
  assert.throws(() => load(ascii('\x80\x05\x97.')), /out-of-band/);
});

test('allowed callables are our stand-ins; REDUCE on data, BUILD on non-dicts are refused', () => {
  const calls: unknown[][] = [];
  const g = new Map<string, unknown>([['m.f', new PyCallable('m.f', (a) => { calls.push(a); return 42; })]]);
  assert.equal(load(ascii('\x80\x02cm\nf\nK\x01K\x02\x86R.'), g), 42);
  assert.deepEqual(calls, [[1, 2]]);
  assert.throws(() => load(ascii('\x80\x02X\x01\x00\x00\x00a)R.')), /cannot call string a/);
  assert.throws(() => load(ascii('\x80\x02]}b.')), /cannot set state on a list/);
  assert.throws(() => load(ascii('\x80\x02K\x01K\x02K\x03s.')), /SETITEM on number/);
});

test('hostile lengths, memo indices and truncations fail without allocating or reading out of bounds', () => {
  assert.throws(() => load(hex('80048d0000000000010000')), /runs past the end/); // BINUNICODE8 of 2^40 bytes
  assert.throws(() => load(hex('80028bffffff7f.'.replace('.', '2e'))), /runs past the end/); // LONG4 of 2 GiB
  assert.throws(() => load(hex('80026aff00ffff2e')), /memo entry \d+ was never stored/);
  assert.throws(() => load(hex('8002742e')), /no MARK/);
  assert.throws(() => load(hex('80022e')), /stack underflow/);
  assert.throws(() => load(hex('8006')), /protocol newer than 5/);
  const good = hex(PLAIN[2]);
  for (let n = 0; n < good.length; n++) {
    assert.throws(() => load(good.subarray(0, n)), (e: Error) => e instanceof WeightsError, `prefix ${n}`);
  }
});

// ---- hand-made torch archives: the same checks inside a real container

/** Little-endian header fields [offset, value, width] in a zeroed buffer. */
function fields(size: number, values: [number, number, 2 | 4][]): Buffer {
  const b = Buffer.alloc(size);
  for (const [at, v, width] of values) {
    if (width === 2) b.writeUInt16LE(v, at);
    else b.writeUInt32LE(v, at);
  }
  return b;
}

/** A minimal stored zip (what torch.save writes, minus alignment padding) around the given entries. */
function storedZip(entries: [string, Uint8Array][]): Uint8Array {
  const parts: Buffer[] = [];
  const central: Buffer[] = [];
  let offset = 0;
  for (const [name, data] of entries) {
    const n = Buffer.from(name);
    const crc = zlib.crc32(data);
    const len = data.length;
    parts.push(fields(30, [[0, 0x04034b50, 4], [4, 20, 2], [14, crc, 4], [18, len, 4], [22, len, 4], [26, n.length, 2]]), n, Buffer.from(data));
    central.push(fields(46, [[0, 0x02014b50, 4], [4, 20, 2], [6, 20, 2], [16, crc, 4], [20, len, 4], [24, len, 4], [28, n.length, 2], [42, offset, 4]]), n);
    offset += 30 + n.length + len;
  }
  const cd = Buffer.concat(central);
  const end = fields(22, [[0, 0x06054b50, 4], [8, entries.length, 2], [10, entries.length, 2], [12, cd.length, 4], [16, offset, 4]]);
  return Uint8Array.from(Buffer.concat([...parts, cd, end]));
}

/** The storages of a real checkpoint, so a replaced data.pkl still finds them. */
function storagesOf(path: string): { pkl: Uint8Array; storages: [string, Uint8Array][] } {
  const zip = readZip(readFileSync(path), path);
  const names = [...zip.entries.keys()];
  const prefix = names.find((n) => n.endsWith('/data.pkl'))!.slice(0, -'data.pkl'.length);
  const storages = names.filter((n) => n.startsWith(`${prefix}data/`)).map((n): [string, Uint8Array] => [`archive/${n.slice(prefix.length)}`, zip.read(n)]);
  return { pkl: zip.read(`${prefix}data.pkl`), storages };
}

const int = (x: number) => `J${Buffer.from(Int32Array.of(x).buffer).toString('latin1')}`;
const intTuple = (xs: number[]) => `(${xs.map(int).join('')}t`;
const str = (s: string) => `X${Buffer.from(Int32Array.of(s.length).buffer).toString('latin1')}${s}`;

/** {"w": _rebuild_tensor_v2(persistent storage "0" of `numel` floats, offset, size, stride, False, None)} */
function tensorPickle(numel: number, offset: number, size: number[], stride: number[]): Uint8Array {
  const pid = `(${str('storage')}ctorch\nFloatStorage\n${str('0')}${str('cpu')}${int(numel)}tQ`;
  return ascii(`\x80\x02}${str('w')}ctorch._utils\n_rebuild_tensor_v2\n(${pid}${int(offset)}${intTuple(size)}${intTuple(stride)}\x89NtRs.`);
}

test('hand-made torch archives: views must stay inside their storage', () => {
  const storage = new Uint8Array(new Float32Array([1, 2, 3, 4, 5, 6]).buffer);
  const read = (pkl: Uint8Array) => readWeights(storedZip([['archive/data.pkl', pkl], ['archive/data/0', storage]]), 'hand.pth');
  assert.deepEqual([...read(tensorPickle(6, 0, [2, 3], [1, 2])).get('w')!.data], [1, 3, 5, 2, 4, 6]);
  assert.deepEqual([...read(tensorPickle(6, 4, [2], [1])).get('w')!.data], [5, 6]);
  assert.throws(() => read(tensorPickle(6, 0, [2, 3], [3, 2])), /view reaches element 7 of a 6-element storage/);
  assert.throws(() => read(tensorPickle(6, 5, [2], [1])), /view reaches element/);
  assert.throws(() => read(tensorPickle(6, 0, [100000, 100000], [0, 0])), /expanded view/);
  assert.throws(() => read(tensorPickle(7, 0, [6], [1])), /holds 24 bytes, 28 expected/);
  assert.throws(() => readWeights(storedZip([['archive/data.pkl', tensorPickle(6, 0, [6], [1])]]), 'x.pth'), /storage 0 is missing/);
});

test('a mutated data.pkl (CRC intact) only ever yields tensors or a WeightsError', () => {
  const { pkl, storages } = storagesOf(join(FIXTURES, 'models', 'eps32', 'timm.bin'));
  let seed = 12345;
  const rand = () => (seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32;
  const outcomes = { ok: 0, refused: 0 };
  for (let i = 0; i < 600; i++) {
    const b = Uint8Array.from(pkl);
    const flips = 1 + Math.floor(rand() * 3);
    for (let f = 0; f < flips; f++) b[Math.floor(rand() * b.length)] = Math.floor(rand() * 256);
    const cut = i % 5 === 0 ? Math.floor(rand() * b.length) : b.length;
    try {
      readWeights(storedZip([['archive/data.pkl', b.subarray(0, cut)], ...storages]), 'fuzz.pth');
      outcomes.ok++;
    } catch (e) {
      assert.ok(e instanceof WeightsError, `mutation ${i}: ${(e as Error).stack}`);
      outcomes.refused++;
    }
  }
  console.log(`mutated pickles: ${outcomes.ok} read, ${outcomes.refused} refused`);
  assert.ok(outcomes.refused > 0);
});

test('TorchScript archives and plain zips are told apart from checkpoints', () => {
  const ts = storedZip([['m/data.pkl', ascii('\x80\x02}.')], ['m/constants.pkl', ascii('\x80\x02).')], ['m/code/__torch__/m.py', ascii('')]]);
  assert.throws(() => readWeights(ts, 'scripted.pt'), /TorchScript/);
  assert.throws(() => readWeights(storedZip([['readme.txt', ascii('hi')]]), 'x.zip'), /not a checkpoint format/);
  assert.throws(() => readWeights(storedZip([['a/data.pkl', ascii('\x80\x02}X\x01\x00\x00\x00aK\x01s.')]]), 'x.pth'), /no state dict/);
});

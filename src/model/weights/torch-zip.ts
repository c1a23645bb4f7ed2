import { WeightsError } from '../../errors.js';
import { shapeStr, sizeOf, type HostTensor, type TensorMap } from '../tensor.js';
import { ANY_MODEL_BUDGET, BudgetMeter, type WeightsBudget } from './budget.js';
import { toFloat32, type StorageDtype } from './dtypes.js';
import { describe, PyCallable, unpickle } from './pickle.js';
import { stripCommonPrefix } from './schemes.js';
import type { ZipArchive } from './zip.js';

/** torch.<Name>Storage: the marker a persistent id carries for the element type of a storage. */
class StorageType {
  /** dtype is null for integer and boolean storages, which a ViT state dict never needs. */
  constructor(readonly name: string, readonly dtype: StorageDtype | null, readonly itemSize: number) {}
}

/** A torch dtype object (torch.float32, ...) when a pickle mentions one; only ever a value. */
class TorchDtype {
  constructor(readonly name: string) {}
}

/** What a persistent id resolves to: one storage, read lazily from the archive. */
class StorageRef {
  constructor(readonly type: StorageType, readonly key: string, readonly numel: number) {}
}

/** A tensor as torch pickles it: a view (offset, size, stride) into a storage. */
class TorchTensor {
  constructor(readonly storage: StorageRef, readonly offset: number, readonly size: number[], readonly stride: number[]) {}
}

const STORAGE_TYPES: StorageType[] = [
  new StorageType('FloatStorage', 'f32', 4),
  new StorageType('HalfStorage', 'f16', 2),
  new StorageType('BFloat16Storage', 'bf16', 2),
  new StorageType('DoubleStorage', 'f64', 8),
  new StorageType('LongStorage', null, 8),
  new StorageType('IntStorage', null, 4),
  new StorageType('ShortStorage', null, 2),
  new StorageType('CharStorage', null, 1),
  new StorageType('ByteStorage', null, 1),
  new StorageType('BoolStorage', null, 1),
];

function intList(v: unknown, what: string, source: string): number[] {
  if (!Array.isArray(v) || !v.every((d) => Number.isSafeInteger(d) && d >= 0)) {
    throw new WeightsError(`${source}: tensor ${what} is ${describe(v)}, not a tuple of non-negative integers`);
  }
  return v as number[];
}

function asTensor(v: unknown, source: string): TorchTensor {
  if (!(v instanceof TorchTensor)) throw new WeightsError(`${source}: a parameter wraps ${describe(v)}, not a tensor`);
  return v;
}

/**
 * The only globals a state dict needs, each mapped to a JavaScript stand-in: tensor and parameter
 * rebuilding, OrderedDict, the storage type markers and dtypes. Built per file for its messages.
 */
function torchGlobals(source: string): Map<string, unknown> {
  const g = new Map<string, unknown>();
  const fn = (q: string, f: (args: unknown[]) => unknown) => g.set(q, new PyCallable(q, f));
  // (storage, storage_offset, size, stride, requires_grad, backward_hooks[, metadata])
  fn('torch._utils._rebuild_tensor_v2', (a) => {
    if (!(a[0] instanceof StorageRef)) throw new WeightsError(`${source}: tensor storage is ${describe(a[0])}`);
    const offset = a[1];
    if (!Number.isSafeInteger(offset) || (offset as number) < 0) throw new WeightsError(`${source}: tensor storage offset ${String(offset)}`);
    const size = intList(a[2], 'size', source);
    const stride = intList(a[3], 'stride', source);
    if (size.length !== stride.length) throw new WeightsError(`${source}: tensor has ${size.length} sizes but ${stride.length} strides`);
    return new TorchTensor(a[0], offset as number, size, stride);
  });
  // (data, requires_grad, backward_hooks[, state]): a Parameter is its data for our purposes.
  fn('torch._utils._rebuild_parameter', (a) => asTensor(a[0], source));
  fn('torch._utils._rebuild_parameter_with_state', (a) => asTensor(a[0], source));
  fn('collections.OrderedDict', (a) => {
    const m = new Map<unknown, unknown>();
    const pairs = a[0] ?? [];
    if (!Array.isArray(pairs)) throw new WeightsError(`${source}: OrderedDict(${describe(pairs)})`);
    for (const p of pairs) {
      if (!Array.isArray(p) || p.length !== 2) throw new WeightsError(`${source}: OrderedDict item ${describe(p)}`);
      m.set(p[0], p[1]);
    }
    return m;
  });
  for (const t of STORAGE_TYPES) g.set(`torch.${t.name}`, t);
  for (const d of ['float32', 'float16', 'bfloat16', 'float64', 'float', 'half', 'double']) g.set(`torch.${d}`, new TorchDtype(d));
  return g;
}

/**
 * A state dict's pickle describes a few thousand tensors in some kilobytes; a data.pkl claiming more than
 * this is not one, and is refused before it is inflated.
 */
const MAX_PICKLE_BYTES = 64 * 2 ** 20;

/**
 * torch's persistent id for a storage: ('storage', storage_type, key, location, numel[, view_metadata]). A
 * storage may hold several tensors, so its length is bounded by the budget's total, before any is read.
 */
function storageFromPid(pid: unknown, source: string, budget: WeightsBudget): StorageRef {
  if (!Array.isArray(pid) || pid[0] !== 'storage' || pid.length < 5) throw new WeightsError(`${source}: unknown persistent id ${describe(pid)}`);
  const [, type, key, , numel] = pid;
  if (!(type instanceof StorageType)) throw new WeightsError(`${source}: storage of type ${describe(type)}`);
  if (typeof key !== 'string' || !/^[\w.-]+$/.test(key)) throw new WeightsError(`${source}: storage key ${describe(key)}`);
  if (!Number.isSafeInteger(numel) || (numel as number) < 0) throw new WeightsError(`${source}: storage size ${describe(numel)}`);
  if ((numel as number) > budget.totalElements) {
    throw new WeightsError(`${source}: storage ${key} claims ${String(numel)} elements, more than the model could need (${budget.totalElements}); refused before reading it`);
  }
  if (pid.length > 5 && pid[5] !== null) throw new WeightsError(`${source}: storage views of the legacy format are not supported`);
  return new StorageRef(type, key, numel as number);
}

/** C-order strides of a shape: what a tensor has when its data can be taken as one run. */
function contiguousStrides(size: number[]): number[] {
  const s = new Array<number>(size.length);
  let acc = 1;
  for (let i = size.length - 1; i >= 0; i--) {
    s[i] = acc;
    acc *= size[i];
  }
  return s;
}

/**
 * A (possibly strided) view into raw storage bytes → a contiguous float32 tensor. The furthest element the
 * view can reach is checked against the storage first, so hostile offsets and strides only fail.
 */
function materialize(t: TorchTensor, storageBytes: (s: StorageRef) => Uint8Array, meter: BudgetMeter, what: string): HostTensor {
  const n = sizeOf(t.size);
  const shape = t.size.slice();
  if (n === 0) return { shape, data: new Float32Array(0) };
  // A view cannot hold more elements than its storage unless it repeats them (an expand()ed tensor); such
  // views never appear in state dicts, and allowing them would let a tiny file ask for a huge allocation.
  if (n > t.storage.numel) {
    throw new WeightsError(`${what}: ${shapeStr(shape)} has ${n} elements but its storage only ${t.storage.numel} (an expanded view?)`);
  }
  // Each tensor is a fresh float32 copy, even when several view one storage: each is counted.
  meter.take(meter.tensor(shape, what), what);
  const dtype = t.storage.type.dtype!;
  const bytes = storageBytes(t.storage);
  const isz = t.storage.type.itemSize;
  const last = t.offset + t.size.reduce((acc, d, i) => acc + (d - 1) * t.stride[i], 0);
  if (last >= t.storage.numel) {
    throw new WeightsError(`${what}: view reaches element ${last} of a ${t.storage.numel}-element storage`);
  }
  const dense = contiguousStrides(t.size);
  if (t.size.every((d, i) => d === 1 || t.stride[i] === dense[i])) {
    return { shape, data: toFloat32(bytes.subarray(t.offset * isz, (t.offset + n) * isz), dtype, n, what) };
  }
  // Non-contiguous (a transposed or sliced view was saved): convert the span it touches, then gather.
  const span = toFloat32(bytes.subarray(t.offset * isz, (last + 1) * isz), dtype, last + 1 - t.offset, what);
  const data = new Float32Array(n);
  const idx = new Array<number>(t.size.length).fill(0);
  let src = 0;
  for (let i = 0; i < n; i++) {
    data[i] = span[src];
    // Odometer over the indices, innermost first, moving `src` by the matching stride.
    for (let d = t.size.length - 1; d >= 0; d--) {
      if (++idx[d] < t.size[d]) {
        src += t.stride[d];
        break;
      }
      src -= (t.size[d] - 1) * t.stride[d];
      idx[d] = 0;
    }
  }
  return { shape, data };
}

/** Checkpoint wrappers around the state dict, in the order they are looked for. */
const WRAPPERS = ['state_dict', 'model', 'model_state', 'module'];

function findStateDict(root: unknown, source: string): Map<unknown, unknown> {
  let cur = root;
  for (let depth = 0; depth <= WRAPPERS.length; depth++) {
    if (!(cur instanceof Map)) break;
    if ([...cur.values()].some((v) => v instanceof TorchTensor)) return cur;
    const key = WRAPPERS.find((w) => cur instanceof Map && cur.get(w) instanceof Map);
    if (!key) {
      const keys = [...cur.keys()].slice(0, 8).map(String).join(', ');
      throw new WeightsError(`${source}: no state dict in this checkpoint (top-level keys: ${keys || 'none'}; looked for tensors or ${WRAPPERS.join(', ')})`);
    }
    cur = cur.get(key);
  }
  throw new WeightsError(`${source}: the checkpoint holds ${describe(cur)}, not a state dict of tensors`);
}

/**
 * Turn the unpickled object into float32 tensors: unwrap {"model": …}-style wrappers and `module.` prefixes,
 * read each tensor's storage. Integer tensors (BatchNorm's num_batches_tracked) and non-tensor entries are
 * left out, as no ViT parameter is an integer.
 */
function toTensorMap(root: unknown, storageBytes: (s: StorageRef) => Uint8Array, source: string, budget: WeightsBudget): TensorMap {
  const sd = findStateDict(root, source);
  const meter = new BudgetMeter(budget, source);
  const out: TensorMap = new Map();
  for (const [k, v] of sd) {
    if (typeof k !== 'string' || !(v instanceof TorchTensor) || v.storage.type.dtype === null) continue;
    out.set(k, materialize(v, storageBytes, meter, `${source}: tensor "${k}"`));
  }
  return stripCommonPrefix(out, ['module.']);
}

/** The folder holding data.pkl in a torch.save zip (its name is the file's stem at save time, so it varies). */
function archivePrefix(zip: ZipArchive): string | null {
  const pkls = [...zip.entries.keys()].filter((n) => /^([^/]+\/)?data\.pkl$/.test(n));
  return pkls.length === 1 ? pkls[0].slice(0, -'data.pkl'.length) : null;
}

export function isTorchZip(zip: ZipArchive): boolean {
  return archivePrefix(zip) !== null;
}

/** torch.save since 1.6: `<prefix>/data.pkl` (the object) + `<prefix>/data/<key>` (one entry per storage). */
export function readTorchZip(zip: ZipArchive, source: string, budget: WeightsBudget = ANY_MODEL_BUDGET): TensorMap {
  const prefix = archivePrefix(zip);
  if (prefix === null) throw new WeightsError(`${source}: a zip archive, but not a torch.save checkpoint (no single data.pkl)`);
  if (zip.entries.has(`${prefix}constants.pkl`) || [...zip.entries.keys()].some((n) => n.startsWith(`${prefix}code/`))) {
    throw new WeightsError(`${source}: a TorchScript archive (torch.jit.save), not a state dict; in Python, save model.state_dict() instead`);
  }
  const byteorder = zip.entries.has(`${prefix}byteorder`) ? new TextDecoder().decode(zip.read(`${prefix}byteorder`, { maxBytes: 16 })).trim() : 'little';
  if (byteorder !== 'little') throw new WeightsError(`${source}: saved on a ${byteorder}-endian machine; only little-endian checkpoints are read`);
  const { value } = unpickle(zip.read(`${prefix}data.pkl`, { maxBytes: MAX_PICKLE_BYTES }), {
    source,
    globals: torchGlobals(source),
    persistentLoad: (pid) => storageFromPid(pid, source, budget),
  });
  const cache = new Map<string, Uint8Array>();
  const storages = new BudgetMeter(budget, source);
  return toTensorMap(value, (s) => {
    let b = cache.get(s.key);
    if (!b) {
      const name = `${prefix}data/${s.key}`;
      if (!zip.entries.has(name)) throw new WeightsError(`${source}: storage ${s.key} is missing from the archive`);
      storages.take(s.numel, `${source}: storage ${s.key}`);
      b = zip.read(name, { exactBytes: s.numel * s.type.itemSize });
      cache.set(s.key, b);
    }
    return b;
  }, source, budget);
}

/** The legacy format opens with a pickled magic number: PROTO 2, LONG1 of 10 bytes 0x1950a86a20f9469cfc6c. */
const LEGACY_MAGIC = [0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19];

export function isTorchLegacy(bytes: Uint8Array): boolean {
  return bytes.length > LEGACY_MAGIC.length && LEGACY_MAGIC.every((b, i) => bytes[i] === b);
}

/**
 * torch.save before 1.6 (or with _use_new_zipfile_serialization=False): five pickles back to back — magic,
 * protocol version, system info, the object, the list of storage keys — then each storage's raw data, in that
 * list's order, behind an 8-byte element count.
 */
export function readTorchLegacy(bytes: Uint8Array, source: string, budget: WeightsBudget = ANY_MODEL_BUDGET): TensorMap {
  const plain = { source, globals: new Map<string, unknown>() };
  let { end } = unpickle(bytes, plain); // magic, checked by the sniff
  const version = unpickle(bytes, { ...plain, offset: end });
  if (version.value !== 1001) throw new WeightsError(`${source}: legacy torch.save protocol ${String(version.value)}; only 1001 is read`);
  const info = unpickle(bytes, { ...plain, offset: version.end });
  if (!(info.value instanceof Map) || info.value.get('little_endian') !== true) {
    throw new WeightsError(`${source}: legacy checkpoint from a big-endian machine or without system info`);
  }
  const storages = new Map<string, StorageRef>();
  const main = unpickle(bytes, {
    source,
    offset: info.end,
    globals: torchGlobals(source),
    persistentLoad: (pid) => {
      const s = storageFromPid(pid, source, budget);
      const seen = storages.get(s.key);
      if (seen && (seen.type !== s.type || seen.numel !== s.numel)) throw new WeightsError(`${source}: storage ${s.key} is described twice, differently`);
      storages.set(s.key, s);
      return s;
    },
  });
  const keys = unpickle(bytes, { ...plain, offset: main.end });
  if (!Array.isArray(keys.value) || !keys.value.every((k) => typeof k === 'string')) throw new WeightsError(`${source}: legacy storage key list is ${describe(keys.value)}`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const data = new Map<string, Uint8Array>();
  end = keys.end;
  for (const key of keys.value as string[]) {
    const s = storages.get(key);
    if (!s) throw new WeightsError(`${source}: legacy data for storage ${key}, which no tensor uses`);
    if (end + 8 > bytes.length) throw new WeightsError(`${source}: legacy checkpoint is truncated before storage ${key}`);
    const count = Number(view.getBigUint64(end, true));
    const len = count * s.type.itemSize;
    if (count !== s.numel || end + 8 + len > bytes.length) throw new WeightsError(`${source}: legacy storage ${key} is truncated or mis-sized`);
    data.set(key, bytes.subarray(end + 8, end + 8 + len));
    end += 8 + len;
  }
  return toTensorMap(main.value, (s) => {
    const b = data.get(s.key);
    if (!b) throw new WeightsError(`${source}: storage ${s.key} has no data in the file`);
    return b;
  }, source, budget);
}

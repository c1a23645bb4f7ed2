import { WeightsError } from '../../errors.js';
import { type HostTensor, type TensorMap } from '../tensor.js';
import { ANY_MODEL_BUDGET, BudgetMeter, MAX_ITEM_BYTES, type WeightsBudget } from './budget.js';
import { toFloat32, type StorageDtype } from './dtypes.js';
import { type ZipArchive } from './zip.js';

const NPY_MAGIC = [0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59]; // "\x93NUMPY"
const DESCR: Record<string, StorageDtype> = { '<f4': 'f32', '<f2': 'f16', '<f8': 'f64' };
/** numpy itself refuses headers past 10,000 bytes (np.load's max_header_size); this leaves room. */
const MAX_HEADER = 65536;

interface NpyHeader { descr: string; fortranOrder: boolean; shape: number[] }

/**
 * The header is a Python dict literal, e.g. {'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }.
 * It is parsed field by field with patterns, never evaluated.
 */
function parseHeader(text: string, what: string): NpyHeader {
  const descr = /'descr':\s*'([^']*)'/.exec(text)?.[1];
  const fortran = /'fortran_order':\s*(True|False)/.exec(text)?.[1];
  const shapeText = /'shape':\s*\(([^)]*)\)/.exec(text)?.[1];
  if (descr === undefined || fortran === undefined || shapeText === undefined) {
    throw new WeightsError(`${what}: unreadable .npy header ${JSON.stringify(text.trim().slice(0, 120))}`);
  }
  const shape = shapeText.split(',').map((s) => s.trim()).filter((s) => s.length > 0).map(Number);
  if (!shape.every((d) => Number.isSafeInteger(d) && d >= 0)) throw new WeightsError(`${what}: bad .npy shape (${shapeText})`);
  return { descr, fortranOrder: fortran === 'True', shape };
}

/** Reverse every axis: a Fortran-order array of `shape` is the C-order array of the reversed shape, transposed. */
function fortranToC(data: Float32Array, shape: number[]): Float32Array {
  const rank = shape.length;
  if (rank < 2) return data;
  const out = new Float32Array(data.length);
  const idx = new Array<number>(rank).fill(0);
  // Fortran strides: the first axis moves fastest.
  const fStride = new Array<number>(rank);
  let acc = 1;
  for (let d = 0; d < rank; d++) {
    fStride[d] = acc;
    acc *= shape[d];
  }
  for (let i = 0; i < out.length; i++) {
    let src = 0;
    for (let d = 0; d < rank; d++) src += idx[d] * fStride[d];
    out[i] = data[src];
    for (let d = rank - 1; d >= 0 && ++idx[d] === shape[d]; d--) idx[d] = 0;
  }
  return out;
}

/** One .npy file (format versions 1–3) → a float32 tensor in C order; its shape is checked against `meter`. */
export function readNpy(bytes: Uint8Array, what: string, meter: BudgetMeter = new BudgetMeter(ANY_MODEL_BUDGET, what)): HostTensor {
  if (bytes.length < 10 || !NPY_MAGIC.every((b, i) => bytes[i] === b)) throw new WeightsError(`${what}: not a .npy array`);
  const major = bytes[6];
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const lenSize = major === 1 ? 2 : major === 2 || major === 3 ? 4 : 0;
  if (lenSize === 0) throw new WeightsError(`${what}: .npy format version ${major} is not supported`);
  const headerLen = lenSize === 2 ? view.getUint16(8, true) : bytes.length >= 12 ? view.getUint32(8, true) : Infinity;
  const start = 8 + lenSize + headerLen;
  if (headerLen > MAX_HEADER || start > bytes.length) throw new WeightsError(`${what}: .npy header of ${headerLen} bytes runs past the end or the ${MAX_HEADER}-byte limit`);
  const header = parseHeader(new TextDecoder(major === 3 ? 'utf-8' : 'latin1').decode(bytes.subarray(8 + lenSize, start)), what);
  const dtype = DESCR[header.descr];
  if (!dtype) {
    throw new WeightsError(`${what}: .npy dtype '${header.descr}' is not supported (little-endian float: ${Object.keys(DESCR).join(', ')})`);
  }
  const n = meter.tensor(header.shape, what);
  meter.take(n, what);
  const data = toFloat32(bytes.subarray(start), dtype, n, what);
  return { shape: header.shape, data: header.fortranOrder ? fortranToC(data, header.shape) : data };
}

/** An .npz is a zip whose members are all .npy files (np.savez / np.savez_compressed). */
export function isNpz(zip: ZipArchive): boolean {
  const names = [...zip.entries.keys()];
  return names.length > 0 && names.every((n) => n.endsWith('.npy'));
}

/**
 * Every array of an .npz, named as numpy names them (the member name without ".npy"). The sizes the
 * directory declares are checked against the budget before any member is inflated: each against the largest
 * tensor, all together against the total.
 */
export function readNpz(zip: ZipArchive, source: string, budget: WeightsBudget = ANY_MODEL_BUDGET): TensorMap {
  const maxBytes = budget.maxTensorElements * MAX_ITEM_BYTES + MAX_HEADER;
  let declared = 0;
  for (const e of zip.entries.values()) declared += e.size;
  const allowed = budget.totalElements * MAX_ITEM_BYTES + zip.entries.size * MAX_HEADER;
  if (declared > allowed) {
    throw new WeightsError(`${source}: the arrays claim ${declared} bytes uncompressed, more than the ${allowed} the model could need; refused before inflating them`);
  }
  const meter = new BudgetMeter(budget, source);
  const out: TensorMap = new Map();
  for (const name of zip.entries.keys()) {
    if (!name.endsWith('.npy')) throw new WeightsError(`${source}: .npz member "${name}" is not a .npy array`);
    const key = name.slice(0, -'.npy'.length);
    out.set(key, readNpy(zip.read(name, { maxBytes }), `${source}: array "${key}"`, meter));
  }
  return out;
}

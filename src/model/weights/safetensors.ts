import { WeightsError } from '../../errors.js';
import { type TensorMap } from '../tensor.js';
import { ANY_MODEL_BUDGET, BudgetMeter, type WeightsBudget } from './budget.js';
import { toFloat32, type StorageDtype } from './dtypes.js';

/** The dtypes read (as float32); the others are still sized, so the layout of the whole file is checked. */
const DTYPES: Record<string, StorageDtype> = { F32: 'f32', F16: 'f16', BF16: 'bf16', F64: 'f64' };
/**
 * Integer and boolean tensors are buffers, never parameters (Hugging Face's Swin checkpoints carry each block's
 * relative_position_index as I64): their layout is checked like any entry's, then they are left out, as the
 * pickle reader leaves out integer storages.
 */
const BUFFER_DTYPES = new Set(['I64', 'I32', 'I16', 'I8', 'U64', 'U32', 'U16', 'U8', 'BOOL']);
/** Bytes per element of every dtype the format defines. */
const ITEM_BYTES: Record<string, number> = {
  BOOL: 1, U8: 1, I8: 1, F8_E5M2: 1, F8_E4M3: 1, I16: 2, U16: 2, F16: 2, BF16: 2, I32: 4, U32: 4, F32: 4, F64: 8, I64: 8, U64: 8,
};
/** The reference implementation's limit on the header. */
const MAX_HEADER = 100_000_000;

interface Entry { name: string; dtype: string; shape: number[]; begin: number; end: number }

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** One header entry, checked field by field: a null or odd entry names the tensor, never a TypeError. */
function entryOf(name: string, raw: unknown, source: string): Entry {
  const bad = (what: string): never => {
    throw new WeightsError(`${source}: tensor "${name}" ${what}`);
  };
  if (!isObject(raw)) return bad(`is ${JSON.stringify(raw)}, not an object with dtype, shape and data_offsets`);
  const { dtype, shape, data_offsets: offsets } = raw;
  if (typeof dtype !== 'string' || !(dtype in ITEM_BYTES)) return bad(`has dtype ${JSON.stringify(dtype)}; the format defines ${Object.keys(ITEM_BYTES).join(', ')}`);
  if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) return bad(`has shape ${JSON.stringify(shape)}, not a list of sizes`);
  if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every((o) => Number.isSafeInteger(o) && o >= 0)) {
    return bad(`has data_offsets ${JSON.stringify(offsets)}, not [begin, end]`);
  }
  const [begin, end] = offsets as [number, number];
  return { name, dtype, shape: shape as number[], begin, end };
}

/**
 * The header as the reference library (huggingface/safetensors) requires it: a JSON object of entries (and
 * an optional __metadata__ of strings) whose data_offsets, taken in order, start at 0, follow each other with
 * no gap or overlap, each span exactly shape × dtype bytes, and end exactly where the file does.
 */
function readHeader(buf: Uint8Array, source: string): { entries: Entry[]; dataStart: number } {
  if (buf.byteLength < 8) throw new WeightsError(`${source}: too short to be a safetensors file`);
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const headerLen = Number(view.getBigUint64(0, true));
  if (headerLen > MAX_HEADER || 8 + headerLen > buf.byteLength) {
    throw new WeightsError(`${source}: header length ${headerLen} does not fit a ${buf.byteLength}-byte file (limit ${MAX_HEADER})`);
  }
  let header: unknown;
  try {
    header = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(buf.subarray(8, 8 + headerLen)));
  } catch (e) {
    throw new WeightsError(`${source}: unreadable header (${(e as Error).message})`);
  }
  if (!isObject(header)) throw new WeightsError(`${source}: the header is ${JSON.stringify(header)?.slice(0, 40)}, not a JSON object of tensors`);
  const meta = header.__metadata__;
  if (meta !== undefined && !(isObject(meta) && Object.values(meta).every((v) => typeof v === 'string'))) {
    throw new WeightsError(`${source}: __metadata__ must be an object of strings`);
  }
  const entries = Object.entries(header).filter(([k]) => k !== '__metadata__').map(([k, v]) => entryOf(k, v, source));
  const dataStart = 8 + headerLen;
  let at = 0;
  for (const e of [...entries].sort((x, y) => x.begin - y.begin || x.end - y.end)) {
    if (e.begin !== at || e.end < e.begin) {
      const why = e.begin < at ? `overlaps the tensor before it (which ends at ${at})` : e.end < e.begin ? 'ends before it begins' : `leaves a gap after byte ${at}`;
      throw new WeightsError(`${source}: tensor "${e.name}" has data_offsets [${e.begin}, ${e.end}], which ${why}`);
    }
    const bytes = e.shape.reduce((n, d) => n * d, 1) * ITEM_BYTES[e.dtype];
    if (bytes !== e.end - e.begin) {
      throw new WeightsError(`${source}: tensor "${e.name}" is ${e.dtype} [${e.shape.join(', ')}] (${bytes} bytes) but data_offsets span ${e.end - e.begin}`);
    }
    at = e.end;
  }
  if (dataStart + at !== buf.byteLength) {
    throw new WeightsError(`${source}: the tensors cover ${at} bytes of data but the file has ${buf.byteLength - dataStart} after the header`);
  }
  return { entries, dataStart };
}

/**
 * Read a safetensors file (8-byte little-endian header length, JSON header, raw little-endian data) into
 * float32 tensors. The whole layout is checked first, then every shape against the budget, so a hostile
 * file can only fail, never read out of bounds or allocate more than the model could need.
 */
export function readSafetensors(buf: Uint8Array, source = 'safetensors', budget: WeightsBudget = ANY_MODEL_BUDGET): TensorMap {
  const { entries: all, dataStart } = readHeader(buf, source);
  const entries = all.filter((e) => !BUFFER_DTYPES.has(e.dtype));
  const meter = new BudgetMeter(budget, source);
  for (const e of entries) {
    if (!DTYPES[e.dtype]) {
      throw new WeightsError(`${source}: tensor "${e.name}" has dtype ${e.dtype}; supported: ${Object.keys(DTYPES).join(', ')}`);
    }
    meter.take(meter.tensor(e.shape, `${source}: tensor "${e.name}"`), `${source}: tensor "${e.name}"`);
  }
  const out: TensorMap = new Map();
  for (const e of entries) {
    const bytes = buf.subarray(dataStart + e.begin, dataStart + e.end);
    const n = e.shape.reduce((a, d) => a * d, 1);
    out.set(e.name, { shape: e.shape, data: toFloat32(bytes, DTYPES[e.dtype], n, `${source}: tensor "${e.name}"`) });
  }
  return out;
}

/** Write float32 tensors as safetensors (used for random-weight models, the bundled model and caches). */
export function writeSafetensors(tensors: TensorMap, metadata: Record<string, string> = { format: 'pt' }): Uint8Array {
  const header: Record<string, unknown> = { __metadata__: metadata };
  let offset = 0;
  const names = [...tensors.keys()];
  for (const name of names) {
    const t = tensors.get(name)!;
    const n = t.data.length * 4;
    header[name] = { dtype: 'F32', shape: t.shape, data_offsets: [offset, offset + n] };
    offset += n;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - ((8 + Buffer.byteLength(json)) % 8)) % 8);
  const headerBytes = Buffer.from(json, 'utf8');
  const out = new Uint8Array(8 + headerBytes.length + offset);
  new DataView(out.buffer).setBigUint64(0, BigInt(headerBytes.length), true);
  out.set(headerBytes, 8);
  let pos = 8 + headerBytes.length;
  for (const name of names) {
    const d = tensors.get(name)!.data;
    out.set(new Uint8Array(d.buffer, d.byteOffset, d.byteLength), pos);
    pos += d.byteLength;
  }
  return out;
}

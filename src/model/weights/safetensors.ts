import { WeightsError } from '../../errors.js';
import { sizeOf, type TensorMap } from '../tensor.js';
import { toFloat32, type StorageDtype } from './dtypes.js';

const DTYPES: Record<string, StorageDtype> = { F32: 'f32', F16: 'f16', BF16: 'bf16', F64: 'f64' };
/**
 * Integer and boolean tensors are buffers, never parameters (Hugging Face's Swin checkpoints carry each block's
 * relative_position_index as I64): they are checked like any entry, then left out, as the pickle reader does.
 */
const BUFFER_DTYPES = new Set(['I64', 'I32', 'I16', 'I8', 'U64', 'U32', 'U16', 'U8', 'BOOL']);
const MAX_HEADER = 100 * 1024 * 1024;

interface Entry { dtype: string; shape: number[]; data_offsets: [number, number] }

/**
 * Read a safetensors file (8-byte little-endian header length, JSON header, raw little-endian data) into
 * float32 tensors. Every offset is checked against the buffer, so a hostile file can only fail, never read
 * out of bounds.
 */
export function readSafetensors(buf: Uint8Array, source = 'safetensors'): TensorMap {
  if (buf.byteLength < 8) throw new WeightsError(`${source}: too short to be a safetensors file`);
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const headerLen = Number(view.getBigUint64(0, true));
  if (headerLen > MAX_HEADER || 8 + headerLen > buf.byteLength) {
    throw new WeightsError(`${source}: header length ${headerLen} does not fit a ${buf.byteLength}-byte file`);
  }
  let header: Record<string, Entry | Record<string, string>>;
  try {
    header = JSON.parse(new TextDecoder().decode(buf.subarray(8, 8 + headerLen)));
  } catch (e) {
    throw new WeightsError(`${source}: unreadable header (${(e as Error).message})`);
  }
  const dataStart = 8 + headerLen;
  const out: TensorMap = new Map();
  for (const [name, raw] of Object.entries(header)) {
    if (name === '__metadata__') continue;
    const e = raw as Entry;
    const dtype = DTYPES[e.dtype];
    if (!dtype && !BUFFER_DTYPES.has(e.dtype)) {
      throw new WeightsError(`${source}: tensor "${name}" has dtype ${e.dtype}; supported: ${Object.keys(DTYPES).join(', ')}`);
    }
    const [begin, end] = e.data_offsets ?? [];
    const shape = e.shape;
    if (!Array.isArray(shape) || !shape.every((d) => Number.isInteger(d) && d >= 0) ||
        !Number.isInteger(begin) || !Number.isInteger(end) || begin > end || dataStart + end > buf.byteLength) {
      throw new WeightsError(`${source}: tensor "${name}" has bad shape or offsets`);
    }
    if (!dtype) continue;
    const bytes = buf.subarray(dataStart + begin, dataStart + end);
    out.set(name, { shape, data: toFloat32(bytes, dtype, sizeOf(shape), `${source}: tensor "${name}"`) });
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

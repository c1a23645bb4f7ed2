import { ModelError } from '../../errors.js';
import { shapeStr, sizeOf, type TensorMap } from '../tensor.js';

/**
 * How the bytes of one weight slot are made from its canonical parameter. Linear weights are [out, in] in every
 * checkpoint; the graph multiplies x [..., in] by [in, out], so they are stored transposed and MatMul needs no
 * Transpose node. int8 weights come in two slots of the same parameter: the quantized matrix and its scales.
 */
export const SLOT_ENCODINGS = {
  /** As the checkpoint holds it. */
  float32: { bytesPerValue: 4, dataType: 'float32' },
  /** A 2-D [out, in] weight stored as [in, out]. */
  'float32-t': { bytesPerValue: 4, dataType: 'float32' },
  /**
   * A 2-D [out, in] weight quantized symmetrically per output row (zero point 0), each row's largest |w| at
   * ±qmax, stored as int8 [in, out].
   */
  'int8-t': { bytesPerValue: 1, dataType: 'int8', qmax: 127 },
  /** As int8-t with the largest |w| at ±64 (Int8Weights int7). */
  'int7-t': { bytesPerValue: 1, dataType: 'int8', qmax: 64 },
  /** The int8-t matrix plus 128, as uint8 [in, out] with zero point 128: the same numbers, for u8·u8 kernels. */
  'uint8-t': { bytesPerValue: 1, dataType: 'uint8', qmax: 127 },
  /** The float32 scale of each output row of the quantized matrix slot of the same parameter: [out]. */
  'int8-scale': { bytesPerValue: 4, dataType: 'float32' },
} as const;
export type SlotEncoding = keyof typeof SLOT_ENCODINGS;

/** Where one weight initializer lives inside the weights file, and how it is made from a canonical parameter. */
export interface WeightSlot {
  /** Initializer name in the graph. */
  name: string;
  /** Canonical parameter it comes from. */
  param: string;
  /** Shape as stored (for transposed linear weights: [in, out]). */
  shape: number[];
  encoding: SlotEncoding;
  offset: number;
  length: number;
}

/** Weight offsets are page-aligned so onnxruntime can map each initializer straight from the file. */
const WEIGHT_ALIGN = 4096;

/** Slots laid out back to back in the weights file, each at a page boundary. */
export function layOut(slots: Omit<WeightSlot, 'offset' | 'length'>[]): WeightSlot[] {
  let offset = 0;
  return slots.map((s) => {
    const length = sizeOf(s.shape) * SLOT_ENCODINGS[s.encoding].bytesPerValue;
    const slot = { ...s, offset, length };
    offset += Math.ceil(length / WEIGHT_ALIGN) * WEIGHT_ALIGN;
    return slot;
  });
}

/** Total bytes of the weights file a set of slots describes. */
export function weightFileSize(slots: WeightSlot[]): number {
  return slots.length === 0 ? 0 : slots[slots.length - 1].offset + slots[slots.length - 1].length;
}

function bytesOf(a: Float32Array | Int8Array | Uint8Array): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}

/** [rows, cols] → [cols, rows]; writing the output in order is about twice as fast here as reading in order. */
function transpose2d(src: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(src.length);
  let o = 0;
  for (let c = 0; c < cols; c++) {
    for (let i = c; i < src.length; i += cols) out[o++] = src[i];
  }
  return out;
}

/**
 * int8 values as uint8 plus 128 (flipping the sign bit of each byte). A plain loop: Uint8Array.from with a
 * mapping function took 21 s for B/16's 85 M weights here, this 0.36 s.
 */
function offsetBy128(q: Int8Array): Uint8Array {
  const u = new Uint8Array(q.length);
  for (let i = 0; i < q.length; i++) u[i] = q[i] ^ 0x80;
  return u;
}

export interface QuantizedLinear {
  /** [in, out] int8, w[o, i] ≈ q[i, o] · scales[o]. */
  q: Int8Array;
  /** [out] */
  scales: Float32Array;
}

/**
 * Symmetric per-output-channel int8 quantization of a linear weight w [out, in]: each row's scale maps its
 * largest |w| to qmax (at most 127), so no value clips and -128 is never used (the range stays symmetric about
 * zero point 0). A row of zeros gets scale 0 and quantizes to zeros.
 */
export function quantizeLinear(w: Float32Array, out: number, inDim: number, qmax = 127): QuantizedLinear {
  const q = new Int8Array(w.length);
  const scales = new Float32Array(out);
  for (let o = 0; o < out; o++) {
    const row = w.subarray(o * inDim, (o + 1) * inDim);
    let max = 0;
    for (const v of row) max = Math.max(max, Math.abs(v));
    const scale = max / qmax;
    scales[o] = scale;
    if (scale === 0) continue;
    // Written transposed: element (o, i) goes to [i, o].
    for (let i = 0; i < inDim; i++) q[i * out + o] = Math.round(row[i] / scale);
  }
  return { q, scales };
}

/** The canonical [out, in] (or as-is) shape a slot expects its parameter to have. */
function paramShape(s: WeightSlot, actual: number[]): number[] {
  if (s.encoding === 'float32') return s.shape;
  // The scales say only how many rows there are; the row length is whatever the parameter has.
  if (s.encoding === 'int8-scale') return [s.shape[0], actual.length === 2 ? actual[1] : 0];
  return [s.shape[1], s.shape[0]];
}

/**
 * The weights file, one slot at a time (so a caller can stream it to disk without ever holding a second full
 * copy): each chunk is a slot's bytes with the offset it belongs at; the gaps between slots are zero padding.
 * With release, each parameter is deleted from the map once its last slot is produced, so its memory can go.
 */
export function* weightChunks(slots: WeightSlot[], weights: TensorMap, release = false): Generator<{ offset: number; bytes: Uint8Array }> {
  const lastUse = new Map<string, number>();
  slots.forEach((s, i) => lastUse.set(s.param, i));
  // A parameter's int8 matrix and scales come from one quantization, kept until both slots are written; its
  // range is the matrix slot's.
  const quantized = new Map<string, QuantizedLinear>();
  const qmax = new Map<string, number>();
  for (const s of slots) {
    const e = SLOT_ENCODINGS[s.encoding];
    if ('qmax' in e) qmax.set(s.param, e.qmax);
  }
  for (const [i, s] of slots.entries()) {
    const t = weights.get(s.param);
    if (!t) throw new ModelError(`onnx engine: no weight "${s.param}" for initializer ${s.name}`);
    const expected = paramShape(s, t.shape);
    if (sizeOf(t.shape) !== sizeOf(expected) || (s.encoding !== 'float32' && t.shape.length !== 2)) {
      throw new ModelError(`onnx engine: weight ${s.param} has shape ${shapeStr(t.shape)}, the graph expects ${shapeStr(expected)}`);
    }
    let data: Float32Array | Int8Array | Uint8Array;
    if (s.encoding === 'float32') data = t.data;
    else if (s.encoding === 'float32-t') data = transpose2d(t.data, expected[0], expected[1]);
    else {
      let qz = quantized.get(s.param);
      if (!qz) {
        qz = quantizeLinear(t.data, expected[0], expected[1], qmax.get(s.param));
        quantized.set(s.param, qz);
      }
      data = s.encoding === 'int8-scale' ? qz.scales : s.encoding === 'uint8-t' ? offsetBy128(qz.q) : qz.q;
    }
    if (lastUse.get(s.param) === i) {
      quantized.delete(s.param);
      if (release) weights.delete(s.param);
    }
    yield { offset: s.offset, bytes: bytesOf(data) };
  }
}

import protoPkg from 'onnx-proto';
import { ModelError } from '../../errors.js';
import { archOf } from '../arch/index.js';
import type { ModelConfig } from '../config.js';
import type { Ops } from '../ops.js';
import { shapeStr, sizeOf, type TensorMap } from '../tensor.js';
import { GRAPH_FORMAT, WEIGHTS_FILE } from './onnx-format.js';

const { onnx } = protoPkg;
type INodeProto = protoPkg.onnx.INodeProto;
type ITensorProto = protoPkg.onnx.ITensorProto;
type IAttributeProto = protoPkg.onnx.IAttributeProto;
type IValueInfoProto = protoPkg.onnx.IValueInfoProto;
type IModelProto = protoPkg.onnx.IModelProto;

/** LayerNormalization became a standard op in opset 17; ReduceMean still takes its axes as an attribute there. */
export const OPSET = 17;
/** Weight offsets are page-aligned so onnxruntime can map each initializer straight from the file. */
const WEIGHT_ALIGN = 4096;

/** Where one weight initializer lives inside the weights file, and how it is made from a canonical parameter. */
export interface WeightSlot {
  /** Initializer name in the graph. */
  name: string;
  /** Canonical parameter it comes from. */
  param: string;
  /** Shape as stored (for transposed linear weights: [in, out]). */
  shape: number[];
  /** The parameter is a 2-D [out, in] linear weight stored as [in, out] so MatMul needs no Transpose node. */
  transpose: boolean;
  offset: number;
  length: number;
}

const attr = {
  int: (name: string, i: number): IAttributeProto => ({ name, type: onnx.AttributeProto.AttributeType.INT, i }),
  ints: (name: string, ints: number[]): IAttributeProto => ({ name, type: onnx.AttributeProto.AttributeType.INTS, ints }),
  float: (name: string, f: number): IAttributeProto => ({ name, type: onnx.AttributeProto.AttributeType.FLOAT, f }),
};

function bytesOf(a: Float32Array | BigInt64Array): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}

/**
 * The ops interface, symbolically: every op appends ONNX nodes to a graph being built and returns the name of
 * its output value. Parameters become initializers that point into one external weights file; small constants
 * (shapes, scalars) are stored inline. Ranks are tracked because a few ops (transposing the last two axes) need
 * them; sizes are not, since Reshape copies the batch dimension with 0.
 */
export class OnnxGraphOps implements Ops<string> {
  readonly nodes: INodeProto[] = [];
  private readonly constants = new Map<string, ITensorProto>();
  /** Parameters handed out by param(), by value name → canonical name. */
  private readonly params = new Map<string, string>();
  /** Weight initializers in order of first use. */
  private readonly slots = new Map<string, Omit<WeightSlot, 'offset' | 'length'>>();
  private readonly ranks = new Map<string, number>();
  private readonly fixedNames = new WeakMap<Float32Array | Int32Array, string>();
  private counter = 0;

  constructor(private readonly shapeOf: (param: string) => number[]) {}

  /** Declare a graph input of a given rank. */
  input(name: string, rank: number): string {
    this.ranks.set(name, rank);
    return name;
  }

  private rank(v: string): number {
    const r = this.ranks.get(v);
    if (r === undefined) throw new ModelError(`onnx graph: unknown value "${v}"`);
    return r;
  }

  private node(op: string, inputs: string[], rank: number, attributes: IAttributeProto[] = [], output?: string): string {
    const out = output ?? `${op.toLowerCase()}_${this.counter++}`;
    for (const i of inputs) this.use(i);
    this.nodes.push({ opType: op, name: `${op}_${this.nodes.length}`, input: inputs, output: [out], attribute: attributes });
    this.ranks.set(out, rank);
    return out;
  }

  /** A parameter becomes a weight initializer only once a node actually reads it. */
  private use(v: string): void {
    const param = this.params.get(v);
    if (param !== undefined && !this.slots.has(v)) this.slots.set(v, { name: v, param, shape: this.shapeOf(param), transpose: false });
  }

  private constant(key: string, make: () => { dims: number[]; dataType: number; raw: Uint8Array }): string {
    const name = `const_${key}`;
    if (!this.constants.has(name)) {
      const c = make();
      this.constants.set(name, { name, dims: c.dims, dataType: c.dataType, rawData: c.raw });
      this.ranks.set(name, c.dims.length);
    }
    return name;
  }

  private int64s(values: number[]): string {
    return this.constant(`i64_${values.join('_').replace(/-/g, 'm')}`, () => ({
      dims: [values.length], dataType: onnx.TensorProto.DataType.INT64, raw: bytesOf(BigInt64Array.from(values, BigInt)),
    }));
  }

  private scalar(value: number): string {
    return this.constant(`f32_${String(value).replace('.', 'p').replace('-', 'm').replace('+', '')}`, () => ({
      dims: [], dataType: onnx.TensorProto.DataType.FLOAT, raw: bytesOf(Float32Array.of(value)),
    }));
  }

  param(name: string): string {
    const shape = this.shapeOf(name);
    this.params.set(name, name);
    this.ranks.set(name, shape.length);
    return name;
  }

  linear(x: string, w: string, b?: string): string {
    const y = this.node('MatMul', [x, this.transposedWeight(w)], this.rank(x)); // [..., in] · [in, out] → [..., out]
    return b === undefined ? y : this.node('Add', [y, b], this.rank(x));
  }

  /** w [out, in] as [in, out]: precomputed when w is a parameter, else a Transpose node. */
  private transposedWeight(w: string): string {
    const param = this.params.get(w);
    if (param === undefined || this.rank(w) !== 2) return this.node('Transpose', [w], 2, [attr.ints('perm', [1, 0])]);
    const name = `${w}.T`;
    if (!this.slots.has(name)) {
      const [out, inDim] = this.shapeOf(param);
      this.slots.set(name, { name, param, shape: [inDim, out], transpose: true });
      this.ranks.set(name, 2);
    }
    return name;
  }

  layerNorm(x: string, gamma: string, beta: string, eps: number): string {
    return this.node('LayerNormalization', [x, gamma, beta], this.rank(x), [attr.int('axis', -1), attr.float('epsilon', eps)]);
  }

  /** x·½(1 + erf(x/√2)), in the node order onnxruntime's GELU fusion recognises. */
  gelu(x: string): string {
    const r = this.rank(x);
    const erf = this.node('Erf', [this.node('Div', [x, this.scalar(Math.SQRT2)], r)], r);
    const half = this.node('Mul', [x, this.node('Add', [erf, this.scalar(1)], r)], r);
    return this.node('Mul', [half, this.scalar(0.5)], r);
  }

  tanh(x: string): string {
    return this.node('Tanh', [x], this.rank(x));
  }

  softmax(x: string): string {
    return this.node('Softmax', [x], this.rank(x), [attr.int('axis', -1)]);
  }

  matMul(a: string, b: string, transposeB = false): string {
    let bb = b;
    if (transposeB) {
      const r = this.rank(b);
      const perm = [...Array(r - 2).keys(), r - 1, r - 2];
      bb = this.node('Transpose', [b], r, [attr.ints('perm', perm)]); // [..., n, k] → [..., k, n]
    }
    return this.node('MatMul', [a, bb], Math.max(this.rank(a), this.rank(bb)));
  }

  add(a: string, b: string): string {
    return this.node('Add', [a, b], Math.max(this.rank(a), this.rank(b)));
  }

  scale(x: string, s: number): string {
    return this.node('Mul', [x, this.scalar(s)], this.rank(x));
  }

  reshape(x: string, shape: number[]): string {
    return this.node('Reshape', [x, this.int64s(shape)], shape.length);
  }

  transpose(x: string, perm: number[]): string {
    return this.node('Transpose', [x], perm.length, [attr.ints('perm', perm)]);
  }

  slice(x: string, axis: number, start: number, end: number): string {
    return this.node('Slice', [x, this.int64s([start]), this.int64s([end]), this.int64s([axis])], this.rank(x));
  }

  mean(x: string, axis: number): string {
    return this.node('ReduceMean', [x], this.rank(x) - 1, [attr.ints('axes', [axis]), attr.int('keepdims', 0)]);
  }

  patchEmbed(images: string, w: string, b: string, patch: number): string {
    // [B, C, H, W] → [B, D, H/P, W/P]
    return this.node('Conv', [images, w, b], 4, [attr.ints('kernel_shape', [patch, patch]), attr.ints('strides', [patch, patch])]);
  }

  prependTokens(x: string, tokens: string): string {
    const batch = this.node('Shape', [x], 1, [attr.int('start', 0), attr.int('end', 1)]); // [B]
    const target = this.node('Concat', [batch, this.int64s([1, 1])], 1, [attr.int('axis', 0)]); // [B, 1, 1]
    const tiled = this.node('Expand', [tokens, target], 3); // [1, k, D] broadcast with [B, 1, 1] → [B, k, D]
    return this.node('Concat', [tiled, x], 3, [attr.int('axis', 1)]); // [B, k, D] ⊕ [B, N, D] → [B, k+N, D]
  }

  concat(xs: string[], axis: number): string {
    return this.node('Concat', xs, this.rank(xs[0]), [attr.int('axis', axis)]);
  }

  padEnd(x: string, axis: number, n: number): string {
    const r = this.rank(x);
    const pads = Array.from({ length: 2 * r }, (_, i) => (i === r + axis ? n : 0)); // every axis's start, then every end
    return this.node('Pad', [x, this.int64s(pads)], r);
  }

  gather(x: string, indices: Int32Array): string {
    const idx = this.fixed(indices, () => ({
      dims: [indices.length], dataType: onnx.TensorProto.DataType.INT64, raw: bytesOf(BigInt64Array.from(indices, BigInt)),
    }));
    return this.node('Gather', [x, idx], this.rank(x), [attr.int('axis', 0)]); // [R, ...] → [n, ...]
  }

  tensor(data: Float32Array, shape: number[]): string {
    return this.fixed(data, () => ({ dims: shape, dataType: onnx.TensorProto.DataType.FLOAT, raw: bytesOf(data) }));
  }

  /**
   * An inline constant from a host array, stored once per array: architectures hand the same array to every
   * block that needs it (a window's position index, a stage's mask), so the graph holds one copy.
   */
  private fixed(data: Float32Array | Int32Array, make: () => { dims: number[]; dataType: number; raw: Uint8Array }): string {
    let name = this.fixedNames.get(data);
    if (name === undefined) {
      name = this.constant(`fixed_${this.counter++}`, make);
      this.fixedNames.set(data, name);
    }
    return name;
  }

  /** Name a value as a graph output (Identity, so one value can back several outputs). */
  output(value: string, name: string): void {
    this.node('Identity', [value], this.rank(value), [], name);
  }

  /** The weight initializers read so far, laid out back to back (page-aligned) in the weights file. */
  weightSlots(): WeightSlot[] {
    let offset = 0;
    return [...this.slots.values()].map((s) => {
      const length = sizeOf(s.shape) * 4;
      const slot = { ...s, offset, length };
      offset += Math.ceil(length / WEIGHT_ALIGN) * WEIGHT_ALIGN;
      return slot;
    });
  }

  constantInitializers(): ITensorProto[] {
    return [...this.constants.values()];
  }
}

/** Which outputs a graph has; attention probabilities only in the graph built for them. */
export interface ModelGraph {
  model: IModelProto;
  slots: WeightSlot[];
  outputs: string[];
}

export const INPUT_NAME = 'pixels';
const BATCH_DIM = 'batch';

/** A float32 value of the graph's interface: known dimensions given, the rest left to onnxruntime. */
function valueInfo(name: string, dims: (number | string)[] | null): IValueInfoProto {
  const tensorType: protoPkg.onnx.TypeProto.ITensor = { elemType: onnx.TensorProto.DataType.FLOAT };
  if (dims) tensorType.shape = { dim: dims.map((d) => (typeof d === 'number' ? { dimValue: d } : { dimParam: d })) };
  return { name, type: { tensorType } };
}

/**
 * A model's forward as an ONNX model: input `pixels` float32 [batch, C, H, W]; outputs `logits` [batch,
 * classes] when the model has a head, one per pooled feature (named as the architecture's pools) and, with
 * attentions, attn_0 … attn_{n-1}. Weights are not in the model: every parameter initializer references a
 * slot of WEIGHTS_FILE (see weightChunks), so the model stays small whatever the checkpoint weighs.
 */
export function buildGraph(cfg: ModelConfig, shapeOf: (param: string) => number[], opts: { attentions?: boolean } = {}): ModelGraph {
  const ops = new OnnxGraphOps(shapeOf);
  const [h, w] = cfg.imgSize;
  const pixels = ops.input(INPUT_NAME, 4);
  const o = archOf(cfg).forward(ops, cfg, pixels, { attentions: opts.attentions });
  const outputs: { name: string; value: string; dims: (number | string)[] | null }[] = [];
  if (o.logits !== null) outputs.push({ name: 'logits', value: o.logits, dims: [BATCH_DIM, cfg.numClasses] });
  for (const [name, value] of Object.entries(o.features)) outputs.push({ name, value, dims: null });
  o.attentions.forEach((a, i) => outputs.push({ name: `attn_${i}`, value: a, dims: null }));
  for (const out of outputs) ops.output(out.value, out.name);

  const slots = ops.weightSlots();
  const weightInits: ITensorProto[] = slots.map((s) => ({
    name: s.name,
    dims: s.shape,
    dataType: onnx.TensorProto.DataType.FLOAT,
    dataLocation: onnx.TensorProto.DataLocation.EXTERNAL,
    externalData: [
      { key: 'location', value: WEIGHTS_FILE },
      { key: 'offset', value: String(s.offset) },
      { key: 'length', value: String(s.length) },
    ],
  }));
  const model: IModelProto = {
    irVersion: onnx.Version.IR_VERSION,
    opsetImport: [{ domain: '', version: OPSET }],
    producerName: 'vit',
    producerVersion: String(GRAPH_FORMAT),
    graph: {
      name: cfg.name,
      node: ops.nodes,
      initializer: [...weightInits, ...ops.constantInitializers()],
      input: [valueInfo(INPUT_NAME, [BATCH_DIM, cfg.inChans, h, w])],
      output: outputs.map((out) => valueInfo(out.name, out.dims)),
    },
  };
  return { model, slots, outputs: outputs.map((out) => out.name) };
}

export function encodeModel(model: IModelProto): Uint8Array {
  return onnx.ModelProto.encode(model).finish();
}

/** Total bytes of the weights file a set of slots describes. */
export function weightFileSize(slots: WeightSlot[]): number {
  return slots.length === 0 ? 0 : slots[slots.length - 1].offset + slots[slots.length - 1].length;
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
 * The weights file, one slot at a time (so a caller can stream it to disk without ever holding a second full
 * copy): each chunk is a slot's bytes with the offset it belongs at; the gaps between slots are zero padding.
 * With release, each parameter is deleted from the map once its last slot is produced, so its memory can go.
 */
export function* weightChunks(slots: WeightSlot[], weights: TensorMap, release = false): Generator<{ offset: number; bytes: Uint8Array }> {
  const lastUse = new Map<string, number>();
  slots.forEach((s, i) => lastUse.set(s.param, i));
  for (const [i, s] of slots.entries()) {
    const t = weights.get(s.param);
    if (!t) throw new ModelError(`onnx engine: no weight "${s.param}" for initializer ${s.name}`);
    const expected = s.transpose ? [s.shape[1], s.shape[0]] : s.shape;
    if (sizeOf(t.shape) !== sizeOf(expected)) {
      throw new ModelError(`onnx engine: weight ${s.param} has shape ${shapeStr(t.shape)}, the graph expects ${shapeStr(expected)}`);
    }
    const data = s.transpose ? transpose2d(t.data, expected[0], expected[1]) : t.data;
    if (release && lastUse.get(s.param) === i) weights.delete(s.param);
    yield { offset: s.offset, bytes: bytesOf(data) };
  }
}

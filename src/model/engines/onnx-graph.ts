import protoPkg from 'onnx-proto';
import { ModelError } from '../../errors.js';
import { archOf } from '../arch/index.js';
import type { ModelConfig } from '../config.js';
import type { Ops } from '../ops.js';
import type { Dtype, Int8Weights } from './engine.js';
import { GRAPH_FORMAT, WEIGHTS_FILE } from './onnx-format.js';
import { layOut, SLOT_ENCODINGS, type SlotEncoding, type WeightSlot } from './onnx-weights.js';

export { weightChunks, weightFileSize, type WeightSlot } from './onnx-weights.js';

const { onnx } = protoPkg;
type INodeProto = protoPkg.onnx.INodeProto;
type ITensorProto = protoPkg.onnx.ITensorProto;
type IAttributeProto = protoPkg.onnx.IAttributeProto;
type IValueInfoProto = protoPkg.onnx.IValueInfoProto;
type IModelProto = protoPkg.onnx.IModelProto;

/** LayerNormalization became a standard op in opset 17; ReduceMean still takes its axes as an attribute there. */
export const OPSET = 17;
const attr = {
  int: (name: string, i: number): IAttributeProto => ({ name, type: onnx.AttributeProto.AttributeType.INT, i }),
  ints: (name: string, ints: number[]): IAttributeProto => ({ name, type: onnx.AttributeProto.AttributeType.INTS, ints }),
  float: (name: string, f: number): IAttributeProto => ({ name, type: onnx.AttributeProto.AttributeType.FLOAT, f }),
};

function bytesOf(a: Float32Array | BigInt64Array): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}

/** onnxruntime's own operator domain (contrib ops). */
const MS_DOMAIN = 'com.microsoft';

const DATA_TYPES = { float32: onnx.TensorProto.DataType.FLOAT, int8: onnx.TensorProto.DataType.INT8, uint8: onnx.TensorProto.DataType.UINT8 } as const;

/** How the graph is spelled: which number format its linear layers compute in, which fused kernels it may use. */
export interface GraphOptions {
  /**
   * fp32, or int8: every linear layer with a constant weight (qkv, proj, fc1, fc2, pre_logits, head) multiplies
   * int8 weights (symmetric, per output channel) by the activations quantized at run time (uint8, per tensor),
   * in standard ops that onnxruntime fuses into one DynamicQuantizeMatMul kernel (unless portable, the qkv
   * projection with the attention after it as QAttention). Everything else stays fp32.
   */
  dtype?: Dtype;
  /** How int8 weights are quantized and stored (see Int8Weights); default int8. */
  int8Weights?: Int8Weights;
  /**
   * Spelled op by op in standard ONNX, for any ONNX runtime (`vit export`), instead of in the kernels that are
   * fastest on onnxruntime (its com.microsoft fused attention, linear layers as Gemm).
   */
  portable?: boolean;
  /** The name of the pixel input (default `pixels`; Hugging Face's is `pixel_values`). */
  inputName?: string;
  /** Only the logits as output, not the pooled features too. */
  logitsOnly?: boolean;
  /** Only the outputs that read the prefix tokens alone (ForwardOptions.prefixOnly). */
  prefixOnly?: boolean;
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
  private readonly dtype: Dtype;
  private readonly int8Weights: Int8Weights;
  /** fp32 linear layers with a bias as Gemm (see gemmLinear). */
  private readonly gemm: boolean;
  readonly selfAttention?: Ops<string>['selfAttention'];

  /**
   * fp32 graphs not asked to be portable use onnxruntime's kernels: linear layers as Gemm, and its fused
   * Attention where the probabilities are not wanted (it does not hand them out). int8 graphs spell their
   * linear layers in standard ops, which onnxruntime fuses itself, and their attention as QAttention (see
   * quantizedAttentionNode) where the probabilities are not wanted.
   * Measured model-only (batch 8, 2 threads, interleaved rounds, scripts/bench-graphs.ts, load 2–4): B/16 7%
   * faster than the standard spelling (4.71 vs 4.40 img/s; CPU time 389 vs 416 ms/img), B/32 level (17.73 vs
   * 18.04 img/s, per-round ratio to torch's export 1.000 vs 1.008). Each part alone (B/16, CPU time against
   * torch's export): standard 1.044, Gemm 1.069, Attention 1.053, both 1.091.
   */
  constructor(private readonly shapeOf: (param: string) => number[], opts: GraphOptions & { attentions?: boolean } = {}) {
    this.dtype = opts.dtype ?? 'fp32';
    this.int8Weights = opts.int8Weights ?? 'int8';
    this.gemm = this.dtype === 'fp32' && !opts.portable;
    if (!opts.portable && !opts.attentions) {
      this.selfAttention = this.dtype === 'int8'
        ? (x, w, b, numHeads) => this.quantizedAttentionNode(x, w, b, numHeads)
        : (x, w, b, numHeads) => this.attentionNode(x, w, b, numHeads);
    }
  }

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

  private node(op: string, inputs: string[], rank: number, attributes: IAttributeProto[] = [], output?: string, domain = ''): string {
    return this.multiNode(op, inputs, [rank], attributes, output ? [output] : undefined, domain)[0];
  }

  /** A node with one output per rank given; names are made up unless given. */
  private multiNode(op: string, inputs: string[], ranks: number[], attributes: IAttributeProto[] = [], outputs?: string[], domain = ''): string[] {
    const outs = outputs ?? ranks.map(() => `${op.toLowerCase()}_${this.counter++}`);
    for (const i of inputs) this.use(i);
    this.nodes.push({ opType: op, domain, name: `${op}_${this.nodes.length}`, input: inputs, output: outs, attribute: attributes });
    outs.forEach((o, i) => this.ranks.set(o, ranks[i]));
    return outs;
  }

  /** A parameter becomes a weight initializer only once a node actually reads it. */
  private use(v: string): void {
    const param = this.params.get(v);
    if (param !== undefined) this.slot(v, param, this.shapeOf(param), 'float32');
  }

  private slot(name: string, param: string, shape: number[], encoding: SlotEncoding): string {
    if (!this.slots.has(name)) {
      this.slots.set(name, { name, param, shape, encoding });
      this.ranks.set(name, shape.length);
    }
    return name;
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
    const param = this.params.get(w);
    const constant = param !== undefined && this.rank(w) === 2;
    if (constant && this.dtype === 'int8') return this.quantizedLinear(x, param, w, b);
    if (constant && this.gemm && b !== undefined) return this.gemmLinear(x, param, w, b);
    const y = this.node('MatMul', [x, this.transposedWeight(w)], this.rank(x)); // [..., in] · [in, out] → [..., out]
    return b === undefined ? y : this.node('Add', [y, b], this.rank(x));
  }

  /**
   * x · wᵀ + b with w as int8 [in, out] and one scale per output column, x quantized per tensor at run time
   * (uint8 with a zero point): the standard spelling, which onnxruntime fuses into DynamicQuantizeMatMul
   * (bias included) itself, so any ONNX runtime can run it and onnxruntime runs it as fast as the contrib op
   * (one [400, 768] · [768, 3072] layer: 6.1 ms either way, against 17–20 ms in fp32; the profiler shows the
   * same kernel for both).
   */
  private quantizedLinear(x: string, param: string, w: string, b: string | undefined): string {
    const r = this.rank(x);
    const [q, wScale] = this.int8Weight(w, param);
    const [xq, xScale, xZero] = this.quantizeInput(x);
    const acc = this.node('MatMulInteger', [xq, q, xZero, ...this.weightZero()], r); // int32 [..., in] · [in, out] → [..., out]
    const accF = this.node('Cast', [acc], r, [attr.int('to', onnx.TensorProto.DataType.FLOAT)]);
    const y = this.node('Mul', [accF, this.node('Mul', [xScale, wScale], 1)], r);
    return b === undefined ? y : this.node('Add', [y, b], r);
  }

  /** The int8 matrix [in, out] and per-output scales [out] of linear weight w (parameter `param`, [out, in]). */
  private int8Weight(w: string, param: string): [q: string, scale: string] {
    const [out, inDim] = this.shapeOf(param);
    const q = this.slot(`${w}.${this.int8Weights}`, param, [inDim, out], `${this.int8Weights}-t`);
    return [q, this.slot(`${w}.scale`, param, [out], 'int8-scale')];
  }

  /** The weights' zero point as an input of the integer products: none for int8 and int7 (0), 128 for uint8. */
  private weightZero(): string[] {
    if (this.int8Weights !== 'uint8') return [];
    return [this.constant('u8_128', () => ({ dims: [], dataType: onnx.TensorProto.DataType.UINT8, raw: Uint8Array.of(128) }))];
  }

  /** x quantized per tensor at run time: uint8 values, scale, zero point. */
  private quantizeInput(x: string): string[] {
    return this.multiNode('DynamicQuantizeLinear', [x], [this.rank(x), 0, 0]);
  }

  /**
   * x · wᵀ + b as one Gemm over the rows of x flattened to 2-D, so the bias is added inside the product. As
   * MatMul + Add on [B, T, in], onnxruntime turns the Add and the GELU after fc1 into BiasGelu (a slower kernel
   * than its Gelu), and makes a Gemm itself only when every dimension is known, which the batch is not.
   */
  private gemmLinear(x: string, param: string, w: string, b: string): string {
    const r = this.rank(x);
    const wt = this.transposedWeight(w);
    if (r === 2) return this.node('Gemm', [x, wt, b], 2);
    const [out, inDim] = this.shapeOf(param);
    const rows = this.node('Reshape', [x, this.int64s([-1, inDim])], 2); // [..., in] → [N, in]
    const y = this.node('Gemm', [rows, wt, b], 2); // [N, in] · [in, out] + b → [N, out]
    const lead = this.node('Shape', [x], 1, [attr.int('start', 0), attr.int('end', r - 1)]); // [...]
    const shape = this.node('Concat', [lead, this.int64s([out])], 1, [attr.int('axis', 0)]); // [..., out]
    return this.node('Reshape', [y, shape], r); // [N, out] → [..., out]
  }

  /** w [out, in] as [in, out]: precomputed when w is a parameter, else a Transpose node. */
  private transposedWeight(w: string): string {
    const param = this.params.get(w);
    if (param === undefined || this.rank(w) !== 2) return this.node('Transpose', [w], 2, [attr.ints('perm', [1, 0])]);
    const [out, inDim] = this.shapeOf(param);
    return this.slot(`${w}.T`, param, [inDim, out], 'float32-t');
  }

  /**
   * com.microsoft Attention: the qkv projection (w as [D, 3D], columns q | k | v), the dot products scaled by
   * 1/√(D/H) (its default), softmax and the weighted sum of v in one kernel: x [B, T, D] → [B, T, D], with none
   * of the slices and transposes that split and merge the heads op by op. The bias is optional in the schema,
   * but onnxruntime 1.30's CPU kernel crashes the process without one (SIGSEGV): a model without gets zeros.
   */
  private attentionNode(x: string, w: string, b: string | undefined, numHeads: number): string {
    const wt = this.transposedWeight(w);
    return this.node('Attention', [x, wt, this.qkvBias(w, b)], 3, [attr.int('num_heads', numHeads)], undefined, MS_DOMAIN);
  }

  /** The qkv bias for the fused kernels, which need one: b, or zeros where the model has none. */
  private qkvBias(w: string, b: string | undefined): string {
    if (b !== undefined) return b;
    const out = this.shapeOf(this.params.get(w)!)[0];
    return this.constant(`zeros_${out}`, () => ({ dims: [out], dataType: onnx.TensorProto.DataType.FLOAT, raw: bytesOf(new Float32Array(out)) }));
  }

  /**
   * com.microsoft QAttention, the int8 twin of attentionNode: x quantized at run time as in quantizedLinear,
   * the qkv projection in int8 against the same per-column weight scales, then the same fused fp32 attention;
   * logits equal to the standard spelling's bit for bit. Measured model only (batch 8, 2 threads, raw
   * onnxruntime, interleaved rounds): B/16 0.951 of the standard int8 graph's time (8 rounds; 0.937 in 5
   * more), B/32 0.981. The kernel requires a bias: a model without one gets zeros. Tried instead (AMD EPYC,
   * B/16, 10 rounds): the int8 qkv projection, Split and com.microsoft MultiHeadAttention, 559 against 530 ms
   * a batch; and in fp32, Gemm + Split + MultiHeadAttention against Attention, level (1519 against 1543 ms).
   */
  private quantizedAttentionNode(x: string, w: string, b: string | undefined, numHeads: number): string {
    const param = this.params.get(w);
    if (param === undefined) throw new ModelError('onnx graph: QAttention needs the qkv weight as a parameter');
    const [q, wScale] = this.int8Weight(w, param);
    const bias = this.qkvBias(w, b);
    if (b !== undefined) this.use(b);
    const [xq, xScale, xZero] = this.quantizeInput(x);
    // Input 5 (mask) is left out, and input 7 (the weights' zero point) for int8 weights (0).
    return this.node('QAttention', [xq, q, bias, xScale, wScale, '', xZero, ...this.weightZero()], 3, [attr.int('num_heads', numHeads)], undefined, MS_DOMAIN);
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
    return layOut([...this.slots.values()]);
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
export function buildGraph(
  cfg: ModelConfig, shapeOf: (param: string) => number[], opts: GraphOptions & { attentions?: boolean } = {},
): ModelGraph {
  const ops = new OnnxGraphOps(shapeOf, opts);
  const [h, w] = cfg.imgSize;
  const inputName = opts.inputName ?? INPUT_NAME;
  const pixels = ops.input(inputName, 4);
  const o = archOf(cfg).forward(ops, cfg, pixels, { attentions: opts.attentions, prefixOnly: opts.prefixOnly });
  const outputs: { name: string; value: string; dims: (number | string)[] | null }[] = [];
  if (o.logits !== null) outputs.push({ name: 'logits', value: o.logits, dims: [BATCH_DIM, cfg.numClasses] });
  if (!opts.logitsOnly) for (const [name, value] of Object.entries(o.features)) outputs.push({ name, value, dims: null });
  o.attentions.forEach((a, i) => outputs.push({ name: `attn_${i}`, value: a, dims: null }));
  for (const out of outputs) ops.output(out.value, out.name);

  const nodes = ops.nodes;
  const slots = ops.weightSlots();
  const weightInits: ITensorProto[] = slots.map((s) => ({
    name: s.name,
    dims: s.shape,
    dataType: DATA_TYPES[SLOT_ENCODINGS[s.encoding].dataType],
    dataLocation: onnx.TensorProto.DataLocation.EXTERNAL,
    externalData: [
      { key: 'location', value: WEIGHTS_FILE },
      { key: 'offset', value: String(s.offset) },
      { key: 'length', value: String(s.length) },
    ],
  }));
  const model: IModelProto = {
    irVersion: onnx.Version.IR_VERSION,
    opsetImport: [{ domain: '', version: OPSET }, ...(nodes.some((n) => n.domain === MS_DOMAIN) ? [{ domain: MS_DOMAIN, version: 1 }] : [])],
    producerName: 'vit',
    producerVersion: String(GRAPH_FORMAT),
    graph: {
      name: cfg.name,
      node: nodes,
      initializer: [...weightInits, ...ops.constantInitializers()],
      input: [valueInfo(inputName, [BATCH_DIM, cfg.inChans, h, w])],
      output: outputs.map((out) => valueInfo(out.name, out.dims)),
    },
  };
  return { model, slots, outputs: outputs.map((out) => out.name) };
}

export function encodeModel(model: IModelProto): Uint8Array {
  return onnx.ModelProto.encode(model).finish();
}


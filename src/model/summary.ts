/**
 * `vit summary`: parameters, MACs and shapes per layer, from running the architecture's own forward on a
 * counting Ops — values are shapes, every op works out its output shape and adds its multiply-accumulates —
 * so the figures can never disagree with what the engines run. No weights are needed.
 */
import { ModelError } from '../errors.js';
import { archOf } from './arch/index.js';
import type { ModelConfig } from './config.js';
import type { Ops } from './ops.js';
import { sizeOf } from './tensor.js';

export interface LayerSummary {
  name: string;
  /** Output shape for one image (batch dimension left out): that of the layer's last op with a parameter. */
  outputShape: number[];
  params: number;
  /** Multiply-accumulates for one image (matmuls and the patch convolution; norms and softmax are not counted). */
  macs: number;
  /** Bytes of the layer's output for one image in float32. */
  activationBytes: number;
}

export interface ModelSummary {
  model: string;
  arch: string;
  imageSize: [number, number];
  numClasses: number;
  params: number;
  macs: number;
  gmacs: number;
  weightBytes: number;
  layers: LayerSummary[];
  /** The architecture's own fields (ViT: patchSize, grid, tokens, embedDim, depth, numHeads, mlpDim). */
  [field: string]: unknown;
}

type Shape = number[];

/**
 * Ops over shapes, batch 1. MACs are charged to the layer whose parameter was read last (an attention's
 * q·kᵀ to its block), and an op that reads a parameter gives its layer's output shape.
 */
class CountingOps implements Ops<Shape> {
  private layer = '';
  private readonly paramValues = new WeakSet<Shape>();
  readonly macs = new Map<string, number>();
  readonly shapes = new Map<string, Shape>();

  constructor(private readonly shapeOf: (param: string) => Shape, private readonly layerOf: (param: string) => string) {}

  /** An op's output shape, recorded as its layer's output when one of its inputs is a parameter. */
  private out(shape: Shape, inputs: Shape[], macs = 0): Shape {
    this.macs.set(this.layer, (this.macs.get(this.layer) ?? 0) + macs);
    if (inputs.some((i) => this.paramValues.has(i))) this.shapes.set(this.layer, shape);
    return shape;
  }

  param(name: string): Shape {
    this.layer = this.layerOf(name);
    const s = [...this.shapeOf(name)];
    this.paramValues.add(s);
    return s;
  }

  linear(x: Shape, w: Shape, b?: Shape): Shape {
    const [outDim, inDim] = w;
    if (x[x.length - 1] !== inDim) throw new ModelError(`summary: linear of [${x}] by [${w}]`);
    return this.out([...x.slice(0, -1), outDim], [w, ...(b ? [b] : [])], (sizeOf(x) / inDim) * inDim * outDim);
  }

  layerNorm(x: Shape, gamma: Shape): Shape {
    return this.out([...x], [gamma]);
  }

  gelu = (x: Shape): Shape => [...x];
  tanh = (x: Shape): Shape => [...x];
  softmax = (x: Shape): Shape => [...x];
  scale = (x: Shape): Shape => [...x];

  matMul(a: Shape, b: Shape, transposeB = false): Shape {
    const [m, k] = a.slice(-2);
    const n = transposeB ? b[b.length - 2] : b[b.length - 1];
    const batch = a.length >= b.length ? a.slice(0, -2) : b.slice(0, -2);
    return this.out([...batch, m, n], [a, b], sizeOf(batch) * m * k * n);
  }

  add(a: Shape, b: Shape): Shape {
    return this.out([...(a.length >= b.length ? a : b)], [a, b]);
  }

  reshape(x: Shape, shape: number[]): Shape {
    const dims = shape.map((d, i) => (d === 0 ? x[i] : d));
    const known = dims.reduce((n, d) => (d === -1 ? n : n * d), 1);
    return dims.map((d) => (d === -1 ? sizeOf(x) / known : d));
  }

  transpose(x: Shape, perm: number[]): Shape {
    return perm.map((p) => x[p]);
  }

  slice(x: Shape, axis: number, start: number, end: number): Shape {
    return x.map((d, i) => (i === axis ? Math.min(end, d) - start : d));
  }

  mean(x: Shape, axis: number): Shape {
    return x.filter((_, i) => i !== axis);
  }

  patchEmbed(images: Shape, w: Shape, b: Shape, patch: number): Shape {
    const [B, , H, W] = images;
    const [D, C] = w;
    const shape = [B, D, Math.floor(H / patch), Math.floor(W / patch)];
    return this.out(shape, [w, b], sizeOf(shape) * C * patch * patch);
  }

  prependTokens(x: Shape, tokens: Shape): Shape {
    return this.out([x[0], tokens[1] + x[1], x[2]], [tokens]);
  }

  concat(xs: Shape[], axis: number): Shape {
    return xs[0].map((d, i) => (i === axis ? xs.reduce((n, x) => n + x[axis], 0) : d));
  }

  padEnd(x: Shape, axis: number, n: number): Shape {
    return x.map((d, i) => (i === axis ? d + n : d));
  }

  gather(x: Shape, indices: Int32Array): Shape {
    return this.out([indices.length, ...x.slice(1)], [x]);
  }

  tensor(_data: Float32Array, shape: number[]): Shape {
    return [...shape];
  }
}

/** Parameter counts, MACs and activation sizes from the config alone: no weights. */
export function summarize(cfg: ModelConfig): ModelSummary {
  const arch = archOf(cfg);
  // The parameters of the model as configured (a resampled position grid counts at its new size).
  const plain = { ...cfg, posEmbedGrid: undefined };
  const params = arch.params(plain);
  const ops = new CountingOps((name) => {
    const s = params.get(name);
    if (!s) throw new ModelError(`summary: the forward reads "${name}", which ${cfg.name} has no parameter for`);
    return s;
  }, arch.layerOf);
  arch.forward(ops, plain, [1, cfg.inChans, cfg.imgSize[0], cfg.imgSize[1]]);
  const paramsOf = new Map<string, number>();
  for (const [name, shape] of params) {
    const layer = arch.layerOf(name);
    paramsOf.set(layer, (paramsOf.get(layer) ?? 0) + sizeOf(shape));
  }
  // Ops before the first parameter (none in ViT) belong to no layer.
  const names = [...new Set([...ops.macs.keys(), ...paramsOf.keys()])].filter((n) => n !== '');
  const layers = names.map((name): LayerSummary => {
    const outputShape = (ops.shapes.get(name) ?? []).slice(1);
    return { name, outputShape, params: paramsOf.get(name) ?? 0, macs: ops.macs.get(name) ?? 0, activationBytes: 4 * sizeOf(outputShape) };
  });
  const total = layers.reduce((n, l) => n + l.params, 0);
  const macs = layers.reduce((n, l) => n + l.macs, 0);
  return {
    model: cfg.name,
    arch: cfg.arch,
    imageSize: cfg.imgSize,
    ...arch.summaryFields(plain),
    numClasses: cfg.numClasses,
    params: total,
    macs,
    gmacs: macs / 1e9,
    weightBytes: total * 4,
    layers,
  };
}

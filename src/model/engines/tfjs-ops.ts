import type * as tfc from '@tensorflow/tfjs-core';
import type { Ops } from '../ops.js';

type Tensor = tfc.Tensor;

/**
 * The ops interface on eager tf.Tensors. Used for inference and, with variables as parameters, for training
 * (tfjs autograd differentiates straight through these calls).
 */
export class TfjsOps implements Ops<Tensor> {
  /**
   * Linear weights kept pre-transposed ([in, out]) by the inference engine: the wasm backend runs only plain,
   * untransposed 2-D matMuls through XNNPACK and a transposed operand through a naive loop, 10–20× slower.
   */
  readonly transposed = new WeakMap<Tensor, Tensor>();

  /** Set for inference: each encoder block runs in its own tf.tidy (see Ops.scope). Training leaves it unset. */
  scope?: (fn: () => Tensor[]) => Tensor[];

  constructor(private readonly tf: typeof tfc, private readonly params: (name: string) => Tensor, opts: { scoped?: boolean } = {}) {
    if (opts.scoped) this.scope = (fn) => tf.tidy(fn);
  }

  param(name: string): Tensor {
    return this.params(name);
  }

  linear(x: Tensor, w: Tensor, b?: Tensor): Tensor {
    const tf = this.tf;
    const inDim = x.shape[x.rank - 1];
    const outDim = w.shape[0];
    const x2 = x.rank === 2 ? x : tf.reshape(x, [-1, inDim]); // [..., in] → [M, in]
    const wt = this.transposed.get(w);
    let y = wt ? tf.matMul(x2, wt) : tf.matMul(x2, w, false, true); // [M, in] · [out, in]ᵀ → [M, out]
    if (b) y = tf.add(y, b);
    return x.rank === 2 ? y : tf.reshape(y, [...x.shape.slice(0, -1), outDim]); // [M, out] → [..., out]
  }

  layerNorm(x: Tensor, gamma: Tensor, beta: Tensor, eps: number): Tensor {
    const tf = this.tf;
    const { mean, variance } = tf.moments(x, -1, true);
    const normed = tf.mul(tf.sub(x, mean), tf.rsqrt(tf.add(variance, eps)));
    return tf.add(tf.mul(normed, gamma), beta);
  }

  gelu(x: Tensor): Tensor {
    const tf = this.tf;
    return tf.mul(tf.mul(x, 0.5), tf.add(tf.erf(tf.mul(x, Math.SQRT1_2)), 1));
  }

  tanh(x: Tensor): Tensor {
    return this.tf.tanh(x);
  }

  softmax(x: Tensor): Tensor {
    return this.tf.softmax(x, -1);
  }

  matMul(a: Tensor, b: Tensor, transposeB = false): Tensor {
    return this.tf.matMul(a, b, false, transposeB);
  }

  add(a: Tensor, b: Tensor): Tensor {
    return this.tf.add(a, b);
  }

  scale(x: Tensor, s: number): Tensor {
    return this.tf.mul(x, s);
  }

  reshape(x: Tensor, shape: number[]): Tensor {
    return this.tf.reshape(x, shape.map((d, i) => (d === 0 ? x.shape[i] : d)));
  }

  transpose(x: Tensor, perm: number[]): Tensor {
    return this.tf.transpose(x, perm);
  }

  slice(x: Tensor, axis: number, start: number, end: number): Tensor {
    const begin = x.shape.map((_, i) => (i === axis ? start : 0));
    const size = x.shape.map((d, i) => (i === axis ? end - start : d));
    return this.tf.slice(x, begin, size);
  }

  mean(x: Tensor, axis: number): Tensor {
    return this.tf.mean(x, axis);
  }

  patchEmbed(images: Tensor, w: Tensor, b: Tensor, patch: number): Tensor {
    const tf = this.tf;
    const nhwc = tf.transpose(images, [0, 2, 3, 1]); // [B, C, H, W] → [B, H, W, C]
    const filter = tf.transpose(w, [2, 3, 1, 0]); // [D, C, P, P] → [P, P, C, D]
    const y = tf.add(tf.conv2d(nhwc as tfc.Tensor4D, filter as tfc.Tensor4D, patch, 'valid'), b); // [B, gh, gw, D]
    return tf.transpose(y, [0, 3, 1, 2]); // [B, gh, gw, D] → [B, D, gh, gw]
  }

  prependTokens(x: Tensor, tokens: Tensor): Tensor {
    const tf = this.tf;
    const batch = x.shape[0];
    return tf.concat([tf.tile(tokens, [batch, 1, 1]), x], 1); // [1, k, D] → [B, k, D]; ⊕ [B, N, D] → [B, k+N, D]
  }

  concat(xs: Tensor[], axis: number): Tensor {
    return this.tf.concat(xs, axis);
  }

  padEnd(x: Tensor, axis: number, n: number): Tensor {
    return this.tf.pad(x, x.shape.map((_, i): [number, number] => [0, i === axis ? n : 0]));
  }

  gather(x: Tensor, indices: Int32Array): Tensor {
    const tf = this.tf;
    // The index tensor lives only for this call, whether or not the caller runs inside a tidy.
    return tf.tidy(() => tf.gather(x, tf.tensor1d(indices, 'int32')));
  }

  tensor(data: Float32Array, shape: number[]): Tensor {
    return this.tf.tensor(data, shape, 'float32');
  }
}

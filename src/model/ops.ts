/**
 * The narrow set of tensor operations the architectures are written against. An engine implements them either eagerly
 * (tfjs: T is a tf.Tensor) or symbolically (ONNX: T names a value in a graph being built). Shapes follow
 * PyTorch conventions: linear weights are [out, in], images are NCHW.
 *
 * Only the batch dimension is unknown when a graph is built; `reshape` therefore takes ONNX's conventions:
 * 0 copies the input's size at that position, -1 is inferred.
 */
export interface Ops<T> {
  /** A named parameter of the model, in the canonical (timm) naming. */
  param(name: string): T;
  /** x [..., in] · wᵀ + b with w [out, in]. */
  linear(x: T, w: T, b?: T): T;
  /** Normalise over the last axis. */
  layerNorm(x: T, gamma: T, beta: T, eps: number): T;
  /** Exact GELU, x·Φ(x) with the error function (not the tanh approximation). */
  gelu(x: T): T;
  tanh(x: T): T;
  /** Softmax over the last axis. */
  softmax(x: T): T;
  /** Batched a · b, or a · bᵀ over the last two axes. */
  matMul(a: T, b: T, transposeB?: boolean): T;
  add(a: T, b: T): T;
  /** Multiply by a constant. */
  scale(x: T, s: number): T;
  reshape(x: T, shape: number[]): T;
  transpose(x: T, perm: number[]): T;
  /** [start, end) along one axis. */
  slice(x: T, axis: number, start: number, end: number): T;
  /** Mean over one axis, which is dropped. */
  mean(x: T, axis: number): T;
  /**
   * Non-overlapping patch projection: images [B, C, H, W] with a conv kernel w [D, C, P, P] and bias [D],
   * stride P; returns [B, D, H/P, W/P].
   */
  patchEmbed(images: T, w: T, b: T, patch: number): T;
  /** Prepend tokens [1, k, D] (shared across the batch) to x [B, N, D] → [B, k+N, D]. */
  prependTokens(x: T, tokens: T): T;
  /** Join along one axis; every other size must agree. */
  concat(xs: T[], axis: number): T;
  /** Zero-pad the end of one axis by n > 0 elements. */
  padEnd(x: T, axis: number, n: number): T;
  /** The rows of x [R, ...] at fixed indices, in their order → [indices.length, ...]. */
  gather(x: T, indices: Int32Array): T;
  /** A fixed float32 tensor with a fully known shape (e.g. an attention mask), the same for every batch. */
  tensor(data: Float32Array, shape: number[]): T;
  /**
   * Optional: multi-head self-attention in one step, for an engine with a fused kernel: x [B, T, D] through the
   * joint projection (w [3D, D], rows q | k | v; b [3D]) and softmax(q·kᵀ/√(D/H))·v to the heads' merged context
   * [B, T, D], before the output projection. Used only where the probabilities are not wanted.
   */
  selfAttention?(x: T, w: T, b: T | undefined, numHeads: number): T;
  /**
   * Optional: run one encoder block as a unit. An eager engine frees the block's intermediates when it ends,
   * keeping only the values returned, so memory holds one block's activations rather than the whole network's.
   */
  scope?(fn: () => T[]): T[];
}

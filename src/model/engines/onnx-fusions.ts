import protoPkg from 'onnx-proto';

type INodeProto = protoPkg.onnx.INodeProto;

/** onnxruntime's own operator domain (contrib ops). */
export const MS_DOMAIN = 'com.microsoft';

/** What a rewrite may ask about the values of the graph being built. */
export interface GraphFacts {
  rank(value: string): number;
  /** Not computed from the input (a parameter or a constant). */
  isConstant(value: string): boolean;
}

/**
 * Residual add + LayerNorm → com.microsoft SkipLayerNormalization, which also yields the sum (its fourth output)
 * for the next residual, and absorbs the bias of the linear layer feeding the add. Every pre-norm block has two:
 *
 *   s = x + (y + bias); h = LayerNorm(s)   →   h, s = SkipLayerNormalization(x, y, gamma, beta, bias)
 *
 * onnxruntime's optimizer fuses the same pattern only where the sum has no other reader (the final norm), and
 * leaves the bias Add. The fused node goes where the residual Add was, which keeps the list in topological order:
 * its inputs are the Add's inputs and parameters.
 *
 * B/32 (batch 8, 2 threads): in the interleaved measurement of the whole fp32 graph noted in onnx-graph.ts.
 */
export function fuseSkipLayerNorms(nodes: INodeProto[], facts: GraphFacts): INodeProto[] {
  const producer = new Map<string, INodeProto>();
  const readers = new Map<string, number>();
  for (const n of nodes) {
    for (const o of n.output ?? []) producer.set(o, n);
    for (const i of n.input ?? []) readers.set(i, (readers.get(i) ?? 0) + 1);
  }
  const removed = new Set<INodeProto>();
  const replaced = new Map<INodeProto, INodeProto>();
  for (const ln of nodes) {
    if (ln.opType !== 'LayerNormalization' || ln.domain) continue;
    const sum = ln.input![0];
    const add = producer.get(sum);
    if (!add || add.opType !== 'Add' || add.domain || removed.has(add) || replaced.has(add) || facts.rank(sum) !== 3) continue;
    // The full-size operand is the input; a parameter (the position embedding [1, T, D]) can only be the skip.
    let [input, skip] = add.input!;
    if (facts.isConstant(input)) [input, skip] = [skip, input];
    if (facts.isConstant(input) || facts.rank(input) !== 3) continue;
    let bias = facts.isConstant(skip) ? null : foldableBias(skip, producer, readers, facts);
    if (!bias && !facts.isConstant(skip)) {
      // The bias may sit on either branch: x + (y + b) or (y + b) + x.
      bias = foldableBias(input, producer, readers, facts);
      if (bias) [input, skip] = [skip, input];
    }
    const epsilon = ln.attribute!.find((a) => a.name === 'epsilon');
    const keepSum = (readers.get(sum) ?? 0) > 1;
    const fused: INodeProto = {
      opType: 'SkipLayerNormalization',
      domain: MS_DOMAIN,
      name: `SkipLayerNorm_${ln.name}`,
      input: [input, bias ? bias.value : skip, ln.input![1], ln.input![2], ...(bias ? [bias.bias] : [])],
      output: [ln.output![0], '', '', keepSum ? sum : ''],
      attribute: epsilon ? [epsilon] : [],
    };
    if (bias) removed.add(bias.add);
    removed.add(ln);
    replaced.set(add, fused);
  }
  return nodes.filter((n) => !removed.has(n)).map((n) => replaced.get(n) ?? n);
}

/** v = y + bias with bias a 1-D parameter and v read only by the residual add: y and bias, for folding. */
function foldableBias(
  v: string, producer: Map<string, INodeProto>, readers: Map<string, number>, facts: GraphFacts,
): { add: INodeProto; value: string; bias: string } | null {
  const add = producer.get(v);
  if (!add || add.opType !== 'Add' || add.domain || readers.get(v) !== 1) return null;
  const [a, b] = add.input!;
  if (facts.isConstant(b) && facts.rank(b) === 1 && !facts.isConstant(a)) return { add, value: a, bias: b };
  if (facts.isConstant(a) && facts.rank(a) === 1 && !facts.isConstant(b)) return { add, value: b, bias: a };
  return null;
}

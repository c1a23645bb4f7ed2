import protoPkg from 'onnx-proto';
import { ModelError } from '../../errors.js';
import type { ModelConfig } from '../config.js';
import type { TensorMap } from '../tensor.js';
import type { Dtype, Int8Weights, StoreFile } from './engine.js';
import { buildGraph, encodeModel } from './onnx-graph.js';
import { weightChunks, weightFileSize } from './onnx-weights.js';

const { onnx } = protoPkg;

/**
 * A protobuf message cannot exceed 2 GiB, so weights are inlined only well below that (the nodes and shapes
 * need room too); bigger models keep them in one external data file.
 */
export const INLINE_LIMIT = 2 ** 31 - 2 ** 26;

/** The file names transformers.js looks for in a model's `onnx/` folder, per dtype (its `q8` is our int8). */
export const EXPORT_FILES: Record<Dtype, string> = { fp32: 'model.onnx', int8: 'model_quantized.onnx' };

/**
 * A model as an ONNX file other runtimes load (onnxruntime anywhere, transformers.js): the portable graph
 * (standard ops only), input `pixel_values` [batch, C, H, W], output `logits` [batch, classes]; built with
 * ForwardOptions.prefixOnly, since the logits are all it gives. Its weights are
 * inline when they fit in the message, else in `<file>_data` beside it (transformers.js's name for a model's
 * external data). int8 weights are int8 (zero point 0), 8-bit by default; `int8Weights` 'int7' holds them in 7
 * bits (`vit export --reduce-range`, for x86 CPUs without VNNI) and 'uint8' writes the 8-bit numbers plus 128
 * (for tests on CPUs whose u8·s8 products saturate). The file never depends on the machine that writes it.
 * Returns the files, named
 * relative to the folder they go in.
 */
export function exportOnnx(cfg: ModelConfig, weights: TensorMap, dtype: Dtype, inlineLimit = INLINE_LIMIT, int8Weights: Int8Weights = 'int8'): StoreFile[] {
  if (cfg.numClasses === 0) throw new ModelError(`${cfg.name} has no classifier head; vit export writes image classifiers (logits)`);
  const g = buildGraph(cfg, (p) => {
    const t = weights.get(p);
    if (!t) throw new ModelError(`vit export: the weights have no "${p}" for model ${cfg.name}`);
    return t.shape;
  }, { dtype, int8Weights, portable: true, inputName: 'pixel_values', logitsOnly: true, prefixOnly: true });
  const file = EXPORT_FILES[dtype];
  const size = weightFileSize(g.slots);
  const inits = new Map(g.model.graph!.initializer!.map((t) => [t.name!, t]));
  if (size >= inlineLimit) {
    const dataFile = `${file}_data`;
    for (const s of g.slots) inits.get(s.name)!.externalData!.find((e) => e.key === 'location')!.value = dataFile;
    return [
      { name: file, bytes: encodeModel(g.model) },
      { name: dataFile, size, chunks: weightChunks(g.slots, weights) },
    ];
  }
  let i = 0;
  for (const chunk of weightChunks(g.slots, weights)) {
    const t = inits.get(g.slots[i++].name)!;
    t.rawData = chunk.bytes;
    t.dataLocation = onnx.TensorProto.DataLocation.DEFAULT;
    t.externalData = [];
  }
  return [{ name: file, bytes: encodeModel(g.model) }];
}

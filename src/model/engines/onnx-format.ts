/**
 * The names and version a built ONNX graph and its cache entry share, and a constant of the worker protocol.
 * They live apart from onnx-graph.ts so that running a cached graph does not load the graph builder and its
 * protobuf encoder (onnx-proto, protobufjs), which only building needs; and apart from onnx-worker.ts, whose
 * module only runs in the worker.
 */

/** The one file name every weight initializer points into, on disk beside the graph or handed over in memory. */
export const WEIGHTS_FILE = 'weights.bin';
/**
 * Bumped whenever the emitted graph changes, so cached graphs from an older build are never reused.
 * 3: int8 graphs (int8 weight slots with per-channel scales); fp32 graphs with the fused Attention kernel and
 * linear layers as Gemm. 4: int8 graphs with the fused QAttention kernel. 5: the prefix-only graph
 * (model-prefix.onnx) beside the plain one; fc_norm on the class token of token-pooled models that have one.
 */
export const GRAPH_FORMAT = 5;

/** The id of the worker's first message, saying whether onnxruntime-node loaded; requests count from 1. */
export const LOADED_ID = 0;

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
 * 2: int8 graphs (int8 weight slots), fused fp32 kernels (Attention, SkipLayerNormalization).
 */
export const GRAPH_FORMAT = 2;
/** The number formats a graph computes its linear layers in (`--dtype`). */
export const GRAPH_DTYPES = ['fp32', 'int8'] as const;
export type GraphDtype = (typeof GRAPH_DTYPES)[number];
/** Outputs of every graph; the attention graph adds attn_0 … attn_{depth-1}. */
export const BASE_OUTPUTS = ['logits', 'cls', 'avg', 'preLogits'] as const;

/** The id of the worker's first message, saying whether onnxruntime-node loaded; requests count from 1. */
export const LOADED_ID = 0;

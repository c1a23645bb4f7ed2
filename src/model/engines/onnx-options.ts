import type * as Ort from 'onnxruntime-node';

/** How every session is made: the engine's worker and the graph bench (scripts/bench-graphs.ts) alike. */
export function sessionOptions(threads: number, providers: string[]): Ort.InferenceSession.SessionOptions {
  return {
    executionProviders: providers,
    intraOpNumThreads: threads,
    interOpNumThreads: 1,
    executionMode: 'sequential',
    graphOptimizationLevel: 'all',
    // Warnings (e.g. about unused initializers) must not reach stderr between data rows; errors still throw.
    logSeverityLevel: 3,
    // Idle intra-op threads sleep instead of spinning: the cores they would burn are the ones decoding and
    // resizing the next batch. (Measured on B/32, 2 cores: no loss in model-only throughput, 40.3 → 42.6 img/s.)
    extra: { session: { intra_op: { allow_spinning: '0' } } },
  };
}

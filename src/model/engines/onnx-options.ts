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
    // resizing the next batch. B/32, 500 photos, 2 cores, two runs of 5 interleaved rounds: end to end level
    // (medians 27.7 s sleeping, 27.8 s spinning; 28.2 and 28.0 s), with 3–5% less CPU time (51.3 against
    // 54.1 s; 52.5 against 53.3 s). Spinning would make run() alone 13% faster (model only 23.9 against
    // 27.0 s, faster in all 10 rounds), which a caller running batches back to back on idle cores would gain.
    // At int8 spinning pays end to end as well: B/16 int8, 200 photos, 4 interleaved rounds, 17.9 against
    // 19.5 s (faster in every round), CPU 34.1 against 35.5 s; model only 16.4 against 19.2 s. Not yet acted
    // on: the choice would follow the dtype, and the bench tables in the README were measured sleeping.
    extra: { session: { intra_op: { allow_spinning: '0' } } },
  };
}

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
    // Idle intra-op threads spin, as onnxruntime has them by default. Letting them sleep instead (so that the
    // decoding threads get those cores) measured no gain: B/32 fp32, 500 photos, 2 cores, two runs of 5
    // interleaved rounds, end to end 27.8 s spinning against 27.7 s sleeping (28.0 against 28.2 s); B/16
    // int8, 200 photos, 4 rounds, 17.9 against 19.5 s, faster in every round; run() alone 13% faster
    // spinning (B/32: 23.9 against 27.0 s, faster in all 10 rounds).
  };
}

/**
 * The library API: the same pipeline as the CLI, as async generators of rows. Rows are exactly what
 * `-f jsonl` writes, one object per line (JSON.parse of that line): `{path, predictions: [{index, label,
 * score, logit}, …]}` or `{path, embedding: [...]}`, and `{path, error}` for an input that could not be read.
 */
import { UsageError, wrongType } from '../errors.js';
import type { ModelSpec } from '../io/model-source.js';
import { PreprocessPool } from '../io/preprocess-pool.js';
import { isErrorRow, toJson, type ErrorRow, type RowWriter } from '../io/sinks/rows.js';
import { batchSizeProblem } from '../model/limits.js';
import { BatchQueue } from './batches.js';
import { prepareModel, type OpenOptions } from './open-model.js';
import { classifyRows, embedRows } from './rows.js';
import { processBatches, type RowKind } from './run.js';

export interface RunOptions extends ModelSpec, Omit<OpenOptions, 'graphCache'> {
  /** Images per forward pass (default 8). */
  batchSize?: number;
}

export interface ClassifyOptions extends RunOptions {
  /** Predictions per image (default 5). */
  topK?: number;
  /** A labels file (one name per line, or JSON). */
  labels?: string;
}

export interface EmbedOptions extends RunOptions {
  /** cls, avg or pre-logits (default: the architecture's first, cls for ViT). */
  pool?: string;
  normalize?: boolean;
}

export type ErrorRecord = { path: string; error: string };
export type ClassifyRecord = { path: string; predictions: { index: number; label: string; score: number; logit: number }[] } | ErrorRecord;
export type EmbedRecord = { path: string; embedding: number[] } | ErrorRecord;

/** Paths from an array or any (async) iterable, `n` at a time. */
async function* chunks(inputs: Iterable<string> | AsyncIterable<string>, n: number): AsyncGenerator<string[]> {
  let chunk: string[] = [];
  for await (const p of inputs as AsyncIterable<unknown>) {
    // A number would be read as a file descriptor (0 is standard input).
    if (typeof p !== 'string') throw wrongType('each input', 'a path (a string)', p);
    chunk.push(p);
    if (chunk.length === n) {
      yield chunk;
      chunk = [];
    }
  }
  if (chunk.length > 0) yield chunk;
}

function isIterable(v: unknown): v is Iterable<unknown> | AsyncIterable<unknown> {
  return typeof v === 'object' && v !== null && (Symbol.iterator in v || Symbol.asyncIterator in v);
}

/** A writer that keeps the rows it is given, for the generator to hand out. */
function collect<R extends { path: string }>(rows: (R | ErrorRow)[]): RowWriter<R> {
  return { closedByReader: false, write: async (r) => void rows.push(r), close: async () => {}, abort: async () => {} };
}

/** What classify and embed take: one path, or paths from an array or any (async) iterable. */
export type Inputs = string | Iterable<string> | AsyncIterable<string>;

async function* records<R extends { path: string }>(inputs: Inputs, kind: RowKind<R>, o: RunOptions): AsyncGenerator<object> {
  const batchSize = o.batchSize ?? 8;
  const badBatch = batchSizeProblem(batchSize);
  if (badBatch !== null) throw new UsageError(badBatch);
  // A string is iterable too, by character: one path is one input.
  const paths = typeof inputs === 'string' ? [inputs] : inputs;
  if (!isIterable(paths)) throw new UsageError('the inputs must be a path, or an array or (async) iterable of paths');
  const model = await prepareModel(o, o);
  const runOptions = kind.runOptions(model.config);
  const engine = await model.start(runOptions);
  const pool = new PreprocessPool(model.config, model.settings.threads, batchSize);
  try {
    const makeRow = kind.prepare(engine.config);
    // Several batches a chunk, so that decoding overlaps inference within it as in a CLI run.
    for await (const chunk of chunks(paths, batchSize * 4)) {
      const rows: (R | ErrorRow)[] = [];
      await processBatches({ queue: new BatchQueue(chunk, batchSize, model.config, pool, model.settings.threads), engine, writer: collect(rows), runOptions, makeRow, stopped: () => false });
      for (const r of rows) yield JSON.parse(toJson(isErrorRow(r) ? { path: r.path, error: r.error } : kind.schema.json(r)));
    }
  } finally {
    await pool.close();
    await engine.dispose();
  }
}

/** Top-k predictions per image, in input order, as they are ready. */
export function classify(inputs: Inputs, opts: ClassifyOptions = {}): AsyncGenerator<ClassifyRecord> {
  return records(inputs, classifyRows({ topK: opts.topK ?? 5, labels: opts.labels }), opts) as AsyncGenerator<ClassifyRecord>;
}

/** One feature vector per image, in input order, as they are ready. */
export function embed(inputs: Inputs, opts: EmbedOptions = {}): AsyncGenerator<EmbedRecord> {
  return records(inputs, embedRows({ pool: opts.pool, normalize: opts.normalize ?? false }), opts) as AsyncGenerator<EmbedRecord>;
}

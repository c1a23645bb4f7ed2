/**
 * A run, top to bottom: inputs → decode pool → batches → engine → rows → sink.
 *
 *  1. The model is resolved and identified (no weights read yet): a bad model name fails here.
 *  2. The inputs are collected, each path once, cut to this process's shard (a tar archive is one input
 *     then), and the archives left are listed: their image members become inputs (src/io/tar-inputs.ts).
 *  3. The output is opened (a --resume file read back, its done inputs skipped): an unusable output fails
 *     here, before any image is read.
 *  4. The engine starts; images are decoded meanwhile, on the cores its start-up leaves free (with more than
 *     one thread: BatchQueue).
 *  5. Batch by batch: run, turn each input into a row (or an error row), write, checkpoint.
 *  6. The output is closed; the exit status says how the run went.
 *
 * Exit status: 0 when every input gave a row, 3 when the run finished but some inputs failed (error rows;
 * with --resume, error rows already in the file count too), 0 when the reader closed the pipe early,
 * 130 / 143 when stopped by SIGINT / SIGTERM (after the rows so far are written and the output closed);
 * 1 and 2 come from errors.
 */
import { UsageError } from '../errors.js';
import { ExitStatus } from '../exit.js';
import { collectInputs, inShard, resolveShard, uniquePaths, type Shard } from '../io/inputs.js';
import { PreprocessPool } from '../io/preprocess-pool.js';
import { expandTars, InputLoader, type RunInputs } from '../io/tar-inputs.js';
import { displayPath } from '../io/fs-names.js';
import { createBar, escapeControls } from '../io/progress.js';
import { checkOutputFormat, openOutput, rowKey } from '../io/sinks/index.js';
import type { Provenance } from '../io/sinks/manifest.js';
import { formatsFor, type ErrorRow, type Format, type RowSchema, type RowWriter } from '../io/sinks/rows.js';
import type { ModelConfig } from '../model/config.js';
import { batchSizeProblem } from '../model/limits.js';
import { INT8_WEIGHTS_WORDS, type Engine, type RunOptions, type RunResult } from '../model/engines/engine.js';
import { BatchQueue } from './batches.js';
import type { Context } from './context.js';
import { modelSpec, prepareModel, runThreads, type ModelArgs } from './open-model.js';
import { catchStopSignals, STOP_SIGNALS } from './signals.js';

/** What a run is asked to do: the command line's options (declared in src/commands/options.ts). */
export interface RunArgs extends ModelArgs {
  inputs?: string[];
  batchSize: number;
  output?: string;
  format: string;
  null: boolean;
  engine: string;
  dtype: string;
  device: string;
  threads?: number;
  reduceRange: boolean;
  resume: boolean;
  shard?: string;
  shardCount?: number;
}

/** What a command makes of each input: its row schema, and how a row comes out of the engine's result. */
export interface RowKind<R extends { path: string }> {
  /** The command, as provenance records it. */
  command: string;
  schema: RowSchema<R>;
  /** The options that shape this command's rows, for provenance (the model's own config is in its id). */
  options(config: ModelConfig): Record<string, unknown>;
  /** What each run reads (attentions, which features), from the config as resolved. */
  runOptions(config: ModelConfig): RunOptions;
  /**
   * Once the engine is up (its config fitted to the checkpoint): check that the model suits the command, and
   * return the function that makes the row of image `row` of a batch's result.
   */
  prepare(config: ModelConfig): (result: RunResult, row: number, path: string) => R | Promise<R>;
  /** Where rows go instead of a file/stdout writer of `schema` (e.g. a summary over all images). */
  writer?(): RowWriter<R>;
  /** Before any work, with the run's inputs and its output files: refuse what would harm them (heatmaps). */
  plan?(inputs: readonly string[], outputs: readonly string[]): void;
  /** The option that reads each image again from its file (--heatmap), if any: tar members cannot be then. */
  rereads?: string;
}

function checkArgs(a: RunArgs, kind: RowKind<{ path: string }>, stdout: NodeJS.WritableStream): void {
  const badBatch = batchSizeProblem(a.batchSize);
  if (badBatch !== null) throw new UsageError(badBatch);
  runThreads(a.threads); // checked here, before any input is read
  if (a.resume && a.output === undefined) throw new UsageError('--resume continues an output file: give it with -o FILE');
  if (a.resume && kind.writer !== undefined) throw new UsageError('--resume continues a file of rows; this output is a summary over all inputs');
  if (!(formatsFor(kind.schema) as string[]).includes(a.format)) {
    throw new UsageError(`format "${a.format}" is not available for ${kind.schema.kind}; choose one of: ${formatsFor(kind.schema).join(', ')}`);
  }
  if (kind.writer === undefined) checkOutputFormat(a.format as Format, a.output, '-o', stdout);
}

/**
 * The inputs of this run: collected, each path once (a file given twice, or a file and its directory, is
 * processed once: rows are keyed by path for --resume and `vit merge`), cut to this process's shard — whole
 * tar archives at a time, so that a shard lists and reads only its own — then with each archive replaced by
 * its image members.
 */
async function runInputs(a: RunArgs, ctx: Context, shard: Shard | null): Promise<RunInputs> {
  // A shard keeps its own paths as they are collected (a repeated path is in the same shard as its first).
  let listed = 0;
  const mineOnly = shard === null ? undefined : inShard(shard);
  const keep = mineOnly === undefined ? undefined : (p: string) => {
    listed++;
    return mineOnly(p);
  };
  const { paths: mine, repeated } = uniquePaths(await collectInputs(a.inputs ?? [], { stdin: process.stdin, stdinIsTTY: process.stdin.isTTY === true, nul: a.null, keep }));
  if (repeated > 0) ctx.note(`${repeated} repeated input path${repeated === 1 ? '' : 's'} left out: each path is processed once`);
  if (shard !== null) ctx.verbose(`shard ${shard.index}/${shard.count} (from ${shard.from}): ${mine.length} of ${listed} inputs listed`);
  const inputs = await expandTars(mine);
  if (inputs.tars.size > 0) ctx.verbose(`${inputs.tars.size} tar archive${inputs.tars.size === 1 ? '' : 's'} listed: ${inputs.paths.length} inputs in all`);
  return inputs;
}

/** Release an engine that may still be starting, however its start ends. */
async function release(engine: Promise<Engine>): Promise<void> {
  await engine.then((e) => e.dispose(), () => undefined);
}

export async function runPipeline<R extends { path: string }>(a: RunArgs, ctx: Context, kind: RowKind<R>): Promise<void> {
  checkArgs(a, kind as unknown as RowKind<{ path: string }>, ctx.stdout);
  // 1. The model, resolved and identified.
  const model = await prepareModel(modelSpec(a), {
    engine: a.engine as 'auto', dtype: a.dtype as 'fp32', device: a.device as 'cpu', threads: a.threads, reduceRange: a.reduceRange, verbose: ctx.verbose,
  });
  const { threads } = model.settings;

  // 2. The inputs.
  const shard = resolveShard({ shard: a.shard, shardCount: a.shardCount });
  const inputs = await runInputs(a, ctx, shard);
  let paths = inputs.paths;
  const total = paths.length;
  if (kind.rereads !== undefined && inputs.tars.size > 0) {
    throw new UsageError(`${kind.rereads} reads each image again from its file; tar members are not files (extract the archives first)`);
  }

  // 3. The output, and what a resumed one already holds.
  const config = model.config;
  const provenance: Provenance = {
    command: kind.command,
    format: a.format as Format,
    model: { name: config.name, id: model.modelId },
    options: {
      ...kind.options(config),
      imageSize: config.imgSize,
      dtype: model.settings.dtype,
      // int8 weights in 7 bits (on a CPU without VNNI, or with --reduce-range; settings hold int7 for int8 runs
      // only) quantize the model otherwise than 8-bit ones: their rows must not be mixed by --resume or merge.
      // The same words whichever made it: 7-bit rows of any CPU mix. Absent for 8-bit and fp32, so those
      // manifests read as before.
      ...(model.settings.int8Weights === 'int7' ? { int8Weights: INT8_WEIGHTS_WORDS.int7 } : {}),
    },
    shard: shard === null ? null : { index: shard.index, count: shard.count },
  };
  kind.plan?.(paths, a.output === undefined || a.output === '-' ? [] : [a.output]);
  let writer: RowWriter<R>;
  let storedFailures = 0;
  if (kind.writer) writer = kind.writer();
  else {
    // The archives are inputs too: the output may not be one of them either.
    const all = inputs.tars.size === 0 ? paths : [...inputs.tars, ...paths];
    const out = await openOutput(kind.schema, { output: a.output, format: a.format as Format, stdout: ctx.stdout, inputs: all, provenance, resume: a.resume });
    writer = out.writer;
    if (out.prior) {
      const key = rowKey(a.format as Format);
      const done = new Map(out.prior.rows.map((r) => [key(r.path), r.error]));
      storedFailures = paths.filter((p) => done.get(key(p)) === true).length;
      paths = paths.filter((p) => !done.has(key(p)));
      ctx.note(`resuming ${a.output}: ${total - paths.length} of ${total} inputs already done`);
    }
  }

  // 4. The engine, starting while the first batch decodes (with more than one thread).
  const pool = new PreprocessPool(config, threads, Math.min(a.batchSize, paths.length));
  const loader = new InputLoader(pool, inputs, paths);
  const queue = new BatchQueue(paths, a.batchSize, config, loader, threads);
  const runOptions = kind.runOptions(config);
  const starting = model.start(runOptions);
  starting.catch(() => undefined);
  queue.fill(1);
  const progress = createBar(paths.length, { stderr: ctx.stderr, stdout: ctx.stdout, quiet: ctx.quiet, unit: 'images', write: ctx.note });
  const signals = catchStopSignals(progress.note);
  const t0 = performance.now();
  let stats: LoopStats = { done: 0, failed: 0 };
  try {
    const engine = await starting;
    // 5. Batch by batch.
    stats = await processBatches({
      queue, engine, writer, runOptions, makeRow: kind.prepare(engine.config),
      stopped: () => signals.caught() !== null,
      onInput: (path, error) => {
        progress.tick(1);
        if (error !== null) progress.note(`${escapeControls(displayPath(path))}: ${error}`);
      },
    });
    // 6. The output closed; its manifest says whether every input was done (a stopped shard must not be merged).
    if (stats.done + stats.failed < paths.length) provenance.unfinished = true;
    await writer.close();
  } catch (e) {
    await writer.abort();
    throw e;
  } finally {
    signals.release();
    progress.stop();
    loader.close();
    await pool.close();
    await release(starting);
  }
  const { done, failed } = stats;
  const secs = (performance.now() - t0) / 1000;
  ctx.verbose(`${done + failed} images in ${secs.toFixed(2)} s (${((done + failed) / secs).toFixed(1)} images/s)`);
  if (writer.closedByReader) return;
  const stopped = signals.caught();
  if (stopped !== null) {
    const left = paths.length - done - failed;
    ctx.note(`stopped by ${stopped}: ${left} of ${paths.length} inputs not done${a.output ? `; continue with --resume -o ${a.output}` : ''}`);
    throw new ExitStatus(STOP_SIGNALS[stopped]);
  }
  const failures = failed + storedFailures;
  if (failures > 0) {
    ctx.note(`${failures} of ${total} inputs failed`);
    throw new ExitStatus(3);
  }
}

export interface LoopStats {
  done: number;
  failed: number;
}

export interface LoopOptions<R extends { path: string }> {
  queue: BatchQueue;
  engine: Engine;
  writer: RowWriter<R>;
  runOptions?: RunOptions;
  makeRow: (result: RunResult, row: number, path: string) => R | Promise<R>;
  /** Checked after each batch: once true, the loop ends (the batch in flight was finished). */
  stopped(): boolean;
  /** Each input as its row is written, with the reason it failed or null. */
  onInput?(path: string, error: string | null): void;
}

/**
 * The batches through the engine, in order: each input becomes its row or an error row, written in input
 * order, with a checkpoint after every batch. Ends after the last batch, when the reader goes away, or when
 * a stop is asked for.
 */
export async function processBatches<R extends { path: string }>(o: LoopOptions<R>): Promise<LoopStats> {
  const { queue, engine, writer } = o;
  const stats = { done: 0, failed: 0 };
  for (let batch = await queue.next(); batch !== null; batch = await queue.next()) {
    // The next batch decodes while the engine runs this one, with more than one thread (BatchQueue). (Measured
    // against decoding it between runs, and against choosing between the two from timings: B/32, 500 photos,
    // 5 interleaved rounds, end to end medians 28.1 s overlapped, 29.8 s between runs, 30.7 s choosing; model
    // only 26.0 s. The rounds spread by more than those gaps, so the simplest rule stays.)
    if (!o.stopped()) queue.fill(1);
    const result = batch.count > 0 ? await engine.run(batch.pixels, batch.count, o.runOptions) : null;
    for (let i = 0; i < batch.paths.length && !writer.closedByReader; i++) {
      const slot = batch.slots[i];
      const path = batch.paths[i];
      o.onInput?.(path, 'error' in slot ? slot.error : null);
      if ('error' in slot) {
        await writer.write({ path, error: slot.error } satisfies ErrorRow);
        stats.failed++;
      } else {
        await writer.write(await o.makeRow(result!, slot.row, path));
        stats.done++;
      }
    }
    queue.recycle(batch);
    await writer.checkpoint?.();
    if (writer.closedByReader || o.stopped()) break;
  }
  return stats;
}

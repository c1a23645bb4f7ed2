import { constants as osConstants } from 'node:os';
import type { Argv } from 'yargs';
import { UsageError } from '../errors.js';
import { ExitStatus } from '../exit.js';
import { collectInputs, resolveShard, selectShard, uniquePaths } from '../io/inputs.js';
import type { LoadedModel, ModelSpec } from '../io/model-source.js';
import { createProgress } from '../io/progress.js';
import { readStoredOutput, type StoredOutput } from '../io/stored.js';
import { createSchemaWriter, formatsFor, removeTempFiles, type Format, type RowSchema, type RowWriter } from '../io/writers.js';
import { ENGINE_NAMES, type EngineChoice } from '../model/engines/index.js';
import { startCachedModel, startModel, type StartedModel } from './open-model.js';
import type { RunOptions } from '../model/engines/engine.js';
import { runBatches, type Outcome } from './batches.js';
import { modelOptions, parseImageSize, type Context } from './common.js';

/** Options of every command that runs a model over inputs. */
export function batchOptions<T>(y: Argv<T>, formats: readonly string[]) {
  return modelOptions(y)
    .positional('inputs', { type: 'string', array: true, describe: 'image files, directories, globs, or - for a list of paths on stdin' })
    .option('batch-size', { alias: 'b', type: 'number', default: 8, describe: 'images per forward pass' })
    .option('output', { alias: 'o', type: 'string', describe: 'write to FILE (atomically) instead of stdout' })
    .option('format', { alias: 'f', type: 'string', choices: formats, default: formats[0], describe: 'output format' })
    .option('null', { alias: '0', type: 'boolean', default: false, describe: 'stdin paths are NUL-separated (find -print0)' })
    .option('engine', { type: 'string', choices: ENGINE_NAMES, default: 'auto', describe: 'onnx (onnxruntime-node), tfjs, or auto: onnx where it loads' })
    .option('resume', {
      type: 'boolean', default: false,
      describe: 'continue -o FILE: keep the complete rows it holds, skip those inputs, append the rest (written in place, synced per batch)',
    })
    .option('shard', {
      type: 'string',
      describe: 'process shard K of N (K/N, from 1): inputs split by a hash of their path. Default: JOB_COMPLETION_INDEX (Kubernetes) or SLURM_ARRAY_TASK_ID (Slurm)',
    })
    .option('shard-count', { type: 'number', describe: 'the number of shards, with JOB_COMPLETION_INDEX or SLURM_ARRAY_TASK_ID (default: env VIT_SHARD_COUNT)' });
}

export interface Args {
  inputs?: string[];
  batchSize: number;
  output?: string;
  format: string;
  null: boolean;
  engine: EngineChoice;
  model?: string;
  weights?: string;
  randomWeights: boolean;
  numClasses?: number;
  imageSize?: string;
  quiet: boolean;
  resume: boolean;
  shard?: string;
  shardCount?: number;
}

function argsSpec(a: Args): ModelSpec {
  return {
    model: a.model, weights: a.weights, randomWeights: a.randomWeights, numClasses: a.numClasses,
    imageSize: parseImageSize(a.imageSize),
  };
}

export function startArgsModel(a: Args, ctx: Context): Promise<StartedModel> {
  return startModel(argsSpec(a), a.engine, ctx.verbose);
}

/** startCachedModel for the arguments: null unless a local model's graph is cached (never throws). */
function startArgsModelIfCached(a: Args, ctx: Context): Promise<StartedModel | null> {
  try {
    return startCachedModel(argsSpec(a), a.engine, ctx.verbose);
  } catch {
    return Promise.resolve(null);
  }
}

export interface RunSpec<R extends { path: string }> {
  schema: RowSchema<R>;
  runOptions?: RunOptions;
  /** Checked once the model is known, before any input is read (e.g. classify on a headless model). */
  check?(model: LoadedModel): void;
  /** Build the per-image row from the engine's outputs. */
  row(o: Extract<Outcome, { result: unknown }>): R | Promise<R>;
  /** Where rows go instead of a file/stdout writer of `schema` (e.g. a summary over all images). */
  writer?(): RowWriter<R>;
}

/** Exit statuses of a run stopped by a signal: 128 + the signal's number, as a shell reports it. */
const STOP_SIGNALS = { SIGINT: 128 + osConstants.signals.SIGINT, SIGTERM: 128 + osConstants.signals.SIGTERM } as const;
type StopSignal = keyof typeof STOP_SIGNALS;

/**
 * Catch SIGINT / SIGTERM for the length of the batch loop. The first asks for a clean stop (the batch in
 * flight is finished, rows flushed, files closed validly); a second one ends the process at once, as an
 * impatient user wants (temporary files are removed first; an in-place --resume file keeps its rows).
 */
function catchStopSignals(ctx: Context): { signal(): StopSignal | null; release(): void } {
  let caught: StopSignal | null = null;
  const handler = (sig: StopSignal) => {
    if (caught !== null) {
      // Ended by the signal itself (the shell reports 128 + its number), not by process.exit: exit() would
      // tear the process down while onnxruntime's worker may be finishing a run, and its addon then aborts
      // the process (seen 1 time in 40). With no listener left the signal's default action applies.
      removeTempFiles();
      for (const s of Object.keys(STOP_SIGNALS)) process.removeAllListeners(s);
      process.kill(process.pid, sig);
      return;
    }
    caught = sig;
    ctx.note(`${sig}: finishing the batch in flight, then stopping (again to stop at once)`);
  };
  for (const sig of Object.keys(STOP_SIGNALS) as StopSignal[]) process.on(sig, handler);
  return {
    signal: () => caught,
    release: () => {
      for (const sig of Object.keys(STOP_SIGNALS) as StopSignal[]) process.off(sig, handler);
    },
  };
}

/**
 * The inputs of this run: collected, each path once (a file given twice, or a file and its directory, is
 * processed once: rows are keyed by path for --resume and `vit merge`), cut to this process's shard.
 */
async function runInputs(a: Args, ctx: Context): Promise<string[]> {
  const shard = resolveShard({ shard: a.shard, shardCount: a.shardCount });
  const { paths, repeated } = uniquePaths(await collectInputs(a.inputs ?? [], { stdin: process.stdin, stdinIsTTY: process.stdin.isTTY === true, nul: a.null }));
  if (repeated > 0) ctx.note(`${repeated} repeated input path${repeated === 1 ? '' : 's'} left out: each path is processed once`);
  if (shard === null) return paths;
  const mine = selectShard(paths, shard);
  ctx.verbose(`shard ${shard.index}/${shard.count} (from ${shard.from}): ${mine.length} of ${paths.length} inputs`);
  return mine;
}

/**
 * The whole life of a batch command: inputs → model → batches → rows → writer. Exit status: 0 when every
 * input gave a row, 3 when the run finished but some inputs failed (error rows; with --resume, error rows
 * already in the file count too), 0 when the reader closed the pipe early, 130 / 143 when stopped by
 * SIGINT / SIGTERM (after the rows so far are written and the output closed); 1 and 2 come from errors.
 *
 * --resume: what FILE holds (complete rows only) is kept and its inputs skipped, by path; the rest is
 * appended in place (rows of paths that are not among this run's inputs stay too). Error rows are in CSV/JSON/JSONL files, so their inputs count as done and are not
 * tried again (filter them out of the file to retry them). npy holds no error rows: failed inputs are
 * tried again on every resume, and add a row only if they now succeed.
 */
export async function runCommand<R extends { path: string }>(a: Args, ctx: Context, spec: RunSpec<R>): Promise<void> {
  if (a.batchSize < 1 || !Number.isInteger(a.batchSize)) throw new UsageError(`--batch-size must be a positive integer, not ${a.batchSize}`);
  if (a.resume && a.output === undefined) throw new UsageError('--resume continues an output file: give it with -o FILE');
  if (a.resume && spec.writer !== undefined) throw new UsageError('--resume continues a file of rows; this output is a summary over all inputs');
  // A cached graph of a local model gets its session created while the inputs are read (the CLI has
  // started loading onnxruntime-node already).
  const early = startArgsModelIfCached(a, ctx);
  let paths: string[];
  let total: number;
  let append: StoredOutput | undefined;
  let storedFailures = 0;
  try {
    paths = await runInputs(a, ctx);
    total = paths.length;
    if (a.resume) {
      const format = a.format as Format;
      if (!formatsFor(spec.schema as unknown as RowSchema<{ path: string }>).includes(format)) {
        throw new UsageError(`format "${a.format}" is not available for ${spec.schema.kind}`);
      }
      append = await readStoredOutput(a.output!, format, 'resume');
      const done = new Map(append.rows.map((r) => [r.path, r.error]));
      storedFailures = paths.filter((p) => done.get(p) === true).length;
      paths = paths.filter((p) => !done.has(p));
      ctx.note(`resuming ${a.output}: ${total - paths.length} of ${total} inputs already done`);
    }
  } catch (e) {
    // The engine started early is released (its thread must not outlive the command).
    await (await early)?.engine.then((en) => en.dispose(), () => undefined);
    throw e;
  }
  const { model, engine } = (await early) ?? await startArgsModel(a, ctx);
  // The engine owns a worker thread: release it on every way out, or the process cannot exit. A start-up
  // failure is reported where the engine is awaited.
  const disposeEngine = () => engine.then((e) => e.dispose(), () => undefined);
  let writer: RowWriter<R>;
  try {
    spec.check?.(model);
    writer = spec.writer?.() ?? createSchemaWriter(spec.schema, a.format, { output: a.output, stdout: ctx.stdout, append });
  } catch (e) {
    await disposeEngine();
    throw e;
  }
  const progress = createProgress(paths.length, { stderr: ctx.stderr, quiet: a.quiet });
  const signals = catchStopSignals(ctx);
  const t0 = performance.now();
  let stats;
  try {
    stats = await runBatches({
      paths,
      config: model.config,
      engine,
      batchSize: a.batchSize,
      runOptions: spec.runOptions,
      emit: async (o) => {
        progress.tick(1);
        if ('error' in o) {
          ctx.note(`${o.path}: ${o.error}`);
          await writer.write({ path: o.path, error: o.error });
        } else await writer.write(await spec.row(o));
        return !writer.closedByReader;
      },
      shouldStop: () => signals.signal() !== null,
      onBatchEnd: async () => writer.checkpoint?.(),
    });
    await writer.close();
  } catch (e) {
    await writer.abort();
    throw e;
  } finally {
    signals.release();
    progress.stop();
    await disposeEngine();
  }
  const secs = (performance.now() - t0) / 1000;
  ctx.verbose(`${stats.done + stats.failed} images in ${secs.toFixed(2)} s (${((stats.done + stats.failed) / secs).toFixed(1)} images/s)`);
  ctx.verbose(`decoding: ${stats.overlapped} of ${stats.batches} batches while the engine ran another, the rest before or between runs`);
  if (writer.closedByReader) return;
  const stopped = signals.signal();
  if (stopped !== null) {
    const left = paths.length - stats.done - stats.failed;
    ctx.note(`stopped by ${stopped}: ${left} of ${paths.length} inputs not done${a.output ? `; continue with --resume -o ${a.output}` : ''}`);
    throw new ExitStatus(STOP_SIGNALS[stopped]);
  }
  const failed = stats.failed + storedFailures;
  if (failed > 0) {
    ctx.note(`${failed} of ${total} inputs failed`);
    throw new ExitStatus(3);
  }
}

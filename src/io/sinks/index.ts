/**
 * Outputs: the table of formats, opening an output under the -o contract (target.ts) with its provenance
 * (manifest.ts), reading one back for --resume, and joining shard outputs (`vit merge`).
 */
import { realpathSync } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { OutputError, UsageError } from '../../errors.js';
import { displayPath, pathBytes } from '../fs-names.js';
import { CSV } from './csv.js';
import type { FormatModule } from './format.js';
import { JSON_ARRAY } from './json.js';
import { JSONL } from './jsonl.js';
import { checkResumable, differences, manifestPath, readManifest, writeManifest, type Manifest, type Provenance } from './manifest.js';
import { NPY, pathsFileFor } from './npy.js';
import { PARQUET } from './parquet.js';
import { emptyOutput, openStored, type ReadMode, type StoredOutput, type StoredRow } from './records.js';
import { pathsLine, type Format, type RowSchema, type RowWriter } from './rows.js';
import { AtomicFileSink, InPlaceFileSink, openSink, resolveOutput, type FileSink, type OutputTarget, type Sink } from './target.js';

export const FORMAT_MODULES: Record<Format, FormatModule> = { csv: CSV, json: JSON_ARRAY, jsonl: JSONL, npy: NPY, parquet: PARQUET };

/**
 * Refuse stdout for a format written only to files (parquet), and for a binary format when stdout is a
 * terminal (given `stdout`), before any work is done.
 */
export function checkOutputFormat(format: Format, output: string | undefined, flag = '-o', stdout?: NodeJS.WritableStream): void {
  const toStdout = output === undefined || output === '-' || output === '';
  if (FORMAT_MODULES[format].needsFile && toStdout) {
    throw new UsageError(`${format} is not written to stdout: name the output file with ${flag} (e.g. ${flag} out.${format})`);
  }
  if (FORMAT_MODULES[format].binary && toStdout && (stdout as { isTTY?: boolean } | undefined)?.isTTY) {
    throw new UsageError(`${format} is binary and stdout is a terminal: name the output file with ${flag} (e.g. ${flag} out.${format}) or redirect stdout`);
  }
}

/** The rows an output file holds. A file that does not exist holds nothing when resuming, and is an error when merging. */
export async function readStoredOutput(file: string, format: Format, mode: ReadMode): Promise<StoredOutput> {
  const opened = await openStored(file);
  if (opened === null) {
    if (mode === 'resume') return emptyOutput(file, format);
    throw new OutputError(`cannot read ${file}: ENOENT (no such file)`);
  }
  try {
    return await FORMAT_MODULES[format].read(opened.fh, file, mode, opened.size);
  } finally {
    await opened.fh.close();
  }
}

export interface OutputOptions {
  /** -o: a path, - for stdout, undefined for stdout. */
  output?: string;
  format: Format;
  stdout: NodeJS.WritableStream;
  /** The run's inputs, none of which may be an output. */
  inputs: readonly string[];
  /** What produces the rows; recorded beside file outputs, checked on --resume. */
  provenance: Provenance;
  /** Continue the file in place after the complete rows it holds. */
  resume: boolean;
}

export interface OpenOutput<R extends { path: string }> {
  writer: RowWriter<R>;
  /** With --resume: the rows the file already held (their inputs are done). */
  prior: StoredOutput | null;
}

/** The files beside an output: its manifest and, for npy, the paths file; none may be an input either. */
function sidecars(target: OutputTarget, format: Format, inputs: readonly string[]): { paths: string | null; manifest: boolean } {
  if (target.kind !== 'file') return { paths: null, manifest: false };
  const paths = format === 'npy' ? pathsFileFor(target.path) : null;
  if (paths !== null) resolveOutput(paths, inputs, 'the paths file');
  resolveOutput(`${target.path}.vit.json`, inputs, 'the provenance file');
  return { paths, manifest: true };
}

/** The writer wrapped so that closing it also writes the manifest, after the output itself is in place. */
function withManifest<R extends { path: string }>(w: RowWriter<R>, output: string, p: Provenance): RowWriter<R> {
  return {
    get closedByReader() {
      return w.closedByReader;
    },
    write: (row) => w.write(row),
    checkpoint: () => w.checkpoint?.() ?? Promise.resolve(),
    close: async () => {
      await w.close();
      writeManifest(output, p);
    },
    abort: () => w.abort(),
  };
}

/**
 * Open an output for a run, before any image is read: every refusal of the -o contract and of --resume
 * (another model, command or option) is thrown here, with the file left as it was.
 */
export async function openOutput<R extends { path: string }>(schema: RowSchema<R>, o: OutputOptions): Promise<OpenOutput<R>> {
  checkOutputFormat(o.format, o.output, '-o', o.stdout);
  const target = resolveOutput(o.output, o.inputs);
  const side = sidecars(target, o.format, o.inputs);
  const mod = FORMAT_MODULES[o.format];
  const spool = () => AtomicFileSink.open(null, o.output ?? 'stdout');
  if (o.resume) {
    if (target.kind !== 'file') throw new UsageError(`--resume continues a regular file; ${o.output ?? 'stdout'} is not one`);
    checkResumable(target.path, target.existing?.size ?? 0, o.provenance);
    const prior = await readStoredOutput(target.path, o.format, 'resume');
    // Written before any row is appended: a kill at any moment leaves a file its manifest describes, as
    // unfinished until the run closes it.
    writeManifest(target.path, { ...o.provenance, unfinished: true });
    if (mod.resume) return { writer: withManifest(await mod.resume(schema, target, prior), target.path, o.provenance), prior };
    const sink = await InPlaceFileSink.open(target.path, target.name, prior.keep);
    const paths = side.paths === null ? null : await InPlaceFileSink.open(side.paths, side.paths, prior.npy?.pathsKeep ?? 0);
    // A file with nothing worth keeping is written from its start, header and all.
    return { writer: withManifest(await mod.writer(schema, { sink, prior: prior.keep > 0 ? prior : null, paths, spool }), target.path, o.provenance), prior };
  }
  const sink = await openSink(target, o.stdout);
  const paths = side.paths === null ? null : await AtomicFileSink.open(side.paths, side.paths);
  const writer = await mod.writer(schema, { sink, prior: null, paths, spool });
  return { writer: side.manifest && target.kind === 'file' ? withManifest(writer, target.path, o.provenance) : writer, prior: null };
}

// ---------------------------------------------------------------------------------------------------------
// Merging shard outputs

export interface MergeOptions {
  format: Format;
  /** The merged file; undefined or "-" writes to stdout (not for npy, whose paths file goes beside it). */
  output?: string;
  stdout: NodeJS.WritableStream;
  /** The run's inputs: the merged rows follow their order and must cover them exactly. */
  inputs?: string[];
  /** Files the merged output and the files beside it may not be: the inputs, and the archives among them. */
  inputFiles?: readonly string[];
  /** Human notes. */
  note(msg: string): void;
}

interface Placed {
  part: number;
  row: StoredRow;
}

/** Up to `n` items of a list for a message, with how many more there are. */
function some(items: string[], n = 5): string {
  const shown = items.slice(0, n).map((p) => JSON.stringify(p)).join(', ');
  return items.length > n ? `${shown} and ${items.length - n} more` : shown;
}

/**
 * How a stored row is matched with its input in a format: JSON and JSONL keep every path exactly; CSV,
 * parquet and npy's paths.txt write a byte that is not UTF-8 as \xNN (displayPath), which reads back as that
 * byte, so there paths are compared as written: a name that really holds "\xe9" would otherwise never match
 * its own row and a resumed run would repeat it. (A directory holding both that name and the one with the
 * byte has them taken for each other in those formats: the text cannot tell them apart.)
 */
export function rowKey(format: Format): (path: string) => string {
  return format === 'json' || format === 'jsonl' ? (p) => p : displayPath;
}

/** The order of a run over a directory: by the bytes of the path (a name that is not UTF-8 by its own bytes). */
function byteOrder(a: string, b: string): number {
  return Buffer.compare(pathBytes(a), pathBytes(b));
}

/**
 * The provenance the merged output inherits, checked across the parts: all made the same way, each shard of
 * N exactly once, none missing (N comes from the parts themselves, so a lost part is noticed without
 * --inputs). Parts without a manifest (written to stdout) can only be merged with --inputs.
 */
function mergedProvenance(files: string[], manifests: (Manifest | null)[], withInputs: boolean, note: (m: string) => void): Provenance | null {
  const unknown = files.filter((_, i) => manifests[i] === null);
  if (unknown.length > 0) {
    if (!withInputs) {
      throw new UsageError(`${some(unknown)} ha${unknown.length === 1 ? 's' : 've'} no provenance (.vit.json beside it): say which inputs the parts cover with --inputs`);
    }
    if (unknown.length < files.length) throw new UsageError(`${some(unknown)} ha${unknown.length === 1 ? 's' : 've'} no provenance, unlike the other parts: were they written by the same run?`);
    note('the parts have no provenance files; checking them against --inputs only');
    return null;
  }
  const ms = manifests as Manifest[];
  ms.forEach((m, i) => {
    if (m.unfinished) throw new OutputError(`${files[i]} was stopped before all its inputs were done: finish it with --resume -o ${files[i]}`);
  });
  const first = ms[0];
  ms.forEach((m, i) => {
    const diff = differences(first, m, { shardIndex: false });
    if (diff.length > 0) throw new OutputError(`${files[i]} was made differently from ${files[0]}: ${diff.join('; ')}`);
  });
  if (first.shard !== null) {
    const seen = new Map<number, string>();
    ms.forEach((m, i) => {
      const other = seen.get(m.shard!.index);
      // The same file named twice is reported with the rows it repeats.
      if (other !== undefined && other !== files[i]) throw new OutputError(`${files[i]} and ${other} are both shard ${m.shard!.index}/${m.shard!.count}`);
      seen.set(m.shard!.index, files[i]);
    });
    const missing = Array.from({ length: first.shard.count }, (_, i) => i + 1).filter((k) => !seen.has(k));
    if (missing.length > 0) throw new OutputError(`shard${missing.length === 1 ? '' : 's'} ${missing.map((k) => `${k}/${first.shard!.count}`).join(', ')} missing: the parts cover ${seen.size} of ${first.shard.count}`);
  }
  return { command: first.command, format: first.format, model: first.model, options: first.options, shard: null };
}

/**
 * Every row of every part, by rowKey of its path; a path in two places is an error naming both.
 */
function indexRows(parts: StoredOutput[], rowKey: (path: string) => string): Map<string, Placed> {
  const index = new Map<string, Placed>();
  parts.forEach((p, part) => {
    for (const row of p.rows) {
      const key = rowKey(row.path);
      const seen = index.get(key);
      if (seen !== undefined) {
        const other = parts[seen.part].file;
        const where = seen.part === part ? `twice in ${p.file}` : other === p.file ? `twice: ${p.file} is named twice` : `in both ${other} and ${p.file}`;
        throw new OutputError(`${JSON.stringify(row.path)} is ${where}: shards must not overlap (were the parts made with the same --shard count and inputs?)`);
      }
      index.set(key, { part, row });
    }
  });
  return index;
}

/** The rows in output order, checked against the input list when there is one. */
function orderRows(index: Map<string, Placed>, opts: MergeOptions, rowKey: (path: string) => string): Placed[] {
  if (opts.inputs === undefined) return [...index.values()].sort((x, y) => byteOrder(x.row.path, y.row.path));
  const keys = opts.inputs.map(rowKey);
  const wanted = new Set(keys);
  const extra = [...index.keys()].filter((p) => !wanted.has(p));
  if (extra.length > 0) throw new OutputError(`${extra.length} rows are for paths that are not among the inputs: ${some(extra)}`);
  const missing = opts.inputs.filter((_, i) => !index.has(keys[i]));
  if (missing.length > 0) {
    const msg = `${missing.length} of ${opts.inputs.length} inputs have no row: ${some(missing)}`;
    // npy files hold no error rows, so there a missing row may just be an input that failed.
    if (opts.format !== 'npy') throw new OutputError(`${msg} (is a part missing, or was a shard run on other inputs?)`);
    opts.note(`${msg}: failed inputs have no npy row, or a part is missing`);
  }
  return keys.filter((k) => index.has(k)).map((k) => index.get(k)!);
}

/** Reads row bytes out of the parts, one open handle per part. */
class PartReader {
  private readonly handles = new Map<number, FileHandle>();
  constructor(private readonly parts: StoredOutput[]) {}

  async bytes(part: number, row: StoredRow): Promise<Buffer> {
    let fh = this.handles.get(part);
    if (fh === undefined) {
      fh = await open(this.parts[part].file, 'r');
      this.handles.set(part, fh);
    }
    const buf = Buffer.alloc(row.end - row.start);
    const { bytesRead } = await fh.read(buf, 0, buf.length, row.start);
    if (bytesRead !== buf.length) throw new OutputError(`${this.parts[part].file} changed while merging`);
    return buf;
  }

  async close(): Promise<void> {
    for (const fh of this.handles.values()) await fh.close();
  }
}

/**
 * Join the outputs of shards (`vit classify … --shard K/N -o part-K.csv`) into one output, as one unsharded
 * run would have written it. Every part is read completely (an interrupted part is an error), each path
 * must occur once over all parts, and, given the run's input list, every input must have its row and
 * nothing else may. Rows are copied byte for byte, in input order when the input list is given, else sorted
 * by the byte order of their path's UTF-8 (as `LC_ALL=C sort`): the order of a run over a directory, whose
 * walk is sorted so. Only an index of the rows is held in memory. Resolves to the number of rows.
 */
export async function mergeOutputs(given: string[], opts: MergeOptions): Promise<number> {
  if (given.length === 0) throw new UsageError('name the shard outputs to merge');
  // A part reached through a symbolic link has its sidecars beside the file it points to, where its run put them.
  const partFiles = given.map((f) => {
    try {
      return realpathSync(f);
    } catch {
      return f;
    }
  });
  checkOutputFormat(opts.format, opts.output, 'the merged output');
  // What the merge reads: the parts and the files beside them (manifests, npy paths files).
  // None of them, and no input of the run, may be the merged output or a file beside it.
  const read = [...partFiles.flatMap((f) => [f, manifestPath(f), ...(opts.format === 'npy' ? [pathsFileFor(f)] : [])]), ...opts.inputFiles ?? []];
  const target = resolveOutput(opts.output, read, 'the merged output');
  if (opts.format === 'npy' && target.kind !== 'file') throw new UsageError('merging npy needs an output file, for its paths file beside it');
  sidecars(target, opts.format, read);
  const provenance = mergedProvenance(partFiles, partFiles.map(readManifest), opts.inputs !== undefined, opts.note);
  if (provenance !== null && provenance.format !== opts.format) throw new UsageError(`the parts are ${provenance.format}, not ${opts.format}`);
  const parts: StoredOutput[] = [];
  for (const f of partFiles) parts.push(await readStoredOutput(f, opts.format, 'merge'));
  const key = rowKey(opts.format);
  const rows = orderRows(indexRows(parts, key), opts, key);
  const mod = FORMAT_MODULES[opts.format];
  if (mod.mergeRows) {
    const sink = await openSink(target, opts.stdout);
    try {
      await mod.mergeRows(parts, rows, sink);
      await sink.close();
    } catch (e) {
      await sink.abort();
      throw e;
    }
    if (provenance !== null && target.kind === 'file') writeManifest(target.path, provenance);
    return rows.length;
  }
  const merger = mod.merger!(parts);

  const sink: Sink = await openSink(target, opts.stdout);
  const pathsSink: FileSink | null = opts.format === 'npy' && target.kind === 'file' ? await AtomicFileSink.open(pathsFileFor(target.path), pathsFileFor(target.path)) : null;
  const reader = new PartReader(parts);
  try {
    await sink.write(merger.begin(rows.length));
    for (let i = 0; i < rows.length && !sink.closedByReader; i++) {
      const { part, row } = rows[i];
      await sink.write(merger.row(await reader.bytes(part, row), parts[part], i));
      await pathsSink?.write(pathsLine(row.path));
    }
    await sink.write(merger.end(rows.length));
    await sink.close();
    await pathsSink?.close();
    if (provenance !== null && target.kind === 'file') writeManifest(target.path, provenance);
  } catch (e) {
    await sink.abort();
    await pathsSink?.abort();
    throw e;
  } finally {
    await reader.close();
  }
  return rows.length;
}

/**
 * Streaming row writers: CSV, JSON, JSONL and npy, one row at a time, in order, with backpressure.
 *
 * A writer is built from a RowSchema (how one kind of row becomes CSV cells, a JSON object, an npy row) and a
 * Sink (where the bytes go: stdout, or a file written atomically). Commands add their own row kinds by
 * writing a schema; the formats come for free.
 *
 * Conventions of every format:
 * - Numbers are written at float32 precision, the engine's: the shortest decimal that reads back as the
 *   same float32 (0.1f is written 0.1, not 0.10000000149011612). Non-finite values are null in JSON and
 *   NaN / Infinity / -Infinity in CSV.
 * - A failed input is a row `{path, error}`: an `error` field in JSON, the last CSV column (empty on good
 *   rows). npy holds numbers only, so failed inputs are left out of it and of its paths file and reported
 *   through `onError`.
 * - CSV follows RFC 4180 quoting (fields with a comma, quote, CR or LF are quoted, quotes doubled) with
 *   LF line ends, which every CSV reader accepts and line-based Unix tools prefer.
 */
import { once } from 'node:events';
import { constants, createReadStream, unlinkSync } from 'node:fs';
import { open, rename, unlink, type FileHandle } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { OutputError, UsageError } from '../errors.js';
import type { StoredOutput } from './stored.js';
import { isBrokenPipe } from './streams.js';

// ---------------------------------------------------------------------------------------------------------
// Rows and schemas

/** A failed input. */
export interface ErrorRow {
  path: string;
  error: string;
}

export interface Prediction {
  index: number;
  label: string;
  score: number;
  logit: number;
}

export interface ClassifyRow {
  path: string;
  predictions: Prediction[];
}

export interface EmbedRow {
  path: string;
  embedding: Float32Array;
}

export type CsvCell = string | number;

/**
 * How one kind of row is written. `R` is the successful row; error rows are handled by the writer.
 * `first` is the first successful row, for formats whose layout depends on the data (an embedding's width).
 */
export interface RowSchema<R extends { path: string }> {
  kind: string;
  /** CSV columns between `path` and `error`. */
  csvColumns(first: R | null): string[];
  /** CSV records (cells between path and error) for one row; several when a row has several entries. */
  csvRecords(row: R): CsvCell[][];
  /** The JSON object for one row (typed arrays and numbers are formatted by the writer). */
  json(row: R): Record<string, unknown>;
  /** The row as one line of an [N, D] float32 matrix; absent when the kind has no npy form. */
  npy?(row: R): Float32Array;
  /** The shape of one npy row when it is not a plain vector (e.g. [gh, gw] for a map); default [length]. */
  npyShape?(first: R): number[];
}

export const CLASSIFY_SCHEMA: RowSchema<ClassifyRow> = {
  kind: 'classify',
  csvColumns: () => ['rank', 'index', 'label', 'score', 'logit'],
  csvRecords: (row) => row.predictions.map((p, i) => [i + 1, p.index, p.label, p.score, p.logit]),
  json: (row) => ({ path: row.path, predictions: row.predictions }),
};

export const EMBED_SCHEMA: RowSchema<EmbedRow> = {
  kind: 'embed',
  csvColumns: (first) => Array.from({ length: first?.embedding.length ?? 0 }, (_, i) => `e${i}`),
  csvRecords: (row) => [Array.from(row.embedding)],
  json: (row) => ({ path: row.path, embedding: row.embedding }),
  npy: (row) => row.embedding,
};

const SCHEMAS = { classify: CLASSIFY_SCHEMA, embed: EMBED_SCHEMA };
export type RowKind = keyof typeof SCHEMAS;
export type RowFor<K extends RowKind> = (typeof SCHEMAS)[K] extends RowSchema<infer R> ? R : never;

export const FORMATS = ['csv', 'json', 'jsonl', 'npy'] as const;
export type Format = (typeof FORMATS)[number];

/** The formats a schema can be written in: all of them, npy only where the schema has an npy form. */
export function formatsFor(schema: RowSchema<{ path: string }>): Format[] {
  return FORMATS.filter((f) => f !== 'npy' || schema.npy !== undefined);
}

// ---------------------------------------------------------------------------------------------------------
// Formatting

/** The shortest decimal that reads back as the same float32 (at most 9 significant digits). */
export function formatFloat32(x: number): string {
  if (!Number.isFinite(x)) return Number.isNaN(x) ? 'NaN' : x > 0 ? 'Infinity' : '-Infinity';
  const f = Math.fround(x);
  if (Number.isInteger(f) && Math.abs(f) < 2 ** 24) return String(f);
  for (let p = 1; p < 9; p++) {
    const s = Number(f.toPrecision(p));
    if (Math.fround(s) === f) return String(s);
  }
  return String(Number(f.toPrecision(9)));
}

/** JSON.stringify replacer: float32 precision for numbers, typed arrays as arrays, non-finite as null. */
function jsonNumbers(_key: string, value: unknown): unknown {
  if (typeof value === 'number') return Number.isFinite(value) ? Number(formatFloat32(value)) : null;
  if (value instanceof Float32Array || value instanceof Float64Array) return Array.from(value);
  return value;
}

export function toJson(obj: unknown): string {
  return JSON.stringify(obj, jsonNumbers);
}

/** One RFC 4180 field: quoted when it holds a comma, quote, CR or LF, with quotes doubled. */
export function csvField(cell: CsvCell): string {
  const s = typeof cell === 'number' ? formatFloat32(cell) : cell;
  return /[",\r\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

/** One CSV record with its line end. */
export function csvLine(cells: CsvCell[]): string {
  return `${cells.map(csvField).join(',')}\n`;
}

/**
 * One line of a `.paths.txt`. Paths are written as they are, one per line, so `readlines` just works, except
 * a path that could not be read back that way — one with a newline or CR, or one starting with `"` — which
 * is written as a JSON string literal. A reader recovers every path with
 * `json.loads(l) if l.startswith('"') else l` (after stripping the line's "\n").
 */
export function pathsLine(path: string): string {
  return `${/[\r\n]/.test(path) || path.startsWith('"') ? JSON.stringify(path) : path}\n`;
}

// ---------------------------------------------------------------------------------------------------------
// npy

/** Rows an npy header has room for: its shape is rewritten in place at close, so it is padded for this many. */
const NPY_MAX_ROWS = 2 ** 40;

/**
 * An npy version 1.0 header for a float32 little-endian C-order [rows, ...rowShape] array (rowShape a number
 * for [rows, cols]), padded with spaces to `length` bytes when given (the reserved size), else to numpy's
 * 64-byte alignment.
 */
export function npyHeader(rows: number, rowShape: number | number[], length?: number): Buffer {
  const dims = [rows, ...(typeof rowShape === 'number' ? [rowShape] : rowShape)];
  const dict = `{'descr': '<f4', 'fortran_order': False, 'shape': (${dims.join(', ')}${dims.length === 1 ? ',' : ''}), }`;
  // magic (6) + version (2) + header length (2) + dict + padding + '\n'
  const total = length ?? Math.ceil((10 + dict.length + 1) / 64) * 64;
  const pad = total - 10 - dict.length - 1;
  if (pad < 0) throw new OutputError(`npy header for shape (${dims.join(', ')}) does not fit in ${total} bytes`);
  const head = Buffer.alloc(10);
  head.write('\x93NUMPY', 0, 'latin1');
  head[6] = 1;
  head[7] = 0;
  head.writeUInt16LE(total - 10, 8);
  return Buffer.concat([head, Buffer.from(`${dict}${' '.repeat(pad)}\n`, 'latin1')]);
}

/** The header size reserved for an npy with rows of this shape, enough for NPY_MAX_ROWS rows. */
function npyReservedLength(rowShape: number[]): number {
  return npyHeader(NPY_MAX_ROWS, rowShape).length;
}

/** The header of a finished npy file of `rows` rows as the npy writer leaves it (an empty array is (0, 0)). */
export function npyFileHeader(rows: number, rowShape: number[]): Buffer {
  return rows === 0 ? npyHeader(0, 0) : npyHeader(rows, rowShape, npyReservedLength(rowShape));
}

const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/** A float32 row as little-endian bytes (a copy: the caller may reuse its array). */
function float32Bytes(v: Float32Array): Buffer {
  const b = Buffer.alloc(v.length * 4);
  if (LITTLE_ENDIAN) b.set(new Uint8Array(v.buffer, v.byteOffset, v.byteLength));
  else for (let i = 0; i < v.length; i++) b.writeFloatLE(v[i], i * 4);
  return b;
}

// ---------------------------------------------------------------------------------------------------------
// Sinks: where bytes go

export interface Sink {
  write(chunk: string | Uint8Array): Promise<void>;
  /** Make what is written so far durable (files: fsync). */
  checkpoint?(): Promise<void>;
  /** Flush and make the output final (rename into place for atomic files). */
  close(): Promise<void>;
  /** Give up: an atomic file sink removes what it wrote, an in-place one keeps it. */
  abort(): Promise<void>;
  readonly closedByReader: boolean;
}

/**
 * A stream we do not own (stdout): never ended by us. A reader that goes away (EPIPE) is a normal end:
 * from then on writes are dropped and closedByReader is set, so the command can stop early with status 0.
 */
class StreamSink implements Sink {
  closedByReader = false;
  private failure: Error | null = null;
  private readonly onError = (e: Error) => {
    if (isBrokenPipe(e)) this.closedByReader = true;
    else this.failure ??= e;
  };

  constructor(private readonly out: NodeJS.WritableStream) {
    out.on('error', this.onError);
  }

  private check(): void {
    if (this.failure) throw new OutputError(`cannot write output: ${this.failure.message}`);
  }

  async write(chunk: string | Uint8Array): Promise<void> {
    this.check();
    if (this.closedByReader) return;
    try {
      if (!this.out.write(chunk)) await once(this.out as unknown as NodeJS.EventEmitter, 'drain');
    } catch (e) {
      this.onError(e as Error);
      this.check();
    }
  }

  async close(): Promise<void> {
    if (!this.closedByReader) {
      // Resolves once everything written before has been handed to the OS (write callbacks run in order).
      await new Promise<void>((res) => this.out.write('', () => res()));
    }
    this.out.off('error', this.onError);
    this.check();
  }

  async abort(): Promise<void> {
    this.out.off('error', this.onError);
  }
}

/** Temporary files not yet renamed or removed: a process that exits in between (a second Ctrl-C) removes them. */
const liveTempFiles = new Set<string>();

/** Remove the temporary files of unfinished outputs (on exit, or before a second Ctrl-C ends the process). */
export function removeTempFiles(): void {
  for (const f of liveTempFiles) {
    try {
      unlinkSync(f);
    } catch {
      // Already gone.
    }
  }
  liveTempFiles.clear();
}
process.on('exit', removeTempFiles);

function fileError(what: string, e: unknown): OutputError {
  return new OutputError(`cannot write ${what}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
}

/**
 * A file written at explicit positions (so the npy header can be patched), opened on first use so that
 * creating a writer stays synchronous; errors surface as OutputError from write/close.
 */
abstract class FileSink implements Sink {
  readonly closedByReader = false;
  protected fh: Promise<FileHandle> | null = null;
  protected position = 0;
  protected done = false;

  /** `path` is the file written; `name` is how errors call it (the target, not a temporary name). */
  constructor(readonly path: string, protected readonly name: string) {}

  protected abstract openFile(): Promise<FileHandle>;

  protected handle(): Promise<FileHandle> {
    this.fh ??= this.openFile().catch((e: unknown) => {
      throw fileError(this.name, e);
    });
    return this.fh;
  }

  /** Appends at the current end; FileHandle writes are awaited one by one, which is the backpressure. */
  async write(chunk: string | Uint8Array): Promise<void> {
    const buf = typeof chunk === 'string' ? Buffer.from(chunk, 'utf8') : chunk;
    await this.patch(this.position, buf);
    this.position += buf.length;
  }

  /** Write bytes at `at` (the npy header: overwritten in place). */
  async patch(at: number, bytes: Uint8Array): Promise<void> {
    const fh = await this.handle();
    try {
      // A write may be short (a full disk on its way): keep going until it throws.
      for (let off = 0; off < bytes.length;) {
        const { bytesWritten } = await fh.write(bytes, off, bytes.length - off, at + off);
        off += bytesWritten;
      }
    } catch (e) {
      throw fileError(this.name, e);
    }
  }

  /** A point a resumed run may restart from; only files continued in place make it durable. */
  async checkpoint(): Promise<void> {}

  /** Copy the contents written so far to a stream with backpressure (the npy spool → stdout). */
  async copyTo(sink: Sink): Promise<void> {
    const fh = await this.handle();
    await fh.sync();
    for await (const chunk of createReadStream(this.path)) {
      if (sink.closedByReader) break;
      await sink.write(chunk as Buffer);
    }
  }

  abstract close(): Promise<void>;
  abstract abort(): Promise<void>;
}

/**
 * A file written under a temporary name in the target's directory (`.NAME.<pid>.tmp`), fsynced and renamed
 * over the target on close, removed on abort: readers never see a partial file, and an existing target is
 * replaced only by a finished one.
 */
class AtomicFileSink extends FileSink {
  /** `target` null: a scratch file in the OS temp directory, removed on close (the npy spool for stdout). */
  constructor(private readonly target: string | null) {
    const tmp = target === null
      ? join(tmpdir(), `vit-spool.${process.pid}.${Date.now()}.${Math.random().toString(36).slice(2)}.tmp`)
      : join(dirname(target), `.${basename(target)}.${process.pid}.tmp`);
    super(tmp, target ?? tmp);
  }

  get tmp(): string {
    return this.path;
  }

  protected async openFile(): Promise<FileHandle> {
    const fh = await open(this.tmp, 'w', 0o666);
    liveTempFiles.add(this.tmp);
    return fh;
  }

  private async remove(): Promise<void> {
    await unlink(this.tmp).catch(() => undefined);
    liveTempFiles.delete(this.tmp);
  }

  async close(): Promise<void> {
    if (this.done) return;
    this.done = true;
    const fh = await this.handle();
    if (this.target === null) {
      await fh.close();
      await this.remove();
      return;
    }
    try {
      await fh.sync();
      await fh.close();
      await rename(this.tmp, this.target);
      liveTempFiles.delete(this.tmp);
    } catch (e) {
      await this.remove();
      throw fileError(this.target, e);
    }
  }

  async abort(): Promise<void> {
    if (this.done) return;
    this.done = true;
    if (this.fh === null) return;
    const fh = await this.fh.catch(() => null);
    await fh?.close().catch(() => undefined);
    await this.remove();
  }
}

/**
 * A file continued in place (--resume): opened without truncation, cut back to `keep` bytes (the complete
 * rows a previous run left), then appended to. Every checkpoint fsyncs, so what a crash leaves is the
 * previous rows plus at most one torn row, which the next --resume cuts off. Abort keeps what was written.
 */
class InPlaceFileSink extends FileSink {
  constructor(path: string, private readonly keep: number) {
    super(path, path);
    this.position = keep;
  }

  protected async openFile(): Promise<FileHandle> {
    const fh = await open(this.path, constants.O_RDWR | constants.O_CREAT, 0o666);
    await fh.truncate(this.keep);
    return fh;
  }

  override async checkpoint(): Promise<void> {
    if (this.fh === null) return;
    try {
      await (await this.fh).sync();
    } catch (e) {
      throw fileError(this.name, e);
    }
  }

  async close(): Promise<void> {
    if (this.done) return;
    this.done = true;
    const fh = await this.handle();
    try {
      await fh.sync();
      await fh.close();
    } catch (e) {
      throw fileError(this.name, e);
    }
  }

  async abort(): Promise<void> {
    if (this.done) return;
    this.done = true;
    const fh = await this.fh?.catch(() => null);
    await fh?.sync().catch(() => undefined);
    await fh?.close().catch(() => undefined);
  }
}

// ---------------------------------------------------------------------------------------------------------
// Writers

export interface RowWriter<R extends { path: string }> {
  /** Write one row (or a failed input); rows must come in output order. */
  write(row: R | ErrorRow): Promise<void>;
  /**
   * A point the output may be resumed from (the end of a batch): an in-place file (--resume) is made
   * durable and an npy header counts the rows so far. Nothing for other outputs.
   */
  checkpoint?(): Promise<void>;
  /** Finish the output (closing brackets, npy shape, rename into place). Call once. */
  close(): Promise<void>;
  /**
   * Stop without finishing: an atomic file output leaves nothing behind (no partial or temporary file); an
   * in-place one (--resume) keeps the rows written, for the next --resume.
   */
  abort(): Promise<void>;
  /** The reader of stdout went away (`| head -1`): later rows are dropped; stop early and exit 0. */
  readonly closedByReader: boolean;
}

export interface WriterOptions {
  /** Write to this file (atomically, unless `append`) instead of `stdout`. */
  output?: string;
  stdout: NodeJS.WritableStream;
  /** Failed inputs, for formats that cannot hold them (npy). */
  onError?(row: ErrorRow): void;
  /**
   * Continue `output` in place after the rows it already holds (read by readStoredOutput in 'resume' mode)
   * instead of replacing it: its torn end is cut off and new rows follow the kept ones.
   */
  append?: StoredOutput;
}

function isErrorRow(row: { path: string }): row is ErrorRow {
  return typeof (row as Partial<ErrorRow>).error === 'string';
}

/** What a resumed output already holds, when it holds something. */
function resumed(append: StoredOutput | undefined): StoredOutput | null {
  return append !== undefined && append.keep > 0 ? append : null;
}

/** Shared life cycle: ordering checks, the sink, closedByReader. Subclasses say how rows become bytes. */
abstract class BaseWriter<R extends { path: string }> implements RowWriter<R> {
  private state: 'open' | 'closed' = 'open';

  constructor(protected readonly schema: RowSchema<R>, protected readonly sink: Sink) {}

  get closedByReader(): boolean {
    return this.sink.closedByReader;
  }

  protected abstract row(row: R | ErrorRow): Promise<void>;
  protected abstract finish(): Promise<void>;

  /** The JSON text of a row or a failed input. */
  protected json(row: R | ErrorRow): string {
    return toJson(isErrorRow(row) ? { path: row.path, error: row.error } : this.schema.json(row));
  }

  async write(row: R | ErrorRow): Promise<void> {
    if (this.state !== 'open') throw new Error(`${this.schema.kind} writer: write after close`);
    if (this.sink.closedByReader) return;
    await this.row(row);
  }

  async checkpoint(): Promise<void> {
    await this.sink.checkpoint?.();
  }

  async close(): Promise<void> {
    if (this.state !== 'open') throw new Error(`${this.schema.kind} writer: closed twice`);
    this.state = 'closed';
    try {
      await this.finish();
      await this.sink.close();
    } catch (e) {
      await this.sink.abort();
      throw e;
    }
  }

  async abort(): Promise<void> {
    this.state = 'closed';
    await this.sink.abort();
  }
}

class JsonlWriter<R extends { path: string }> extends BaseWriter<R> {
  protected async row(row: R | ErrorRow): Promise<void> {
    await this.sink.write(`${this.json(row)}\n`);
  }

  protected async finish(): Promise<void> {}
}

/** One JSON array, written incrementally: `[\n`, rows separated by `,\n`, then `\n]\n`; valid with no rows. */
class JsonArrayWriter<R extends { path: string }> extends BaseWriter<R> {
  /** Rows already in the array (a resumed file's rows continue after `,\n`). */
  constructor(schema: RowSchema<R>, sink: Sink, private count: number) {
    super(schema, sink);
  }

  protected async row(row: R | ErrorRow): Promise<void> {
    await this.sink.write(`${this.count++ === 0 ? '[\n' : ',\n'}${this.json(row)}`);
  }

  protected async finish(): Promise<void> {
    await this.sink.write(this.count === 0 ? '[\n\n]\n' : '\n]\n');
  }
}

/**
 * CSV with header `path,<schema columns>,error`. The columns may depend on the first good row (an
 * embedding's width), so failed inputs that come before it are held back until it arrives (or close).
 * A resumed file brings its header: new rows must have its columns.
 */
class CsvWriter<R extends { path: string }> extends BaseWriter<R> {
  private columns: string[] | null = null;
  private held: ErrorRow[] = [];
  /** The header columns of a resumed file, checked against the first good row. */
  private expected: string[] | null = null;

  constructor(schema: RowSchema<R>, sink: Sink, header?: string[]) {
    super(schema, sink);
    if (header !== undefined) this.columns = this.expected = header.slice(1, -1);
  }

  private async start(first: R | null): Promise<void> {
    this.columns = this.schema.csvColumns(first);
    await this.sink.write(csvLine(['path', ...this.columns, 'error']));
    const held = this.held;
    this.held = [];
    for (const e of held) await this.errorLine(e);
  }

  private errorLine(e: ErrorRow): Promise<void> {
    return this.sink.write(csvLine([e.path, ...this.columns!.map(() => ''), e.error]));
  }

  protected async row(row: R | ErrorRow): Promise<void> {
    if (isErrorRow(row)) {
      if (this.columns === null) this.held.push(row);
      else await this.errorLine(row);
      return;
    }
    if (this.columns === null) await this.start(row);
    if (this.expected !== null) {
      const cols = this.schema.csvColumns(row);
      if (cols.join(',') !== this.expected.join(',')) {
        throw new OutputError(`cannot resume: the file's CSV columns are ${this.expected.slice(0, 6).join(',')}… (${this.expected.length}), this run writes ${cols.slice(0, 6).join(',')}… (${cols.length})`);
      }
      this.expected = null;
    }
    let text = '';
    for (const cells of this.schema.csvRecords(row)) {
      if (cells.length !== this.columns!.length) {
        throw new OutputError(`${this.schema.kind} CSV: ${row.path} has ${cells.length} values, the header has ${this.columns!.length}`);
      }
      text += csvLine([row.path, ...cells, '']);
    }
    await this.sink.write(text);
  }

  protected async finish(): Promise<void> {
    if (this.columns === null) await this.start(null);
  }
}

/**
 * A float32 [N, D] .npy plus a paths file (line i names row i). The rows stream into a file whose header
 * has room for NPY_MAX_ROWS; the real N is written into it at close (and at each checkpoint). To stdout,
 * the npy is spooled to a temporary file and copied out at close (N is only known then); there is no paths
 * file in that case. Each row's data is written before its paths line.
 */
class NpyWriter<R extends { path: string }> extends BaseWriter<R> {
  private rows = 0;
  private cols: number | null = null;
  private rowShape: number[] = [];
  private headerLength = 0;

  constructor(
    schema: RowSchema<R>, sink: Sink, private readonly data: FileSink,
    private readonly paths: FileSink | null, private readonly onError?: (row: ErrorRow) => void, append?: StoredOutput | null,
  ) {
    super(schema, sink);
    if (append?.npy) {
      this.rows = append.rows.length;
      this.rowShape = append.npy.rowShape;
      this.cols = this.rowShape.reduce((a, b) => a * b, 1);
      this.headerLength = append.npy.headerLength;
    }
  }

  protected async row(row: R | ErrorRow): Promise<void> {
    if (isErrorRow(row)) {
      this.onError?.(row);
      return;
    }
    const v = this.schema.npy!(row);
    if (this.cols === null) {
      this.cols = v.length;
      this.rowShape = this.schema.npyShape?.(row) ?? [v.length];
      this.headerLength = npyReservedLength(this.rowShape);
      await this.data.write(npyHeader(0, this.rowShape, this.headerLength));
    } else if (v.length !== this.cols) {
      throw new OutputError(`npy: ${row.path} has ${v.length} values, earlier rows have ${this.cols}`);
    }
    await this.data.write(float32Bytes(v));
    await this.paths?.write(pathsLine(row.path));
    this.rows++;
  }

  override async checkpoint(): Promise<void> {
    if (!(this.data instanceof InPlaceFileSink)) return;
    if (this.cols !== null) await this.data.patch(0, npyHeader(this.rows, this.rowShape, this.headerLength));
    await this.data.checkpoint();
    await this.paths?.checkpoint();
  }

  protected async finish(): Promise<void> {
    if (this.cols === null) await this.data.write(npyHeader(0, 0));
    else await this.data.patch(0, npyHeader(this.rows, this.rowShape, this.headerLength));
    if (this.data !== this.sink) {
      await this.data.copyTo(this.sink);
      await this.data.close();
    }
    await this.paths?.close();
  }

  override async abort(): Promise<void> {
    await super.abort();
    if (this.data !== this.sink) await this.data.abort();
    await this.paths?.abort();
  }
}

/** `feats.npy` → `feats.paths.txt` (any other name: NAME.paths.txt). */
export function pathsFileFor(output: string): string {
  return `${output.endsWith('.npy') ? output.slice(0, -4) : output}.paths.txt`;
}

/**
 * Where an output's bytes go: stdout, a file written atomically, or (append) a file continued in place.
 * `keep` is how much of an existing file to continue after.
 */
export function createSink(output: string | undefined, stdout: NodeJS.WritableStream, keep?: number): Sink {
  if (output === undefined) return new StreamSink(stdout);
  return keep === undefined ? new AtomicFileSink(output) : new InPlaceFileSink(output, keep);
}

/** A writer for any row schema (commands with their own row kinds use this directly). */
export function createSchemaWriter<R extends { path: string }>(schema: RowSchema<R>, format: string, opts: WriterOptions): RowWriter<R> {
  const valid = formatsFor(schema as unknown as RowSchema<{ path: string }>);
  if (!(valid as string[]).includes(format)) {
    throw new UsageError(`format "${format}" is not available for ${schema.kind}; choose one of: ${valid.join(', ')}`);
  }
  if (opts.append !== undefined && opts.output === undefined) throw new UsageError('appending to an output (--resume) needs a file: -o FILE');
  const prior = resumed(opts.append);
  const sink = createSink(opts.output, opts.stdout, opts.append === undefined ? undefined : (prior?.keep ?? 0));
  switch (format as Format) {
    case 'csv':
      return new CsvWriter(schema, sink, prior?.csvHeader);
    case 'json':
      return new JsonArrayWriter(schema, sink, prior?.rows.length ?? 0);
    case 'jsonl':
      return new JsonlWriter(schema, sink);
    case 'npy': {
      const data = sink instanceof FileSink ? sink : new AtomicFileSink(null);
      let paths: FileSink | null = null;
      if (opts.output !== undefined) {
        paths = opts.append === undefined
          ? new AtomicFileSink(pathsFileFor(opts.output))
          : new InPlaceFileSink(pathsFileFor(opts.output), prior?.npy?.pathsKeep ?? 0);
      }
      return new NpyWriter(schema, sink, data, paths, opts.onError, prior);
    }
  }
}

/** A writer for one of the built-in row kinds; an unknown format is a UsageError listing the valid ones. */
export function createWriter<K extends RowKind>(kind: K, format: string, opts: WriterOptions): RowWriter<RowFor<K>> {
  return createSchemaWriter(SCHEMAS[kind] as unknown as RowSchema<RowFor<K>>, format, opts);
}

/**
 * Apache Parquet, written with hyparquet-writer and read back (for --resume and `vit merge`) with hyparquet.
 *
 * Columns: `path` (string), the row kind's typed columns (RowSchema.columns; classify: `predictions`
 * list<struct<index int32, label string, score float, logit float>>, embed: `embedding` list<float>), then
 * `error` (string; null on good rows, and a failed input has null in the typed columns). Paths that are not
 * UTF-8 are written as the CSV writes them (each such byte as \xNN, see fs-names.ts). Rows are buffered and
 * written as one row group every ROW_GROUP_ROWS rows (or ROW_GROUP_BYTES of values), so memory stays flat
 * whatever the number of rows; the footer (the schema and where every row group is) is written at close.
 * Row groups are snappy-compressed, with min/max statistics; no page indexes or bloom filters.
 *
 * --resume: a parquet file cannot be continued in place. Its footer ends it, and from the first byte written
 * after it until a new footer is complete the file is no parquet file at all. So a resumed output is written
 * anew beside the old one: the old rows read back and written again (in row groups of this run), then the new
 * rows; at a batch's end, every COMMIT_EVERY_MS or so, the file so far is copied, given a footer and renamed
 * over the output (AtomicFileSink.snapshot). A kill at any moment leaves the output as the last commit (or the
 * run before) made it: a complete parquet file, which the next --resume continues. The interval grows with
 * the cost of the copy, which takes at most a tenth of the run's time.
 */
import type { FileHandle } from 'node:fs/promises';
import { open } from 'node:fs/promises';
import { parquetMetadataAsync, parquetReadObjects, type AsyncBuffer, type FileMetaData, type SchemaElement } from 'hyparquet';
import { ByteWriter, ParquetWriter } from 'hyparquet-writer';
import { OutputError } from '../../errors.js';
import { displayPath, undisplayPath } from '../fs-names.js';
import { BaseWriter, type FormatModule, type ResumeTarget } from './format.js';
import { emptyOutput, type ReadMode, type StoredOutput, type StoredRow } from './records.js';
import { isErrorRow, type Column, type ColumnType, type ErrorRow, type RowSchema, type RowWriter } from './rows.js';
import { AtomicFileSink, type Sink } from './target.js';

/** Rows per row group: small enough to hold while buffering, large enough for readers to scan fast. */
const ROW_GROUP_ROWS = 4096;
/**
 * Bytes of values per row group at most (wide embeddings fill a group before ROW_GROUP_ROWS do). Encoding
 * a group makes garbage many times its size (the encoder walks plain JS arrays), so groups are kept small:
 * 768-d embeddings peak at about 180 MiB of resident memory whatever the number of rows, 2 MiB groups at 240.
 */
const ROW_GROUP_BYTES = 2 ** 20;
/** A resumed output is committed at most this often; more rarely when a commit's copy takes long. */
const COMMIT_EVERY_MS = 10_000;
/** Commits take at most 1/COMMIT_COST_SHARE of the time between them. */
const COMMIT_COST_SHARE = 10;

const CREATED_BY = 'vit-cli (hyparquet-writer)';

// ---------------------------------------------------------------------------------------------------------
// The schema

/** A column type as parquet schema elements (a depth-first list, the column's own element first). */
function elementsOf(name: string, type: ColumnType, repetition: 'REQUIRED' | 'OPTIONAL'): SchemaElement[] {
  if (type === 'string') return [{ name, type: 'BYTE_ARRAY', converted_type: 'UTF8', logical_type: { type: 'STRING' }, repetition_type: repetition }];
  if (type === 'int32') return [{ name, type: 'INT32', repetition_type: repetition }];
  if (type === 'float') return [{ name, type: 'FLOAT', repetition_type: repetition }];
  if ('list' in type) {
    // The three-level LIST layout of the parquet spec, which Arrow, DuckDB and Spark all read as list<…>.
    return [
      { name, repetition_type: repetition, converted_type: 'LIST', logical_type: { type: 'LIST' }, num_children: 1 },
      { name: 'list', repetition_type: 'REPEATED', num_children: 1 },
      ...elementsOf('element', type.list, 'REQUIRED'),
    ];
  }
  const fields = Object.entries(type.struct);
  return [{ name, repetition_type: repetition, num_children: fields.length }, ...fields.flatMap(([f, t]) => elementsOf(f, t, 'REQUIRED'))];
}

/** The file schema of a row kind: path, its typed columns (null on failed inputs), error. */
function schemaOf(columns: readonly Pick<Column<never>, 'name' | 'type'>[]): SchemaElement[] {
  return [
    { name: 'schema', num_children: columns.length + 2 },
    ...elementsOf('path', 'string', 'REQUIRED'),
    ...columns.flatMap((c) => elementsOf(c.name, c.type, 'OPTIONAL')),
    ...elementsOf('error', 'string', 'OPTIONAL'),
  ];
}

/**
 * A flat parquet schema as a tree: the top-level column names, and the path of every leaf (a column chunk
 * of each row group). Null when the elements do not form one tree (children past the end, elements left
 * over): the schema of a damaged file.
 */
function schemaPaths(schema: readonly SchemaElement[]): { top: string[]; leaves: string[][] } | null {
  const top: string[] = [];
  const leaves: string[][] = [];
  // The elements are stored depth first; `todo` holds the path above each element still to come.
  const todo: string[][] = [];
  let next = 1;
  const children = (count: number, above: string[]): boolean => {
    if (!Number.isInteger(count) || count < 0 || count > schema.length - next - todo.length) return false;
    for (let c = 0; c < count; c++) todo.push(above);
    return true;
  };
  if (schema.length === 0 || !children(schema[0].num_children ?? 0, [])) return null;
  while (todo.length > 0) {
    const above = todo.pop()!;
    const e = schema[next++];
    const path = [...above, e.name];
    if (above.length === 0) top.push(e.name);
    if ((e.num_children ?? 0) === 0) leaves.push(path);
    else if (!children(e.num_children!, path)) return null;
  }
  return next === schema.length ? { top, leaves } : null;
}

/** The names of a schema's top-level columns (the root's children). */
function topLevel(schema: readonly SchemaElement[]): string[] {
  return schemaPaths(schema)?.top ?? [];
}

/** A value as the encoder takes it: lists as plain arrays (hyparquet-writer walks them with Array.isArray). */
function plain(type: ColumnType, v: unknown): unknown {
  if (typeof type === 'string' || v === null) return v;
  if ('list' in type) {
    const items = ArrayBuffer.isView(v) ? Array.from(v as Float32Array) : (v as unknown[]);
    return typeof type.list === 'string' ? items : items.map((x) => plain(type.list, x));
  }
  const out: Record<string, unknown> = {};
  for (const [f, t] of Object.entries(type.struct)) out[f] = plain(t, (v as Record<string, unknown>)[f]);
  return out;
}

/** Roughly the bytes a value takes in a row group, to bound a group's size before it is encoded. */
function sizeOf(v: unknown): number {
  if (v === null || v === undefined) return 0;
  if (typeof v === 'string') return v.length + 4;
  if (typeof v === 'number') return 4;
  if (ArrayBuffer.isView(v)) return v.byteLength;
  if (Array.isArray(v)) return typeof v[0] === 'number' ? 4 + 4 * v.length : v.reduce((n: number, x) => n + sizeOf(x), 4);
  return Object.values(v as object).reduce((n: number, x) => n + sizeOf(x), 0);
}

// ---------------------------------------------------------------------------------------------------------
// Writing

/** hyparquet-writer's byte writer, handing each row group (and the footer) to a sink as it is finished. */
class SinkWriter extends ByteWriter {
  constructor(private readonly sink: Sink) {
    super(1 << 16);
  }

  flush(): Promise<void> {
    const bytes = this.getBytes();
    return this.sink.write(bytes).then(() => {
      this.index = 0;
    });
  }

  override finish(): Promise<void> {
    return this.flush() as unknown as void & Promise<void>;
  }
}

/**
 * Rows into row groups: what a run, a resumed run and a merge share. Values come per top-level column, in the
 * schema's order, as the encoder takes them (see plain).
 */
class ParquetEncoder {
  private readonly names: string[];
  private readonly writer: ParquetWriter;
  private buffered: unknown[][];
  private bytes = 0;
  /** Rows in finished row groups. */
  written = 0;

  constructor(sink: Sink, readonly schema: SchemaElement[]) {
    this.names = topLevel(schema);
    this.writer = new ParquetWriter({ writer: new SinkWriter(sink), schema, createdBy: CREATED_BY });
    this.buffered = this.names.map(() => []);
  }

  /** Rows written or buffered. */
  get rows(): number {
    return this.written + this.buffered[0].length;
  }

  async append(values: unknown[]): Promise<void> {
    values.forEach((v, i) => this.buffered[i].push(v));
    this.bytes += sizeOf(values);
    if (this.buffered[0].length >= ROW_GROUP_ROWS || this.bytes >= ROW_GROUP_BYTES) await this.flushGroup();
  }

  /** The buffered rows as a row group (none when nothing is buffered). */
  async flushGroup(): Promise<void> {
    const n = this.buffered[0].length;
    if (n === 0) return;
    const columnData = this.names.map((name, i) => ({ name, data: this.buffered[i], offsetIndex: false }));
    this.buffered = this.names.map(() => []);
    this.bytes = 0;
    await this.writer.write({ columnData, rowGroupSize: n });
    this.written += n;
  }

  /** The footer that makes the row groups written so far a complete file (for a commit). */
  footer(): Uint8Array {
    const bytes = new ByteWriter();
    const f = new ParquetWriter({ writer: bytes, schema: this.schema, createdBy: CREATED_BY });
    f.row_groups = this.writer.row_groups;
    f.num_rows = this.writer.num_rows;
    f.finish();
    // Without the "PAR1" a new writer starts its file with: that is at the start of the file already.
    return bytes.getBytes().subarray(4);
  }

  async finish(): Promise<void> {
    await this.flushGroup();
    await this.writer.finish();
  }
}

/** A run's rows as parquet. */
class ParquetRowWriter<R extends { path: string }> extends BaseWriter<R> {
  protected readonly encoder: ParquetEncoder;
  private readonly columns: Column<R>[];

  constructor(schema: RowSchema<R>, sink: Sink) {
    super(schema, sink);
    this.columns = schema.columns!;
    this.encoder = new ParquetEncoder(sink, schemaOf(this.columns));
  }

  protected async row(row: R | ErrorRow): Promise<void> {
    const path = displayPath(row.path);
    if (isErrorRow(row)) await this.encoder.append([path, ...this.columns.map(() => null), row.error]);
    else await this.encoder.append([path, ...this.columns.map((c) => plain(c.type, c.value(row))), null]);
  }

  protected async finish(): Promise<void> {
    await this.encoder.finish();
  }
}

/** A resumed output: written beside the old one (which it starts by copying), committed over it now and then. */
class ResumedParquetWriter<R extends { path: string }> extends ParquetRowWriter<R> {
  private committedRows = -1;
  private lastCommit = performance.now();
  private commitMs = 0;
  /** The first batch of the run is committed at once, so that the output shows progress from the start. */
  private eager = true;

  constructor(schema: RowSchema<R>, private readonly file: AtomicFileSink) {
    super(schema, file);
  }

  /** The rows of the output as it is, written again into this one (their values as stored). */
  async copy(prior: StoredOutput): Promise<void> {
    if (layout(prior.parquet!.schema) !== layout(this.encoder.schema)) {
      throw new OutputError(`cannot resume ${prior.file}: its columns are ${topLevel(prior.parquet!.schema).join(', ')}, this run writes ${topLevel(this.encoder.schema).join(', ')}`);
    }
    const names = topLevel(this.encoder.schema);
    const fh = await open(prior.file, 'r');
    try {
      const buffer = fileBuffer(fh, (await fh.stat()).size);
      for await (const { rows } of rowGroups(prior.file, buffer)) {
        for (const r of rows) await this.encoder.append(names.map((n) => r[n] ?? null));
      }
    } finally {
      await fh.close();
    }
  }

  /** The output replaced, atomically, by the rows so far. */
  async commit(): Promise<void> {
    const t0 = performance.now();
    await this.encoder.flushGroup();
    await this.file.snapshot(this.encoder.footer());
    this.committedRows = this.encoder.rows;
    this.lastCommit = performance.now();
    this.commitMs = this.lastCommit - t0;
  }

  override async checkpoint(): Promise<void> {
    const due = this.eager ? 0 : Math.max(COMMIT_EVERY_MS, COMMIT_COST_SHARE * this.commitMs);
    if (this.encoder.rows === this.committedRows || performance.now() - this.lastCommit < due) return;
    await this.commit();
    this.eager = false;
  }
}

// ---------------------------------------------------------------------------------------------------------
// Reading back

/** An AsyncBuffer (what hyparquet reads from) over an open file. */
function fileBuffer(fh: FileHandle, size: number): AsyncBuffer {
  return {
    byteLength: size,
    async slice(start, end = size) {
      const buf = new Uint8Array(end - start);
      for (let at = 0; at < buf.length;) {
        const { bytesRead } = await fh.read(buf, at, buf.length - at, start + at);
        if (bytesRead === 0) throw new OutputError('the file got shorter while it was read');
        at += bytesRead;
      }
      return buf.buffer;
    },
  };
}

async function metadataOf(file: string, buffer: AsyncBuffer): Promise<FileMetaData> {
  let md: FileMetaData;
  try {
    md = await parquetMetadataAsync(buffer);
  } catch (e) {
    throw new OutputError(`${file} is not a parquet file (${(e as Error).message})`);
  }
  const paths = schemaPaths(md.schema);
  if (paths === null) throw new OutputError(`${file} is not a parquet file (its schema is not a tree of columns)`);
  const names = paths.top;
  if (names[0] !== 'path' || names[names.length - 1] !== 'error') {
    throw new OutputError(`${file} is not a parquet output of vit: its columns are ${names.join(', ')}, not path, …, error`);
  }
  // Every row group holds one chunk per leaf column, in the schema's order. (hyparquet leaves a chunk that
  // is in no column of the schema unread but failing on its own, which Node reports as an unhandled
  // rejection and ends the process for.)
  const want = paths.leaves.map((p) => p.join('.'));
  for (const [g, rg] of md.row_groups.entries()) {
    const got = rg.columns.map((c) => c.meta_data?.path_in_schema.join('.'));
    if (got.length !== want.length || got.some((p, i) => p !== want[i])) {
      throw new OutputError(`${file} is damaged: row group ${g} does not hold the columns its schema lists`);
    }
  }
  return md;
}

/** Rows of a file hyparquet can decode; what it cannot decode is a damaged file, said in one line. */
async function readRows(file: string, options: Parameters<typeof parquetReadObjects>[0]): Promise<Record<string, unknown>[]> {
  try {
    return await parquetReadObjects(options);
  } catch (e) {
    if (e instanceof OutputError) throw e;
    throw new OutputError(`${file} is damaged (${(e as Error).message})`);
  }
}

/** The rows of a parquet file (all columns, or those named), a row group at a time, with the index of its first row. */
async function* rowGroups(file: string, buffer: AsyncBuffer, columns?: string[]): AsyncGenerator<{ start: number; rows: Record<string, unknown>[] }> {
  const metadata = await metadataOf(file, buffer);
  let start = 0;
  for (const rg of metadata.row_groups) {
    const end = start + Number(rg.num_rows);
    yield { start, rows: await readRows(file, { file: buffer, metadata, columns, rowStart: start, rowEnd: end }) };
    start = end;
  }
}

/**
 * The rows of a parquet output: their paths and whether each failed, a row's "range" being its index. A
 * parquet file vit wrote is complete or absent (it is only ever renamed into place), so a file that is not
 * readable parquet is refused for --resume and merge alike.
 */
async function readParquet(fh: FileHandle, file: string, _mode: ReadMode, size: number): Promise<StoredOutput> {
  const out = emptyOutput(file, 'parquet');
  if (size === 0) return out;
  const buffer = fileBuffer(fh, size);
  out.parquet = { schema: (await metadataOf(file, buffer)).schema };
  for await (const { start, rows } of rowGroups(file, buffer, ['path', 'error'])) {
    rows.forEach((r, i) => out.rows.push({ path: undisplayPath(String(r.path)), start: start + i, end: start + i + 1, error: r.error !== null && r.error !== undefined }));
  }
  out.keep = out.rows.length > 0 ? size : 0;
  return out;
}

// ---------------------------------------------------------------------------------------------------------
// Merging

/** The columns of a schema, for comparing parts. */
const layout = (schema: readonly SchemaElement[]) =>
  JSON.stringify(schema.slice(1).map((e) => [e.name, e.type ?? null, e.repetition_type ?? null, e.converted_type ?? null, e.num_children ?? 0]));

/** One part's rows by index, decoding one row group at a time (parts are mostly read front to back). */
class PartRows {
  private metadata: FileMetaData | null = null;
  private buffer: AsyncBuffer | null = null;
  private fh: FileHandle | null = null;
  private cached: { start: number; rows: Record<string, unknown>[] } | null = null;
  private starts: number[] = [];

  constructor(private readonly file: string) {}

  async row(index: number): Promise<Record<string, unknown>> {
    const c = this.cached;
    if (c !== null && index >= c.start && index < c.start + c.rows.length) return c.rows[index - c.start];
    if (this.metadata === null) {
      this.fh = await open(this.file, 'r');
      this.buffer = fileBuffer(this.fh, (await this.fh.stat()).size);
      this.metadata = await metadataOf(this.file, this.buffer);
      let at = 0;
      this.starts = this.metadata.row_groups.map((rg) => (at += Number(rg.num_rows)) - Number(rg.num_rows));
    }
    let g = this.starts.length - 1;
    while (g > 0 && this.starts[g] > index) g--;
    const start = this.starts[g];
    const end = start + Number(this.metadata.row_groups[g].num_rows);
    const rows = await readRows(this.file, { file: this.buffer!, metadata: this.metadata, rowStart: start, rowEnd: end });
    this.cached = { start, rows };
    return rows[index - start];
  }

  async close(): Promise<void> {
    await this.fh?.close();
  }
}

/** The parts' rows in the merged order, written again as one file (the parts' schema, row groups of its own). */
async function mergeParquet(parts: StoredOutput[], rows: { part: number; row: StoredRow }[], sink: Sink): Promise<void> {
  const schemas = parts.filter((p) => p.parquet !== undefined).map((p) => ({ file: p.file, schema: p.parquet!.schema }));
  const first = schemas[0];
  for (const s of schemas) {
    if (layout(s.schema) !== layout(first.schema)) throw new OutputError(`${s.file} has other columns than ${first.file}: ${topLevel(s.schema).join(', ')} vs ${topLevel(first.schema).join(', ')}`);
  }
  // No part holds a row: any schema of this kind would do, and the merged file needs one; the parts' is it.
  const schema = first?.schema ?? schemaOf([]);
  const encoder = new ParquetEncoder(sink, schema);
  const names = topLevel(schema);
  const readers = parts.map((p) => new PartRows(p.file));
  try {
    for (const { part, row } of rows) {
      const r = await readers[part].row(row.start);
      await encoder.append(names.map((n) => r[n] ?? null));
    }
    await encoder.finish();
  } finally {
    for (const r of readers) await r.close();
  }
}

export const PARQUET: FormatModule = {
  needsFile: true,
  writer: async (schema, { sink }) => new ParquetRowWriter(schema, sink),
  async resume<R extends { path: string }>(schema: RowSchema<R>, target: ResumeTarget, prior: StoredOutput): Promise<RowWriter<R>> {
    const file = await AtomicFileSink.open(target.path, target.name, target.existing);
    const writer = new ResumedParquetWriter(schema, file);
    try {
      if (prior.rows.length > 0) await writer.copy(prior);
      // A fresh output is a (still empty) parquet file from the start, so that a kill never leaves none.
      else await writer.commit();
    } catch (e) {
      await writer.abort();
      throw e;
    }
    return writer;
  },
  read: readParquet,
  mergeRows: mergeParquet,
};

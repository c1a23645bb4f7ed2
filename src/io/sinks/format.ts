/**
 * What each output format module (csv.ts, json.ts, jsonl.ts, npy.ts, parquet.ts) provides: a writer, the
 * reader that `--resume` and `vit merge` use, and the rules for joining parts. The table of them is in index.ts.
 */
import type { Stats } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import type { ReadMode, StoredOutput, StoredRow } from './records.js';
import { isErrorRow, toJson, type ErrorRow, type RowSchema, type RowWriter } from './rows.js';
import type { FileSink, Sink } from './target.js';

export interface WriterParts {
  /** Where the bytes go. */
  sink: Sink;
  /** A resumed output's rows (continued in place), or null for a new output. */
  prior: StoredOutput | null;
  /** npy: the paths file beside a file output (null for stdout and streams). */
  paths: FileSink | null;
  /** npy: where the array is written when `sink` cannot seek back to its header (stdout, streams). */
  spool: () => Promise<FileSink>;
}

/** How the rows of several parts become one output. */
export interface Merger {
  /** The bytes before the first row of an output of `count` rows. */
  begin(count: number): Uint8Array;
  /** Row `i` of the merged output, from its bytes in `part`. */
  row(bytes: Buffer, part: StoredOutput, i: number): Uint8Array;
  end(count: number): Uint8Array;
}

/** The regular file a --resume continues (see target.ts). */
export interface ResumeTarget {
  path: string;
  name: string;
  existing: Stats | null;
}

export interface FormatModule {
  /** Written only to a file, FIFO or device given with -o, never to stdout (binary with a footer: parquet). */
  needsFile?: boolean;
  /** Bytes, not text (npy): refused for stdout when stdout is a terminal, as gzip refuses. */
  binary?: boolean;
  writer<R extends { path: string }>(schema: RowSchema<R>, parts: WriterParts): Promise<RowWriter<R>>;
  /**
   * For a format that cannot be continued in place (parquet: the footer ends the file), the writer of a
   * --resume run, given what the output holds. Other formats continue the file in place after its `keep` bytes.
   */
  resume?<R extends { path: string }>(schema: RowSchema<R>, target: ResumeTarget, prior: StoredOutput): Promise<RowWriter<R>>;
  read(fh: FileHandle, file: string, mode: ReadMode, size: number): Promise<StoredOutput>;
  /** Formats whose rows are byte ranges: the merger for these parts (throws when they cannot be joined, e.g. other CSV columns). */
  merger?(parts: StoredOutput[]): Merger;
  /** Formats whose rows are not byte ranges (parquet): write the rows of the parts, in this order, to `sink`. */
  mergeRows?(parts: StoredOutput[], rows: { part: number; row: StoredRow }[], sink: Sink): Promise<void>;
}

/** The life cycle every writer shares: ordering checks, the sink, closedByReader. Formats say how rows become bytes. */
export abstract class BaseWriter<R extends { path: string }> implements RowWriter<R> {
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
    await this.sink.checkpoint();
  }

  async close(): Promise<void> {
    if (this.state !== 'open') throw new Error(`${this.schema.kind} writer: closed twice`);
    this.state = 'closed';
    try {
      await this.finish();
      await this.sink.close();
    } catch (e) {
      await this.abort();
      throw e;
    }
  }

  async abort(): Promise<void> {
    this.state = 'closed';
    await this.sink.abort();
  }
}

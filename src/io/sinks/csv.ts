/**
 * CSV with header `path,<schema columns>,error`. The columns may depend on the first good row (an
 * embedding's width), so failed inputs that come before it are held back until it arrives (or close).
 * A resumed file brings its header: new rows must have its columns.
 */
import { OutputError } from '../../errors.js';
import { displayPath, undisplayPath } from '../fs-names.js';
import { BaseWriter, type FormatModule, type Merger } from './format.js';
import { emptyOutput, records, unfinished, type Rec, type StoredOutput } from './records.js';
import { csvLine, isErrorRow, type ErrorRow, type RowSchema } from './rows.js';
import type { Sink } from './target.js';

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
    return this.sink.write(csvLine([displayPath(e.path), ...this.columns!.map(() => ''), e.error]));
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
      text += csvLine([displayPath(row.path), ...cells, '']);
    }
    await this.sink.write(text);
  }

  protected async finish(): Promise<void> {
    if (this.columns === null) await this.start(null);
  }
}

/** The cells of one CSV record (RFC 4180; the record's line end already removed). */
export function parseCsvRecord(text: string): string[] {
  const cells: string[] = [];
  let cell = '';
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const ch = text[i];
    if (quoted) {
      if (ch !== '"') cell += ch;
      else if (text[i + 1] === '"') {
        cell += '"';
        i++;
      } else quoted = false;
    } else if (ch === '"') quoted = true;
    else if (ch === ',') {
      cells.push(cell);
      cell = '';
    } else cell += ch;
  }
  cells.push(cell);
  return cells;
}

/** The CSV header of the merged file: that of the parts with good rows, which must agree. */
function mergedHeader(parts: StoredOutput[]): string[] {
  let header: string[] | null = null;
  let from = '';
  for (const p of parts) {
    if (!p.rows.some((r) => !r.error)) continue;
    if (header === null) {
      header = p.csvHeader!;
      from = p.file;
    } else if (header.join(',') !== p.csvHeader!.join(',')) {
      throw new OutputError(`${p.file} has other CSV columns than ${from}: were they written by the same command and model?`);
    }
  }
  // With only failed inputs, any part's header will do (they are all provisional).
  return header ?? parts[0]?.csvHeader ?? ['path', 'error'];
}

export const CSV: FormatModule = {
  writer: async (schema, { sink, prior }) => new CsvWriter(schema, sink, prior?.csvHeader),
  async read(fh, file, mode) {
    const out = emptyOutput(file, 'csv');
    let header: string[] | null = null;
    let last: string | null = null;
    let lastRec: Rec | null = null;
    for await (const rec of records(fh, true)) {
      lastRec = rec;
      if (!rec.complete) break;
      const cells = parseCsvRecord(rec.bytes.toString('utf8'));
      if (header === null) {
        if (cells[0] !== 'path' || cells[cells.length - 1] !== 'error') {
          throw new OutputError(`${file} is not a CSV written by vit: its header is "${rec.bytes.toString('utf8').slice(0, 80)}", expected path,...,error`);
        }
        header = cells;
        out.csvHeader = cells;
        continue;
      }
      if (cells.length !== header.length) {
        throw new OutputError(`${file}: the record at byte ${rec.start} has ${cells.length} fields, the header has ${header.length}`);
      }
      const error = cells[cells.length - 1] !== '';
      const path = undisplayPath(cells[0]);
      // A row is the run of consecutive records of one path (inputs are unique within a run).
      if (path === last && !error && !out.rows[out.rows.length - 1].error) out.rows[out.rows.length - 1].end = rec.end;
      else out.rows.push({ path, start: rec.start, end: rec.end, error });
      last = path;
    }
    if (mode === 'merge') {
      if (lastRec !== null && !lastRec.complete) throw unfinished(file, `it ends inside a record at byte ${lastRec.start}`);
      if (header === null) throw unfinished(file, 'no header');
      return out;
    }
    // Resume: a row of several records (classify's top-k) cannot be told complete from its records alone,
    // so the last row is always given up and done again.
    out.rows.pop();
    // Without a good row the header may be provisional (an embedding's width is learnt from the first good
    // row): start over; only failed inputs are done again.
    if (!out.rows.some((r) => !r.error)) return emptyOutput(file, 'csv');
    out.keep = out.rows[out.rows.length - 1].end;
    return out;
  },
  merger(parts): Merger {
    const header = mergedHeader(parts);
    return {
      begin: () => Buffer.from(csvLine(header)),
      row(bytes, part) {
        if (part.csvHeader!.length === header.length) return bytes;
        // An error row of a part that saw only failed inputs, under its provisional header: re-pad it.
        const cells = parseCsvRecord(bytes.toString('utf8').replace(/\n$/, ''));
        return Buffer.from(csvLine([cells[0], ...header.slice(1, -1).map(() => ''), cells[cells.length - 1]]));
      },
      end: () => new Uint8Array(0),
    };
  },
};

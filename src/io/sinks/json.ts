/**
 * One JSON array, written incrementally: `[` on its own line, then rows each on one line, separated by
 * `,\n` (written with the row that follows), then `\n]\n`; with no rows `[\n\n]\n`. A stored row's range is
 * its JSON text alone, without the comma.
 */
import { OutputError } from '../../errors.js';
import { BaseWriter, type FormatModule } from './format.js';
import { emptyOutput, parseJsonRow, records, unfinished, type Rec } from './records.js';
import type { ErrorRow, RowSchema } from './rows.js';
import type { Sink } from './target.js';

const EMPTY = '[\n\n]\n';

class JsonArrayWriter<R extends { path: string }> extends BaseWriter<R> {
  /** Rows already in the array (a resumed file's rows continue after `,\n`). */
  constructor(schema: RowSchema<R>, sink: Sink, private count: number) {
    super(schema, sink);
  }

  protected async row(row: R | ErrorRow): Promise<void> {
    await this.sink.write(`${this.count++ === 0 ? '[\n' : ',\n'}${this.json(row)}`);
  }

  protected async finish(): Promise<void> {
    await this.sink.write(this.count === 0 ? EMPTY : '\n]\n');
  }
}

const text = (s: string) => Buffer.from(s, 'utf8');

export const JSON_ARRAY: FormatModule = {
  writer: async (schema, { sink, prior }) => new JsonArrayWriter(schema, sink, prior?.rows.length ?? 0),
  async read(fh, file, mode) {
    const out = emptyOutput(file, 'json');
    let opened = false;
    let closed = false;
    let broken: Rec | null = null;
    for await (const rec of records(fh, false)) {
      if (broken !== null || closed) {
        throw new OutputError(`${file}: unexpected text at byte ${(broken ?? rec).start}; not a JSON array written by vit`);
      }
      const bytes = rec.bytes;
      if (!opened) {
        if (!rec.complete) break;
        if (bytes.toString('utf8') !== '[') throw new OutputError(`${file} is not a JSON array written by vit (it does not start with "[" on its own line)`);
        opened = true;
        continue;
      }
      if (rec.complete && bytes.toString('utf8') === ']') {
        closed = true;
        continue;
      }
      if (rec.complete && bytes.length === 0 && out.rows.length === 0) continue;
      const comma = rec.complete && bytes[bytes.length - 1] === 0x2c;
      const json = comma ? bytes.subarray(0, -1) : bytes;
      const row = parseJsonRow(json);
      if (row === null) {
        broken = rec;
        continue;
      }
      out.rows.push({ ...row, start: rec.start, end: rec.start + json.length });
    }
    if (mode === 'merge') {
      if (broken !== null) throw unfinished(file, `it ends inside a row at byte ${broken.start}`);
      if (!closed) throw unfinished(file, 'the array is not closed');
    }
    out.keep = out.rows.length > 0 ? out.rows[out.rows.length - 1].end : 0;
    return out;
  },
  merger: () => ({
    begin: (count) => text(count === 0 ? EMPTY : '[\n'),
    row: (bytes, _part, i) => (i === 0 ? bytes : Buffer.concat([text(',\n'), bytes])),
    end: (count) => text(count === 0 ? '' : '\n]\n'),
  }),
};

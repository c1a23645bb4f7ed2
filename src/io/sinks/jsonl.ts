/** JSON Lines: one JSON object per row and line. */
import { OutputError } from '../../errors.js';
import { BaseWriter, type FormatModule } from './format.js';
import { emptyOutput, parseJsonRow, records, unfinished, type Rec } from './records.js';
import type { ErrorRow } from './rows.js';

class JsonlWriter<R extends { path: string }> extends BaseWriter<R> {
  protected async row(row: R | ErrorRow): Promise<void> {
    await this.sink.write(`${this.json(row)}\n`);
  }

  protected async finish(): Promise<void> {}
}

const none = new Uint8Array(0);

export const JSONL: FormatModule = {
  writer: async (schema, { sink }) => new JsonlWriter(schema, sink),
  async read(fh, file, mode) {
    const out = emptyOutput(file, 'jsonl');
    let bad: Rec | null = null;
    for await (const rec of records(fh, false)) {
      if (bad !== null) throw new OutputError(`${file}: the line at byte ${bad.start} is not a row written by vit`);
      const row = rec.complete ? parseJsonRow(rec.bytes) : null;
      if (row === null) {
        if (mode === 'merge') throw rec.complete ? new OutputError(`${file}: the line at byte ${rec.start} is not a row written by vit`) : unfinished(file, 'its last line is cut off');
        bad = rec;
        continue;
      }
      out.rows.push({ ...row, start: rec.start, end: rec.end });
    }
    out.keep = out.rows.length > 0 ? out.rows[out.rows.length - 1].end : 0;
    return out;
  },
  merger: () => ({ begin: () => none, row: (bytes) => bytes, end: () => none }),
};

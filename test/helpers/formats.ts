import assert from 'node:assert/strict';
import { openOutput } from '../../src/io/sinks/index.js';
import type { Provenance } from '../../src/io/sinks/manifest.js';
import { CLASSIFY_SCHEMA, EMBED_SCHEMA, type ClassifyRow, type EmbedRow, type Format, type RowSchema, type RowWriter } from '../../src/io/sinks/rows.js';

/** An RFC 4180 parser: quoted fields may hold commas, doubled quotes, CR and LF. Accepts LF or CRLF records. */
export function parseCsv(text: string): string[][] {
  const records: string[][] = [];
  let record: string[] = [];
  let field = '';
  let i = 0;
  let quoted = false;
  while (i < text.length) {
    const ch = text[i];
    if (quoted) {
      if (ch === '"' && text[i + 1] === '"') {
        field += '"';
        i += 2;
      } else if (ch === '"') {
        quoted = false;
        i++;
      } else {
        field += ch;
        i++;
      }
      continue;
    }
    if (ch === '"') {
      assert.equal(field, '', `quote inside an unquoted field at ${i}`);
      quoted = true;
      i++;
    } else if (ch === ',') {
      record.push(field);
      field = '';
      i++;
    } else if (ch === '\n' || (ch === '\r' && text[i + 1] === '\n')) {
      record.push(field);
      records.push(record);
      record = [];
      field = '';
      i += ch === '\r' ? 2 : 1;
    } else {
      assert.ok(ch !== '\r', `bare CR outside quotes at ${i}`);
      field += ch;
      i++;
    }
  }
  assert.equal(quoted, false, 'unterminated quoted field');
  assert.equal(field + record.join(''), '', 'last record lacks its line end');
  return records;
}

/** Parse a .npy: header fields and the float32 data. */
export function readNpy(buf: Buffer): { shape: number[]; data: Float32Array; headerLength: number } {
  assert.equal(buf.subarray(0, 6).toString('latin1'), '\x93NUMPY');
  assert.deepEqual([buf[6], buf[7]], [1, 0], 'version 1.0');
  const hlen = buf.readUInt16LE(8);
  const header = buf.subarray(10, 10 + hlen).toString('latin1');
  assert.equal((10 + hlen) % 64, 0, 'data 64-byte aligned');
  assert.ok(header.endsWith('\n'));
  const m = /^\{'descr': '<f4', 'fortran_order': False, 'shape': \(([\d, ]*)\), \} *\n$/.exec(header);
  assert.ok(m, header);
  const shape = m[1].split(',').map((d) => d.trim()).filter(Boolean).map(Number);
  const body = buf.subarray(10 + hlen);
  const count = shape.reduce((n, d) => n * d, 1);
  assert.equal(body.length, count * 4, 'data size matches the shape');
  const data = new Float32Array(count);
  for (let i = 0; i < data.length; i++) data[i] = body.readFloatLE(i * 4);
  return { shape, data, headerLength: 10 + hlen };
}

/** The provenance test outputs are written with. */
export const TEST_PROVENANCE = (command: string, format: string): Provenance => ({
  command, format: format as Format, model: { name: 'test', id: 'test-model' }, options: {}, shard: null,
});

/** A writer of a built-in row kind (or any schema) as a run opens it, to stdout or a file (optionally resumed). */
type KindRow<K> = K extends 'classify' ? ClassifyRow : K extends 'embed' ? EmbedRow : K extends RowSchema<infer R> ? R : never;

export async function testWriter<K extends 'classify' | 'embed' | RowSchema<any>>(
  kind: K, format: string,
  o: { output?: string; stdout: NodeJS.WritableStream; resume?: boolean; provenance?: Provenance },
): Promise<RowWriter<KindRow<K>>> {
  type R = KindRow<K>;
  const schema = (kind === 'classify' ? CLASSIFY_SCHEMA : kind === 'embed' ? EMBED_SCHEMA : kind) as unknown as RowSchema<R>;
  const command = typeof kind === 'string' ? kind : 'test';
  const out = await openOutput(schema, {
    output: o.output, format: format as Format, stdout: o.stdout, inputs: [], resume: o.resume ?? false,
    provenance: o.provenance ?? TEST_PROVENANCE(command, format),
  });
  return out.writer;
}

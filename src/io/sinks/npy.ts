/**
 * A float32 [N, ...] .npy plus a paths file (line i names row i). The rows stream into a file whose header
 * has room for NPY_MAX_ROWS; the real N is written into it at close (and at each checkpoint). To stdout or
 * a stream the array is spooled to a temporary file and copied out at close (N is only known then); there
 * is no paths file then. Each row's data is written before its paths line.
 */
import type { FileHandle } from 'node:fs/promises';
import { OutputError } from '../../errors.js';
import { BaseWriter, type FormatModule } from './format.js';
import { emptyOutput, openStored, records, unfinished, type ReadMode, type Rec, type StoredOutput } from './records.js';
import { isErrorRow, pathsLine, type ErrorRow, type RowSchema } from './rows.js';
import { undisplayPath } from '../fs-names.js';
import { FileSink, InPlaceFileSink, type Sink } from './target.js';

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

class NpyWriter<R extends { path: string }> extends BaseWriter<R> {
  private rows = 0;
  private cols: number | null = null;
  private rowShape: number[] = [];
  private headerLength = 0;

  constructor(schema: RowSchema<R>, sink: Sink, private readonly data: FileSink, private readonly paths: FileSink | null, prior: StoredOutput | null) {
    super(schema, sink);
    if (prior?.npy) {
      this.rows = prior.rows.length;
      this.rowShape = prior.npy.rowShape;
      this.cols = this.rowShape.reduce((a, b) => a * b, 1);
      this.headerLength = prior.npy.headerLength;
    }
  }

  protected async row(row: R | ErrorRow): Promise<void> {
    if (isErrorRow(row)) return;
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

interface NpyLayout {
  headerLength: number;
  shape: number[];
}

/** The header of an npy file: float32 little-endian C order only (what the writer writes). */
async function readNpyHeader(fh: FileHandle, file: string, size: number): Promise<NpyLayout | null> {
  const pre = Buffer.alloc(12);
  await fh.read(pre, 0, 12, 0);
  if (size < 12) return null;
  if (pre.toString('latin1', 0, 6) !== '\x93NUMPY') throw new OutputError(`${file} is not an npy file`);
  const v1 = pre[6] === 1;
  const headerLength = v1 ? 10 + pre.readUInt16LE(8) : 12 + pre.readUInt32LE(8);
  if (size < headerLength) return null;
  const text = Buffer.alloc(headerLength);
  await fh.read(text, 0, headerLength, 0);
  const dict = text.toString('latin1', v1 ? 10 : 12);
  const m = /'descr':\s*'([^']*)'.*'fortran_order':\s*(\w+).*'shape':\s*\(([\d,\s]*)\)/s.exec(dict);
  if (!m || m[1] !== '<f4' || m[2] !== 'False') {
    throw new OutputError(`${file}: expected a little-endian float32 C-order npy (descr '<f4'), found the header ${dict.trim()}`);
  }
  return { headerLength, shape: m[3].split(',').map((d) => d.trim()).filter(Boolean).map(Number) };
}

/** A `.paths.txt` line back to its path (see pathsLine in writers.ts). */
function pathOfLine(bytes: Buffer): string {
  const s = bytes.toString('utf8');
  return s.startsWith('"') ? (JSON.parse(s) as string) : undisplayPath(s);
}

async function readNpy(fh: FileHandle, file: string, mode: ReadMode, size: number): Promise<StoredOutput> {
  const out: StoredOutput = emptyOutput(file, 'npy');
  const pathsFile = pathsFileFor(file);
  const layout = await readNpyHeader(fh, file, size);
  const rowShape = layout?.shape.slice(1) ?? [];
  const rowBytes = 4 * rowShape.reduce((a, b) => a * b, 1);
  // No header yet, or the (0, 0) array of a run that ended before its first good row: nothing to keep.
  if (layout === null || rowBytes === 0) {
    if (mode === 'merge' && layout === null) throw unfinished(file, 'no npy header');
    return out;
  }
  const dataRows = Math.floor((size - layout.headerLength) / rowBytes);
  const paths: Rec[] = [];
  let tornPath = false;
  const pf = (await openStored(pathsFile))?.fh ?? null;
  if (pf === null && mode === 'merge') throw new OutputError(`cannot read ${pathsFile}, the paths of ${file}'s rows: ENOENT (no such file)`);
  if (pf !== null) {
    try {
      for await (const rec of records(pf, false)) {
        if (rec.complete) paths.push(rec);
        else tornPath = true;
      }
    } finally {
      await pf.close();
    }
  }
  if (mode === 'merge') {
    const exact = size === layout.headerLength + layout.shape[0] * rowBytes;
    if (!exact || dataRows !== layout.shape[0]) throw unfinished(file, `its header says ${layout.shape[0]} rows, the file holds ${(size - layout.headerLength) / rowBytes}`);
    if (paths.length !== dataRows || tornPath) throw unfinished(file, `${pathsFile} names ${paths.length} rows, the array has ${dataRows}`);
  }
  // The data row is written before its paths line: either can be ahead of the other by one (torn) row.
  const n = Math.min(dataRows, paths.length);
  for (let i = 0; i < n; i++) {
    const start = layout.headerLength + i * rowBytes;
    out.rows.push({ path: pathOfLine(paths[i].bytes), start, end: start + rowBytes, error: false });
  }
  out.keep = n > 0 ? layout.headerLength + n * rowBytes : 0;
  out.npy = { rowShape, headerLength: layout.headerLength, pathsFile, pathsKeep: n > 0 ? paths[n - 1].end : 0 };
  return out;
}

export const NPY: FormatModule = {
  binary: true,
  // A file output is its own data file; stdout and streams get a spool copied out at close.
  writer: async (schema, { sink, paths, prior, spool }) => new NpyWriter(schema, sink, sink instanceof FileSink ? sink : await spool(), paths, prior),
  read: readNpy,
  merger(parts) {
    let shape: number[] | null = null;
    for (const p of parts) {
      if (p.rows.length === 0) continue;
      const s = p.npy!.rowShape;
      if (shape === null) shape = s;
      else if (shape.join(',') !== s.join(',')) throw new OutputError(`${p.file} has rows of shape (${s.join(', ')}), other parts (${shape.join(', ')})`);
    }
    const rowShape = shape ?? [];
    return { begin: (count) => npyFileHeader(count, rowShape), row: (bytes) => bytes, end: () => new Uint8Array(0) };
  },
};

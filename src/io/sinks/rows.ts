import { displayPath } from '../fs-names.js';

/**
 * Rows and how they are written, whatever the format:
 * - A row schema says how one kind of row becomes CSV cells, a JSON object and an npy row; commands add
 *   their own row kinds by writing a schema, the formats come for free.
 * - Numbers are written at float32 precision, the engine's: the shortest decimal that reads back as the
 *   same float32 (0.1f is written 0.1, not 0.10000000149011612). Non-finite values are null in JSON and
 *   NaN / Infinity / -Infinity in CSV.
 * - A failed input is a row `{path, error}`: an `error` field in JSON, the last CSV column (empty on good
 *   rows). npy holds numbers only, so failed inputs are left out of it and of its paths file.
 * - CSV follows RFC 4180 quoting (fields with a comma, quote, CR or LF are quoted, quotes doubled) with
 *   LF line ends, which every CSV reader accepts and line-based Unix tools prefer.
 */

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

export const FORMATS = ['csv', 'json', 'jsonl', 'npy'] as const;
export type Format = (typeof FORMATS)[number];

/** The formats a schema can be written in: all of them, npy only where the schema has an npy form. */
export function formatsFor(schema: RowSchema<{ path: string }>): Format[] {
  return FORMATS.filter((f) => f !== 'npy' || schema.npy !== undefined);
}

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
  return `${/[\r\n]/.test(path) || path.startsWith('"') ? JSON.stringify(path) : displayPath(path)}\n`;
}

export function isErrorRow(row: { path: string }): row is ErrorRow {
  return typeof (row as Partial<ErrorRow>).error === 'string';
}

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

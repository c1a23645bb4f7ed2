/**
 * DuckDB (its node client, a devDependency) as the independent reader of parquet outputs: another
 * implementation than the hyparquet reader vit itself uses for --resume and merge.
 */
import { DuckDBInstance, type DuckDBConnection } from '@duckdb/node-api';

let connection: Promise<DuckDBConnection> | null = null;

function connect(): Promise<DuckDBConnection> {
  connection ??= DuckDBInstance.create(':memory:').then((db) => db.connect());
  return connection;
}

/** The rows of a query, as JSON-able objects (DuckDB's JSON conversion: numbers, strings, arrays, objects). */
export async function query(sql: string): Promise<Record<string, unknown>[]> {
  const reader = await (await connect()).runAndReadAll(sql);
  return reader.getRowObjectsJson() as Record<string, unknown>[];
}

/** A file name as an SQL string literal. */
export const lit = (file: string) => `'${file.replace(/'/g, "''")}'`;

/** Column name → DuckDB type, as DESCRIBE gives them (identifier quotes dropped). */
export async function columnTypes(file: string): Promise<Record<string, string>> {
  const rows = await query(`DESCRIBE SELECT * FROM ${lit(file)}`);
  return Object.fromEntries(rows.map((r) => [String(r.column_name), String(r.column_type).replace(/"/g, '')]));
}

/** The number of rows in a parquet file, or -1 when it is missing or no parquet file DuckDB can read. */
export async function rowCount(file: string): Promise<number> {
  try {
    return Number((await query(`SELECT count(*) AS n FROM ${lit(file)}`))[0].n);
  } catch {
    return -1;
  }
}

// The archive format (the seed's): one row per reading, the same columns in CSV and Parquet.
// Times are UTC milliseconds (Parquet TIMESTAMP_MILLIS; CSV ISO 8601 with a Z); metadata is JSON text.
import { ParquetSchema } from '@dsnp/parquetjs';

export type ArchiveFormat = 'csv' | 'parquet';
export const ARCHIVE_FORMATS: readonly ArchiveFormat[] = ['csv', 'parquet'];

export const ARCHIVE_COLUMNS = [
  'reading_timestamp', 'iot_device_id', 'device_code', 'sensor_type', 'reading_value', 'unit_of_measure', 'quality',
  'production_run_id', 'metadata',
] as const;

/** One exported reading, as read from the database. */
export interface ArchiveRow {
  reading_timestamp: Date;
  iot_device_id: string;
  device_code: string;
  sensor_type: string;
  reading_value: number;
  unit_of_measure: string;
  quality: string;
  production_run_id: string | null;
  metadata: Record<string, unknown> | null;
}

// Every column GZIP-compressed: measured on 100k readings, 9.7 MB plain, 1.5 MB SNAPPY, 0.9 MB GZIP
// (export 53k, 52k, 43k rows/s). Every Parquet reader (DuckDB, pandas/pyarrow, Spark) reads GZIP.
const compression = 'GZIP';
export const parquetSchema = () => new ParquetSchema({
  reading_timestamp: { type: 'TIMESTAMP_MILLIS', compression },
  iot_device_id: { type: 'UTF8', compression },
  device_code: { type: 'UTF8', compression },
  sensor_type: { type: 'UTF8', compression },
  reading_value: { type: 'DOUBLE', compression },
  unit_of_measure: { type: 'UTF8', compression },
  quality: { type: 'UTF8', compression },
  production_run_id: { type: 'UTF8', optional: true, compression },
  metadata: { type: 'UTF8', optional: true, compression },
});

/** Key-value metadata every Parquet export carries, so a restore knows the tenant without the path. */
export const PARQUET_TENANT_KEY = 'tenant_code';

/** <tenant>/<yyyy>/<mm>/<dd>.<ext> of a UTC day (ms since the epoch at its midnight). */
export function dayPath(tenantCode: string, dayStartMs: number, format: ArchiveFormat): string {
  const iso = new Date(dayStartMs).toISOString();
  return `${tenantCode}/${iso.slice(0, 4)}/${iso.slice(5, 7)}/${iso.slice(8, 10)}.${format}`;
}

/** The tenant code of a path written by dayPath (…/<tenant>/<yyyy>/<mm>/<dd>.<ext>), if it is one. */
export function tenantOfPath(path: string): string | undefined {
  const m = /(?:^|[/\\])([A-Za-z0-9][A-Za-z0-9_.-]{0,62})[/\\]\d{4}[/\\]\d{2}[/\\]\d{2}\.(?:csv|parquet)$/.exec(path);
  return m?.[1];
}

export const DAY_MS = 86_400_000;

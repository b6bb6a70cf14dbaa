// Writes one day file of readings in the archive format to a local path: CSV through csv-stringify
// (with the stream's backpressure respected) or Parquet through @dsnp/parquetjs (row groups of
// 10,000 rows, so memory stays bounded however large the day). The file is written as
// <path>.partial and renamed when complete, so a crash never leaves a truncated file with the final name.
import { createWriteStream, WriteStream } from 'node:fs';
import { rename, rm } from 'node:fs/promises';
import { once } from 'node:events';
import { stringify, Stringifier } from 'csv-stringify';
import { ParquetWriter } from '@dsnp/parquetjs';
import { ARCHIVE_COLUMNS, ArchiveFormat, ArchiveRow, PARQUET_TENANT_KEY, parquetSchema } from './format';

export interface DayFileWriter {
  write(row: ArchiveRow): Promise<void>;
  /** Completes the file; returns its row count. */
  close(): Promise<number>;
  /** Removes the partial file (after an error). */
  discard(): Promise<void>;
}

export async function openDayFile(path: string, format: ArchiveFormat, tenantCode: string): Promise<DayFileWriter> {
  const partial = `${path}.partial`;
  let rows = 0;
  if (format === 'parquet') {
    const writer = await ParquetWriter.openFile(parquetSchema(), partial, { rowGroupSize: 10_000 } as never);
    writer.setMetadata(PARQUET_TENANT_KEY, tenantCode);
    return {
      async write(row) {
        rows++;
        await writer.appendRow({
          ...row,
          production_run_id: row.production_run_id ?? undefined,
          metadata: row.metadata ? JSON.stringify(row.metadata) : undefined,
        });
      },
      async close() {
        await writer.close();
        await rename(partial, path);
        return rows;
      },
      async discard() {
        await rm(partial, { force: true });
      },
    };
  }
  const file: WriteStream = createWriteStream(partial);
  const csv: Stringifier = stringify({ header: true, columns: [...ARCHIVE_COLUMNS] });
  csv.pipe(file);
  return {
    async write(row) {
      rows++;
      const ok = csv.write([
        row.reading_timestamp.toISOString(), row.iot_device_id, row.device_code, row.sensor_type, String(row.reading_value),
        row.unit_of_measure, row.quality, row.production_run_id ?? '', row.metadata ? JSON.stringify(row.metadata) : '',
      ]);
      if (!ok) await once(csv, 'drain');
    },
    async close() {
      csv.end();
      await once(file, 'close');
      await rename(partial, path);
      return rows;
    },
    async discard() {
      csv.destroy();
      file.destroy();
      await rm(partial, { force: true });
    },
  };
}

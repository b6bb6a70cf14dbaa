// `iot export`: the readings of [from, to) (a tenant, optionally one facility, device or sensor
// type) as one file per tenant and UTC day, <tenant>/<yyyy>/<mm>/<dd>.csv|.parquet, in a folder
// or an S3-compatible bucket. A day file that exists already is replaced: exporting a range again
// is safe. A day with no readings gets no file.
import { logger } from '../lib/log';
import { DayFileWriter, openDayFile } from './day-file-writer';
import type { Destination } from './destination';
import { ArchiveFormat, DAY_MS, dayPath } from './format';
import { ExportFilter, WithClient, readingPages } from './reading-cursor';

const log = logger('export');

export interface ExportOptions extends ExportFilter {
  format: ArchiveFormat;
  destination: Destination;
  /** Called after each page of rows (for a progress display). */
  onProgress?: (rows: number) => void;
}

export interface ExportedFile {
  tenantCode: string;
  day: string;
  /** Where it went (a path, or an s3:// URL). */
  location: string;
  relative: string;
  rows: number;
}

export interface ExportSummary {
  rows: number;
  files: ExportedFile[];
  ms: number;
}

export async function exportReadings(withClient: WithClient, options: ExportOptions): Promise<ExportSummary> {
  const started = Date.now();
  const { format, destination } = options;
  const files: ExportedFile[] = [];
  let rows = 0;
  let current: { key: string; relative: string; tenantCode: string; day: number; writer: DayFileWriter } | undefined;

  const finish = async () => {
    if (!current) return;
    const c = current;
    current = undefined;
    const count = await c.writer.close();
    await destination.commit(c.relative, format);
    const file = { tenantCode: c.tenantCode, day: new Date(c.day).toISOString().slice(0, 10), location: destination.describe(c.relative), relative: c.relative, rows: count };
    files.push(file);
    log.info('day exported', { tenant: c.tenantCode, day: file.day, rows: count, to: file.location });
  };

  try {
    await withClient(async (client) => {
      for await (const page of readingPages(client, options)) {
        for (const row of page) {
          const day = Math.floor(row.reading_timestamp.getTime() / DAY_MS) * DAY_MS;
          const key = `${row.tenant_id}/${day}`;
          if (current?.key !== key) {
            await finish();
            const relative = dayPath(row.tenant_code, day, format);
            const writer = await openDayFile(await destination.localPath(relative), format, row.tenant_code);
            current = { key, relative, tenantCode: row.tenant_code, day, writer };
          }
          await current.writer.write(row);
          rows++;
        }
        options.onProgress?.(rows);
      }
      await finish();
    });
  } catch (error) {
    await current?.writer.discard().catch(() => undefined);
    throw error;
  }
  return { rows, files, ms: Date.now() - started };
}

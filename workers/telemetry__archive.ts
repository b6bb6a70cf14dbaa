// Export before retention (src/archive/before-retention.ts): daily before telemetry__apply_retention,
// the days it will drop are exported to ARCHIVE_URL (a folder, or s3://bucket/prefix with S3_* for
// the endpoint and credentials) as ARCHIVE_FORMAT (parquet, default, or csv). Without ARCHIVE_URL
// it does nothing. Payload: {"days": TELEMETRY_RETENTION_DAYS, "url"?, "format"?, "lookaheadDays"?}.
import type { Task } from 'graphile-worker';
import { archiveBeforeRetention } from '../src/archive/before-retention';
import { openDestination } from '../src/archive/destination';
import { ARCHIVE_FORMATS, ArchiveFormat } from '../src/archive/format';

interface Payload {
  days?: number;
  url?: string;
  format?: string;
  lookaheadDays?: number;
}

const task: Task = async (payload, helpers) => {
  const p = (payload ?? {}) as Payload;
  const url = p.url ?? process.env.ARCHIVE_URL;
  if (!url) return;
  const format = (p.format ?? process.env.ARCHIVE_FORMAT ?? 'parquet').toLowerCase() as ArchiveFormat;
  if (!ARCHIVE_FORMATS.includes(format)) throw new Error(`ARCHIVE_FORMAT ${JSON.stringify(format)} is not parquet or csv`);
  const destination = await openDestination(url);
  try {
    const result = await archiveBeforeRetention((fn) => helpers.withPgClient(fn), {
      destination, format, retentionDays: Number(p.days ?? 0), lookaheadDays: p.lookaheadDays,
    });
    if (result.summary) {
      helpers.logger.info(`archive: exported ${result.summary.rows} readings in ${result.summary.files.length} files ` +
        `(${result.from!.toISOString().slice(0, 10)} to before ${result.through!.toISOString().slice(0, 10)}) to ${url}`);
    }
  } finally {
    await destination.close();
  }
};
export default task;

// Retention per relation: raw readings older than TELEMETRY_RETENTION_DAYS (payload `days`, whole
// chunks or partitions; 0 keeps them), then each rollup by its setting rollup_<1m|1h|1d>_retention_days
// (defaults 365, 0, 0: the 1m rollup a year, 1h and 1d forever). A rollup always outlives the raw
// readings it summarises: refreshes never recompute what retention dropped (sql/200_rollups.sql).
import type { Task } from 'graphile-worker';
import { archivedCutoff } from '../src/archive/before-retention';

const task: Task = async (payload, { query, logger, withPgClient }) => {
  const days = Number((payload as { days?: number } | null)?.days ?? 0);
  if (days > 0) {
    let cutoff = new Date(Date.now() - days * 86_400_000);
    // With ARCHIVE_URL set, never drop a day the archive job (telemetry__archive, 02:45) has not exported yet.
    if (process.env.ARCHIVE_URL) cutoff = await archivedCutoff((fn) => withPgClient(fn), cutoff);
    const { rows } = await query<{ dropped: number }>('select iot_private.drop_telemetry_before($1) as dropped', [cutoff]);
    logger.info(`retention: dropped ${rows[0].dropped} chunks/partitions of raw readings before ${cutoff.toISOString()} (${days} days)`);
  }
  const { rows } = await query<{ rollup_name: string; retention_days: number; dropped: string }>(
    'select rollup_name, retention_days, dropped from iot_private.apply_rollup_retention()');
  for (const r of rows) {
    if (Number(r.dropped) > 0) logger.info(`retention: dropped ${r.dropped} of rollup ${r.rollup_name} older than ${r.retention_days} days`);
  }
};
export default task;

// Retention per relation: raw readings older than TELEMETRY_RETENTION_DAYS (payload `days`, whole
// chunks or partitions; 0 keeps them), then each rollup by its setting rollup_<1m|1h|1d>_retention_days
// (defaults 365, 0, 0: the 1m rollup a year, 1h and 1d forever). A rollup always outlives the raw
// readings it summarises: refreshes never recompute what retention dropped (sql/200_rollups.sql).
import type { Task } from 'graphile-worker';

const task: Task = async (payload, { query, logger }) => {
  const days = Number((payload as { days?: number } | null)?.days ?? 0);
  if (days > 0) {
    const { rows } = await query<{ dropped: number }>(
      `select iot_private.drop_telemetry_before(now() - make_interval(days => $1)) as dropped`, [days]);
    logger.info(`retention: dropped ${rows[0].dropped} chunks/partitions of raw readings older than ${days} days`);
  }
  const { rows } = await query<{ rollup_name: string; retention_days: number; dropped: string }>(
    'select rollup_name, retention_days, dropped from iot_private.apply_rollup_retention()');
  for (const r of rows) {
    if (Number(r.dropped) > 0) logger.info(`retention: dropped ${r.dropped} of rollup ${r.rollup_name} older than ${r.retention_days} days`);
  }
};
export default task;

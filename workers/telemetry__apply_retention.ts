// Drops raw readings older than TELEMETRY_RETENTION_DAYS (whole chunks or partitions). 0 keeps all.
import type { Task } from 'graphile-worker';

const task: Task = async (payload, { query, logger }) => {
  const days = Number((payload as { days?: number } | null)?.days ?? 0);
  if (!(days > 0)) return;
  const { rows } = await query<{ dropped: number }>(
    `select iot_private.drop_telemetry_before(now() - make_interval(days => $1)) as dropped`, [days]);
  logger.info(`retention: dropped ${rows[0].dropped} chunks/partitions older than ${days} days`);
};
export default task;

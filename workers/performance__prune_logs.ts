// Deletes performance log rows older than `days` (api_performance_log, query_performance_log,
// system_resource_metrics; default 14) and hourly summaries older than `cacheDays` (default 400),
// at most 10,000 rows per table per statement (each its own transaction) so no delete runs long.
import type { Task } from 'graphile-worker';

const ROWS_PER_STATEMENT = 10_000;
const MAX_STATEMENTS = 100; // what is left waits for the next run

const task: Task = async (payload, { query, logger }) => {
  const p = (payload ?? {}) as { days?: number; cacheDays?: number };
  const days = Number(p.days ?? 14);
  const cacheDays = Number(p.cacheDays ?? 400);
  if (!(days > 0) || !(cacheDays > 0)) return; // 0 keeps everything
  let pruned = 0;
  for (let i = 0; i < MAX_STATEMENTS; i++) {
    const { rows } = await query<{ n: number }>(
      `select iot_private.prune_performance_logs(now() - make_interval(days => $1), now() - make_interval(days => $2), $3) as n`,
      [days, cacheDays, ROWS_PER_STATEMENT]);
    pruned += rows[0].n;
    if (rows[0].n < ROWS_PER_STATEMENT) break;
  }
  if (pruned) logger.info(`performance logs: deleted ${pruned} rows older than ${days} days (summaries: ${cacheDays} days)`);
};
export default task;

// Hourly summaries of the performance logs into iot.performance_metrics_cache (count, errors, mean,
// p50/p95/p99, max per tenant and operation, per process and resource). Rewrites the last `hours`
// complete hours (default 3), so rows written late, or a run that was missed, are caught up.
import type { Task } from 'graphile-worker';

const task: Task = async (payload, { query, logger }) => {
  const hours = Math.min(24 * 31, Math.max(1, Number((payload as { hours?: number } | null)?.hours ?? 3)));
  const { rows } = await query<{ n: number }>(
    `select iot_private.rollup_performance_metrics(
       date_bin(interval '1 hour', now(), timestamptz '2000-01-01 00:00Z') - make_interval(hours => $1),
       date_bin(interval '1 hour', now(), timestamptz '2000-01-01 00:00Z')) as n`, [hours]);
  logger.info(`performance metrics: ${rows[0].n} hourly rows written for the last ${hours} complete hours`);
};
export default task;

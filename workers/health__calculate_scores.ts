// Scores every active work center at the current interval boundary (so a re-run for the same
// instant stores nothing new), then raises or updates predictive-maintenance alerts.
// Payload {workCenterId} scores one work center now (queued after anomalies); {now: true} scores
// every work center now (queued at start, so a fresh plant has scores within a minute).
import type { Task } from 'graphile-worker';

const task: Task = async (payload, { query, logger }) => {
  const p = (payload ?? {}) as { workCenterId?: string; intervalMinutes?: number; now?: boolean };
  const minutes = Number(p.intervalMinutes ?? 15);
  const ids = p.workCenterId ? [p.workCenterId] : null;
  const started = Date.now();
  const { rows } = await query<{ stored: number; alerts: number }>(
    `with at as (select case when $2::uuid[] is null and not $3
                   then date_bin(make_interval(mins => $1::int), now(), timestamptz '2000-01-01 00:00Z') else now() end as t)
     select iot_private.store_health_scores($2::uuid[], (select t from at)) as stored,
            iot_private.raise_predictive_alerts($2::uuid[], (select t from at)) as alerts`,
    [minutes, ids, Boolean(p.now)],
  );
  logger.info(`health scores stored: ${rows[0].stored}, alerts raised/updated: ${rows[0].alerts} in ${Date.now() - started} ms`);
};
export default task;

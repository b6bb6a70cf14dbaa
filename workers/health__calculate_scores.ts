// Scores every active work center at the current interval boundary (so a re-run for the same
// instant stores nothing new), then raises or updates predictive-maintenance alerts.
// Payload {workCenterId} scores one work center now (queued after anomalies); {now: true} scores
// every work center now (queued at start, so a fresh plant has scores within a minute).
import type { Task } from 'graphile-worker';
import { raiseSystemAlert, resolveSystemAlerts } from '../src/alerts/system-alerts';
import { histogram } from '../src/lib/metrics';

// On /metrics of the process running the worker (`iot start`): one observation per run, by outcome.
const calculation = histogram<'scope' | 'outcome'>({
  name: 'iot_health_calculation_seconds',
  help: 'Duration of a health-score run (scores and predictive alerts), by scope (all work centers, or one after an anomaly) and outcome (ok, failed).',
  labelNames: ['scope', 'outcome'],
  buckets: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120],
});

const task: Task = async (payload, { query, logger, withPgClient }) => {
  const p = (payload ?? {}) as { workCenterId?: string; intervalMinutes?: number; now?: boolean };
  const minutes = Number(p.intervalMinutes ?? 15);
  const ids = p.workCenterId ? [p.workCenterId] : null;
  const started = Date.now();
  const scope = ids ? 'work_center' : 'all';
  const timer = calculation.startTimer({ scope });
  const { rows } = await query<{ stored: number; alerts: number }>(
    `with at as (select case when $2::uuid[] is null and not $3
                   then date_bin(make_interval(mins => $1::int), now(), timestamptz '2000-01-01 00:00Z') else now() end as t)
     select iot_private.store_health_scores($2::uuid[], (select t from at)) as stored,
            iot_private.raise_predictive_alerts($2::uuid[], (select t from at)) as alerts`,
    [minutes, ids, Boolean(p.now)],
  ).catch(async (error) => {
    timer({ outcome: 'failed' });
    // The seed's MEDIUM system alert; routed like any other. The job still fails (and is logged by the worker).
    await withPgClient((c) => raiseSystemAlert(c, {
      alertType: 'HEALTH_CALCULATION_FAILED', workCenterId: p.workCenterId ?? null,
      message: `health score calculation failed: ${(error as Error).message}`,
      details: { workCenterId: p.workCenterId ?? null, intervalMinutes: minutes },
    })).catch((e) => logger.error(`could not raise the HEALTH_CALCULATION_FAILED system alert: ${(e as Error).message}`));
    throw error;
  });
  timer({ outcome: 'ok' });
  await withPgClient((c) => resolveSystemAlerts(c, { alertType: 'HEALTH_CALCULATION_FAILED', workCenterId: p.workCenterId ?? null }));
  logger.info(`health scores stored: ${rows[0].stored}, alerts raised/updated: ${rows[0].alerts} in ${Date.now() - started} ms`);
};
export default task;

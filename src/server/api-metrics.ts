// The API's metrics on /metrics (prom-client, src/lib/metrics.ts):
//  - what the API refused or cut short, so an attack or a runaway dashboard is seen without
//    reading logs (apiCounters, incremented by auth.ts, limits.ts, limits-hook.ts, request-scope.ts);
//  - figures read from the database at each scrape, in one query with a timeout, so a scrape never
//    hangs when the database is down: the NOTIFY queue's fill, graphile-worker jobs with errors,
//    alerts raised. They are the database's, the same on every API instance: aggregate them with
//    max(), not sum(). Alerts per hour: `increase(iot_alerts_raised_total[1h])`.
import { counter, gauge, pulled, withTimeout } from '../lib/metrics';
import { logger } from '../lib/log';
import { throttled } from './log-throttle';

const note = throttled(logger('api'));

export const apiCounters = {
  tokensRefused: 0,
  queriesRefused: 0,
  statementTimeouts: 0,
  requestsCancelled: 0,
};

const refusals = [
  ['iot_api_tokens_refused_total', 'API requests refused for their token (bad signature, expired, no exp, too long-lived, role or tenant not allowed).', 'tokensRefused'],
  ['iot_api_queries_refused_total', 'GraphQL operations refused before execution for depth, cost or page size.', 'queriesRefused'],
  ['iot_api_statement_timeouts_total', 'API requests whose SQL ran into API_STATEMENT_TIMEOUT_MS.', 'statementTimeouts'],
  ['iot_api_requests_cancelled_total', 'API requests whose SQL was cancelled because the client went away.', 'requestsCancelled'],
] as const;
for (const [name, help, key] of refusals) pulled<typeof apiCounters>('counter', { name, help }, (c) => c[key]).add(apiCounters);

export type MonitoringQuery = (text: string) => Promise<Array<Record<string, unknown>>>;

interface MonitoringCounts {
  notify_queue_usage: number;
  jobs: { task: string; failing: number; failed: number }[];
  alerts: { type: string; severity: string; n: number }[];
  maintenance: { source: string; job: string }[];
}

const collectFailures = counter({
  name: 'iot_metrics_collect_failures_total',
  help: 'Scrapes whose database figures (NOTIFY queue, worker jobs, alerts) could not be read in time; those metrics are left out of that scrape.',
});

let source: { query: MonitoringQuery; timeoutMs: number } | undefined;
let current: Promise<MonitoringCounts | undefined> | undefined;

/**
 * One database read per scrape, shared by the three metrics below; undefined when it failed.
 * prom-client calls every metric's collect() in one synchronous loop, so the read is forgotten
 * in the next microtask: the three of one scrape share it, the next scrape reads again.
 */
function readCounts(): Promise<MonitoringCounts | undefined> {
  if (!source) return Promise.resolve(undefined);
  if (!current) {
    const { query, timeoutMs } = source;
    current = withTimeout('monitoring query', timeoutMs, query('select iot_private.monitoring_counts() as c'))
      .then((rows) => rows[0]?.c as MonitoringCounts)
      .catch((error) => {
        collectFailures.inc();
        note('warn', 'metrics: could not read the database figures; left out of this scrape', { error });
        return undefined;
      });
    queueMicrotask(() => (current = undefined));
  }
  return current;
}

gauge({
  name: 'iot_notify_queue_usage',
  help: 'Fill of the database\'s NOTIFY queue (pg_notification_queue_usage(), 0..1). Near 1 a listener is stuck and NOTIFY fails.',
  async collect() {
    const c = await readCounts();
    this.set(c ? Number(c.notify_queue_usage) : Number.NaN); // NaN: not known at this scrape
  },
});
gauge<'task' | 'state'>({
  name: 'iot_worker_jobs_failed',
  help: 'graphile-worker jobs whose last run failed, by task: state "retrying" (attempts left) or "failed" (out of attempts, kept for inspection).',
  labelNames: ['task', 'state'],
  async collect() {
    this.reset();
    const c = await readCounts();
    for (const j of c?.jobs ?? []) {
      this.set({ task: j.task, state: 'retrying' }, Number(j.failing));
      this.set({ task: j.task, state: 'failed' }, Number(j.failed));
    }
  },
});
gauge<'source' | 'job'>({
  name: 'iot_maintenance_job_failing',
  help: 'Maintenance jobs failing (1 per job): TimescaleDB jobs whose last run failed, graphile-worker jobs out of attempts (iot_private.failed_maintenance_jobs()). Also on /healthz as degraded.',
  labelNames: ['source', 'job'],
  async collect() {
    this.reset();
    const c = await readCounts();
    for (const m of c?.maintenance ?? []) this.set({ source: m.source, job: m.job }, 1);
  },
});
// A counter read from the database (alerts are raised in SQL, by several processes): it drops
// when old alerts are deleted, which Prometheus reads as a reset.
counter<'type' | 'severity'>({
  name: 'iot_alerts_raised_total',
  help: 'Alerts raised, by type and severity (predictive_maintenance_alerts, spc_alerts as SPC_RULE_n). Alerts per hour: increase(...[1h]).',
  labelNames: ['type', 'severity'],
  async collect() {
    this.reset();
    const c = await readCounts();
    for (const a of c?.alerts ?? []) this.inc({ type: a.type, severity: a.severity }, Number(a.n));
  },
});

/**
 * Called by startApi. `query` runs on a pool of the API's login with bounded connect and
 * statement times (the control pool); without it the database figures read NaN / are left out.
 * Returns the removal (for api.close()); the last API started in a process is the one read.
 */
export function registerApiMetrics(options?: { query: MonitoringQuery; timeoutMs?: number }): () => void {
  if (!options) return () => undefined;
  const mine = { query: options.query, timeoutMs: options.timeoutMs ?? 2000 };
  source = mine;
  return () => {
    if (source === mine) source = undefined;
  };
}

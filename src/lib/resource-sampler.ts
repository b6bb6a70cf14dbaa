// Samples of a process and of its database into iot.system_resource_metrics, every intervalMs,
// through the buffered PerfLogWriter (so a sample never waits for the database). Each long-running
// process (API, worker, ingest, or `iot start` for all) runs one; the database part is one short
// query with a timeout, left null when it does not answer.
import { loadavg } from 'node:os';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { withTimeout } from './metrics';
import { INSTANCE, type PerfLogWriter, type PerfRow } from './perf-log';

export type SampleQuery = (text: string) => Promise<Array<Record<string, unknown>>>;

export interface ResourceSamplerOptions {
  writer: PerfLogWriter;
  /** What the process runs: api, worker, ingest, all. */
  component: string;
  intervalMs: number;
  /** Runs on a pool of the process's login; without it the database columns stay null. */
  query?: SampleQuery;
  queryTimeoutMs?: number;
}

const DATABASE_SAMPLE = `select numbackends as db_connections, pg_database_size(current_database()) as db_size_bytes,
  pg_notification_queue_usage() as notify_queue_usage from pg_stat_database where datname = current_database()`;

export interface ResourceSampler {
  /** Takes one sample now (also what the timer does). */
  sample(): Promise<PerfRow>;
  stop(): void;
}

export function startResourceSampler(options: ResourceSamplerOptions): ResourceSampler {
  const delay = monitorEventLoopDelay({ resolution: 20 });
  delay.enable();
  let lastCpu = process.cpuUsage();
  let lastAt = process.hrtime.bigint();

  async function sample(): Promise<PerfRow> {
    const now = process.hrtime.bigint();
    const cpu = process.cpuUsage(lastCpu);
    const elapsedUs = Number(now - lastAt) / 1000;
    lastCpu = process.cpuUsage();
    lastAt = now;
    const memory = process.memoryUsage();
    const lagMs = delay.count ? delay.percentile(99) / 1e6 : 0;
    delay.reset();
    const row: PerfRow = {
      sampled_at: new Date().toISOString(), instance: INSTANCE, component: options.component,
      cpu_percent: elapsedUs > 0 ? Math.round(((cpu.user + cpu.system) / elapsedUs) * 10000) / 100 : 0,
      rss_bytes: memory.rss, heap_used_bytes: memory.heapUsed, heap_total_bytes: memory.heapTotal,
      event_loop_lag_ms: Math.round(lagMs * 100) / 100, load_average_1m: loadavg()[0],
    };
    if (options.query) {
      try {
        const [db] = await withTimeout('resource sample query', options.queryTimeoutMs ?? 2000, options.query(DATABASE_SAMPLE));
        Object.assign(row, {
          db_connections: Number(db?.db_connections ?? 0), db_size_bytes: Number(db?.db_size_bytes ?? 0),
          notify_queue_usage: Number(db?.notify_queue_usage ?? 0),
        });
      } catch {
        // The database is slow or down: the process figures are still worth a row.
      }
    }
    options.writer.add('system_resource_metrics', row);
    return row;
  }

  const timer = setInterval(() => void sample(), options.intervalMs);
  timer.unref();
  return {
    sample,
    stop() {
      clearInterval(timer);
      delay.disable();
    },
  };
}

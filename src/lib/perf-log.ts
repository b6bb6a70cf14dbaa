// Buffered writer of the performance logs (iot.api_performance_log, iot.query_performance_log,
// iot.system_resource_metrics; db/migrations/000012_performance_logs.sql).
//  - add() only pushes to an array: a request never waits for the database.
//  - Rows are written every flushMs (PERF_LOG_FLUSH_MS) or as soon as flushRows (PERF_LOG_FLUSH_ROWS)
//    are waiting, one INSERT per table, one flush at a time.
//  - Bounded: at most maxBuffered rows wait; beyond that new rows are dropped and counted. A flush
//    the database refuses or does not answer within writeTimeoutMs drops its rows (counted): these
//    are logs, and holding them while the database is down would only grow the process.
import { hostname } from 'node:os';
import { logger } from './log';
import { counter, pulled } from './metrics';
import { throttled } from '../server/log-throttle';

const note = throttled(logger('perf-log'));

export type PerfTable = 'api_performance_log' | 'query_performance_log' | 'system_resource_metrics';
export type PerfRow = Record<string, string | number | boolean | null | undefined | string[]>;

/** The columns each table is written with (every other column has a default). */
export const PERF_COLUMNS: Record<PerfTable, readonly string[]> = {
  api_performance_log: ['logged_at', 'tenant_id', 'role', 'actor', 'operation_name', 'operation_type', 'duration_ms', 'http_status',
    'error_count', 'first_error', 'request_bytes', 'response_bytes', 'instance'],
  query_performance_log: ['logged_at', 'tenant_id', 'role', 'actor', 'operation_name', 'operation_type', 'duration_ms', 'threshold_ms',
    'http_status', 'error_count', 'first_error', 'query_text', 'query_sha256', 'variable_names', 'instance'],
  system_resource_metrics: ['sampled_at', 'instance', 'component', 'cpu_percent', 'rss_bytes', 'heap_used_bytes', 'heap_total_bytes',
    'event_loop_lag_ms', 'load_average_1m', 'db_connections', 'db_size_bytes', 'notify_queue_usage'],
};
const TABLES = Object.keys(PERF_COLUMNS) as PerfTable[];
/** What a row left out gets (an explicit null would override the column's default). */
const DEFAULTS: Record<string, unknown> = { error_count: 0 };
const TIME_COLUMN: Record<PerfTable, string> = { api_performance_log: 'logged_at', query_performance_log: 'logged_at', system_resource_metrics: 'sampled_at' };

/** Which process wrote a row: host:pid. */
export const INSTANCE = `${hostname()}:${process.pid}`;

export type PerfQuery = (text: string, values: unknown[]) => Promise<unknown>;

export interface PerfLogOptions {
  flushMs: number;
  flushRows: number;
  /** Rows waiting at most (default 10 × flushRows, at least 1000). */
  maxBuffered?: number;
  /** Longest a flush may take before its rows count as dropped (default 5000 ms). */
  writeTimeoutMs?: number;
}

const rowsWritten = counter<'table'>({ name: 'iot_perf_log_rows_written_total', help: 'Performance log rows written, by table.', labelNames: ['table'] });
const rowsDropped = counter<'table' | 'reason'>({
  name: 'iot_perf_log_rows_dropped_total',
  help: 'Performance log rows not written, by table and reason: buffer_full (the database was slow or down), write_failed, write_timeout.',
  labelNames: ['table', 'reason'],
});
const bufferedRows = pulled<PerfLogWriter>('gauge', { name: 'iot_perf_log_buffered_rows', help: 'Performance log rows waiting to be written.' },
  (w) => w.buffered);

// U+0000 cannot be stored in text (jsonb refuses \u0000): a row must never fail its batch.
const safe = (v: unknown) => (typeof v === 'string' ? v.replace(/\u0000/g, '\ufffd') : v);

export class PerfLogWriter {
  private readonly rows = new Map<PerfTable, PerfRow[]>(TABLES.map((t) => [t, []]));
  private count = 0;
  private timer: NodeJS.Timeout | undefined;
  private flushing: Promise<void> | undefined;
  private closed = false;
  private readonly maxBuffered: number;
  private readonly writeTimeoutMs: number;
  private readonly unregister: () => void;
  readonly stats = { written: 0, dropped: 0, flushes: 0, failedFlushes: 0 };

  constructor(private readonly query: PerfQuery, private readonly options: PerfLogOptions) {
    this.maxBuffered = options.maxBuffered ?? Math.max(1000, options.flushRows * 10);
    this.writeTimeoutMs = options.writeTimeoutMs ?? 5000;
    this.unregister = bufferedRows.add(this);
  }

  get buffered(): number {
    return this.count;
  }

  /** Queues a row; never waits. Returns false when it was dropped (buffer full or writer closed). */
  add(table: PerfTable, row: PerfRow): boolean {
    if (this.closed || this.count >= this.maxBuffered) {
      this.drop(table, 'buffer_full', 1);
      return false;
    }
    const time = TIME_COLUMN[table];
    this.rows.get(table)!.push(row[time] === undefined ? { ...row, [time]: new Date().toISOString() } : row);
    this.count++;
    if (!this.flushing) this.schedule();
    return true;
  }

  /** A flush now when flushRows are waiting, else within flushMs. */
  private schedule(): void {
    if (this.count >= this.options.flushRows) this.startFlush();
    else if (this.count && !this.timer && !this.closed) {
      this.timer = setTimeout(() => {
        this.timer = undefined;
        void this.flush();
      }, this.options.flushMs);
      this.timer.unref();
    }
  }

  /** Writes what is waiting now (after a flush under way); resolves when done, never rejects. */
  async flush(): Promise<void> {
    while (this.flushing || this.count) {
      if (!this.flushing) this.startFlush();
      await this.flushing;
    }
  }

  private startFlush(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    const batch = TABLES.map((t) => [t, this.rows.get(t)!.splice(0)] as const).filter(([, r]) => r.length);
    this.count = 0;
    this.flushing = this.write(batch).finally(() => {
      this.flushing = undefined;
      this.schedule(); // rows that came in meanwhile
    });
  }

  /** Writes what is waiting, then refuses new rows. */
  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.timer);
    this.timer = undefined;
    await this.flush();
    this.unregister();
  }

  private async write(batch: (readonly [PerfTable, PerfRow[]])[]): Promise<void> {
    this.stats.flushes++;
    for (const [table, rows] of batch) {
      const columns = PERF_COLUMNS[table];
      const json = JSON.stringify(rows.map((r) => Object.fromEntries(columns.map((c) => [c, safe(r[c] ?? DEFAULTS[c] ?? null)]))));
      const list = columns.join(', ');
      let timer: NodeJS.Timeout | undefined;
      try {
        await Promise.race([
          this.query(`insert into iot.${table} (${list}) select ${list} from jsonb_populate_recordset(null::iot.${table}, $1::jsonb)`, [json]),
          new Promise((_, reject) => {
            timer = setTimeout(() => reject(Object.assign(new Error(`no answer within ${this.writeTimeoutMs} ms`), { timeout: true })), this.writeTimeoutMs);
          }),
        ]);
        rowsWritten.inc({ table }, rows.length);
        this.stats.written += rows.length;
      } catch (error) {
        this.stats.failedFlushes++;
        this.drop(table, (error as { timeout?: boolean }).timeout ? 'write_timeout' : 'write_failed', rows.length);
        note('warn', 'performance log rows could not be written; dropped (they are logs, not telemetry)', { table, rows: rows.length, error });
      } finally {
        clearTimeout(timer);
      }
    }
  }

  private drop(table: PerfTable, reason: string, n: number): void {
    this.stats.dropped += n;
    rowsDropped.inc({ table, reason }, n);
  }
}

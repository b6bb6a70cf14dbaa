// A small pool of its own for /healthz and for cancelling queries (issue 7, finding 10: under 200
// concurrent clients /healthz queued behind them on the API's pool and took 5 s, longer than the
// docker-compose health check waits). Same database and login as the API's pool, every step bounded
// by API_HEALTH_TIMEOUT_MS: connecting, waiting for one of its connections, and the query.
import { Pool } from 'pg';
import type { Request, Response } from 'express';
import { logger } from '../lib/log';

const log = logger('api');

export interface ControlPool {
  /** GET /healthz: 200 when the database answers `select 1` in time, else 503 with the reason. */
  health(req: Request, res: Response): Promise<void>;
  /** Cancels the query running on a backend of the API's login (pg_cancel_backend). */
  cancel(pid: number): Promise<boolean>;
  query<R extends Record<string, unknown>>(text: string, values?: unknown[]): Promise<R[]>;
  close(): Promise<void>;
}

export function controlPool(apiPool: Pool, timeoutMs: number): ControlPool {
  // The API pool's connection settings (connection string, ssl, ...), with bounds of our own.
  const base = { ...(apiPool as unknown as { options: Record<string, unknown> }).options };
  delete base.max;
  const pool = new Pool({
    ...base,
    max: 3,
    application_name: 'iot-api-control',
    connectionTimeoutMillis: timeoutMs,
    query_timeout: timeoutMs,
    statement_timeout: timeoutMs,
    idleTimeoutMillis: 0, // keep its connection: a health check should not pay for connecting
  });
  pool.on('error', (error) => log.warn('control connection lost', { error }));
  // Connect now, so that the first health check does not pay for it (under load that took 1.4 s).
  pool.query('select 1').catch(() => undefined);
  let closed = false;
  return {
    async health(_req, res) {
      const started = Date.now();
      const api = { total: apiPool.totalCount, idle: apiPool.idleCount, waiting: apiPool.waitingCount };
      try {
        await pool.query('select 1');
        const databaseMs = Date.now() - started;
        // Maintenance that keeps failing (TimescaleDB's jobs, graphile-worker's) makes the service degraded, not down.
        const failing = await pool.query('select source, job_name, last_status, last_run_at, failures, last_error from iot_private.failed_maintenance_jobs()')
          .then((r) => r.rows, (error: Error) => [{ source: 'healthz', job_name: 'failed_maintenance_jobs', last_error: error.message }]);
        res.json({ status: failing.length ? 'degraded' : 'ok', databaseMs, apiPool: api, maintenance: { failing } });
      } catch (error) {
        res.status(503).json({ status: 'database unavailable', error: (error as Error).message, waitedMs: Date.now() - started, apiPool: api });
      }
    },
    async cancel(pid) {
      const { rows } = await pool.query<{ cancelled: boolean }>('select pg_cancel_backend($1) as cancelled', [pid]);
      return rows[0]?.cancelled ?? false;
    },
    async query(text, values) {
      return (await pool.query(text, values)).rows;
    },
    async close() {
      if (closed) return;
      closed = true;
      await pool.end();
    },
  };
}

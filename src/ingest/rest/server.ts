// `iot ingest rest`: the REST ingest endpoint on a port of its own (REST_INGEST_PORT), POST
// /ingest/readings, plus GET /ingest/healthz. `iot start` may mount restIngestRouter on the API app
// instead. stop() refuses new connections, lets requests in flight get their answer (up to
// `drainMs`), then closes what is left; stop it before the sink so their readings are committed.
import express from 'express';
import { createServer, Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Pool } from 'pg';
import { logger } from '../../lib/log';
import type { RegistryCache } from '../registry';
import type { ReadingSink } from '../sink';
import { RestIngestLimits, RestIngestStats, restIngestRouter } from './router';

const log = logger('ingest-rest');

export interface RestIngestServerOptions {
  port: number;
  host?: string;
  limits?: Partial<RestIngestLimits>;
  /** Longest stop() waits for requests in flight (default 10 s). */
  drainMs?: number;
}

export class RestIngestServer {
  private server: Server | undefined;
  private routerStats: RestIngestStats | undefined;
  url = '';

  constructor(private readonly options: RestIngestServerOptions, private readonly registry: RegistryCache,
    private readonly sink: ReadingSink, private readonly pool: Pool) {}

  get stats(): RestIngestStats | undefined {
    return this.routerStats;
  }

  async start(): Promise<void> {
    const router = restIngestRouter({ sink: this.sink, registry: this.registry, pool: this.pool, limits: this.options.limits });
    this.routerStats = router.stats;
    const app = express();
    app.disable('x-powered-by');
    app.get('/ingest/healthz', (_req, res) => {
      const up = this.sink.stats.databaseUp;
      res.status(up ? 200 : 503).json({ databaseUp: up, buffered: this.sink.buffered, bufferFull: this.sink.bufferFull });
    });
    app.use('/ingest', router);
    app.use((_req, res) => res.status(404).json({ error: 'not found: POST readings to /ingest/readings' }));
    const server = createServer(app);
    // Gateways keep one connection open between batches; longer than the usual 60 s of their proxies.
    server.keepAliveTimeout = 65_000;
    server.headersTimeout = 66_000;
    server.requestTimeout = 120_000;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.options.port, this.options.host ?? '0.0.0.0', () => resolve());
    });
    this.server = server;
    const { port } = server.address() as AddressInfo;
    const host = this.options.host && this.options.host !== '0.0.0.0' ? this.options.host : 'localhost';
    this.url = `http://${host.includes(':') ? `[${host}]` : host}:${port}`;
    log.info('REST ingest listening', { url: `${this.url}/ingest/readings` });
  }

  async stop(): Promise<void> {
    const server = this.server;
    if (!server) return;
    this.server = undefined;
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    server.closeIdleConnections();
    const drained = await Promise.race([closed.then(() => true),
      new Promise<boolean>((resolve) => setTimeout(() => resolve(false), this.options.drainMs ?? 10_000).unref())]);
    if (!drained) {
      log.warn('REST ingest stopped with requests still waiting for their commit; their clients see the connection close and may send again safely');
      server.closeAllConnections();
      await closed;
    }
  }
}

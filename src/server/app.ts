// The API: express + PostGraphile 4 over schema `iot`, GraphQL subscriptions driven by
// LISTEN/NOTIFY (@graphile/pg-pubsub) over our own graphql-ws server and an SSE stream
// (realtime/: origin, token at connect, limits, timers, close codes), plus /healthz and /metrics.
// No request may hold the database (issue 7): tokens are verified here with an allow-list of roles
// (auth.ts), operations are checked for depth, page sizes and cost before any SQL runs (limits.ts),
// every transaction has a statement_timeout, SQL stops when the client goes away
// (request-scope.ts), and /healthz has connections of its own (control-pool.ts).
import PgPubsub from '@graphile/pg-pubsub';
import PgSimplifyInflectorPlugin from '@graphile-contrib/pg-simplify-inflector';
import express from 'express';
import { createServer, IncomingMessage, Server } from 'node:http';
import type { Pool } from 'pg';
import { makePluginHook, postgraphile } from 'postgraphile';
import { specs, type Config } from '../lib/config';
import { logger } from '../lib/log';
import { metricsContentType, renderMetrics } from '../lib/metrics';
import { PerfLogWriter } from '../lib/perf-log';
import { startResourceSampler } from '../lib/resource-sampler';
import { registerApiMetrics } from './api-metrics';
import { apiPerformanceLog } from './api-performance';
import { settingsFor, TokenRules, verifyRequest } from './auth';
import { controlPool } from './control-pool';
import type { QueryLimits } from './limits';
import { limitsHook } from './limits-hook';
import { notifyChannels } from './notify-channels';
import { ExactNamesPlugin } from './plugins/exact-names';
import { NumericAsFloatPlugin } from './plugins/numeric-as-float';
import { pageCapPlugin } from './plugins/page-cap';
import { subscriptionsPlugin } from './plugins/subscriptions';
import { createRealtime } from './realtime';
import { listenerPool } from './realtime/listener-pool';
import { requestScope, scopedPool } from './request-scope';

const log = logger('api');

export interface ApiOptions {
  pool: Pool;
  host: string;
  port: number;
  jwtSecret: string;
  graphiql: boolean;
  /** GraphQL subscriptions over WebSocket (GRAPHQL_WS_ENABLED); the SSE stream is always served. */
  websockets: boolean;
  graphqlPath: string;
  /** GRAPHQL_WS_PATH; default graphqlPath. */
  wsPath?: string;
  /** WS_ALLOWED_ORIGINS (lower case; ['*'] any; [] the API's own origin only). */
  wsAllowedOrigins?: string[];
  /** WS_MAX_SOCKETS_PER_IP */
  wsMaxSocketsPerIp?: number;
  /** WS_MAX_SOCKETS_PER_USER */
  wsMaxSocketsPerUser?: number;
  /** WS_MAX_SUBSCRIPTIONS_PER_SOCKET */
  wsMaxSubscriptionsPerSocket?: number;
  /** WS_KEEPALIVE_MS (also the SSE heartbeat) */
  wsKeepaliveMs?: number;
  /** WS_IDLE_TIMEOUT_MS */
  wsIdleTimeoutMs?: number;
  /** WS_CONNECTION_INIT_TIMEOUT_MS */
  wsConnectionInitTimeoutMs?: number;
  maxPageSize: number;
  /** statement_timeout of every API transaction (API_STATEMENT_TIMEOUT_MS). */
  statementTimeoutMs?: number;
  /** API_MAX_QUERY_DEPTH */
  maxQueryDepth?: number;
  /** API_MAX_QUERY_COST */
  maxQueryCost?: number;
  /** API_TOKEN_MAX_LIFETIME_DAYS */
  tokenMaxLifetimeDays?: number;
  /** API_HEALTH_TIMEOUT_MS: the longest /healthz (and a cancel) waits for the database. */
  healthTimeoutMs?: number;
  /** PERF_LOG_FLUSH_MS / PERF_LOG_FLUSH_ROWS: how often api_performance_log and system_resource_metrics are written. */
  perfLogFlushMs?: number;
  perfLogFlushRows?: number;
  /** API_SLOW_QUERY_MS: operations slower than this also go to query_performance_log. */
  slowQueryMs?: number;
  /** What this process runs, in system_resource_metrics (api, all). */
  component?: string;
  /** REST ingest (src/ingest/rest) served at /ingest on this port, as `iot start` does. */
  restIngest?: express.Router;
}

type ConfiguredLimits = 'statementTimeoutMs' | 'maxQueryDepth' | 'maxQueryCost' | 'tokenMaxLifetimeDays' | 'healthTimeoutMs' | 'wsPath'
  | 'wsAllowedOrigins' | 'wsMaxSocketsPerIp' | 'wsMaxSocketsPerUser' | 'wsMaxSubscriptionsPerSocket' | 'wsKeepaliveMs' | 'wsIdleTimeoutMs'
  | 'wsConnectionInitTimeoutMs' | 'perfLogFlushMs' | 'perfLogFlushRows' | 'slowQueryMs';

/** The API's limits from the configuration (`...apiLimitsFromConfig(c)` in startApi's options), realtime ones included. */
export function apiLimitsFromConfig(c: Config): Pick<ApiOptions, ConfiguredLimits> {
  return {
    statementTimeoutMs: c.API_STATEMENT_TIMEOUT_MS, maxQueryDepth: c.API_MAX_QUERY_DEPTH, maxQueryCost: c.API_MAX_QUERY_COST,
    tokenMaxLifetimeDays: c.API_TOKEN_MAX_LIFETIME_DAYS, healthTimeoutMs: c.API_HEALTH_TIMEOUT_MS,
    wsPath: c.GRAPHQL_WS_PATH, wsAllowedOrigins: c.WS_ALLOWED_ORIGINS, wsMaxSocketsPerIp: c.WS_MAX_SOCKETS_PER_IP,
    wsMaxSocketsPerUser: c.WS_MAX_SOCKETS_PER_USER, wsMaxSubscriptionsPerSocket: c.WS_MAX_SUBSCRIPTIONS_PER_SOCKET,
    wsKeepaliveMs: c.WS_KEEPALIVE_MS, wsIdleTimeoutMs: c.WS_IDLE_TIMEOUT_MS, wsConnectionInitTimeoutMs: c.WS_CONNECTION_INIT_TIMEOUT_MS,
    perfLogFlushMs: c.PERF_LOG_FLUSH_MS, perfLogFlushRows: c.PERF_LOG_FLUSH_ROWS, slowQueryMs: c.API_SLOW_QUERY_MS,
  };
}

const fromSpec = (name: keyof typeof specs) => Number(specs[name].default);

export interface ApiServer {
  server: Server;
  url: string;
  /** Open WebSockets and SSE streams. */
  realtime: { sockets(): number; streams(): number };
  close(): Promise<void>;
}

export async function startApi(options: ApiOptions): Promise<ApiServer> {
  const statementTimeoutMs = options.statementTimeoutMs ?? fromSpec('API_STATEMENT_TIMEOUT_MS');
  const limits: QueryLimits = {
    maxDepth: options.maxQueryDepth ?? fromSpec('API_MAX_QUERY_DEPTH'),
    maxCost: options.maxQueryCost ?? fromSpec('API_MAX_QUERY_COST'),
    maxPageSize: options.maxPageSize,
  };
  const tokens: TokenRules = {
    secret: options.jwtSecret,
    maxLifetimeSeconds: (options.tokenMaxLifetimeDays ?? fromSpec('API_TOKEN_MAX_LIFETIME_DAYS')) * 86400,
  };
  const control = controlPool(options.pool, options.healthTimeoutMs ?? fromSpec('API_HEALTH_TIMEOUT_MS'));
  const channels = notifyChannels((text, values) => control.query(text, values));
  // The database's figures on /metrics (NOTIFY queue, jobs, alerts) over the control pool, bounded.
  const unregisterApiMetrics = registerApiMetrics({ query: (text) => control.query(text), timeoutMs: options.healthTimeoutMs ?? fromSpec('API_HEALTH_TIMEOUT_MS') });
  // The seed's performance logs (api_performance_log, query_performance_log, system_resource_metrics), buffered.
  const perfLog = new PerfLogWriter((text, values) => control.query(text, values),
    { flushMs: options.perfLogFlushMs ?? fromSpec('PERF_LOG_FLUSH_MS'), flushRows: options.perfLogFlushRows ?? fromSpec('PERF_LOG_FLUSH_ROWS') });
  const sampler = startResourceSampler({ writer: perfLog, component: options.component ?? 'api', intervalMs: 10_000, query: (t) => control.query(t) });

  const pluginHook = makePluginHook([PgPubsub, limitsHook({ limits, tokens, statementTimeoutMs })]);
  const listener = listenerPool(scopedPool(options.pool));
  const middleware = postgraphile(listener.pool, ['iot'], {
    pluginHook,
    // The Subscription type and pg-pubsub's LISTEN client; PostGraphile's own WebSocket server is
    // not attached (websockets: []): realtime/ws-server.ts serves subscriptions.
    subscriptions: true,
    websockets: [],
    // One listener per subscriber on pg-pubsub's emitter: 10,000 dashboards are not a leak.
    subscriptionEventEmitterMaxListeners: 0,
    graphqlRoute: options.graphqlPath,
    graphiqlRoute: '/graphiql',
    graphiql: options.graphiql,
    enhanceGraphiql: options.graphiql,
    dynamicJson: true,
    setofFunctionsContainNulls: false,
    ignoreRBAC: false,
    legacyRelations: 'omit',
    // Tokens are verified in auth.ts, not by PostGraphile (no jwtSecret here): role allow-list,
    // exp required and bounded. The role and the claims SQL reads become transaction settings.
    pgSettings: (req: IncomingMessage) => ({
      ...settingsFor(verifyRequest(req, tokens)),
      statement_timeout: String(statementTimeoutMs),
    }),
    additionalGraphQLContextFromRequest: async (req: IncomingMessage) => ({ iotCaller: verifyRequest(req, tokens) }),
    appendPlugins: [PgSimplifyInflectorPlugin, ExactNamesPlugin, NumericAsFloatPlugin, subscriptionsPlugin({ channels, query: (text, values) => control.query(text, values) }), pageCapPlugin(options.maxPageSize)],
    extendedErrors: ['errcode', 'detail', 'hint'],
    disableQueryLog: true,
    retryOnInitFail: true,
    enableCors: false,
    graphileBuildOptions: { pgStrictFunctions: true },
  });

  let schema: ReturnType<typeof middleware.getGraphQLSchema> | undefined;
  const realtime = createRealtime({
    websockets: options.websockets,
    wsPath: options.wsPath ?? options.graphqlPath,
    allowedOrigins: options.wsAllowedOrigins ?? [],
    maxSocketsPerIp: options.wsMaxSocketsPerIp ?? fromSpec('WS_MAX_SOCKETS_PER_IP'),
    maxSocketsPerUser: options.wsMaxSocketsPerUser ?? fromSpec('WS_MAX_SOCKETS_PER_USER'),
    maxSubscriptionsPerSocket: options.wsMaxSubscriptionsPerSocket ?? fromSpec('WS_MAX_SUBSCRIPTIONS_PER_SOCKET'),
    keepaliveMs: options.wsKeepaliveMs ?? fromSpec('WS_KEEPALIVE_MS'),
    idleTimeoutMs: options.wsIdleTimeoutMs ?? fromSpec('WS_IDLE_TIMEOUT_MS'),
    connectionInitTimeoutMs: options.wsConnectionInitTimeoutMs ?? fromSpec('WS_CONNECTION_INIT_TIMEOUT_MS'),
    statementTimeoutMs,
  }, { getSchema: () => (schema ??= middleware.getGraphQLSchema()), tokens, limits, pool: options.pool });

  const app = express();
  app.get('/healthz', (req, res) => void control.health(req, res));
  app.get('/metrics', (_req, res, next) => {
    renderMetrics().then((text) => res.type(metricsContentType).send(text), next);
  });
  realtime.route(app);
  app.use(options.graphqlPath, apiPerformanceLog({ writer: perfLog, slowMs: options.slowQueryMs ?? fromSpec('API_SLOW_QUERY_MS'),
    callerOf: (req) => verifyRequest(req, tokens) }));
  app.use(options.graphqlPath, requestScope((pid) => control.cancel(pid)));
  if (options.restIngest) app.use('/ingest', options.restIngest); // reads its own body: nothing before it may parse it
  app.use(middleware);

  const server = createServer(app);
  realtime.attach(server);
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(options.port, options.host, () => resolve());
    });
  } catch (error) {
    await realtime.close();
    await middleware.release?.();
    await listener.releaseHeld();
    sampler.stop();
    await perfLog.close();
    unregisterApiMetrics();
    await control.close();
    throw error;
  }
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : options.port;
  const url = `http://${options.host === '0.0.0.0' ? 'localhost' : options.host}:${port}`;
  log.info('API listening', {
    graphql: url + options.graphqlPath, graphiql: options.graphiql ? url + '/graphiql' : 'off',
    statementTimeoutMs, maxDepth: limits.maxDepth, maxCost: limits.maxCost, maxPageSize: limits.maxPageSize,
  });
  return {
    server,
    url,
    realtime: { sockets: () => realtime.sockets(), streams: () => realtime.streams() },
    close: async () => {
      // Close frames (1001) and SSE ends first, so the subscriptions end and UNLISTEN while the
      // LISTEN connection still exists; then HTTP; then PostGraphile and that connection itself.
      await realtime.close();
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
      await middleware.release?.();
      const destroyed = await listener.releaseHeld();
      if (destroyed) log.debug('LISTEN connection closed', { connections: destroyed });
      sampler.stop();
      await perfLog.close();
      unregisterApiMetrics();
      await control.close();
    },
  };
}

// The API: express + PostGraphile 4 over schema `iot`, GraphQL subscriptions over graphql-ws
// driven by LISTEN/NOTIFY (@graphile/pg-pubsub), plus /healthz and /metrics.
// No request may hold the database (issue 7): tokens are verified here with an allow-list of roles
// (auth.ts), operations are checked for depth, page sizes and cost before any SQL runs (limits.ts),
// every transaction has a statement_timeout, SQL stops when the client goes away
// (request-scope.ts), and /healthz has connections of its own (control-pool.ts).
import PgPubsub from '@graphile/pg-pubsub';
import PgSimplifyInflectorPlugin from '@graphile-contrib/pg-simplify-inflector';
import express from 'express';
import { createServer, IncomingMessage, Server } from 'node:http';
import type { Pool } from 'pg';
import { enhanceHttpServerWithSubscriptions, makePluginHook, postgraphile } from 'postgraphile';
import { specs, type Config } from '../lib/config';
import { logger } from '../lib/log';
import { renderMetrics } from '../lib/metrics';
import { registerApiMetrics } from './api-metrics';
import { settingsFor, TokenRules, verifyRequest } from './auth';
import { controlPool } from './control-pool';
import type { QueryLimits } from './limits';
import { limitsHook } from './limits-hook';
import { notifyChannels } from './notify-channels';
import { ExactNamesPlugin } from './plugins/exact-names';
import { NumericAsFloatPlugin } from './plugins/numeric-as-float';
import { pageCapPlugin } from './plugins/page-cap';
import { subscriptionsPlugin } from './plugins/subscriptions';
import { requestScope, scopedPool } from './request-scope';

const log = logger('api');

export interface ApiOptions {
  pool: Pool;
  host: string;
  port: number;
  jwtSecret: string;
  graphiql: boolean;
  websockets: boolean;
  graphqlPath: string;
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
}

/** The API's limits from the configuration (`...apiLimitsFromConfig(c)` in startApi's options). */
export function apiLimitsFromConfig(c: Config): Pick<ApiOptions, 'statementTimeoutMs' | 'maxQueryDepth' | 'maxQueryCost' | 'tokenMaxLifetimeDays' | 'healthTimeoutMs'> {
  return {
    statementTimeoutMs: c.API_STATEMENT_TIMEOUT_MS, maxQueryDepth: c.API_MAX_QUERY_DEPTH, maxQueryCost: c.API_MAX_QUERY_COST,
    tokenMaxLifetimeDays: c.API_TOKEN_MAX_LIFETIME_DAYS, healthTimeoutMs: c.API_HEALTH_TIMEOUT_MS,
  };
}

const fromSpec = (name: keyof typeof specs) => Number(specs[name].default);

export interface ApiServer {
  server: Server;
  url: string;
  close(): Promise<void>;
}

export async function startApi(options: ApiOptions): Promise<ApiServer> {
  registerApiMetrics();
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

  const pluginHook = makePluginHook([PgPubsub, limitsHook({ limits, tokens, statementTimeoutMs })]);
  const middleware = postgraphile(scopedPool(options.pool), ['iot'], {
    pluginHook,
    subscriptions: options.websockets,
    websockets: options.websockets ? ['v1'] : [],
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
    appendPlugins: [PgSimplifyInflectorPlugin, ExactNamesPlugin, NumericAsFloatPlugin, subscriptionsPlugin(channels), pageCapPlugin(options.maxPageSize)],
    extendedErrors: ['errcode', 'detail', 'hint'],
    disableQueryLog: true,
    retryOnInitFail: true,
    enableCors: false,
    graphileBuildOptions: { pgStrictFunctions: true },
  });

  const app = express();
  app.get('/healthz', (req, res) => void control.health(req, res));
  app.get('/metrics', (_req, res) => {
    res.type('text/plain; version=0.0.4').send(renderMetrics());
  });
  app.use(options.graphqlPath, requestScope((pid) => control.cancel(pid)));
  app.use(middleware);

  const server = createServer(app);
  if (options.websockets) enhanceHttpServerWithSubscriptions(server, middleware);
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(options.port, options.host, () => resolve());
    });
  } catch (error) {
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
    close: async () => {
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
      await middleware.release?.();
      await control.close();
    },
  };
}

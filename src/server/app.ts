// The API: express + PostGraphile 4 over schema `iot`, GraphQL subscriptions over graphql-ws
// driven by LISTEN/NOTIFY (@graphile/pg-pubsub), plus /healthz and /metrics.
import PgPubsub from '@graphile/pg-pubsub';
import PgSimplifyInflectorPlugin from '@graphile-contrib/pg-simplify-inflector';
import express from 'express';
import { createServer, Server } from 'node:http';
import type { Pool } from 'pg';
import { enhanceHttpServerWithSubscriptions, makePluginHook, postgraphile } from 'postgraphile';
import { logger } from '../lib/log';
import { renderMetrics } from '../lib/metrics';
import { ExactNamesPlugin } from './plugins/exact-names';
import { NumericAsFloatPlugin } from './plugins/numeric-as-float';
import { pageCapPlugin } from './plugins/page-cap';
import { SubscriptionsPlugin } from './plugins/subscriptions';

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
}

export interface ApiServer {
  server: Server;
  url: string;
  close(): Promise<void>;
}

export async function startApi(options: ApiOptions): Promise<ApiServer> {
  const pluginHook = makePluginHook([PgPubsub]);
  const middleware = postgraphile(options.pool, ['iot'], {
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
    jwtSecret: options.jwtSecret,
    jwtPgTypeIdentifier: 'iot.jwt_token',
    jwtVerifyOptions: { algorithms: ['HS256'] },
    pgDefaultRole: 'iot_anonymous',
    appendPlugins: [PgSimplifyInflectorPlugin, ExactNamesPlugin, NumericAsFloatPlugin, SubscriptionsPlugin, pageCapPlugin(options.maxPageSize)],
    extendedErrors: ['errcode', 'detail', 'hint'],
    disableQueryLog: true,
    retryOnInitFail: true,
    enableCors: false,
    graphileBuildOptions: { pgStrictFunctions: true },
  });

  const app = express();
  app.get('/healthz', async (_req, res) => {
    try {
      await options.pool.query('select 1');
      res.json({ status: 'ok' });
    } catch (error) {
      res.status(503).json({ status: 'database unavailable', error: (error as Error).message });
    }
  });
  app.get('/metrics', (_req, res) => {
    res.type('text/plain; version=0.0.4').send(renderMetrics());
  });
  app.use(middleware);

  const server = createServer(app);
  if (options.websockets) enhanceHttpServerWithSubscriptions(server, middleware);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host, () => resolve());
  });
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : options.port;
  const url = `http://${options.host === '0.0.0.0' ? 'localhost' : options.host}:${port}`;
  log.info('API listening', { graphql: url + options.graphqlPath, graphiql: options.graphiql ? url + '/graphiql' : 'off' });
  return {
    server,
    url,
    close: async () => {
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
      await middleware.release?.();
    },
  };
}

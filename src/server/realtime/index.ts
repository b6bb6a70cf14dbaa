// The realtime API: GraphQL subscriptions over WebSocket (ws-server.ts) and the SSE stream
// (sse.ts), sharing the connection limits, the token rules and the schema.
import type { Express } from 'express';
import type { Server } from 'node:http';
import type { GraphQLSchema } from 'graphql';
import type { Pool } from 'pg';
import { logger } from '../../lib/log';
import type { TokenRules } from '../auth';
import type { QueryLimits } from '../limits';
import { ConnectionLimits } from './connection-limits';
import { SSE_ROUTE, sseEndpoint } from './sse';
import { attachWsServer, type WsServer } from './ws-server';

const log = logger('realtime');

export interface RealtimeSettings {
  websockets: boolean;
  wsPath: string;
  allowedOrigins: readonly string[];
  maxSocketsPerIp: number;
  maxSocketsPerUser: number;
  maxSubscriptionsPerSocket: number;
  keepaliveMs: number;
  idleTimeoutMs: number;
  connectionInitTimeoutMs: number;
  statementTimeoutMs: number;
}

export interface Realtime {
  /** Adds the SSE route; call before PostGraphile's middleware. */
  route(app: Express): void;
  /** Takes WebSocket upgrades on the HTTP server (when enabled). */
  attach(server: Server): void;
  sockets(): number;
  streams(): number;
  close(): Promise<void>;
}

export function createRealtime(settings: RealtimeSettings, deps: { getSchema(): Promise<GraphQLSchema>; tokens: TokenRules; limits: QueryLimits; pool: Pool }): Realtime {
  const connections = new ConnectionLimits({ maxPerIp: settings.maxSocketsPerIp, maxPerUser: settings.maxSocketsPerUser });
  const sse = sseEndpoint(
    { allowedOrigins: settings.allowedOrigins, keepaliveMs: settings.keepaliveMs, statementTimeoutMs: settings.statementTimeoutMs },
    { getSchema: deps.getSchema, tokens: deps.tokens, connections, pool: deps.pool },
  );
  let ws: WsServer | undefined;
  return {
    route(app) {
      app.get(SSE_ROUTE, (req, res) => void sse.handle(req, res));
    },
    attach(server) {
      if (!settings.websockets) return;
      ws = attachWsServer(server, {
        path: settings.wsPath, allowedOrigins: settings.allowedOrigins, maxSubscriptionsPerSocket: settings.maxSubscriptionsPerSocket,
        keepaliveMs: settings.keepaliveMs, idleTimeoutMs: settings.idleTimeoutMs, connectionInitTimeoutMs: settings.connectionInitTimeoutMs,
      }, { getSchema: deps.getSchema, tokens: deps.tokens, limits: deps.limits, connections });
    },
    sockets: () => ws?.count() ?? 0,
    streams: () => sse.count(),
    async close() {
      const sockets = ws?.count() ?? 0;
      const streams = sse.count();
      await Promise.all([ws?.close(), sse.close()]);
      if (sockets || streams) log.info('realtime connections closed for shutdown', { sockets, streams });
    },
  };
}

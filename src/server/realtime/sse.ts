// GET /api/equipment-health/stream/:workCenterId: the seed's Server-Sent Events alternative for
// clients without WebSocket. Same checks as a WebSocket: Origin, sockets per address and per user,
// the token (Authorization header, or ?token= because EventSource cannot set headers: such URLs
// end up in proxy and access logs, so use short-lived tokens there), closed at token expiry; a
// heartbeat comment every WS_KEEPALIVE_MS keeps proxies from cutting an idle stream. The events are
// the GraphQL subscriptions of stream-documents.ts, run with graphql's subscribe().
import type { Request, Response } from 'express';
import { type ExecutionResult, GraphQLError, type GraphQLSchema, subscribe } from 'graphql';
import type { Pool } from 'pg';
import { logger } from '../../lib/log';
import type { TokenRules } from '../auth';
import { authenticateStream } from './authenticate';
import { type ConnectionLimits, userKey } from './connection-limits';
import { formatErrors } from './operation';
import { checkOrigin } from './origin';
import { refusal } from './refusals';
import { refusedField, type StreamDocument, streamDocuments, workCenterOf } from './stream-documents';
import { findWorkCenter } from './work-center-lookup';
import { wsConnections, wsMessagesSent, wsSubscriptions } from './ws-metrics';

const log = logger('realtime');
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
/** Unsent bytes a stream may hold before it is closed as too slow. */
const MAX_BUFFERED_BYTES = 1024 * 1024;
export const SSE_ROUTE = '/api/equipment-health/stream/:workCenterId';

export interface SseSettings {
  allowedOrigins: readonly string[];
  keepaliveMs: number;
  statementTimeoutMs: number;
}

export interface SseDeps {
  getSchema(): Promise<GraphQLSchema>;
  tokens: TokenRules;
  connections: ConnectionLimits;
  pool: Pool;
}

interface OpenStream {
  res: Response;
  expiresAt?: number;
  end(event?: { name: string; data: unknown }): void;
}

export interface SseEndpoint {
  handle(req: Request, res: Response): Promise<void>;
  count(): number;
  close(): Promise<void>;
}

const frame = (name: string, data: unknown) => `event: ${name}\ndata: ${JSON.stringify(data)}\n\n`;

export function sseEndpoint(settings: SseSettings, deps: SseDeps): SseEndpoint {
  const open = new Set<OpenStream>();
  let stopping = false;

  const heartbeat = setInterval(() => {
    for (const s of open) s.res.write(': heartbeat\n\n');
  }, settings.keepaliveMs);
  heartbeat.unref();
  const expiry = setInterval(() => {
    const now = Date.now() / 1000;
    for (const s of open) {
      if (s.expiresAt !== undefined && s.expiresAt <= now) {
        refusal('token_expired', { transport: 'sse' });
        s.end({ name: 'error', data: { error: 'token expired', code: 401 } });
      }
    }
  }, Math.min(1000, settings.keepaliveMs));
  expiry.unref();

  async function handle(req: Request, res: Response): Promise<void> {
    const ip = req.socket.remoteAddress ?? 'unknown';
    const fail = (status: number, error: string, extra: Record<string, unknown> = {}) => {
      res.status(status).json({ error, ...extra });
    };
    if (stopping) return fail(503, 'the API is shutting down; reconnect shortly');
    const origin = checkOrigin(req, settings.allowedOrigins);
    if (!origin.allowed) {
      refusal('origin', { from: ip, origin: origin.origin, transport: 'sse' });
      return fail(403, origin.why);
    }
    const query = new URL(req.originalUrl, 'http://localhost').searchParams;
    const auth = authenticateStream(req, query, deps.tokens);
    if (!auth.ok) {
      refusal(auth.reason, { from: ip, why: auth.message, transport: 'sse' });
      return fail(auth.status, auth.message, { errcode: 'IOT12' });
    }
    const caller = auth.caller;
    const workCenterId = String(req.params.workCenterId);
    if (!UUID.test(workCenterId)) return fail(400, `work center id ${JSON.stringify(workCenterId)} is not a UUID`);
    const releaseIp = deps.connections.perIp.take(ip);
    if (!releaseIp) {
      refusal('per_ip_limit', { from: ip, limit: deps.connections.settings.maxPerIp, transport: 'sse' });
      return fail(429, `too many open connections from ${ip} (WS_MAX_SOCKETS_PER_IP ${deps.connections.settings.maxPerIp})`);
    }
    const releaseUser = deps.connections.perUser.take(userKey(caller));
    if (!releaseUser) {
      releaseIp();
      refusal('per_user_limit', { from: ip, tenant: caller.tenantId, sub: caller.subject, transport: 'sse' });
      return fail(429, `too many connections for this user (WS_MAX_SOCKETS_PER_USER ${deps.connections.settings.maxPerUser})`);
    }
    const iterators: AsyncIterator<ExecutionResult>[] = [];
    const fields: string[] = [];
    const pumps: (() => Promise<void>)[] = [];
    let ended = false;
    let counted = false;
    const tenant = caller.tenantId ?? '';
    const cleanup = () => {
      if (ended) return;
      ended = true;
      releaseIp();
      releaseUser();
      for (const it of iterators) void it.return?.();
      for (const f of fields) wsSubscriptions.dec({ tenant, subscription: f });
      if (counted) wsConnections.dec({ tenant, transport: 'sse' });
      open.delete(stream);
    };
    const stream: OpenStream = {
      res,
      expiresAt: caller.expiresAt,
      end(event) {
        if (event && !res.writableEnded) res.write(frame(event.name, event.data));
        cleanup();
        res.end();
      },
    };
    res.on('close', cleanup);
    try {
      const workCenter = await findWorkCenter(deps.pool, caller, workCenterId, settings.statementTimeoutMs);
      if (!workCenter) {
        refusal('work_center', { from: ip, tenant, workCenterId, transport: 'sse' });
        cleanup();
        return fail(404, `work center ${workCenterId} not found (or not in your tenant)`);
      }
      const schema = await deps.getSchema();
      const docs = streamDocuments(schema);
      for (const [index, first] of docs.entries()) {
        let doc: StreamDocument | undefined = first;
        const values = { workCenterId, facilityId: workCenter.facilityId, tenantId: caller.tenantId };
        const variableValues = doc.variable ? { [doc.variable]: values[doc.variable] } : {};
        let result = await subscribe({ schema, document: doc.document, variableValues, contextValue: { iotCaller: caller } });
        // A payload field the resolvers cannot serve without SQL: ask without it (remembered for this schema).
        for (let field; !(Symbol.asyncIterator in result) && doc && (field = refusedField((result as ExecutionResult).errors?.[0]?.message ?? ''));) {
          doc = doc.without(field);
          if (!doc) break;
          docs[index] = doc;
          result = await subscribe({ schema, document: doc.document, variableValues, contextValue: { iotCaller: caller } });
        }
        if (!doc || !(Symbol.asyncIterator in result)) {
          const errors = formatErrors((result as ExecutionResult).errors as GraphQLError[] | undefined);
          cleanup();
          return fail(403, errors?.[0]?.message ?? `subscription ${first.spec.field} refused`, { errors });
        }
        const iterator = (result as AsyncIterableIterator<ExecutionResult>)[Symbol.asyncIterator]();
        if (ended) { // the client left while we prepared
          void iterator.return?.();
          return;
        }
        iterators.push(iterator);
        fields.push(doc.spec.field);
        wsSubscriptions.inc({ tenant, subscription: doc.spec.field });
        pumps.push(() => pump(iterator, doc.spec.field, doc.spec.event, doc.filterByWorkCenter ? workCenterId : undefined));
      }
      if (ended) return;
      if (!docs.length) {
        cleanup();
        return fail(503, 'no equipment-health subscriptions in the schema');
      }
    } catch (error) {
      cleanup();
      log.error('SSE stream could not start', { error, workCenterId, tenant });
      if (!res.headersSent) return fail(500, 'the stream could not start; see the API log');
      return;
    }
    counted = true;
    wsConnections.inc({ tenant, transport: 'sse' });
    open.add(stream);
    res.writeHead(200, {
      'Content-Type': 'text/event-stream; charset=utf-8',
      'Cache-Control': 'no-cache, no-transform',
      Connection: 'keep-alive',
      'X-Accel-Buffering': 'no', // nginx: do not buffer the stream
    });
    res.write(`retry: 5000\n: streaming ${fields.join(', ')} for work center ${workCenterId}\n\n`);
    for (const start of pumps) void start(); // after the headers: an early event must not go out first

    async function pump(iterator: AsyncIterator<ExecutionResult>, field: string, event: string, onlyWorkCenter?: string) {
      try {
        for (;;) {
          const next = await iterator.next();
          if (next.done || ended) return;
          const { data, errors } = next.value;
          if (errors?.length) {
            res.write(frame('error', { errors: formatErrors(errors as GraphQLError[]) }));
            continue;
          }
          const payload = (data as Record<string, unknown> | null | undefined)?.[field] as Record<string, unknown> | null | undefined;
          if (!payload) continue;
          if (onlyWorkCenter && (workCenterOf(payload) ?? '').toLowerCase() !== onlyWorkCenter.toLowerCase()) continue;
          if (res.writableLength > MAX_BUFFERED_BYTES) {
            // A client that does not read (or a link too slow for the plant's event rate) must not grow our memory.
            refusal('slow_client', { from: ip, tenant, transport: 'sse', bufferedBytes: res.writableLength });
            stream.end();
            return;
          }
          wsMessagesSent.inc({ transport: 'sse' });
          res.write(frame(event, payload));
        }
      } catch (error) {
        log.warn('SSE subscription failed', { error, field });
        stream.end({ name: 'error', data: { error: 'subscription failed; reconnect' } });
      }
    }
  }

  return {
    handle,
    count: () => open.size,
    async close() {
      stopping = true;
      clearInterval(heartbeat);
      clearInterval(expiry);
      for (const s of [...open]) s.end({ name: 'shutdown', data: { reason: 'server shutting down' } });
    },
  };
}

// Express middleware in front of PostGraphile on the GraphQL route: one row per GraphQL request in
// iot.api_performance_log (operation, type, duration, status, errors, caller), and requests slower
// than API_SLOW_QUERY_MS also in iot.query_performance_log with their document. Nothing here
// waits for the database: rows go to the buffered PerfLogWriter (src/lib/perf-log.ts).
// The operation is read from the body PostGraphile parsed (req.body, once the response is sent);
// errors from the response's first bytes (a GraphQL response starts with "errors" when it has any).
import { createHash } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { histogram } from '../lib/metrics';
import { INSTANCE, type PerfLogWriter } from '../lib/perf-log';

export interface CallerInfo {
  role?: string;
  tenantId?: string;
  subject?: string;
}

export interface ApiPerformanceOptions {
  writer: PerfLogWriter;
  /** API_SLOW_QUERY_MS: slower requests also go to query_performance_log. */
  slowMs: number;
  /** The verified caller of a request (auth.ts verifyRequest, memoised per request); throws or undefined when refused. */
  callerOf?: (req: IncomingMessage) => CallerInfo | undefined;
}

const requestDuration = histogram<'operation_type' | 'outcome'>({
  name: 'iot_api_request_duration_seconds',
  help: 'GraphQL requests over HTTP, from arrival to the last byte of the response, by operation type and outcome (ok, graphql_error, http_error).',
  labelNames: ['operation_type', 'outcome'],
  buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
});

/** Bytes of the response kept to read its errors; a larger response is read from its start only. */
const KEEP_BYTES = 64 * 1024;
const clip = (s: string | undefined, n: number) => (s === undefined ? undefined : s.length > n ? s.slice(0, n - 1) + '…' : s);

/** The operation a request runs: its name and type, read without parsing the whole document. */
export function operationOf(query: unknown, operationName: unknown): { name?: string; type?: 'query' | 'mutation' | 'subscription' } {
  if (typeof query !== 'string') return {};
  const text = query.slice(0, 16_384).replace(/#[^\n\r]*/g, ' ');
  const ops = [...text.matchAll(/(?:^|[\s}])(query|mutation|subscription)\b\s*([_A-Za-z][_0-9A-Za-z]*)?/g)]
    .map((m) => ({ type: m[1] as 'query' | 'mutation' | 'subscription', name: m[2] }));
  const wanted = typeof operationName === 'string' && operationName ? operationName : undefined;
  if (wanted) return { name: wanted, type: ops.find((o) => o.name === wanted)?.type };
  if (ops.length) return ops[0];
  return /^\s*\{/.test(text) ? { type: 'query' } : {}; // the shorthand `{ ... }` is an anonymous query
}

/** Number of GraphQL errors and the first message, from the response body's start. */
export function errorsOf(body: string, complete: boolean): { count: number; first?: string } {
  if (!/^\s*\{\s*"errors"\s*:/.test(body)) return { count: 0 };
  if (complete) {
    try {
      const errors = (JSON.parse(body) as { errors?: { message?: string }[] }).errors ?? [];
      return { count: errors.length, first: errors[0]?.message };
    } catch {
      // not JSON after all: read it like a clipped one
    }
  }
  const first = /"message"\s*:\s*"((?:[^"\\]|\\.)*)"/.exec(body);
  return { count: Math.max(1, (body.match(/"message"\s*:/g) ?? []).length), first: first ? JSON.parse(`"${first[1]}"`) : undefined };
}

export function apiPerformanceLog(options: ApiPerformanceOptions) {
  return (req: IncomingMessage & { body?: unknown }, res: ServerResponse, next: () => void) => {
    if (req.method !== 'POST') return next();
    const started = process.hrtime.bigint();
    const loggedAt = () => new Date().toISOString();
    const chunks: Buffer[] = [];
    let kept = 0;
    let bytes = 0;
    const keep = (chunk: unknown, encoding?: unknown) => {
      if (chunk === undefined || chunk === null || typeof chunk === 'function') return;
      const b = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk as string, typeof encoding === 'string' ? (encoding as BufferEncoding) : 'utf8');
      bytes += b.length;
      if (kept < KEEP_BYTES) {
        chunks.push(b.subarray(0, KEEP_BYTES - kept));
        kept += Math.min(b.length, KEEP_BYTES - kept);
      }
    };
    const write = res.write;
    const end = res.end;
    res.write = function (this: ServerResponse, chunk: unknown, ...rest: unknown[]) {
      keep(chunk, rest[0]);
      return (write as (...a: unknown[]) => boolean).call(this, chunk, ...rest);
    } as ServerResponse['write'];
    res.end = function (this: ServerResponse, chunk?: unknown, ...rest: unknown[]) {
      keep(chunk, rest[0]);
      return (end as (...a: unknown[]) => ServerResponse).call(this, chunk, ...rest);
    } as ServerResponse['end'];

    let done = false;
    const record = () => {
      if (done) return;
      done = true;
      const durationMs = Number(process.hrtime.bigint() - started) / 1e6;
      const status = res.writableFinished ? res.statusCode : 499; // 499: the client went away first
      const body = (Array.isArray(req.body) ? req.body[0] : req.body) as Record<string, unknown> | string | undefined;
      const params = typeof body === 'string' ? { query: body } : (body ?? {});
      const op = operationOf(params.query, params.operationName);
      const errors = errorsOf(Buffer.concat(chunks).toString('utf8'), bytes <= KEEP_BYTES);
      let caller: CallerInfo | undefined;
      if (status !== 401 && options.callerOf) {
        try {
          caller = options.callerOf(req);
        } catch {
          caller = undefined;
        }
      }
      const contentLength = Number(req.headers['content-length']);
      const row = {
        logged_at: loggedAt(), tenant_id: caller?.tenantId ?? null, role: caller?.role ?? null, actor: clip(caller?.subject, 200) ?? null,
        operation_name: clip(op.name, 200) ?? null, operation_type: op.type ?? null, duration_ms: Math.round(durationMs * 1000) / 1000,
        http_status: status, error_count: errors.count, first_error: clip(errors.first, 2000) ?? null,
        request_bytes: Number.isFinite(contentLength) ? contentLength : null, response_bytes: bytes, instance: INSTANCE,
      };
      options.writer.add('api_performance_log', row);
      requestDuration.observe({ operation_type: op.type ?? 'unknown', outcome: status >= 400 ? 'http_error' : errors.count ? 'graphql_error' : 'ok' },
        durationMs / 1000);
      if (durationMs > options.slowMs && typeof params.query === 'string') {
        const variables = params.variables && typeof params.variables === 'object' ? Object.keys(params.variables as object) : [];
        options.writer.add('query_performance_log', {
          ...row, threshold_ms: options.slowMs, request_bytes: undefined, response_bytes: undefined,
          query_text: clip(params.query, 16_000), query_sha256: createHash('sha256').update(params.query).digest('hex'),
          variable_names: variables.slice(0, 100).map((v) => v.slice(0, 100)),
        });
      }
    };
    res.once('finish', record);
    res.once('close', record);
    next();
  };
}

// The seed's performance logs: a row per GraphQL request in api_performance_log (after the flush
// interval), slow ones also in query_performance_log, process samples in system_resource_metrics,
// hourly summaries in performance_metrics_cache when the task runs, pruning by age; the writer
// with the database down neither grows nor blocks. Real PostgreSQL, real PostGraphile over HTTP.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import express from 'express';
import { createServer, Server } from 'node:http';
import { createServer as createTcpServer, Socket } from 'node:net';
import type { AddressInfo } from 'node:net';
import { Pool } from 'pg';
import { postgraphile } from 'postgraphile';
import { quickAddJob, runOnce } from 'graphile-worker';
import { renderMetrics } from '../../src/lib/metrics';
import { INSTANCE, PerfLogWriter } from '../../src/lib/perf-log';
import { startResourceSampler } from '../../src/lib/resource-sampler';
import { signToken } from '../../src/lib/secrets';
import PgSimplifyInflectorPlugin from '@graphile-contrib/pg-simplify-inflector';
import { apiPerformanceLog, errorsOf, operationOf } from '../../src/server/api-performance';
import { ExactNamesPlugin } from '../../src/server/plugins/exact-names';
import { settingsFor, verifyRequest, type TokenRules } from '../../src/server/auth';
import rollupHourly from '../../workers/performance__rollup_hourly';
import pruneLogs from '../../workers/performance__prune_logs';
import { createTestDatabase, seedSmallPlant, TestDatabase } from '../helpers/db';
import { poolThroughProxy } from '../helpers/proxy';
import { sleep, waitFor } from '../helpers/wait';

const test = suite('server: performance logs (api_performance_log, query_performance_log, system_resource_metrics, performance_metrics_cache)');
const SECRET = 'test-secret-for-performance-logs';
const SLOW_MS = 250;
const FLUSH_MS = 200;
const tokens: TokenRules = { secret: SECRET, maxLifetimeSeconds: 86400 };
let db: TestDatabase;
let plant: Awaited<ReturnType<typeof seedSmallPlant>>;
let rival: Awaited<ReturnType<typeof seedSmallPlant>>;
let writer: PerfLogWriter;
let server: Server;
let url: string;
let release: (() => Promise<void>) | undefined;

test.before(async () => {
  db = await createTestDatabase('performance_logs');
  plant = await seedSmallPlant(db.pool);
  rival = await seedSmallPlant(db.pool, 'rival', 'RIVAL');
  writer = new PerfLogWriter((text, values) => db.pool.query(text, values), { flushMs: FLUSH_MS, flushRows: 100 });
  // The API's GraphQL route as app.ts builds it, with the middleware in front of PostGraphile.
  const middleware = postgraphile(db.pool, ['iot'], {
    graphqlRoute: '/graphql', graphiql: false, dynamicJson: true, ignoreRBAC: false, disableQueryLog: true, legacyRelations: 'omit',
    pgSettings: (req) => settingsFor(verifyRequest(req, tokens)),
    appendPlugins: [PgSimplifyInflectorPlugin, ExactNamesPlugin],
  });
  release = middleware.release;
  const app = express();
  app.use('/graphql', apiPerformanceLog({ writer, slowMs: SLOW_MS, callerOf: (req) => verifyRequest(req, tokens) }));
  app.use(middleware);
  server = createServer(app);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/graphql`;
  await post({ query: 'query Warmup { __typename }' }); // the first request builds the schema (slow)
});
test.after(async () => {
  await writer?.close();
  await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
  await release?.();
  await db?.drop();
});

async function post(body: unknown, bearer?: string): Promise<{ status: number; json: any }> {
  const res = await fetch(url, {
    method: 'POST', headers: { 'content-type': 'application/json', ...(bearer ? { authorization: `Bearer ${bearer}` } : {}) },
    body: JSON.stringify(body),
  });
  return { status: res.status, json: await res.json() };
}
const rowsOf = async (table: string, marker: string) =>
  (await db.pool.query(`select * from iot.${table} where operation_name like $1 order by id`, [`${marker}%`])).rows;

test('operation name and type are read from the document without parsing it', () => {
  assert.equal(operationOf('query Facilities { facilities { totalCount } }', undefined), { type: 'query', name: 'Facilities' });
  assert.equal(operationOf('# comment mutation X\n{ a }', null), { type: 'query' });
  assert.equal(operationOf('query A { a } mutation B { b }', 'B'), { type: 'mutation', name: 'B' });
  assert.equal(operationOf('subscription { s }', undefined), { type: 'subscription', name: undefined });
  assert.equal(errorsOf('{"errors":[{"message":"one"},{"message":"two"}],"data":null}', true), { count: 2, first: 'one' });
  assert.equal(errorsOf('{"data":{"a":1}}', true), { count: 0 });
  assert.equal(errorsOf('{"errors":[{"message":"cut \\"here\\"", "locations"', false), { count: 1, first: 'cut "here"' });
});

test('every GraphQL request gets an api_performance_log row after the flush interval: operation, type, status, errors, role, tenant', async () => {
  const m = `perfA${Date.now()}`;
  const operator = signToken(SECRET, { role: 'iot_operator', tenantId: plant.tenantId, subject: 'alice' });
  const analyst = signToken(SECRET, { role: 'iot_analyst', tenantId: rival.tenantId, subject: 'bob' });
  const ok = await post({ query: `query ${m}Facilities { facilities { totalCount } }` }, operator);
  assert.is(ok.status, 200, JSON.stringify(ok.json));
  assert.is(ok.json.data.facilities.totalCount, 1);
  assert.is((await rowsOf('api_performance_log', m)).length, 0, 'buffered, not written at once');
  const bad = await post({ query: `query ${m}Bad { noSuchField }` }, analyst);
  assert.ok(bad.json.errors?.length, 'a GraphQL error');
  const mutation = await post({ query: `mutation ${m}Rename($w: UUID!) { recordEquipmentEvent(input: { workCenterId: $w, eventType: "MAINTENANCE_REQUIRED",
    eventDescription: "perf log test", severity: "WARNING" }) { equipmentEvent { id } } }`, variables: { w: plant.workCenterId }, operationName: `${m}Rename` }, operator);
  assert.not.ok(mutation.json.errors, JSON.stringify(mutation.json.errors));
  const refused = await post({ query: `query ${m}Refused { facilities { totalCount } }` }, 'not-a-token');
  assert.is(refused.status, 401);

  const rows = await waitFor(async () => {
    const r = await rowsOf('api_performance_log', m);
    return r.length === 4 ? r : undefined;
  }, 5000, 'four api_performance_log rows');
  const byName = new Map(rows!.map((r) => [r.operation_name.slice(m.length), r]));
  const f = byName.get('Facilities');
  assert.equal([f.operation_type, f.http_status, f.error_count, f.role, f.tenant_id, f.actor, f.instance],
    ['query', 200, 0, 'iot_operator', plant.tenantId, 'alice', INSTANCE]);
  assert.ok(f.duration_ms > 0 && f.duration_ms < 5000, `duration ${f.duration_ms} ms`);
  assert.ok(f.response_bytes > 0 && f.request_bytes > 0);
  const b = byName.get('Bad');
  assert.equal([b.operation_type, b.error_count, b.role, b.tenant_id], ['query', 1, 'iot_analyst', rival.tenantId]);
  assert.match(b.first_error, /noSuchField/);
  assert.equal([byName.get('Rename').operation_type, byName.get('Rename').error_count], ['mutation', 0]);
  const r = byName.get('Refused');
  assert.equal([r.http_status, r.role, r.tenant_id, r.error_count], [401, null, null, 1]);
  assert.match(r.first_error, /token refused/);
  assert.is((await rowsOf('query_performance_log', m)).length, 0, 'none of them was slow');
});

test('a request slower than API_SLOW_QUERY_MS is also in query_performance_log, with its document and variable names (not values)', async () => {
  const m = `perfB${Date.now()}`;
  const operator = signToken(SECRET, { role: 'iot_operator', tenantId: plant.tenantId, subject: 'alice' });
  // A lock held for 400 ms makes the query wait: a slow request without a slow function.
  const locker = await db.pool.connect();
  await locker.query('begin; lock table iot.facilities in access exclusive mode');
  const slow = post({ query: `query ${m}Slow($first: Int) { facilities(first: $first) { totalCount } }`, variables: { first: 5 } }, operator);
  await sleep(400);
  await locker.query('commit');
  locker.release();
  assert.is((await slow).status, 200);
  await post({ query: `query ${m}Fast { __typename }` }, operator);
  const slowRows = await waitFor(async () => {
    const rows = await rowsOf('query_performance_log', m);
    return rows.length ? rows : undefined;
  }, 5000, 'a query_performance_log row');
  await sleep(FLUSH_MS * 3);
  assert.is((await rowsOf('query_performance_log', m)).length, 1, 'only the slow one');
  const [q] = slowRows!;
  assert.is(q.operation_name, `${m}Slow`);
  assert.ok(q.duration_ms >= 350, `waited for the lock: ${q.duration_ms} ms`);
  assert.is(q.threshold_ms, SLOW_MS);
  assert.match(q.query_text, `query ${m}Slow($first: Int)`);
  assert.match(q.query_sha256, /^[0-9a-f]{64}$/);
  assert.equal(q.variable_names, ['first']);
  assert.equal([q.role, q.tenant_id], ['iot_operator', plant.tenantId]);
  assert.is((await rowsOf('api_performance_log', m)).length, 2, 'both are in api_performance_log');
});

test('with the database unreachable the writer does not block and does not grow: it drops and counts; it writes again once the database is back', async () => {
  const { proxy, pool } = await poolThroughProxy(db.url, { max: 2, connectionTimeoutMillis: 1000 });
  const down = new PerfLogWriter((text, values) => pool.query(text, values), { flushMs: 50, flushRows: 100, maxBuffered: 1000, writeTimeoutMs: 1000 });
  try {
    await proxy.down();
    const heapBefore = process.memoryUsage().heapUsed;
    const started = process.hrtime.bigint();
    let accepted = 0;
    for (let i = 0; i < 100_000; i++) {
      if (down.add('api_performance_log', { logged_at: new Date().toISOString(), operation_name: `down-${i}`, duration_ms: 1, instance: INSTANCE, http_status: 200 })) accepted++;
      assert.ok(down.buffered <= 1000, `buffered ${down.buffered}`);
    }
    const addMs = Number(process.hrtime.bigint() - started) / 1e6;
    assert.ok(addMs < 2000, `100,000 add() calls took ${addMs.toFixed(0)} ms (never waited for the database)`);
    assert.ok(accepted <= 1100, `accepted ${accepted}: the rest dropped at the bound`);
    await down.flush();
    assert.is(down.buffered, 0);
    assert.is(down.stats.written, 0);
    assert.is(down.stats.dropped, 100_000, 'every row is either written or counted as dropped');
    assert.ok(process.memoryUsage().heapUsed - heapBefore < 64 * 2 ** 20, 'heap stays small');
    const metrics = await renderMetrics();
    assert.match(metrics, /iot_perf_log_rows_dropped_total\{table="api_performance_log",reason="buffer_full"\} \d+/);
    assert.match(metrics, /iot_perf_log_rows_dropped_total\{table="api_performance_log",reason="write_failed"\} \d+/);
    console.log(`  [server/performance-logs] database down: 100,000 add() in ${addMs.toFixed(0)} ms, buffer at most 1000, ${accepted} accepted then dropped by failed writes`);

    await proxy.up();
    down.add('api_performance_log', { logged_at: new Date().toISOString(), operation_name: 'back-up', duration_ms: 1, instance: INSTANCE });
    await waitFor(async () => down.stats.written === 1, 10_000, 'the writer to write again');
    assert.is((await db.pool.query(`select count(*)::int as n from iot.api_performance_log where operation_name = 'back-up'`)).rows[0].n, 1);
  } finally {
    await down.close();
    await pool.end();
    await proxy.down();
  }
});

test('a database that accepts the connection and never answers: a flush gives up after writeTimeoutMs and the rows count as dropped', async () => {
  const sockets: Socket[] = [];
  const hole = createTcpServer((s) => void sockets.push(s)); // accepts, never answers
  await new Promise<void>((resolve) => hole.listen(0, '127.0.0.1', () => resolve()));
  const pool = new Pool({ connectionString: `postgres://x:y@127.0.0.1:${(hole.address() as AddressInfo).port}/none`, max: 1 });
  pool.on('error', () => undefined);
  const stuck = new PerfLogWriter((text, values) => pool.query(text, values), { flushMs: 10, flushRows: 10, maxBuffered: 100, writeTimeoutMs: 300 });
  try {
    for (let i = 0; i < 10; i++) stuck.add('system_resource_metrics', { sampled_at: new Date().toISOString(), instance: INSTANCE, component: 'test' });
    const started = Date.now();
    await stuck.flush();
    assert.ok(Date.now() - started < 2000, `flush returned after ${Date.now() - started} ms`);
    assert.is(stuck.stats.dropped, 10);
    assert.match(await renderMetrics(), /iot_perf_log_rows_dropped_total\{table="system_resource_metrics",reason="write_timeout"\} 10/);
  } finally {
    await stuck.close();
    for (const s of sockets) s.destroy();
    hole.close();
    void pool.end().catch(() => undefined);
  }
});

test('the resource sampler writes process and database figures to system_resource_metrics', async () => {
  const sampler = startResourceSampler({ writer, component: 'test', intervalMs: 60_000, query: (text) => db.pool.query(text).then((r) => r.rows) });
  try {
    const row = await sampler.sample();
    assert.ok(Number(row.rss_bytes) > 0);
    const stored = await waitFor(async () => (await db.pool.query(
      `select * from iot.system_resource_metrics where component = 'test' and instance = $1`, [INSTANCE])).rows[0], 5000, 'a sample row');
    assert.ok(stored.rss_bytes > 0 && stored.heap_used_bytes > 0 && stored.cpu_percent >= 0 && stored.event_loop_lag_ms >= 0);
    assert.ok(stored.db_connections >= 1 && stored.db_size_bytes > 0, JSON.stringify(stored));
    assert.ok(stored.notify_queue_usage >= 0 && stored.notify_queue_usage < 1);
  } finally {
    sampler.stop();
  }
});

test('the hourly task writes performance_metrics_cache rows per tenant and operation and per resource; a re-run rewrites them; analysts see only their tenant', async () => {
  const hour = (await db.pool.query(`select date_bin(interval '1 hour', now(), timestamptz '2000-01-01 00:00Z') - interval '1 hour' as h`)).rows[0].h as Date;
  const at = (minutes: number) => new Date(hour.getTime() + minutes * 60_000).toISOString();
  const durations = Array.from({ length: 100 }, (_, i) => i + 1); // 1..100 ms
  for (const [i, ms] of durations.entries()) {
    writer.add('api_performance_log', { logged_at: at(i % 60), tenant_id: plant.tenantId, role: 'iot_operator', operation_name: 'RollupOp',
      operation_type: 'query', duration_ms: ms, http_status: 200, error_count: i < 5 ? 1 : 0, instance: INSTANCE });
  }
  writer.add('api_performance_log', { logged_at: at(1), tenant_id: rival.tenantId, role: 'iot_analyst', operation_name: 'RollupOp',
    operation_type: 'query', duration_ms: 7, http_status: 200, error_count: 0, instance: INSTANCE });
  for (let i = 0; i < 6; i++) {
    writer.add('system_resource_metrics', { sampled_at: at(i * 10), instance: 'host:1', component: 'rollup', cpu_percent: 10 * (i + 1), rss_bytes: 1000 });
  }
  await writer.flush();
  const jobs = async (task: string, payload: object) => {
    await quickAddJob({ connectionString: db.url }, task, payload);
    await runOnce({ connectionString: db.url, taskList: { performance__rollup_hourly: rollupHourly, performance__prune_logs: pruneLogs } });
  };
  await jobs('performance__rollup_hourly', { hours: 2 });
  const cache = async () => (await db.pool.query(`select * from iot.performance_metrics_cache where bucket_start = $1 order by source, metric_key, tenant_id`, [hour])).rows;
  const rows = await cache();
  const op = rows.find((r) => r.source === 'api' && r.metric_key === 'query:RollupOp' && r.tenant_id === plant.tenantId);
  assert.ok(op, JSON.stringify(rows.map((r) => [r.source, r.metric_key, r.tenant_id])));
  assert.equal([Number(op.sample_count), Number(op.error_count), op.unit, op.max_value], [100, 5, 'ms', 100]);
  assert.ok(Math.abs(op.avg_value - 50.5) < 1e-9 && Math.abs(op.p50_value - 50.5) < 1e-9 && op.p95_value > 94 && op.p95_value < 96 && op.p99_value > 98);
  assert.ok(rows.some((r) => r.source === 'api' && r.tenant_id === rival.tenantId && Number(r.sample_count) === 1), 'per tenant');
  const cpu = rows.find((r) => r.source === 'system' && r.metric_key === 'rollup:cpu_percent');
  assert.ok(cpu && Number(cpu.sample_count) === 6 && cpu.max_value === 60 && cpu.tenant_id === null, JSON.stringify(cpu));
  assert.is(rows.find((r) => r.metric_key === 'rollup:rss_bytes')?.unit, 'bytes');

  // A late row for that hour: the next run rewrites the bucket, no duplicate rows.
  writer.add('api_performance_log', { logged_at: at(59), tenant_id: plant.tenantId, role: 'iot_operator', operation_name: 'RollupOp',
    operation_type: 'query', duration_ms: 1000, http_status: 500, error_count: 0, instance: INSTANCE });
  await writer.flush();
  await jobs('performance__rollup_hourly', { hours: 2 });
  const again = await cache();
  assert.is(again.length, rows.length, 'the same rows, rewritten');
  const op2 = again.find((r) => r.source === 'api' && r.metric_key === 'query:RollupOp' && r.tenant_id === plant.tenantId);
  assert.equal([Number(op2.sample_count), Number(op2.error_count), op2.max_value], [101, 6, 1000]);

  // Analysts (API tokens) see their tenant's rows only; rows over the whole installation are not theirs.
  const seen = await db.asRole('iot_analyst', { tenant_id: rival.tenantId }, async (c) => ({
    cache: (await c.query(`select distinct tenant_id from iot.performance_metrics_cache`)).rows.map((r) => r.tenant_id),
    api: (await c.query(`select distinct tenant_id from iot.api_performance_log`)).rows.map((r) => r.tenant_id),
    system: (await c.query(`select count(*)::int as n from iot.system_resource_metrics`)).rows[0].n,
  }));
  assert.equal(seen, { cache: [rival.tenantId], api: [rival.tenantId], system: 0 });
  const owner = (await db.pool.query(`select count(*)::int as n from iot.system_resource_metrics`)).rows[0].n;
  assert.ok(owner >= 6, 'the owner sees every row');
});

test('pruning deletes log rows and summaries older than their retention, and nothing newer', async () => {
  await db.pool.query(`insert into iot.api_performance_log (logged_at, operation_name, duration_ms, instance)
    values (now() - interval '20 days', 'PruneOld', 1, 'h:1'), (now() - interval '1 day', 'PruneNew', 1, 'h:1')`);
  await db.pool.query(`insert into iot.performance_metrics_cache (bucket_start, source, metric_key, unit, sample_count)
    values (now() - interval '500 days', 'api', 'query:PruneOld', 'ms', 1), (now() - interval '20 days', 'api', 'query:PruneKept', 'ms', 1)`);
  await quickAddJob({ connectionString: db.url }, 'performance__prune_logs', { days: 14, cacheDays: 400 });
  await runOnce({ connectionString: db.url, taskList: { performance__prune_logs: pruneLogs } });
  const names = (await db.pool.query(`select operation_name as n from iot.api_performance_log where operation_name like 'Prune%'
    union all select metric_key from iot.performance_metrics_cache where metric_key like 'query:Prune%' order by 1`)).rows.map((r) => r.n);
  assert.equal(names, ['PruneNew', 'query:PruneKept']);
});

test('every performance table and column has a comment; the tables are not in the GraphQL API', async () => {
  const { rows } = await db.pool.query(`select c.relname, a.attname, col_description(c.oid, a.attnum) as col, obj_description(c.oid, 'pg_class') as tbl
    from pg_class c join pg_attribute a on a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped
    where c.relnamespace = 'iot'::regnamespace and c.relname in ('api_performance_log', 'query_performance_log', 'system_resource_metrics', 'performance_metrics_cache')`);
  assert.is(new Set(rows.map((r) => r.relname)).size, 4);
  assert.equal(rows.filter((r) => !r.col).map((r) => `${r.relname}.${r.attname}`), []);
  assert.ok(rows.every((r) => /^@omit\n/.test(r.tbl)), 'omitted from GraphQL');
  const r = await post({ query: '{ __schema { queryType { fields { name } } } }' });
  const fields = r.json.data.__schema.queryType.fields.map((f: { name: string }) => f.name).join(',');
  assert.not.match(fields, /performance|systemResource/i);
});

test.run();

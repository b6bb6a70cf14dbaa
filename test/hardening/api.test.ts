// Issue 7, findings 9 and 10, replayed against the API over HTTP: no GraphQL request may hold the
// database. Each attack must get a clear error within a bounded time while the API process lives
// and another tenant is answered within a second, during and after the attack.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { ClosablePool, createPool } from '../../src/lib/db/pool';
import { signToken } from '../../src/lib/secrets';
import { ApiServer, startApi } from '../../src/server/app';
import { createTestDatabase, seedSmallPlant, TestDatabase } from '../helpers/db';
import { sleep, waitFor } from '../helpers/wait';

const test = suite('hardening: API limits (depth, cost, page caps, statement timeout, cancellation, health)');
const SECRET = 'hardening-api-secret-0123456789abcdef';
const PAGE = 50;
const EVENTS = 1000;
let db: TestDatabase;
let plant: Awaited<ReturnType<typeof seedSmallPlant>>;
let rival: Awaited<ReturnType<typeof seedSmallPlant>>;
let token: string;
let rivalToken: string;

interface Api { api: ApiServer; pool: ClosablePool; name: string }
let strict: Api;   // the limits as configured in production, with a small page size
let loose: Api;    // no depth/cost limit worth the name and a page size of 1000: only timeouts and cancellation protect it
let patient: Api;  // like loose, with a long statement timeout: only cancellation stops a query

async function api(name: string, options: Partial<Parameters<typeof startApi>[0]>): Promise<Api> {
  const pool = createPool(db.url, 4, name);
  const server = await startApi({ pool, host: '127.0.0.1', port: 0, jwtSecret: SECRET, graphiql: false, websockets: false,
    graphqlPath: '/graphql', maxPageSize: PAGE, ...options });
  return { api: server, pool, name };
}

test.before(async () => {
  db = await createTestDatabase('hardening_api');
  plant = await seedSmallPlant(db.pool, 'attacker', 'ATK');
  rival = await seedSmallPlant(db.pool, 'bystander', 'BYS');
  // Fan-out for the nested attack: eight devices on the work center.
  await db.pool.query(`insert into iot.iot_devices (tenant_id, work_center_id, device_code, device_type)
    select $1, $2, 'ATK-EXTRA-' || i, 'SENSOR' from generate_series(1, 7) i`, [plant.tenantId, plant.workCenterId]);
  // Events: a connection over them, nested in itself, is the slow query of the timeout tests.
  await db.pool.query(`select iot_private.ensure_partitions('equipment_events', now() - interval '1 day', now())`);
  await db.pool.query(`insert into iot_private.equipment_events (tenant_id, work_center_id, event_timestamp, event_type, event_code, severity, event_description)
    select $1, $2, now() - i * interval '1 second', 'STARTUP', 'STARTUP', 'INFO', 'event ' || i from generate_series(1, ${EVENTS}) i`,
    [plant.tenantId, plant.workCenterId]);
  strict = await api('hardening-strict', { maxQueryDepth: 12, maxQueryCost: 100_000, statementTimeoutMs: 5000 });
  loose = await api('hardening-loose', { maxPageSize: 1000, maxQueryDepth: 100, maxQueryCost: 1e12, statementTimeoutMs: 500 });
  patient = await api('hardening-patient', { maxPageSize: 1000, maxQueryDepth: 100, maxQueryCost: 1e12, statementTimeoutMs: 120_000 });
  token = signToken(SECRET, { role: 'iot_operator', tenantId: plant.tenantId, subject: 'mallory' });
  rivalToken = signToken(SECRET, { role: 'iot_analyst', tenantId: rival.tenantId, subject: 'bob' });
  for (const a of [strict, loose, patient]) await bystander(a); // PostGraphile builds its schema on the first request
});

test.after(async () => {
  for (const a of [strict, loose, patient]) {
    await a?.api.close();
    await a?.pool.close();
  }
  await db?.drop();
});

interface Result { status: number; ms: number; body: { data?: any; errors?: { message: string; errcode?: string }[] } }

async function gql(on: Api, query: string, bearer = token, signal?: AbortSignal, variables: Record<string, unknown> = {}): Promise<Result> {
  const started = Date.now();
  const res = await fetch(`${on.api.url}/graphql`, {
    method: 'POST', signal,
    headers: { 'content-type': 'application/json', authorization: `Bearer ${bearer}` },
    body: JSON.stringify({ query, variables }),
  });
  const body = (await res.json()) as Result['body'];
  return { status: res.status, ms: Date.now() - started, body };
}

/** The bystander's query, over the same API: answered, with its own single work center, and how fast. */
async function bystander(on: Api): Promise<number> {
  const r = await gql(on, '{ workCenters { nodes { workCenterCode } } }', rivalToken, AbortSignal.timeout(10_000));
  assert.not.ok(r.body.errors, JSON.stringify(r.body.errors));
  assert.equal(r.body.data.workCenters.nodes.map((n: any) => n.workCenterCode), ['PRESS-1']);
  return r.ms;
}

/** The database itself, on a connection of its own, answering the other tenant as the API would. */
async function databaseAnswersBystander(): Promise<number> {
  const started = Date.now();
  const rows = await db.asRole('iot_analyst', { tenant_id: rival.tenantId }, async (c) =>
    (await c.query(`select work_center_code from iot.work_centers`)).rows);
  assert.equal(rows.map((r) => r.work_center_code), ['PRESS-1']);
  return Date.now() - started;
}

/** API sessions of the given API still running a statement. */
async function activeQueries(on: Api): Promise<number> {
  const { rows } = await db.pool.query(`select count(*)::int as n from pg_stat_activity
    where application_name = $1 and state = 'active' and pid <> pg_backend_pid()`, [on.name]);
  return rows[0].n;
}

async function alive(on: Api) {
  const h = await fetch(`${on.api.url}/healthz`, { signal: AbortSignal.timeout(3000) });
  assert.is(h.status, 200, 'the API process still answers /healthz');
  const ok = await gql(on, `{ iotDevice(id: "${plant.deviceId}") { deviceCode } }`);
  assert.is(ok.body.data?.iotDevice?.deviceCode, plant.deviceCode, 'a good request right after the attack succeeds');
}

/** workCenters -> iotDevices -> workCenter -> iotDevices ... `hops` times (the reported attack used 25). */
function nested(hops: number): string {
  let inner = 'deviceCode';
  for (let i = 0; i < hops; i++) inner = `workCenter { workCenterCode iotDevices { nodes { ${inner} } } }`;
  return `{ workCenters { nodes { iotDevices { nodes { ${inner} } } } } }`;
}

/** Events of the work center, each with its work center's events again: `levels` connections of `n` rows nested. */
function nestedEvents(levels: number, n: number): string {
  let inner = 'id eventDescription';
  for (let i = 0; i < levels - 1; i++) inner = `id workCenter { equipmentEvents(first: ${n}) { nodes { ${inner} } } }`;
  return `{ workCenters(first: 1) { nodes { equipmentEvents(first: ${n}) { nodes { ${inner} } } } } }`;
}

test('finding 9: a query nested 50 levels is refused before any SQL runs (IOT11), the bystander answered meanwhile', async () => {
  const attack = gql(strict, nested(25), token, AbortSignal.timeout(15_000));
  const during = await bystander(strict);
  const r = await attack;
  console.log(`  [hardening/api] 50-level query refused in ${r.ms} ms; bystander answered in ${during} ms meanwhile`);
  assert.ok(r.ms < 2000, `refused within 2 s (took ${r.ms} ms)`);
  assert.is(r.status, 400);
  assert.is(r.body.errors?.[0].errcode, 'IOT11', JSON.stringify(r.body.errors));
  assert.match(r.body.errors![0].message, /nested deeper than 12 levels \(API_MAX_QUERY_DEPTH\)/);
  assert.is(r.body.data, undefined, 'nothing was executed');
  assert.ok(during < 1000, `bystander answered in ${during} ms during the attack`);
  assert.ok((await bystander(strict)) < 1000, 'bystander answered within a second after the attack');
  assert.is(await activeQueries(strict), 0, 'no API statement left running');
  await alive(strict);
  // The metric says so.
  const metrics = await (await fetch(`${strict.api.url}/metrics`)).text();
  assert.match(metrics, /iot_api_queries_refused_total [1-9]/);
});

test('finding 9: the same query within the depth limit but too wide is refused for its cost (IOT11)', async () => {
  // 50 work centers x 50 devices x 50 channels: 127,550 rows at most, above this API's 100,000.
  const r = await gql(strict, `{ workCenters(first: 50) { nodes { iotDevices(first: 50) { nodes { channels(first: 50) { nodes { sensorType } } } } } } }`);
  assert.is(r.body.errors?.[0].errcode, 'IOT11', JSON.stringify(r.body.errors));
  assert.match(r.body.errors![0].message, /could return up to 127,550 rows, above API_MAX_QUERY_COST \(100,000\)/);
  // Variables count as written: first: $n with a default above the cap is refused too.
  const v = await gql(strict, `query($n: Int = 5000) { equipmentEvents(first: $n) { nodes { id } } }`);
  assert.match(v.body.errors?.[0].message ?? '', /first\/last 5000 is above the limit of 50/);
  const small = await gql(strict, `{ workCenters(first: 5) { nodes { iotDevices(first: 5) { nodes { channels(first: 5) { nodes { sensorType } } } } } } }`);
  assert.not.ok(small.body.errors, JSON.stringify(small.body.errors));
});

test('finding 9: every connection is capped: workCenters and equipmentEvents refuse a first above the cap; without first at most the cap, nested too', async () => {
  for (const q of ['{ workCenters(first: 100000) { nodes { id } } }', '{ equipmentEvents(first: 100000) { nodes { id } } }',
    '{ workCenters { nodes { equipmentEvents(last: 100000) { nodes { id } } } } }']) {
    const r = await gql(strict, q);
    assert.is(r.body.errors?.[0].errcode, 'IOT11', `${q}: ${JSON.stringify(r.body)}`);
    assert.match(r.body.errors![0].message, /is above the limit of 50 \(API_MAX_PAGE_SIZE\)/);
  }
  const flat = await gql(strict, '{ equipmentEvents { totalCount pageInfo { hasNextPage } nodes { id } } }');
  assert.not.ok(flat.body.errors, JSON.stringify(flat.body.errors));
  assert.equal([flat.body.data.equipmentEvents.nodes.length, flat.body.data.equipmentEvents.totalCount, flat.body.data.equipmentEvents.pageInfo.hasNextPage],
    [PAGE, EVENTS, true]);
  const inner = await gql(strict, '{ workCenters { nodes { equipmentEvents { nodes { id } } } } }');
  assert.is(inner.body.data.workCenters.nodes[0].equipmentEvents.nodes.length, PAGE, 'a nested connection without first is capped in its SQL');
  const telemetry = await gql(strict, `{ iotDevice(id: "${plant.deviceId}") { sensorReadings { nodes { readingValue } } } }`);
  assert.match(telemetry.body.errors?.[0].message ?? '', /telemetry is paged; pass first or last/);
});

test('finding 9: a slow query is stopped by statement_timeout with 57014 and a message saying what to do', async () => {
  const query = nestedEvents(3, 1000); // 10^9 rows: minutes without a timeout
  const attack = gql(loose, query, token, AbortSignal.timeout(20_000));
  await sleep(100);
  const during = await bystander(loose);
  const r = await attack;
  console.log(`  [hardening/api] 10^9-row query stopped by the 500 ms statement_timeout after ${r.ms} ms; bystander ${during} ms`);
  assert.ok(r.ms < 3000, `stopped within 3 s (took ${r.ms} ms, timeout 500 ms)`);
  assert.is(r.body.errors?.[0].errcode, '57014', JSON.stringify(r.body.errors));
  assert.match(r.body.errors![0].message, /statement timeout: the query ran longer than API_STATEMENT_TIMEOUT_MS \(500 ms\)/);
  assert.ok(during < 1000, `bystander answered in ${during} ms during the attack`);
  assert.is(await activeQueries(loose), 0, 'nothing left running');
  await alive(loose);
  assert.match(await (await fetch(`${loose.api.url}/metrics`)).text(), /iot_api_statement_timeouts_total [1-9]/);
});

test('finding 9: closing the connection cancels the query in the database', async () => {
  const abort = new AbortController();
  const attack = gql(patient, nestedEvents(3, 1000), token, abort.signal).catch((e: Error) => e);
  await waitFor(async () => (await activeQueries(patient)) > 0, 5000, 'the attack running in the database');
  const during = await databaseAnswersBystander();
  abort.abort();
  assert.instance(await attack, Error);
  const closed = Date.now();
  await waitFor(async () => (await activeQueries(patient)) === 0, 3000, 'the query cancelled after the client left');
  console.log(`  [hardening/api] query cancelled ${Date.now() - closed} ms after the client closed the connection`);
  assert.ok(during < 1000, `the database answered the bystander in ${during} ms while the attack ran`);
  assert.ok((await bystander(patient)) < 1000);
  await alive(patient);
  assert.match(await (await fetch(`${patient.api.url}/metrics`)).text(), /iot_api_requests_cancelled_total [1-9]/);
});

test('finding 10: /healthz answers within a second while 200 clients hold and queue on the API pool; clients that leave start no SQL', async () => {
  const rssBefore = process.memoryUsage().rss;
  const abort = new AbortController();
  // Each request holds one of the API's 3 free connections (of 4) for its 500 ms statement timeout: 30 s of queue.
  const flood = Array.from({ length: 200 }, () => gql(loose, nestedEvents(3, 1000), token, abort.signal).catch((e: Error) => e));
  // Time /healthz once the flood is queued (the burst of 200 requests arriving also stalls this
  // process's event loop, which serves both the clients and the API here).
  await waitFor(() => loose.pool.waitingCount >= 150, 10_000, 'the flood queued on the API pool');
  const timings: number[] = [];
  const bodies: { status: string; apiPool?: { waiting: number } }[] = [];
  for (let i = 0; i < 5; i++) {
    const started = Date.now();
    const h = await fetch(`${loose.api.url}/healthz`, { signal: AbortSignal.timeout(10_000) });
    timings.push(Date.now() - started);
    assert.is(h.status, 200);
    bodies.push((await h.json()) as (typeof bodies)[number]);
  }
  console.log(`  [hardening/api] /healthz under 200 clients: ${timings.join(', ')} ms`);
  assert.ok(Math.max(...timings) < 1000, `/healthz within a second: ${timings.join(', ')} ms`);
  assert.ok(bodies.every((b) => b.status === 'ok' && b.apiPool!.waiting > 0), `it reports the queue: ${JSON.stringify(bodies)}`);
  assert.ok((await databaseAnswersBystander()) < 1000, 'the database answers the bystander on its own connection');
  abort.abort();
  await Promise.all(flood);
  // The queued requests whose clients left never start; the running ones are cancelled.
  await waitFor(async () => (await activeQueries(loose)) === 0, 3000, 'the running queries cancelled after the clients left');
  // (One connection stays checked out for good: @graphile/pg-pubsub's LISTEN client.)
  await waitFor(() => loose.pool.waitingCount === 0 && loose.pool.idleCount >= loose.pool.totalCount - 1, 3000, 'the API pool drained (not 30 s of queued queries)');
  assert.ok((await bystander(loose)) < 1000, 'the bystander is answered within a second right after');
  await alive(loose);
  const grown = (process.memoryUsage().rss - rssBefore) / 2 ** 20;
  assert.ok(grown < 300, `API memory grew ${grown.toFixed(0)} MiB`);
});

test.run();

// The WebSocket's security (issue 8, part 4), against the real API with real sockets: the token is
// checked at connection_init (close codes with reasons), Origin and sockets per address at the
// upgrade (HTTP 403/429), sockets per user (4429), subscriptions per socket (a GraphQL error),
// idle, init and token-expiry timers, keep-alive pings, only subscriptions, the HTTP validation
// rules, refusals on /metrics, and a clean shutdown (1001, no LISTEN session left).
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { createClient } from 'graphql-ws';
import jwt from 'jsonwebtoken';
import WebSocket from 'ws';
import { createPool } from '../../src/lib/db/pool';
import { signToken } from '../../src/lib/secrets';
import { startApi } from '../../src/server/app';
import { createTestDatabase, seedSmallPlant, TestDatabase } from '../helpers/db';
import { equipmentEventSubscription, recordEvent, startTestApi, TestApi } from '../helpers/graphql';
import { sleep, waitFor } from '../helpers/wait';

const test = suite('websocket security: token at connect, origin, limits, timers, shutdown');
const SECRET = 'test-secret-for-websocket-security-suite';
let db: TestDatabase;
let api: TestApi;
let plant: Awaited<ReturnType<typeof seedSmallPlant>>;
let rival: Awaited<ReturnType<typeof seedSmallPlant>>;
let token: string;
const extra: TestApi[] = [];

test.before(async () => {
  db = await createTestDatabase('ws_security');
  plant = await seedSmallPlant(db.pool);
  rival = await seedSmallPlant(db.pool, 'rival', 'RIVAL');
  api = await startTestApi(db.url, SECRET);
  token = api.token('iot_operator', plant.tenantId, 'alice');
});
test.after(async () => {
  for (const a of [...extra, api]) await a?.close();
  await db?.drop();
});

async function another(options: Parameters<typeof startTestApi>[2]): Promise<TestApi> {
  const a = await startTestApi(db.url, SECRET, options);
  extra.push(a);
  return a;
}

interface Raw {
  ws: WebSocket;
  /** The HTTP status when the upgrade was refused. */
  status?: number;
  body?: string;
  pings: number;
  messages: any[];
  closed: Promise<{ code: number; reason: string }>;
}

/** A raw graphql-transport-ws socket; resolves when open, or with the HTTP status of a refused upgrade. */
function raw(url: string, options: WebSocket.ClientOptions = {}): Promise<Raw> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, 'graphql-transport-ws', options);
    const r: Raw = { ws, pings: 0, messages: [], closed: new Promise((res) => ws.once('close', (code, reason) => res({ code, reason: reason.toString() }))) };
    ws.on('ping', () => r.pings++);
    ws.on('message', (m) => r.messages.push(JSON.parse(String(m))));
    ws.once('open', () => resolve(r));
    ws.once('unexpected-response', (_req, res) => {
      let body = '';
      res.on('data', (d) => (body += d));
      res.on('end', () => resolve({ ...r, status: res.statusCode, body }));
    });
    ws.once('error', (e) => (e.message.includes('Unexpected server response') ? undefined : reject(e)));
  });
}

/** Opens, sends connection_init with payload; resolves with the ack or the close. */
async function init(url: string, payload: Record<string, unknown> | undefined, options: WebSocket.ClientOptions = {}) {
  const r = await raw(url, options);
  if (r.status) throw new Error(`upgrade refused with ${r.status}: ${r.body}`);
  r.ws.send(JSON.stringify({ type: 'connection_init', ...(payload ? { payload } : {}) }));
  const outcome = await Promise.race([
    waitFor(() => r.messages.find((m) => m.type === 'connection_ack'), 3000, 'connection_ack').then(() => 'ack' as const),
    r.closed,
  ]);
  return { r, outcome };
}

function forge(claims: Record<string, unknown>, secret = SECRET) {
  return jwt.sign({ aud: 'postgraphile', ...claims }, secret, { algorithm: 'HS256' });
}

async function metric(a: TestApi, line: RegExp): Promise<number> {
  const text = await (await fetch(`${a.url}/metrics`)).text();
  const m = text.split('\n').find((l) => line.test(l));
  return m ? Number(m.split(' ').pop()) : 0;
}

// Tokens at connect -------------------------------------------------------------------------------

test('no token, a bad signature, an expired token, a foreign role: closed at connection_init with 4401 and the reason', async () => {
  const now = Math.floor(Date.now() / 1000);
  const before = await metric(api, /^iot_ws_refusals_total\{reason="token_invalid"\}/);
  const cases: [Record<string, unknown> | undefined, number, RegExp][] = [
    [undefined, 4401, /token missing: send connectionParams \{ authToken \}/],
    [{ authToken: signToken('another-secret-0123456789abcdef0123', { role: 'iot_operator', tenantId: plant.tenantId, subject: 'x' }) }, 4401, /invalid signature/],
    [{ authToken: forge({ role: 'iot_operator', tenant_id: plant.tenantId, sub: 'x', exp: now - 10 }) }, 4401, /jwt expired/],
    [{ Authorization: `Bearer ${forge({ role: 'postgres', tenant_id: plant.tenantId, exp: now + 600 })}` }, 4401, /role "postgres" is not an API role/],
    [{ authorization: 'Basic dXNlcjpwYXNz' }, 4401, /connectionParams.authorization is not "Bearer <token>"/],
  ];
  for (const [payload, code, reason] of cases) {
    const { outcome } = await init(api.wsUrl, payload);
    assert.type(outcome, 'object', `refused: ${JSON.stringify(payload)}`);
    const closed = outcome as { code: number; reason: string };
    assert.is(closed.code, code, closed.reason);
    assert.match(closed.reason, reason);
  }
  assert.ok((await metric(api, /^iot_ws_refusals_total\{reason="token_invalid"\}/)) >= before + 3, 'counted on /metrics');
  assert.ok((await metric(api, /^iot_ws_refusals_total\{reason="token_missing"\}/)) >= 1);
});

test('a graphql-ws client sees the refusal as the close event of its error sink (code and reason), and does not retry 4401', async () => {
  let opened = 0;
  const c = createClient({ url: api.wsUrl, webSocketImpl: WebSocket, on: { opened: () => opened++ },
    connectionParams: { authorization: `Bearer ${forge({ role: 'postgres', tenant_id: plant.tenantId, exp: Math.floor(Date.now() / 1000) + 600 })}` } });
  const error = await new Promise<any>((resolve) => c.subscribe({ query: 'subscription { telemetryIngested { readingCount } }' },
    { next: resolve, error: resolve, complete: () => resolve('complete') }));
  await c.dispose();
  assert.is(error.code, 4401);
  assert.match(error.reason, /role "postgres" is not an API role/);
  assert.is(opened, 1, 'one attempt: graphql-ws treats 4401 as final');
});

test('connectionParams.tenantId must be the token\'s tenant (4403); the seed\'s { authToken, tenantId } and the upgrade header are accepted', async () => {
  const wrong = await init(api.wsUrl, { authToken: token, tenantId: rival.tenantId });
  assert.equal(wrong.outcome, { code: 4403, reason: `tenantId "${rival.tenantId}" is not the token's tenant` });
  const seed = await init(api.wsUrl, { authToken: token, tenantId: plant.tenantId.toUpperCase() });
  assert.is(seed.outcome, 'ack');
  seed.r.ws.close();
  const header = await init(api.wsUrl, {}, { headers: { authorization: `Bearer ${token}` } });
  assert.is(header.outcome, 'ack', 'Authorization on the upgrade request (non-browser clients)');
  header.r.ws.close();
  assert.ok((await metric(api, /^iot_ws_refusals_total\{reason="tenant_mismatch"\}/)) >= 1);
});

test('a graphql-ws client with the seed\'s connectionParams receives an event; queries are refused; the socket counts on /metrics', async () => {
  const sub = await equipmentEventSubscription(api, token, plant.workCenterId);
  const client = createClient({ url: api.wsUrl, webSocketImpl: WebSocket, retryAttempts: 0, connectionParams: { authToken: token, tenantId: plant.tenantId } });
  const got: any[] = [];
  const stop = client.subscribe({ query: sub.query, variables: sub.variables }, { next: (v) => got.push(v), error: (e) => got.push({ error: e }), complete: () => undefined });
  const query = await new Promise<any>((resolve) => client.subscribe({ query: '{ facilities { totalCount } }' },
    { next: resolve, error: resolve, complete: () => undefined }));
  assert.match(JSON.stringify(query), /queries are not served over WebSocket\/SSE: send them as HTTP POST/);
  await sleep(300);
  assert.ok((await metric(api, new RegExp(`^iot_ws_connections\\{tenant="${plant.tenantId}",transport="websocket"\\}`))) >= 1, 'iot_ws_connections');
  assert.ok((await metric(api, new RegExp(`^iot_ws_subscriptions\\{tenant="${plant.tenantId}",subscription="${sub.field}"\\}`))) >= 1, 'iot_ws_subscriptions');
  await recordEvent(api, token, plant.workCenterId, 'heard over graphql-ws');
  await waitFor(() => got.length >= 1, 5000, 'the event');
  stop();
  await client.dispose();
  assert.is(got[0].data?.[sub.field]?.eventDescription, 'heard over graphql-ws', JSON.stringify(got));
});

test('a token that expires while the socket is open closes it with 4401 "token expired"', async () => {
  const short = signToken(SECRET, { role: 'iot_operator', tenantId: plant.tenantId, subject: 'brief', expiresIn: 2 as never });
  const { r, outcome } = await init(api.wsUrl, { authToken: short });
  assert.is(outcome, 'ack');
  const sub = await equipmentEventSubscription(api, token, plant.workCenterId);
  r.ws.send(JSON.stringify({ id: '1', type: 'subscribe', payload: { query: sub.query, variables: sub.variables } }));
  const started = Date.now();
  const closed = await Promise.race([r.closed, sleep(5000).then(() => null)]);
  assert.equal(closed, { code: 4401, reason: 'token expired' });
  assert.ok(Date.now() - started < 4000, `closed within about the token's last 2 s (${Date.now() - started} ms)`);
});

// Origin and limits ---------------------------------------------------------------------------------

test('a foreign Origin is refused with 403 before the upgrade; an allowed one and none at all are accepted', async () => {
  const a = await another({ wsAllowedOrigins: ['https://dash.plant.example'] });
  const foreign = await raw(a.wsUrl, { headers: { origin: 'https://evil.example' } });
  assert.is(foreign.status, 403);
  assert.match(foreign.body!, /Origin https:\/\/evil.example is not in WS_ALLOWED_ORIGINS/);
  const allowed = await init(a.wsUrl, { authToken: token }, { headers: { origin: 'https://dash.plant.example' } });
  assert.is(allowed.outcome, 'ack');
  allowed.r.ws.close();
  const script = await init(a.wsUrl, { authToken: token });
  assert.is(script.outcome, 'ack', 'no Origin: not a browser');
  script.r.ws.close();
  // Empty list (the default): the API's own origin only.
  const own = await raw(api.wsUrl, { headers: { origin: api.url } });
  assert.is(own.status, undefined, 'own origin accepted');
  own.ws.close();
  const other = await raw(api.wsUrl, { headers: { origin: 'http://localhost:9999' } });
  assert.is(other.status, 403);
  assert.match(other.body!, /not this API's own origin/);
  assert.ok((await metric(a, /^iot_ws_refusals_total\{reason="origin"\}/)) >= 2);
});

test('sockets per address: one over WS_MAX_SOCKETS_PER_IP gets 429; closing one frees its place', async () => {
  const a = await another({ wsMaxSocketsPerIp: 3 });
  const open = await Promise.all([1, 2, 3].map(() => raw(a.wsUrl)));
  assert.equal(open.map((o) => o.status), [undefined, undefined, undefined]);
  const extraSocket = await raw(a.wsUrl);
  assert.is(extraSocket.status, 429);
  assert.match(extraSocket.body!, /too many open connections from 127.0.0.1 \(WS_MAX_SOCKETS_PER_IP 3\)/);
  open[0].ws.close();
  await open[0].closed;
  await sleep(50);
  const again = await raw(a.wsUrl);
  assert.is(again.status, undefined, 'a place was freed');
  for (const o of [...open, again]) o.ws.close();
});

test('sockets per user: one over WS_MAX_SOCKETS_PER_USER is closed 4429; another user still gets in', async () => {
  const a = await another({ wsMaxSocketsPerUser: 2 });
  const first = await Promise.all([1, 2].map(() => init(a.wsUrl, { authToken: token })));
  assert.equal(first.map((f) => f.outcome), ['ack', 'ack']);
  const third = await init(a.wsUrl, { authToken: token });
  assert.equal(third.outcome, { code: 4429, reason: 'too many connections for this user (WS_MAX_SOCKETS_PER_USER 2)' });
  const bob = await init(a.wsUrl, { authToken: a.token('iot_operator', plant.tenantId, 'bob') });
  assert.is(bob.outcome, 'ack');
  for (const f of [...first, bob]) f.r.ws.close();
  assert.ok((await metric(a, /^iot_ws_refusals_total\{reason="per_user_limit"\}/)) >= 1);
});

test('subscriptions per socket: the one over WS_MAX_SUBSCRIPTIONS_PER_SOCKET gets a GraphQL error, the socket and the others stay', async () => {
  const a = await another({ wsMaxSubscriptionsPerSocket: 2 });
  const sub = await equipmentEventSubscription(a, token, plant.workCenterId);
  const { r, outcome } = await init(a.wsUrl, { authToken: token });
  assert.is(outcome, 'ack');
  for (const id of ['1', '2', '3']) r.ws.send(JSON.stringify({ id, type: 'subscribe', payload: { query: sub.query, variables: sub.variables } }));
  const error = await waitFor(() => r.messages.find((m) => m.type === 'error'), 3000, 'the error of the third');
  assert.is(error.id, '3');
  assert.match(error.payload[0].message, /too many subscriptions on this socket: at most 2 \(WS_MAX_SUBSCRIPTIONS_PER_SOCKET\)/);
  assert.is(error.payload[0].errcode, 'IOT11');
  await sleep(300);
  await recordEvent(a, token, plant.workCenterId, 'two of three');
  await waitFor(() => r.messages.filter((m) => m.type === 'next').length >= 2, 5000, 'both accepted subscriptions hear the event');
  assert.equal([...new Set(r.messages.filter((m) => m.type === 'next').map((m) => m.id))].sort(), ['1', '2']);
  assert.is(r.ws.readyState, WebSocket.OPEN);
  r.ws.close();
});

test('a subscribe reusing the id of a subscription still starting closes the socket with 4409 (two streams under one id, the first beyond every limit)', async () => {
  const a = await another({ wsMaxSubscriptionsPerSocket: 2 });
  // A work center this API has not checked yet, so its ownership query runs (and waits for the lock below).
  const wc = (await db.pool.query(`insert into iot.work_centers (tenant_id, facility_id, work_center_code, name, work_center_type)
    values ($1, $2, 'PRESS-REUSE', 'Press reuse', 'PRESS') returning id`, [plant.tenantId, plant.facilityId])).rows[0].id;
  const sub = await equipmentEventSubscription(a, token, wc);
  const { r, outcome } = await init(a.wsUrl, { authToken: token });
  assert.is(outcome, 'ack');
  const before = await metric(a, /^iot_ws_refusals_total\{reason="duplicate_id"\}/);
  const locker = await db.pool.connect();
  try {
    await locker.query('begin');
    await locker.query('lock table iot.work_centers in access exclusive mode'); // the subscribe's argument check waits
    const subscribe = JSON.stringify({ id: 'x', type: 'subscribe', payload: { query: sub.query, variables: sub.variables } });
    r.ws.send(subscribe);
    await sleep(200);
    r.ws.send(JSON.stringify({ id: 'x', type: 'complete' })); // graphql-ws forgets its reservation of x...
    r.ws.send(subscribe); // ...so without our own count this one would start beside the first
    await sleep(200);
  } finally {
    await locker.query('commit');
    locker.release();
  }
  const closed = await Promise.race([r.closed, sleep(5000).then(() => ({ code: 0, reason: 'still open 5 s later' }))]);
  assert.equal(closed, { code: 4409, reason: 'Subscriber for x already exists' });
  assert.is(await metric(a, /^iot_ws_refusals_total\{reason="duplicate_id"\}/), before + 1, 'counted');
  // Ids are released when their subscription ends: complete, then subscribe again with the same id, is fine.
  const again = await init(a.wsUrl, { authToken: token });
  const messages = again.r.messages;
  again.r.ws.send(JSON.stringify({ id: 'y', type: 'subscribe', payload: { query: sub.query, variables: sub.variables } }));
  await sleep(300);
  again.r.ws.send(JSON.stringify({ id: 'y', type: 'complete' }));
  again.r.ws.send(JSON.stringify({ id: 'y', type: 'subscribe', payload: { query: sub.query, variables: sub.variables } }));
  await sleep(300);
  await recordEvent(a, token, wc, 'after a reused id');
  await waitFor(() => messages.some((m) => m.type === 'next'), 5000, 'the event on the resubscribed id');
  await sleep(200);
  assert.is(messages.filter((m) => m.type === 'next').length, 1, 'one event, one stream');
  assert.is(again.r.ws.readyState, WebSocket.OPEN);
  again.r.ws.close();
});

test('the HTTP validation rules apply: a subscription deeper than API_MAX_QUERY_DEPTH is refused with IOT11', async () => {
  const a = await another({ maxQueryDepth: 0 });
  const sub = await equipmentEventSubscription(a, token, plant.workCenterId);
  const { r } = await init(a.wsUrl, { authToken: token });
  r.ws.send(JSON.stringify({ id: 'deep', type: 'subscribe', payload: { query: sub.query, variables: sub.variables } }));
  const error = await waitFor(() => r.messages.find((m) => m.type === 'error'), 3000, 'the error');
  assert.match(error.payload[0].message, /nested deeper than 0 levels \(API_MAX_QUERY_DEPTH\)/);
  assert.is(error.payload[0].errcode, 'IOT11');
  r.ws.close();
});

// Timers ---------------------------------------------------------------------------------------------

test('timers: no connection_init in time -> 4408; no subscription for WS_IDLE_TIMEOUT_MS -> 4408; one subscription keeps it open', async () => {
  const a = await another({ wsConnectionInitTimeoutMs: 300, wsIdleTimeoutMs: 600 });
  const silent = await raw(a.wsUrl);
  const started = Date.now();
  assert.equal(await silent.closed, { code: 4408, reason: 'no connection_init within 300 ms: send connection_init with the token' });
  assert.ok(Date.now() - started < 1500, `${Date.now() - started} ms`);

  const idle = await init(a.wsUrl, { authToken: token });
  const busy = await init(a.wsUrl, { authToken: token });
  const sub = await equipmentEventSubscription(a, token, plant.workCenterId);
  busy.r.ws.send(JSON.stringify({ id: '1', type: 'subscribe', payload: { query: sub.query, variables: sub.variables } }));
  assert.equal(await idle.r.closed, { code: 4408, reason: 'no subscription for 600 ms (WS_IDLE_TIMEOUT_MS)' });
  await sleep(700);
  assert.is(busy.r.ws.readyState, WebSocket.OPEN, 'a socket with a subscription is not idle');
  busy.r.ws.send(JSON.stringify({ id: '1', type: 'complete' }));
  assert.is((await busy.r.closed).code, 4408, 'idle again once its subscription completed');
  assert.ok((await metric(a, /^iot_ws_refusals_total\{reason="idle_timeout"\}/)) >= 2);
});

test('keep-alive: pings every WS_KEEPALIVE_MS; a client that answers none is cut off after two', async () => {
  const a = await another({ wsKeepaliveMs: 150 });
  const polite = await init(a.wsUrl, { authToken: token });
  const deaf = await init(a.wsUrl, { authToken: token }, { autoPong: false });
  await sleep(700);
  assert.ok(polite.r.pings >= 3, `pings seen: ${polite.r.pings}`);
  assert.is(polite.r.ws.readyState, WebSocket.OPEN, 'a client that answers stays');
  const closed = await Promise.race([deaf.r.closed, sleep(1000).then(() => null)]);
  assert.is(closed?.code, 1006, 'terminated (no close frame)');
  polite.r.ws.close();
});

test('keep-alive pings are spread over the interval, and each socket is pinged once per interval while others come and go', async () => {
  // 10,000 pings in one go held the event loop ~200 ms: an alert arriving then waited for them.
  const a = await another({ wsKeepaliveMs: 1000, wsMaxSocketsPerIp: 300, wsMaxSocketsPerUser: 300 });
  const sockets = await Promise.all(Array.from({ length: 40 }, () => init(a.wsUrl, { authToken: token })));
  const firstPing: number[] = [];
  for (const s of sockets) s.r.ws.once('ping', () => firstPing.push(Date.now()));
  const watchedPings: number[] = [];
  sockets[39].r.ws.on('ping', () => watchedPings.push(Date.now()));
  await waitFor(() => firstPing.length === sockets.length, 3000, 'a ping on every socket');
  const span = Math.max(...firstPing) - Math.min(...firstPing);
  assert.ok(span >= 500, `the 40 sockets' pings came within ${span} ms of each other`);
  // 200 more sockets: the slices grow, yet the watched socket's next pings stay one interval apart
  // (slices recomputed per round moved it from the last slice to the fourth: pings ~200 ms apart).
  const more = await Promise.all(Array.from({ length: 200 }, () => init(a.wsUrl, { authToken: token })));
  await waitFor(() => watchedPings.length >= 3, 4000, 'two more pings on the watched socket');
  const gaps = watchedPings.slice(1).map((t, i) => t - watchedPings[i]);
  assert.ok(gaps.every((g) => g >= 800 && g <= 1200), `gaps between one socket's pings: ${gaps.join(', ')} ms`);
  for (const s of [...sockets, ...more]) assert.is(s.r.ws.readyState, WebSocket.OPEN);
  for (const s of [...sockets, ...more]) s.r.ws.close();
});

// Slow clients -----------------------------------------------------------------------------------

test('a subscriber that does not read is closed with 1013 once over 1 MiB of its events waits unsent, and cut off if it still does not read; a reading one gets every event', async () => {
  const sub = await equipmentEventSubscription(api, token, plant.workCenterId);
  const reader = createClient({ url: api.wsUrl, webSocketImpl: WebSocket, retryAttempts: 0, connectionParams: { authToken: token } });
  const got: string[] = [];
  const stop = reader.subscribe({ query: sub.query, variables: sub.variables },
    { next: (v: any) => got.push(v.data?.[sub.field]?.eventDescription), error: () => undefined, complete: () => undefined });
  // Two stalled sockets: one reads again right after it was closed (it finds the 1013 frame), one never does.
  const stalled = await Promise.all([0, 1].map(async (i) => {
    const { r, outcome } = await init(api.wsUrl, { authToken: token });
    assert.is(outcome, 'ack');
    r.ws.send(JSON.stringify({ id: `stalled-${i}`, type: 'subscribe', payload: { query: sub.query, variables: sub.variables } }));
    return r;
  }));
  await sleep(500);
  for (const r of stalled) r.ws.pause(); // reads nothing more: the kernel's buffers fill, then the API's
  const slow = () => metric(api, /^iot_ws_refusals_total\{reason="slow_client"\}/);
  const open = () => metric(api, new RegExp(`^iot_ws_connections\\{tenant="${plant.tenantId}",transport="websocket"\\}`));
  const before = await slow();
  const openBefore = await open();
  // 150 events of 100 kB (each through the outbox): 15 MB, more than loopback's socket buffers hold.
  await db.pool.query(`insert into iot_private.equipment_events (tenant_id, work_center_id, event_type, event_code, severity, event_description)
    select $1, $2, 'MAINTENANCE_REQUIRED', 'MAINTENANCE_REQUIRED', 'WARNING', 'bulk ' || n || ' ' || repeat('x', 100000) from generate_series(1, 150) n`, [plant.tenantId, plant.workCenterId]);
  await waitFor(async () => (await slow()) >= before + 2, 30_000, 'both stalled sockets closed as too slow');
  stalled[0].ws.resume();
  const closed = await stalled[0].closed;
  assert.is(closed.code, 1013, closed.reason);
  assert.match(closed.reason, /does not read its events/);
  const heard = stalled[0].messages.filter((m) => m.type === 'next').length;
  assert.ok(heard > 0 && heard < 150, `the stalled socket got the events sent before it was closed, not all (${heard})`);
  await waitFor(() => got.length >= 150, 30_000, "the reading subscriber's 150 events");
  stop();
  await reader.dispose();
  assert.equal(got.map((d) => d.split(' ').slice(0, 2).join(' ')), Array.from({ length: 150 }, (_x, i) => `bulk ${i + 1}`), 'every event, in order');
  // The one that never reads is cut off by the API after a grace, its connection slot freed, while it is still paused.
  await waitFor(async () => (await open()) === openBefore - 3, 15_000, 'the never-reading socket cut off by the API (reader and the other two gone)');
  assert.is(await slow(), before + 2, 'each stalled socket counted once');
  stalled[1].ws.resume();
  assert.is.not((await stalled[1].closed).code, 1000, 'closed by the API, not by a clean close');
});

// Shutdown --------------------------------------------------------------------------------------------

test('shutdown: every socket gets 1001 "server shutting down" and no LISTEN session of the API is left', async () => {
  const pool = createPool(db.url, 4, 'ws-shutdown-test');
  const server = await startApi({ pool, host: '127.0.0.1', port: 0, jwtSecret: SECRET, graphiql: false, websockets: true, graphqlPath: '/graphql', maxPageSize: 100 });
  const listening = async () => (await db.pool.query(`select count(*)::int as n from pg_stat_activity
    where application_name = 'ws-shutdown-test' and query ilike 'listen %'`)).rows[0].n as number;
  try {
    const url = server.url.replace('http', 'ws') + '/graphql';
    const sockets = await Promise.all([1, 2, 3].map(() => init(url, { authToken: token })));
    const sub = await equipmentEventSubscription(api, token, plant.workCenterId);
    for (const s of sockets) s.r.ws.send(JSON.stringify({ id: '1', type: 'subscribe', payload: { query: sub.query, variables: sub.variables } }));
    await waitFor(async () => (await listening()) >= 1, 3000, 'the API LISTENing');
    const started = Date.now();
    await server.close();
    const closes = await Promise.all(sockets.map((s) => s.r.closed));
    assert.equal(closes, sockets.map(() => ({ code: 1001, reason: 'server shutting down' })));
    console.log(`  [ws] shutdown with 3 sockets took ${Date.now() - started} ms`);
    await waitFor(async () => (await listening()) === 0, 3000, 'no LISTEN session left');
    assert.is(pool.totalCount - pool.idleCount, 0, 'no client of the pool still checked out');
  } finally {
    await pool.close();
  }
});

test.run();

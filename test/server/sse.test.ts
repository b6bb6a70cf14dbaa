// The Server-Sent Events stream of one work center (issue 8, part 7), over real HTTP with fetch:
// an equipment event written through the API arrives as `event: equipment-event`, events of another
// work center do not; the same token checks (header or ?token=), Origin and per-user limits as the
// WebSocket; a foreign work center is 404; heartbeats; the stream ends when its token expires.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { signToken } from '../../src/lib/secrets';
import { createTestDatabase, seedSmallPlant, TestDatabase } from '../helpers/db';
import { readSse, recordEvent, SseReader, startTestApi, TestApi } from '../helpers/graphql';
import { sleep, waitFor } from '../helpers/wait';

const test = suite('SSE: /api/equipment-health/stream/:workCenterId');
const SECRET = 'test-secret-for-the-sse-suite-0123456789';
let db: TestDatabase;
let api: TestApi;
let plant: Awaited<ReturnType<typeof seedSmallPlant>>;
let rival: Awaited<ReturnType<typeof seedSmallPlant>>;
let secondWorkCenter: string;
let token: string;
const open: SseReader[] = [];
const extra: TestApi[] = [];

test.before(async () => {
  db = await createTestDatabase('sse');
  plant = await seedSmallPlant(db.pool);
  rival = await seedSmallPlant(db.pool, 'rival', 'RIVAL');
  const w = await db.pool.query<{ id: string }>(`insert into iot.work_centers (tenant_id, facility_id, work_center_code, name, work_center_type)
    values ($1, $2, 'FOLD-1', 'Folder 1', 'FOLDER') returning id`, [plant.tenantId, plant.facilityId]);
  secondWorkCenter = w.rows[0].id;
  api = await startTestApi(db.url, SECRET, { wsKeepaliveMs: 1000 });
  token = api.token('iot_operator', plant.tenantId, 'alice');
});
test.after(async () => {
  for (const r of open) r.close();
  for (const a of [...extra, api]) await a?.close();
  await db?.drop();
});

const streamUrl = (a: TestApi, workCenterId: string, query = '') => `${a.url}/api/equipment-health/stream/${workCenterId}${query}`;
async function stream(url: string, headers: Record<string, string> = {}) {
  const r = await readSse(url, headers);
  open.push(r);
  return r;
}

test('an equipment event written through the API arrives on its work center\'s stream, and only there', async () => {
  const own = await stream(streamUrl(api, plant.workCenterId), { authorization: `Bearer ${token}` });
  const other = await stream(streamUrl(api, secondWorkCenter), { authorization: `Bearer ${token}` });
  assert.is(own.status, 200, JSON.stringify(own.body));
  assert.match(own.headers.get('content-type') ?? '', /^text\/event-stream/);
  await sleep(300); // LISTEN established
  const streaming = own.frames.find((f) => f.event === ':' && /^streaming /.test(f.data))?.data;
  console.log(`  [sse] ${streaming}`);
  assert.match(streaming, /equipmentEvent(Triggered|Raised)/);
  const sent = Date.now();
  const id = await recordEvent(api, token, plant.workCenterId, 'heard over SSE');
  const frame = (await waitFor(() => own.frames.find((f) => f.event === 'equipment-event'), 5000, 'the equipment-event frame'))!;
  console.log(`  [sse] write to SSE frame: ${Date.now() - sent} ms`);
  assert.is(frame.data.id, id);
  assert.is(frame.data.eventDescription, 'heard over SSE');
  assert.is(frame.data.workCenterId, plant.workCenterId);
  await sleep(300);
  assert.equal(other.frames.filter((f) => f.event !== ':'), [], 'the other work center\'s stream got nothing');
  assert.is(own.frames.filter((f) => f.event === 'equipment-event').length, 1, 'delivered once');
  own.close();
  other.close();
});

test('a health score calculated through the API arrives as a health-score event', async () => {
  const s = await stream(streamUrl(api, plant.workCenterId), { authorization: `Bearer ${token}` });
  assert.is(s.status, 200);
  await sleep(300);
  const calc = await api.gql(`mutation($w: UUID!) { calculateEquipmentHealthScore(input: { workCenterId: $w }) { equipmentHealthScore { id } } }`,
    { w: plant.workCenterId }, token);
  assert.not.ok(calc.errors, JSON.stringify(calc.errors));
  const frame = (await waitFor(() => s.frames.find((f) => f.event === 'health-score'), 5000, 'the health-score frame'))!;
  assert.is(frame.data.id, calc.data.calculateEquipmentHealthScore.equipmentHealthScore.id);
  assert.ok('overallHealthScore' in frame.data && 'healthStatus' in frame.data, JSON.stringify(frame.data)); // the contract's names
  s.close();
});

test('a critical alert on the work center arrives as alert, critical-alert and alert-change; one on the other work center does not', async () => {
  const s = await stream(streamUrl(api, plant.workCenterId), { authorization: `Bearer ${token}` });
  assert.is(s.status, 200);
  await sleep(300);
  const insert = async (workCenterId: string, mode: string) => (await db.pool.query<{ id: string }>(
    `insert into iot.predictive_maintenance_alerts (tenant_id, work_center_id, alert_type, predicted_failure_mode, severity, urgency,
       failure_probability, description, alert_reason, time_to_failure_hours, recommended_action)
     values ($1, $2, 'FAILURE_PREDICTION', $3, 'CRITICAL', 'IMMEDIATE', 0.9, 'bearing', 'HEALTH_DEGRADATION', 4, 'Stop the press') returning id`,
    [plant.tenantId, workCenterId, mode])).rows[0].id;
  await insert(secondWorkCenter, 'ELSEWHERE');
  const id = await insert(plant.workCenterId, 'BEARING_SEIZURE');
  await waitFor(() => ['alert', 'critical-alert', 'alert-change'].every((e) => s.frames.some((f) => f.event === e)), 5000,
    `alert, critical-alert and alert-change frames (got ${JSON.stringify(s.frames.map((f) => f.event))})`);
  await sleep(300);
  const events = s.frames.filter((f) => f.event !== ':');
  assert.equal(events.map((f) => f.event).sort(), ['alert', 'alert-change', 'critical-alert'], JSON.stringify(events));
  assert.is(events.find((f) => f.event === 'critical-alert')!.data.id, id);
  assert.is(events.find((f) => f.event === 'critical-alert')!.data.predictedFailureMode, 'BEARING_SEIZURE');
  s.close();
});

test('?token= works for EventSource; no token is 401, a foreign work center 404, a malformed id 400, all with a JSON error', async () => {
  const viaQuery = await stream(streamUrl(api, plant.workCenterId, `?token=${token}`));
  assert.is(viaQuery.status, 200);
  viaQuery.close();
  const none = await stream(streamUrl(api, plant.workCenterId));
  assert.is(none.status, 401);
  assert.match(none.body.error, /token missing/);
  const bad = await stream(streamUrl(api, plant.workCenterId, '?token=not-a-jwt'));
  assert.is(bad.status, 401);
  assert.match(bad.body.error, /token refused: jwt malformed/);
  const foreign = await stream(streamUrl(api, rival.workCenterId), { authorization: `Bearer ${token}` });
  assert.is(foreign.status, 404);
  assert.match(foreign.body.error, new RegExp(`work center ${rival.workCenterId} not found \\(or not in your tenant\\)`));
  const malformed = await stream(streamUrl(api, 'press-1'), { authorization: `Bearer ${token}` });
  assert.is(malformed.status, 400);
});

test('the WebSocket\'s Origin check and per-user limit apply to SSE', async () => {
  const a = await startTestApi(db.url, SECRET, { wsAllowedOrigins: ['https://dash.plant.example'], wsMaxSocketsPerUser: 1 });
  extra.push(a);
  const evil = await stream(streamUrl(a, plant.workCenterId), { authorization: `Bearer ${token}`, origin: 'https://evil.example' });
  assert.is(evil.status, 403);
  assert.match(evil.body.error, /not in WS_ALLOWED_ORIGINS/);
  const first = await stream(streamUrl(a, plant.workCenterId), { authorization: `Bearer ${token}`, origin: 'https://dash.plant.example' });
  assert.is(first.status, 200);
  const second = await stream(streamUrl(a, plant.workCenterId), { authorization: `Bearer ${token}` });
  assert.is(second.status, 429);
  assert.match(second.body.error, /too many connections for this user \(WS_MAX_SOCKETS_PER_USER 1\)/);
  first.close();
  await waitFor(() => a.api.realtime.streams() === 0, 2000, 'the closed stream to be released');
  const again = await stream(streamUrl(a, plant.workCenterId), { authorization: `Bearer ${token}` });
  assert.is(again.status, 200, 'a closed stream frees its place');
  again.close();
});

test('heartbeat comments every WS_KEEPALIVE_MS; the stream ends with an error event when its token expires', async () => {
  const short = signToken(SECRET, { role: 'iot_analyst', tenantId: plant.tenantId, subject: 'brief', expiresIn: 2 as never });
  const s = await stream(streamUrl(api, plant.workCenterId), { authorization: `Bearer ${short}` });
  assert.is(s.status, 200);
  const ended = await Promise.race([s.ended.then(() => 'ended'), sleep(5000).then(() => 'still open')]);
  assert.is(ended, 'ended');
  assert.ok(s.frames.some((f) => f.event === ':' && f.data === 'heartbeat'), JSON.stringify(s.frames));
  assert.equal(s.frames.at(-1), { event: 'error', data: { error: 'token expired', code: 401 } });
});

test('shutdown ends open streams with a shutdown event', async () => {
  const a = await startTestApi(db.url, SECRET);
  const s = await stream(streamUrl(a, plant.workCenterId), { authorization: `Bearer ${token}` });
  assert.is(s.status, 200);
  await a.close();
  await Promise.race([s.ended, sleep(3000)]);
  assert.equal(s.frames.at(-1), { event: 'shutdown', data: { reason: 'server shutting down' } });
});

test.run();

import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { createClient } from 'graphql-ws';
import WebSocket from 'ws';
import { ReadingSink } from '../../src/ingest/sink';
import { ClosablePool, createPool } from '../../src/lib/db/pool';
import { signToken } from '../../src/lib/secrets';
import { ApiServer, startApi } from '../../src/server/app';
import { createTestDatabase, seedSmallPlant, TestDatabase } from '../helpers/db';
import { waitFor } from '../helpers/wait';

const test = suite('api: PostGraphile over iot, tokens, tenancy, page caps, subscriptions');
const SECRET = 'test-secret-for-api-suite';
let db: TestDatabase;
let pool: ClosablePool;
let api: ApiServer;
let plant: Awaited<ReturnType<typeof seedSmallPlant>>;
let rival: Awaited<ReturnType<typeof seedSmallPlant>>;
let token: string;
let rivalToken: string;

test.before(async () => {
  db = await createTestDatabase('api');
  plant = await seedSmallPlant(db.pool);
  rival = await seedSmallPlant(db.pool, 'rival', 'RIVAL');
  pool = createPool(db.url, 6, 'test-api');
  api = await startApi({ pool, host: '127.0.0.1', port: 0, jwtSecret: SECRET, graphiql: false, websockets: true,
    graphqlPath: '/graphql', maxPageSize: 100 });
  token = signToken(SECRET, { role: 'iot_operator', tenantId: plant.tenantId, subject: 'alice' });
  rivalToken = signToken(SECRET, { role: 'iot_analyst', tenantId: rival.tenantId, subject: 'bob' });
  const sink = new ReadingSink(db.pool, { batchSize: 1000, maxWaitMs: 5, bufferMax: 10_000 });
  const now = Date.now();
  sink.add(Array.from({ length: 300 }, (_, i) => ({
    time: new Date(now - i * 1000), tenantId: plant.tenantId, deviceId: plant.deviceId, sensorType: 'TEMPERATURE',
    value: 65 + (i % 5), unit: '°F', quality: 'GOOD' as const })));
  await sink.close();
});
test.after(async () => {
  await api.close();
  await pool.close();
  await db.drop();
});

async function gql(query: string, variables: Record<string, unknown> = {}, bearer: string | null = token) {
  const res = await fetch(`${api.url}/graphql`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(bearer ? { authorization: `Bearer ${bearer}` } : {}) },
    body: JSON.stringify({ query, variables }),
  });
  return (await res.json()) as { data?: any; errors?: { message: string; errcode?: string }[] };
}

test('the registry is reachable with readable names, and the latest reading per channel', async () => {
  const r = await gql(`{ workCenters { nodes { workCenterCode facility { facilityCode }
      iotDevices { nodes { deviceCode channels { nodes { sensorType latestReading { readingValue } } } } } } } }`);
  assert.not.ok(r.errors, JSON.stringify(r.errors));
  assert.is(r.data.workCenters.nodes.length, 1, 'only the own tenant');
  const wc = r.data.workCenters.nodes[0];
  assert.is(wc.facility.facilityCode, 'F1');
  const temp = wc.iotDevices.nodes[0].channels.nodes.find((c: any) => c.sensorType === 'TEMPERATURE');
  assert.is(temp.latestReading.readingValue, 65);
});

test('the README\'s registry query passes the default depth and cost limits', async () => {
  const r = await gql(`{ workCenters(first: 100) { nodes { workCenterCode facility { facilityCode }
      iotDevices(first: 50) { nodes { deviceCode deviceName lastHeartbeat
        channels(first: 20) { nodes { sensorType unit latestReading { readingValue readingTimestamp } } } } } } } }`);
  assert.not.ok(r.errors, JSON.stringify(r.errors));
  assert.is(r.data.workCenters.nodes[0].iotDevices.nodes[0].channels.nodes.length, 3);
});

test('another tenant sees none of it; no token sees nothing at all', async () => {
  const r = await gql(`{ iotDevice(id: "${plant.deviceId}") { deviceCode } workCenters { totalCount } }`, {}, rivalToken);
  assert.is(r.data.iotDevice, null);
  assert.is(r.data.workCenters.totalCount, 1);
  const anon = await gql(`{ workCenters { totalCount } }`, {}, null);
  assert.ok(anon.errors?.[0].message.includes('permission denied'));
  const forged = await gql(`{ workCenters { totalCount } }`, {}, signToken('wrong-secret', { role: 'iot_operator', tenantId: plant.tenantId, subject: 'x' }));
  assert.ok(forged.errors?.[0].message.match(/signature/i), JSON.stringify(forged));
});

test('telemetry is paged with a hard cap', async () => {
  const since = new Date(Date.now() - 3600_000).toISOString();
  const ok = await gql(`query($d: UUID!, $s: Datetime!) { deviceReadings(deviceId: $d, since: $s, first: 50) { nodes { readingValue readingTimestamp } totalCount } }`,
    { d: plant.deviceId, s: since });
  assert.not.ok(ok.errors, JSON.stringify(ok.errors));
  assert.is(ok.data.deviceReadings.nodes.length, 50);
  assert.is(ok.data.deviceReadings.totalCount, 300);
  const tooMany = await gql(`query($d: UUID!, $s: Datetime!) { deviceReadings(deviceId: $d, since: $s, first: 5000) { nodes { readingValue } } }`,
    { d: plant.deviceId, s: since });
  assert.match(tooMany.errors![0].message, 'above the limit of 100');
  const unbounded = await gql(`{ iotDevice(id: "${plant.deviceId}") { sensorReadings { nodes { readingValue } } } }`);
  assert.match(unbounded.errors![0].message, 'pass first or last');
});

test('database errors carry documented codes (IOT03 for a bad time range)', async () => {
  const r = await gql(`query($d: UUID!) { deviceReadings(deviceId: $d, since: "2026-01-10T00:00:00Z", until: "2026-01-01T00:00:00Z", first: 10) { nodes { readingValue } } }`,
    { d: plant.deviceId });
  assert.is(r.errors![0].errcode, 'IOT03');
  assert.match(r.errors![0].message, 'backwards');
});

test('sensorHistory picks a resolution and matches the raw data', async () => {
  const r = await gql(`query($d: UUID!, $s: Datetime!) { sensorHistory(deviceId: $d, sensorType: "temperature", since: $s, resolution: "1m", first: 100) { nodes { bucket readingCount avgValue minValue maxValue } } }`,
    { d: plant.deviceId, s: new Date(Date.now() - 3600_000).toISOString() });
  assert.not.ok(r.errors, JSON.stringify(r.errors));
  const nodes = r.data.sensorHistory.nodes;
  const total = nodes.reduce((a: number, n: any) => a + Number(n.readingCount), 0);
  assert.is(total, 300);
  assert.ok(nodes.every((n: any) => n.minValue >= 65 && n.maxValue <= 69));
});

test('operators record and acknowledge events; the acknowledgement names them', async () => {
  const rec = await gql(`mutation($w: UUID!) { recordEquipmentEvent(input: { workCenterId: $w, eventType: "MAINTENANCE_REQUIRED", eventDescription: "belt squeal", severity: "WARNING" }) { equipmentEvent { id eventType } } }`,
    { w: plant.workCenterId });
  assert.not.ok(rec.errors, JSON.stringify(rec.errors));
  const id = rec.data.recordEquipmentEvent.equipmentEvent.id;
  const ack = await gql(`mutation($id: UUID!) { acknowledgeEquipmentEvent(input: { eventId: $id }) { equipmentEvent { acknowledged acknowledgedBy } } }`, { id });
  assert.equal(ack.data.acknowledgeEquipmentEvent.equipmentEvent, { acknowledged: true, acknowledgedBy: 'alice' });
  const foreign = await gql(`mutation($id: UUID!) { acknowledgeEquipmentEvent(input: { eventId: $id }) { equipmentEvent { id } } }`, { id }, rivalToken);
  assert.ok(foreign.errors, 'the analyst of another tenant may not acknowledge');
  const wrongWc = await gql(`mutation($w: UUID!) { recordEquipmentEvent(input: { workCenterId: $w, eventType: "STARTUP", eventDescription: "x" }) { equipmentEvent { id } } }`,
    { w: rival.workCenterId });
  assert.is(wrongWc.errors![0].errcode, 'IOT04');
});

test('subscriptions deliver each stored batch of the own tenant only, within milliseconds', async () => {
  const received: { tenant: string; data: any; at: number }[] = [];
  const clients = [token, rivalToken].map((t) => createClient({
    url: api.url.replace('http', 'ws') + '/graphql', webSocketImpl: WebSocket, connectionParams: { authorization: `Bearer ${t}` } }));
  const stops = clients.map((c, i) => c.subscribe({ query: 'subscription { telemetryIngested { tenantId readingCount deviceCount } }' }, {
    next: (v) => received.push({ tenant: i === 0 ? 'own' : 'rival', data: v.data, at: Date.now() }),
    error: (e) => received.push({ tenant: 'error', data: e, at: Date.now() }),
    complete: () => undefined,
  }));
  await new Promise((r) => setTimeout(r, 300)); // LISTEN established
  const sink = new ReadingSink(db.pool, { batchSize: 100, maxWaitMs: 1, bufferMax: 1000 });
  const sent = Date.now();
  sink.add(Array.from({ length: 25 }, (_, i) => ({ time: new Date(sent - 10_000_000 - i), tenantId: plant.tenantId,
    deviceId: plant.deviceId, sensorType: 'PRESSURE', value: 100, unit: 'PSI', quality: 'GOOD' as const })));
  await sink.close();
  await waitFor(() => received.length >= 1, 5000, 'a subscription event');
  await new Promise((r) => setTimeout(r, 200));
  for (const s of stops) s();
  for (const c of clients) await c.dispose();
  assert.equal(received.map((r) => r.tenant), ['own'], JSON.stringify(received));
  assert.equal(received[0].data.telemetryIngested, { tenantId: plant.tenantId, readingCount: 25, deviceCount: 1 });
  console.log(`  [api] batch stored to subscription event: ${received[0].at - sent} ms (includes the COPY)`);
});

test('the seed system\'s connectionParams { authToken } authenticate a WebSocket', async () => {
  const c = createClient({ url: api.url.replace('http', 'ws') + '/graphql', webSocketImpl: WebSocket, connectionParams: { authToken: token } });
  const got: any[] = [];
  const stop = c.subscribe({ query: 'subscription { equipmentEventRaised { eventDescription } }' },
    { next: (v) => got.push(v.data), error: (e) => got.push({ error: String(e) }), complete: () => undefined });
  await new Promise((r) => setTimeout(r, 300));
  await gql(`mutation($w: UUID!) { recordEquipmentEvent(input: { workCenterId: $w, eventType: "STARTUP", eventDescription: "via authToken" }) { equipmentEvent { id } } }`,
    { w: plant.workCenterId });
  await waitFor(() => got.length >= 1, 5000, 'the event');
  stop();
  await c.dispose();
  assert.equal(got, [{ equipmentEventRaised: { eventDescription: 'via authToken' } }]);
});

test('a subscription without a token is refused at connect with a clear close reason', async () => {
  const c = createClient({ url: api.url.replace('http', 'ws') + '/graphql', webSocketImpl: WebSocket, retryAttempts: 0 });
  const error = await new Promise<any>((resolve) => c.subscribe({ query: 'subscription { telemetryIngested { readingCount } }' },
    { next: (v) => resolve(v), error: (e) => resolve(e), complete: () => undefined }));
  await c.dispose();
  assert.is(error.code, 4401);
  assert.match(error.reason, 'token missing');
});

test('health, OEE and maintenance fields carry the names dashboards use', async () => {
  const r = await gql(`{ __schema { queryType { fields { name } } mutationType { fields { name } } } }`);
  const names = new Set([...r.data.__schema.queryType.fields, ...r.data.__schema.mutationType.fields].map((f: any) => f.name));
  for (const n of ['equipmentHealthScores', 'equipmentHealthTrends', 'predictiveMaintenanceAlerts', 'predictiveMaintenanceDashboard',
    'calculateEquipmentHealthScore', 'acknowledgePredictiveMaintenanceAlert', 'resolvePredictiveMaintenanceAlert',
    'productionSummary', 'oeeTrends', 'workCenterUtilization']) {
    assert.ok(names.has(n), `missing ${n}`);
  }
  const calc = await gql(`mutation($w: UUID!) { calculateEquipmentHealthScore(input: { workCenterId: $w }) {
      equipmentHealthScore { id overallHealthScore healthStatus sensorHealthScore riskFactors } } }`, { w: plant.workCenterId });
  assert.not.ok(calc.errors, JSON.stringify(calc.errors));
  assert.type(calc.data.calculateEquipmentHealthScore.equipmentHealthScore.overallHealthScore, 'number');
  const q = await gql(`{ equipmentHealthScores(first: 5) { nodes { id overallHealthScore scoreTimestamp anomalyDetected } }
      predictiveMaintenanceDashboard
      workCenterUtilization(first: 10) { nodes { workCenterId workCenterName status currentOEE todayRuntime utilizationPercentage } }
      productionSummary(first: 10) { nodes { workCenterName activeRuns totalGoodQuantity averageYield currentOEE asOfTimestamp } }
      oeeTrends(since: "${new Date(Date.now() - 30 * 86_400_000).toISOString()}", first: 10) { nodes { calculationDate oeePercentage targetOEEPercentage } } }`);
  assert.not.ok(q.errors, JSON.stringify(q.errors));
  assert.is(q.data.equipmentHealthScores.nodes.length, 1);
  assert.ok(Array.isArray(q.data.predictiveMaintenanceDashboard.equipment));
  assert.is(q.data.workCenterUtilization.nodes[0].status, 'IDLE');
  assert.is(q.data.workCenterUtilization.nodes[0].todayRuntime, 0, 'a Float, not a BigFloat string');
  assert.equal(q.data.productionSummary.nodes[0], { workCenterName: 'Press 1', activeRuns: 0, totalGoodQuantity: 0,
    averageYield: null, currentOEE: null, asOfTimestamp: q.data.productionSummary.nodes[0].asOfTimestamp });
});

// Every registry mutation the README names, through the API with an operator token: the checks run
// as triggers, and a trigger that reached into iot_private as the caller failed with
// "permission denied for schema iot_private".
test('operators maintain the registry through GraphQL; a bad connectionConfig is refused with IOT01', async () => {
  const expectOk = (r: Awaited<ReturnType<typeof gql>>) => {
    assert.not.ok(r.errors, JSON.stringify(r.errors));
    return r.data;
  };
  const fac = expectOk(await gql(`mutation { createFacility(input: { facility: { facilityCode: "API-F", name: "API plant", timezone: "Europe/Berlin" } }) { facility { id } } }`));
  const facilityId = fac.createFacility.facility.id;
  const wc = expectOk(await gql(`mutation($f: UUID!) { createWorkCenter(input: { workCenter: { facilityId: $f, workCenterCode: "FOLD-1", name: "Folder 1", workCenterType: "FOLDER" } }) { workCenter { id } } }`, { f: facilityId }));
  const workCenterId = wc.createWorkCenter.workCenter.id;
  const dev = expectOk(await gql(`mutation($w: UUID!) { createIotDevice(input: { iotDevice: { workCenterId: $w, deviceCode: "FOLD-1-PLC", deviceName: "Folder PLC",
      deviceType: "PRESS_COUNTER", connectionType: "OPC_UA", connectionConfig: { endpointUrl: "opc.tcp://plc.local:4840" } } }) { iotDevice { id facilityId deviceName } } }`, { w: workCenterId }));
  const device = dev.createIotDevice.iotDevice;
  assert.equal([device.facilityId, device.deviceName], [facilityId, 'Folder PLC'], 'facility_id filled from the work center');
  expectOk(await gql(`mutation($d: UUID!) { createDeviceChannel(input: { deviceChannel: { deviceId: $d, sensorType: "COUNT", unit: "units", protocolAddress: "ns=2;s=Folder.Count" } }) { deviceChannel { id } } }`, { d: device.id }));
  expectOk(await gql(`mutation($d: UUID!) { updateIotDevice(input: { id: $d, patch: { connectionConfig: { endpointUrl: "opc.tcp://plc2.local:4840", securityMode: "Sign" } } }) { iotDevice { connectionConfig } } }`, { d: device.id }));
  const bad = await gql(`mutation($d: UUID!) { updateIotDevice(input: { id: $d, patch: { connectionConfig: { endpointUrl: "http://nope" } } }) { iotDevice { id } } }`, { d: device.id });
  assert.is(bad.errors?.[0].errcode, 'IOT01', JSON.stringify(bad));
  assert.match(bad.errors![0].message, 'endpointUrl');
  const badNew = await gql(`mutation($w: UUID!) { createIotDevice(input: { iotDevice: { workCenterId: $w, deviceCode: "FOLD-1-MB", connectionType: "MODBUS", connectionConfig: { port: 502 } } }) { iotDevice { id } } }`, { w: workCenterId });
  assert.is(badNew.errors?.[0].errcode, 'IOT01', JSON.stringify(badNew));
  assert.match(badNew.errors![0].message, 'host');
  expectOk(await gql(`mutation($w: UUID!) { updateWorkCenter(input: { id: $w, patch: { name: "Folder One", oeeTarget: 0.8 } }) { workCenter { name } } }`, { w: workCenterId }));
  expectOk(await gql(`mutation($w: UUID!) { createProductionRun(input: { productionRun: { workCenterId: $w, status: "RUNNING", actualStart: "2026-01-10T06:00:00Z", plannedQuantity: 1000 } }) { productionRun { id } } }`, { w: workCenterId }));
  expectOk(await gql(`mutation($w: UUID!) { createMaintenanceRecord(input: { maintenanceRecord: { workCenterId: $w, maintenanceType: "INSPECTION", description: "weekly", startedAt: "2026-01-10T05:00:00Z" } }) { maintenanceRecord { id } } }`, { w: workCenterId }));
  expectOk(await gql(`mutation($d: UUID!) { deleteIotDevice(input: { id: $d }) { iotDevice { id } } }`, { d: device.id }));
  expectOk(await gql(`mutation($f: UUID!) { deleteFacility(input: { id: $f }) { facility { id } } }`, { f: facilityId }));
  const analyst = await gql(`mutation { createFacility(input: { facility: { facilityCode: "NOPE", name: "x" } }) { facility { id } } }`, {}, rivalToken);
  assert.match(analyst.errors?.[0].message ?? '', 'permission denied', 'an analyst token cannot write');
});

test('/healthz and /metrics answer', async () => {
  const h = await fetch(`${api.url}/healthz`);
  assert.is(h.status, 200);
  const m = await fetch(`${api.url}/metrics`);
  assert.is(m.status, 200);
});

test.run();

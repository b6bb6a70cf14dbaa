// The seed's subscriptions over LISTEN/NOTIFY (issue 8, parts 1-3, API side): real API
// (startTestApi), real graphql-ws clients, every event caused by the real write (readings through
// the ReadingSink, health scores through calculateEquipmentHealthScore / store_health_scores,
// alert inserts and workflow mutations, SPC points and evaluate_spc), a second tenant that hears
// nothing, arguments naming other tenants' things refused with IOT04, fields that need SQL refused,
// and 200 subscribers of one instance served by at most one query per event.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { createClient, type Client } from 'graphql-ws';
import { randomUUID } from 'node:crypto';
import WebSocket from 'ws';
import { Client as PgClient } from 'pg';
import { ReadingSink } from '../../src/ingest/sink';
import { createTestDatabase, seedSmallPlant, TestDatabase } from '../helpers/db';
import { startTestApi, TestApi } from '../helpers/graphql';
import { sleep, waitFor } from '../helpers/wait';

const test = suite('server: the seed\'s subscriptions, from NOTIFY, per tenant');
let db: TestDatabase;
let api: TestApi;
let plant: Awaited<ReturnType<typeof seedSmallPlant>>;
let rival: Awaited<ReturnType<typeof seedSmallPlant>>;
let token: string;
let rivalToken: string;
const open: Live[] = [];

const LISTEN_SETTLE_MS = 500; // subscribe -> argument check -> LISTEN on loopback takes a few ms
const QUIET_MS = 400; // how long "receives nothing" is watched after the own event arrived

test.before(async () => {
  db = await createTestDatabase('subscriptions');
  // Function call counts for the outbox test (the API's connections are made after this).
  await db.pool.query(`alter database ${db.url.split('/').pop()} set track_functions = 'all'`);
  plant = await seedSmallPlant(db.pool);
  rival = await seedSmallPlant(db.pool, 'rival', 'RIVAL');
  api = await startTestApi(db.url);
  token = api.token('iot_operator', plant.tenantId, 'alice');
  rivalToken = api.token('iot_operator', rival.tenantId, 'bob');
});
test.after(async () => {
  for (const l of open.splice(0)) await l.close().catch(() => undefined);
  await api?.close();
  await db?.drop();
});

interface Got {
  events: any[];
  errors: any[];
  completed: boolean;
}

/** One graphql-ws client (one socket) and the subscriptions made on it. */
class Live {
  private readonly client: Client;
  private readonly stops: (() => void)[] = [];
  constructor(bearer: string | null) {
    this.client = createClient({
      url: api.url.replace('http', 'ws') + '/graphql', webSocketImpl: WebSocket, retryAttempts: 0,
      connectionParams: bearer === null ? {} : { Authorization: `Bearer ${bearer}` },
    });
    open.push(this);
  }
  on(query: string, variables: Record<string, unknown> = {}): Got {
    const got: Got = { events: [], errors: [], completed: false };
    this.stops.push(this.client.subscribe({ query, variables }, {
      next: (v) => (v.errors?.length ? got.errors.push(...v.errors) : got.events.push(Object.values(v.data ?? {})[0])),
      // A list of GraphQL errors, or the CloseEvent of a socket the server closed (code and reason).
      error: (e: any) => got.errors.push(Array.isArray(e) ? e[0] : { message: e?.reason ?? e?.message ?? String(e), code: e?.code }),
      complete: () => {
        got.completed = true;
      },
    }));
    return got;
  }
  async close() {
    for (const s of this.stops) s();
    await this.client.dispose();
    const i = open.indexOf(this);
    if (i >= 0) open.splice(i, 1);
  }
}

/** The first error (or event) a subscription gets: for refusals. */
async function firstAnswer(bearer: string | null, query: string, variables: Record<string, unknown>): Promise<Got> {
  const live = new Live(bearer);
  const got = live.on(query, variables);
  await waitFor(() => got.errors.length || got.events.length || got.completed, 5000, 'an answer to the subscription');
  await live.close();
  return got;
}

const errcodeOf = (e: any) => e?.extensions?.errcode ?? e?.errcode;

async function gql(query: string, variables: Record<string, unknown> = {}, bearer = token) {
  const r = await api.gql(query, variables, bearer);
  assert.not.ok(r.errors, JSON.stringify(r.errors));
  return r.data;
}

async function storeReadings(rows: { deviceId: string; sensorType: string; value: number; unit: string; time: Date; tenantId?: string }[]) {
  const sink = new ReadingSink(db.pool, { batchSize: 10_000, maxWaitMs: 5, bufferMax: 100_000 });
  sink.add(rows.map((r) => ({ time: r.time, tenantId: r.tenantId ?? plant.tenantId, deviceId: r.deviceId, sensorType: r.sensorType,
    value: r.value, unit: r.unit, quality: 'GOOD' as const })));
  await sink.close();
}

async function insertAlert(values: { failureMode: string; severity: string; urgency: string; description?: string; workCenterId?: string; tenantId?: string }) {
  const { rows } = await db.pool.query<{ id: string }>(
    `insert into iot.predictive_maintenance_alerts (tenant_id, work_center_id, alert_type, predicted_failure_mode, severity, urgency,
       failure_probability, description, alert_reason, time_to_failure_hours, recommended_action)
     values ($1, $2, 'FAILURE_PREDICTION', $3, $4, $5, 0.6, $6, 'HEALTH_DEGRADATION', 36, 'Replace the bearing') returning id`,
    [values.tenantId ?? plant.tenantId, values.workCenterId ?? plant.workCenterId, values.failureMode, values.severity, values.urgency,
      values.description ?? `predicted ${values.failureMode}`]);
  return rows[0].id;
}

/** After the own events arrived, the rival's subscriptions stay silent a while longer. */
async function rivalHearsNothing(...subs: Got[]) {
  await sleep(QUIET_MS);
  for (const s of subs) {
    assert.equal(s.errors, [], `the rival's subscription was refused: ${JSON.stringify(s.errors)}`);
    assert.equal(s.events, [], `the rival heard another tenant: ${JSON.stringify(s.events)}`);
  }
}

// The nine -----------------------------------------------------------------------------------------

test('sensorReadingUpdated: one event per sensor type of the device after an ingest batch; the rival hears nothing', async () => {
  const own = new Live(token);
  const other = new Live(rivalToken);
  const got = own.on(`subscription($d: ID!) { sensorReadingUpdated(iotDeviceId: $d) { id iotDeviceId sensorType readingValue unitOfMeasure readingTimestamp quality } }`,
    { d: plant.deviceId });
  const rivalGot = other.on(`subscription($d: ID!) { sensorReadingUpdated(iotDeviceId: $d) { id } }`, { d: rival.deviceId });
  const rivalBatches = other.on(`subscription { telemetryIngested { readingCount } }`);
  await sleep(LISTEN_SETTLE_MS);
  const t = Date.now();
  await storeReadings([
    { deviceId: plant.deviceId, sensorType: 'TEMPERATURE', value: 70, unit: '°F', time: new Date(t - 2000) },
    { deviceId: plant.deviceId, sensorType: 'TEMPERATURE', value: 71.5, unit: '°F', time: new Date(t - 1000) },
    { deviceId: plant.deviceId, sensorType: 'PRESSURE', value: 101, unit: 'PSI', time: new Date(t - 1000) },
  ]);
  await waitFor(() => got.events.length >= 2, 5000, 'two sensorReadingUpdated events');
  await rivalHearsNothing(rivalGot, rivalBatches);
  await own.close();
  await other.close();
  const byType = Object.fromEntries(got.events.map((e) => [e.sensorType, e]));
  assert.equal(Object.keys(byType).sort(), ['PRESSURE', 'TEMPERATURE'], 'the latest reading of each sensor type, once');
  assert.is(byType.TEMPERATURE.readingValue, 71.5, 'the latest TEMPERATURE value, as a Float');
  assert.is(byType.TEMPERATURE.iotDeviceId, plant.deviceId);
  assert.is(byType.TEMPERATURE.quality, 'GOOD');
  assert.is(new Date(byType.TEMPERATURE.readingTimestamp).getTime(), t - 1000);
  // The id is the one the API's sensorReadings query gives the same reading.
  const q = await gql(`query($d: UUID!, $s: Datetime!) { deviceReadings(deviceId: $d, since: $s, first: 10) { nodes { id sensorType readingValue } } }`,
    { d: plant.deviceId, s: new Date(t - 1500).toISOString() });
  const stored = q.deviceReadings.nodes.find((n: any) => n.sensorType === 'TEMPERATURE');
  assert.is(byType.TEMPERATURE.id, stored.id);
});

test('equipmentEventTriggered and equipmentAnomalyDetected: after recordEquipmentEvent; anomalies only for ANOMALY_DETECTED', async () => {
  const own = new Live(token);
  const other = new Live(rivalToken);
  const events = own.on(`subscription($w: ID!) { equipmentEventTriggered(workCenterId: $w) { nodeId id workCenterId iotDeviceId eventType eventCode severity eventDescription metadata acknowledged } }`,
    { w: plant.workCenterId });
  const anomalies = own.on(`subscription($f: ID!) { equipmentAnomalyDetected(facilityId: $f) { eventId workCenterId iotDeviceId sensorType severity description value zScore facilityId } }`,
    { f: plant.facilityId });
  const rivalEvents = other.on(`subscription($w: ID!) { equipmentEventTriggered(workCenterId: $w) { id } }`, { w: rival.workCenterId });
  const rivalAnomalies = other.on(`subscription($f: ID!) { equipmentAnomalyDetected(facilityId: $f) { eventId } }`, { f: rival.facilityId });
  await sleep(LISTEN_SETTLE_MS);
  const startup = await gql(`mutation($w: UUID!) { recordEquipmentEvent(input: { workCenterId: $w, eventType: "STARTUP", eventDescription: "shift start" }) { equipmentEvent { id nodeId } } }`,
    { w: plant.workCenterId });
  const anomaly = await gql(`mutation($w: UUID!, $d: UUID!, $m: JSON!) { recordEquipmentEvent(input: { workCenterId: $w, iotDeviceId: $d, eventType: "ANOMALY_DETECTED",
      eventCode: "TEMPERATURE_SPIKE", severity: "WARNING", eventDescription: "temperature spike", metadata: $m }) { equipmentEvent { id } } }`,
  { w: plant.workCenterId, d: plant.deviceId, m: { value: 93.5, zScore: 6.2 } });
  await waitFor(() => events.events.length >= 2 && anomalies.events.length >= 1, 5000, 'two equipment events and one anomaly');
  await rivalHearsNothing(rivalEvents, rivalAnomalies);
  await own.close();
  await other.close();
  const first = events.events[0];
  assert.is(first.id, startup.recordEquipmentEvent.equipmentEvent.id);
  assert.is(first.nodeId, startup.recordEquipmentEvent.equipmentEvent.nodeId, 'nodeId as the query API gives it');
  assert.equal([first.eventType, first.severity, first.eventDescription, first.acknowledged, first.workCenterId], ['STARTUP', 'INFO', 'shift start', false, plant.workCenterId]);
  assert.is(events.events[1].eventType, 'ANOMALY_DETECTED');
  assert.equal(anomalies.events, [{
    eventId: anomaly.recordEquipmentEvent.equipmentEvent.id, workCenterId: plant.workCenterId, iotDeviceId: plant.deviceId, sensorType: null,
    severity: 'WARNING', description: 'temperature spike', value: 93.5, zScore: 6.2, facilityId: plant.facilityId,
  }], 'only the ANOMALY_DETECTED event is an anomaly');
});

test('equipmentHealthScoreUpdated (the contract document) after calculateEquipmentHealthScore; equipmentHealthStatusChanged when the status changes', async () => {
  const own = new Live(token);
  const other = new Live(rivalToken);
  const scores = own.on('subscription EquipmentHealthUpdates($workCenterId: ID!) { equipmentHealthScoreUpdated(workCenterId: $workCenterId) { id overallHealthScore healthStatus trendDirection anomalyDetected } }',
    { workCenterId: plant.workCenterId });
  const changes = own.on(`subscription($f: ID!) { equipmentHealthStatusChanged(facilityId: $f) { healthScoreId workCenterId facilityId previousStatus newStatus overallHealthScore scoreTimestamp score { id healthStatus } } }`,
    { f: plant.facilityId });
  const rivalScores = other.on(`subscription($w: ID!) { equipmentHealthScoreUpdated(workCenterId: $w) { id } }`, { w: rival.workCenterId });
  const rivalChanges = other.on(`subscription($f: ID!) { equipmentHealthStatusChanged(facilityId: $f) { healthScoreId } }`, { f: rival.facilityId });
  await sleep(LISTEN_SETTLE_MS);

  // Healthy readings before t1, then far out of range before t2: two scores with different statuses.
  const now = Date.now();
  const t1 = new Date(now - 2 * 3600_000);
  const t2 = new Date(now - 3600_000);
  const rows = [];
  for (let i = 0; i < 600; i++) {
    for (const [sensorType, unit, good, bad] of [['TEMPERATURE', '°F', 68, 200], ['PRESSURE', 'PSI', 100, 300], ['VIBRATION', 'mm/s', 1, 30]] as const) {
      rows.push({ deviceId: plant.deviceId, sensorType, unit, value: good, time: new Date(t1.getTime() - i * 1000) });
      rows.push({ deviceId: plant.deviceId, sensorType, unit, value: bad, time: new Date(t2.getTime() - i * 1000) });
    }
  }
  await storeReadings(rows);
  const first = await gql(`mutation($w: UUID!, $at: Datetime!) { calculateEquipmentHealthScore(input: { workCenterId: $w, at: $at }) {
      equipmentHealthScore { id overallHealthScore healthStatus trendDirection anomalyDetected } } }`, { w: plant.workCenterId, at: t1.toISOString() });
  await db.pool.query('select iot_private.store_health_scores(array[$1]::uuid[], $2)', [plant.workCenterId, t2]);
  await waitFor(() => scores.events.length >= 2, 5000, 'two health score events');
  await waitFor(() => changes.events.length >= 1, 3000, 'a status change');
  await rivalHearsNothing(rivalScores, rivalChanges);
  await own.close();
  await other.close();
  assert.equal(scores.events[0], first.calculateEquipmentHealthScore.equipmentHealthScore, 'the payload is the object the query API gives');
  const second = (await db.pool.query(`select id, health_status, overall_health_score from iot_private.equipment_health_scores
    where work_center_id = $1 and score_timestamp = $2`, [plant.workCenterId, t2])).rows[0];
  assert.is(scores.events[1].id, second.id);
  assert.is.not(second.health_status, first.calculateEquipmentHealthScore.equipmentHealthScore.healthStatus, 'the recipe changes the status');
  assert.equal(changes.events, [{
    healthScoreId: second.id, workCenterId: plant.workCenterId, facilityId: plant.facilityId,
    previousStatus: first.calculateEquipmentHealthScore.equipmentHealthScore.healthStatus, newStatus: second.health_status,
    overallHealthScore: Number(second.overall_health_score), scoreTimestamp: changes.events[0].scoreTimestamp,
    score: { id: second.id, healthStatus: second.health_status },
  }], 'one change (the first score of a work center changes nothing)');
  assert.is(new Date(changes.events[0].scoreTimestamp).getTime(), t2.getTime());
});

test('predictiveMaintenanceAlertCreated, criticalAlertTriggered (the contract document) and predictiveMaintenanceAlertChanged through the workflow', async () => {
  const own = new Live(token);
  const other = new Live(rivalToken);
  const created = own.on(`subscription($f: ID!) { predictiveMaintenanceAlertCreated(facilityId: $f) { id alertType severity urgency status predictedFailureMode failureProbability } }`,
    { f: plant.facilityId });
  const critical = own.on('subscription CriticalAlerts($tenantId: ID!) { criticalAlertTriggered(tenantId: $tenantId) { id alertType severity predictedFailureMode timeToFailureHours recommendedAction } }',
    { tenantId: plant.tenantId });
  const changed = own.on(`subscription { predictiveMaintenanceAlertChanged { change previousStatus status critical becameCritical alertId facilityId alert { id status acknowledgedBy } } }`);
  const rivalCreated = other.on(`subscription($f: ID!) { predictiveMaintenanceAlertCreated(facilityId: $f) { id } }`, { f: rival.facilityId });
  const rivalCritical = other.on(`subscription($t: ID!) { criticalAlertTriggered(tenantId: $t) { id } }`, { t: rival.tenantId });
  const rivalChanged = other.on(`subscription { predictiveMaintenanceAlertChanged { change } }`);
  await sleep(LISTEN_SETTLE_MS);

  // Failure modes of their own: one open alert per work center and mode, and the health test's run may have raised some.
  const routine = await insertAlert({ failureMode: 'TEST_BEARING_WEAR', severity: 'HIGH', urgency: 'SOON' });
  const crit = await insertAlert({ failureMode: 'TEST_MOTOR_FAILURE', severity: 'CRITICAL', urgency: 'URGENT' });
  await gql(`mutation($id: UUID!) { acknowledgePredictiveMaintenanceAlert(input: { alertId: $id }) { predictiveMaintenanceAlert { status } } }`, { id: routine });
  // The routine alert becomes critical by urgency: criticalAlertTriggered fires for it now.
  await db.pool.query(`update iot.predictive_maintenance_alerts set urgency = 'IMMEDIATE' where id = $1`, [routine]);
  await gql(`mutation($id: UUID!) { resolvePredictiveMaintenanceAlert(input: { alertId: $id, actualFailureOccurred: false, resolutionNotes: "false alarm" }) { predictiveMaintenanceAlert { status } } }`,
    { id: crit });
  await waitFor(() => changed.events.length >= 5 && critical.events.length >= 2 && created.events.length >= 2, 5000, 'the alert events');
  await rivalHearsNothing(rivalCreated, rivalCritical, rivalChanged);
  await own.close();
  await other.close();

  assert.equal(created.events.map((e) => [e.id, e.severity, e.urgency, e.status, e.failureProbability]),
    [[routine, 'HIGH', 'SOON', 'OPEN', 0.6], [crit, 'CRITICAL', 'URGENT', 'OPEN', 0.6]]);
  assert.equal(critical.events, [
    { id: crit, alertType: 'FAILURE_PREDICTION', severity: 'CRITICAL', predictedFailureMode: 'TEST_MOTOR_FAILURE', timeToFailureHours: 36, recommendedAction: 'Replace the bearing' },
    { id: routine, alertType: 'FAILURE_PREDICTION', severity: 'HIGH', predictedFailureMode: 'TEST_BEARING_WEAR', timeToFailureHours: 36, recommendedAction: 'Replace the bearing' },
  ], 'created critical, then became critical (urgency IMMEDIATE); the resolution of a critical alert is not a new critical alert');
  assert.equal(changed.events.map((e) => [e.alertId, e.change, e.previousStatus, e.status, e.critical, e.becameCritical]), [
    [routine, 'CREATED', null, 'OPEN', false, false],
    [crit, 'CREATED', null, 'OPEN', true, true],
    [routine, 'ACKNOWLEDGED', 'OPEN', 'ACKNOWLEDGED', false, false],
    [routine, 'UPDATED', 'ACKNOWLEDGED', 'ACKNOWLEDGED', true, true],
    [crit, 'RESOLVED', 'OPEN', 'RESOLVED', true, false],
  ]);
  assert.is(changed.events[2].alert.acknowledgedBy, 'alice', 'the alert as committed by the workflow mutation');
  assert.is(changed.events[0].facilityId, plant.facilityId);
});

test('spcNewMeasurement (one event per point, zones) after an ingest batch; spcNewAlert after evaluate_spc', async () => {
  // A channel with control limits from a 600-reading baseline (mean 70, sd ~2) six hours ago.
  const code = `SPC-${randomUUID().slice(0, 6)}`;
  const d = await db.pool.query<{ id: string }>(`insert into iot.iot_devices (tenant_id, work_center_id, device_code) values ($1, $2, $3) returning id`,
    [plant.tenantId, plant.workCenterId, code]);
  const deviceId = d.rows[0].id;
  const c = await db.pool.query<{ id: string }>(`insert into iot.device_channels (tenant_id, device_id, sensor_type, unit) values ($1, $2, 'TEMPERATURE', '°F') returning id`,
    [plant.tenantId, deviceId]);
  const t0 = Math.floor((Date.now() - 6 * 3600_000) / 1000) * 1000;
  await storeReadings(Array.from({ length: 600 }, (_, i) => ({ deviceId, sensorType: 'TEMPERATURE', unit: '°F', value: 70 + 2 * Math.sin(i * 1.7), time: new Date(t0 + i * 1000) })));
  const limits = await gql(`mutation($c: UUID!, $f: Datetime!, $t: Datetime!) { computeSpcControlLimits(input: { channelId: $c, baselineFrom: $f, baselineTo: $t }) {
      spcControlLimit { id centerLine sigma } } }`, { c: c.rows[0].id, f: new Date(t0).toISOString(), t: new Date(t0 + 599_000).toISOString() });
  const { id: limitId, centerLine, sigma } = limits.computeSpcControlLimits.spcControlLimit;
  const parameterCode = `${code}.TEMPERATURE`;

  const own = new Live(token);
  const other = new Live(rivalToken);
  const points = own.on(`subscription($p: String!) { spcNewMeasurement(parameterCode: $p) { parameterCode timestamp value centerLine upperControlLimit lowerControlLimit sigma zone outOfControl controlLimitId iotDeviceId } }`,
    { p: parameterCode });
  const alerts = own.on(`subscription($t: ID!, $f: ID) { spcNewAlert(tenantId: $t, facilityId: $f) { id rule severity detectedAt value parameterCode workCenterId facilityId controlLimitId } }`,
    { t: plant.tenantId, f: plant.facilityId });
  const rivalAlerts = other.on(`subscription($t: ID!) { spcNewAlert(tenantId: $t) { id } }`, { t: rival.tenantId });
  await sleep(LISTEN_SETTLE_MS);
  const t1 = t0 + 700_000;
  const zs = [0.5, -1.5, 2.5, 4];
  await storeReadings(zs.map((z, i) => ({ deviceId, sensorType: 'TEMPERATURE', unit: '°F', value: centerLine + z * sigma, time: new Date(t1 + i * 1000) })));
  await waitFor(() => points.events.length >= 4, 5000, 'four SPC points');
  await db.pool.query('select iot_private.evaluate_spc()');
  await waitFor(() => alerts.events.length >= 1, 5000, 'an SPC alert');
  await rivalHearsNothing(rivalAlerts);
  await own.close();
  await other.close();
  assert.equal(points.events.map((p) => [p.zone, p.outOfControl, p.parameterCode, p.controlLimitId, p.iotDeviceId]), [
    ['+C', false, parameterCode, limitId, deviceId], ['-B', false, parameterCode, limitId, deviceId],
    ['+A', false, parameterCode, limitId, deviceId], ['+A', true, parameterCode, limitId, deviceId],
  ]);
  assert.is(new Date(points.events[3].timestamp).getTime(), t1 + 3000);
  assert.ok(Math.abs(points.events[3].value - (centerLine + 4 * sigma)) < 1e-9);
  assert.ok(Math.abs(points.events[0].upperControlLimit - (centerLine + 3 * sigma)) < 1e-9);
  const beyond = alerts.events.find((a) => a.rule === 1);
  assert.ok(beyond, `a rule 1 alert: ${JSON.stringify(alerts.events)}`);
  assert.equal([beyond.parameterCode, beyond.workCenterId, beyond.facilityId, beyond.controlLimitId], [parameterCode, plant.workCenterId, plant.facilityId, limitId]);
  assert.is(new Date(beyond.detectedAt).getTime(), t1 + 3000);
});

// Refusals -----------------------------------------------------------------------------------------

test('an argument naming another tenant\'s (or no) work center, facility, device, tenant or chart is refused with IOT04; a non-UUID with 22P02', async () => {
  const cases: [string, Record<string, unknown>, RegExp, string][] = [
    ['subscription($x: ID!) { equipmentHealthScoreUpdated(workCenterId: $x) { id } }', { x: rival.workCenterId }, /workCenterId \S+ is not a work center of your tenant/, 'IOT04'],
    ['subscription($x: ID!) { equipmentEventTriggered(workCenterId: $x) { id } }', { x: randomUUID() }, /workCenterId \S+ is not a work center of your tenant/, 'IOT04'],
    ['subscription($x: ID!) { equipmentHealthStatusChanged(facilityId: $x) { newStatus } }', { x: rival.facilityId }, /facilityId \S+ is not a facility of your tenant/, 'IOT04'],
    ['subscription($x: ID!) { predictiveMaintenanceAlertCreated(facilityId: $x) { id } }', { x: randomUUID() }, /facilityId/, 'IOT04'],
    ['subscription($x: ID!) { equipmentAnomalyDetected(facilityId: $x) { eventId } }', { x: rival.facilityId }, /facilityId/, 'IOT04'],
    ['subscription($x: ID!) { sensorReadingUpdated(iotDeviceId: $x) { id } }', { x: rival.deviceId }, /iotDeviceId \S+ is not a device of your tenant/, 'IOT04'],
    ['subscription($x: ID!) { criticalAlertTriggered(tenantId: $x) { id } }', { x: rival.tenantId }, /tenantId \S+ is not your tenant/, 'IOT04'],
    ['subscription($x: ID!) { spcNewAlert(tenantId: $x) { id } }', { x: rival.tenantId }, /tenantId/, 'IOT04'],
    ['subscription($x: ID!, $f: ID) { spcNewAlert(tenantId: $x, facilityId: $f) { id } }', { x: plant.tenantId, f: rival.facilityId }, /facilityId/, 'IOT04'],
    ['subscription($x: String!) { spcNewMeasurement(parameterCode: $x) { value } }', { x: 'RIVAL-DEV-1.TEMPERATURE' }, /parameterCode RIVAL-DEV-1.TEMPERATURE is not an SPC control chart/, 'IOT04'],
    ['subscription($x: ID!) { equipmentHealthScoreUpdated(workCenterId: $x) { id } }', { x: 'press-1' }, /workCenterId "press-1" is not a UUID/, '22P02'],
  ];
  const problems: string[] = [];
  for (const [query, variables, message, code] of cases) {
    const got = await firstAnswer(token, query, variables);
    const e = got.errors[0];
    if (got.events.length || !e) problems.push(`${query}: no error (${JSON.stringify(got)})`);
    else if (!message.test(e.message) || errcodeOf(e) !== code) problems.push(`${query}: ${JSON.stringify(e)}`);
  }
  assert.equal(problems, []);
});

test('fields that need SQL (relations, connections) are refused at subscribe, naming the field', async () => {
  const relation = await firstAnswer(token, 'subscription($w: ID!) { equipmentHealthScoreUpdated(workCenterId: $w) { id workCenter { workCenterCode } } }',
    { w: plant.workCenterId });
  assert.match(relation.errors[0]?.message ?? '', 'field workCenter is not available in subscription payloads; query it by id');
  const viaFragment = await firstAnswer(token, 'subscription($f: ID!) { predictiveMaintenanceAlertCreated(facilityId: $f) { ...A } } fragment A on PredictiveMaintenanceAlert { id maintenanceRecords(first: 1) { totalCount } }',
    { f: plant.facilityId });
  assert.match(viaFragment.errors[0]?.message ?? '', 'field maintenanceRecords is not available in subscription payloads');
  const nested = await firstAnswer(token, 'subscription { predictiveMaintenanceAlertChanged { change alert { id workCenter { id } } } }', {});
  assert.match(nested.errors[0]?.message ?? '', 'field workCenter is not available');
});

test('a subscription without a token is refused with a message naming the tenant_id claim', async () => {
  const got = await firstAnswer(null, 'subscription($w: ID!) { equipmentEventTriggered(workCenterId: $w) { id } }', { w: plant.workCenterId });
  assert.equal(got.events, []);
  assert.ok(got.errors.length, 'refused');
  // Refused at subscribe (this plugin) or already at connect (the WebSocket server): either names the token.
  assert.match(JSON.stringify(got.errors), /tenant_id|token/i);
});

// Cost ----------------------------------------------------------------------------------------------

/**
 * Transactions committed in the database, once every backend has flushed its statistics (at most 10 s after going
 * idle), and the calls of the outbox read and of the held-back live readings flush (one per API instance, not per
 * subscriber: src/server/plugins/live/flush.ts).
 */
async function settledCommits(probe: PgClient): Promise<{ commits: number; payloadCalls: number; flushCalls: number }> {
  await sleep(11_000);
  const { rows } = await probe.query(`select pg_stat_clear_snapshot(), (select xact_commit from pg_stat_database where datname = current_database()) as n,
      (select coalesce(sum(calls), 0) from pg_stat_user_functions where funcname = 'live_event_payload') as payload_calls,
      (select coalesce(sum(calls), 0) from pg_stat_user_functions where funcname = 'flush_live_readings') as flush_calls`);
  return { commits: Number(rows[0].n), payloadCalls: Number(rows[0].payload_calls), flushCalls: Number(rows[0].flush_calls) };
}
const since = (a: Awaited<ReturnType<typeof settledCommits>>, b: Awaited<ReturnType<typeof settledCommits>>) =>
  ({ commits: b.commits - a.commits, payloadCalls: b.payloadCalls - a.payloadCalls, flushCalls: b.flushCalls - a.flushCalls });

test('200 subscribers on one instance get each event once, for at most one database query per event (outbox fetched once)', async () => {
  const probe = new PgClient({ connectionString: db.url });
  await probe.connect();
  try {
    // The same writes, first with nobody listening, then with 200 subscribers of each kind.
    let second = Math.floor(Date.now() / 1000) * 1000 - 60_000;
    const writes = async () => {
      second += 5000; // one reading each time, past the live-readings interval of the previous
      await storeReadings([{ deviceId: plant.deviceId, sensorType: 'VIBRATION', value: 1.25, unit: 'mm/s', time: new Date(second) }]);
      // An alert too big for one NOTIFY (a 9,000-character description): it goes through the outbox.
      const mode = `BIG_${randomUUID().slice(0, 8)}`;
      return insertAlert({ failureMode: mode, severity: 'HIGH', urgency: 'SOON', description: 'x'.repeat(9000) });
    };
    // A first write warms the connections (staging tables, partitions) so that both measured writes cost the same.
    await writes();
    const before0 = await settledCommits(probe);
    await writes();
    const after0 = await settledCommits(probe);

    const clients = Array.from({ length: 10 }, (_, i) => new Live(api.token('iot_analyst', plant.tenantId, `dash-${i}`)));
    const readings: Got[] = [];
    const alerts: Got[] = [];
    for (const c of clients) {
      for (let k = 0; k < 10; k++) {
        readings.push(c.on(`subscription($d: ID!) { sensorReadingUpdated(iotDeviceId: $d) { readingValue } }`, { d: plant.deviceId }));
        alerts.push(c.on(`subscription($f: ID!) { predictiveMaintenanceAlertCreated(facilityId: $f) { id description } }`, { f: plant.facilityId }));
      }
    }
    await sleep(LISTEN_SETTLE_MS * 4);
    const before1 = await settledCommits(probe);
    const started = Date.now();
    const alertId = await writes();
    await waitFor(() => readings.every((g) => g.events.length >= 1) && alerts.every((g) => g.events.length >= 1), 10_000, 'every subscriber\'s events');
    const deliveredMs = Date.now() - started;
    await sleep(QUIET_MS);
    const after1 = await settledCommits(probe);
    for (const c of clients) await c.close();

    const all = [...readings, ...alerts];
    assert.equal(all.filter((g) => g.errors.length).map((g) => g.errors), [], 'no subscriber refused');
    assert.ok(readings.every((g) => g.events.length === 1 && g.events[0].readingValue === 1.25), 'each reading subscriber: one event');
    assert.ok(alerts.every((g) => g.events.length === 1 && g.events[0].id === alertId && g.events[0].description.length === 9000),
      'each alert subscriber: the whole 9,000-character alert, once');
    const quiet = since(before0, after0);
    const busy = since(before1, after1);
    console.log(`  [subscriptions] ${all.length} subscribers, 2 events: all delivered in ${deliveredMs} ms (includes the writes); `
      + `transactions: ${quiet.commits} without subscribers, ${busy.commits} with them (${busy.flushCalls} of them the instance's live-readings flush); `
      + `live_event_payload calls ${quiet.payloadCalls} -> ${busy.payloadCalls}`);
    assert.is(quiet.payloadCalls, 0, 'nobody listening: the outbox is not read');
    assert.is(busy.payloadCalls, 1, 'the outbox payload is fetched once for 100 subscribers');
    // The outbox fetch is the one query of the two events (the reading costs none), and live_event_payload was called
    // once (above). The database-wide count also sees what runs beside the API: pg-pubsub's keep-alive `select 1`
    // (every 25 s), autovacuum, TimescaleDB's scheduler on tier 1 (CI saw 4, and once 38); so up to 100 are
    // allowed. A query per subscriber would be 100 per event, 200 for the two. The instance's flush of held-back
    // live readings (one or two runs after the batch, for all its subscribers together; a second if a stats flush
    // lands late) is counted apart. It ran 4 times
    // while the flush remembered a batch seen by an earlier test's subscribers (fixed: forgotten when nobody watches).
    assert.ok(busy.flushCalls <= 2, `the live-readings flush ran ${busy.flushCalls} times for one batch`);
    assert.ok(busy.commits - busy.flushCalls - quiet.commits <= 100,
      `the API ran ${busy.commits - busy.flushCalls - quiet.commits} transactions (besides the flush) for 2 events to 200 subscribers`);
  } finally {
    await probe.end();
  }
});

test.run();

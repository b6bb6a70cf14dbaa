// The Sparkplug B ingestor against the Sparkplug simulator's edge nodes (mqtt.js clients) on a real
// broker (aedes in process, or TEST_MQTT_URL), storing through the real sink into the suite's
// database. Counts are exact: the simulator keeps every metric value it published and whether the
// broker took it. An observer client on spBv1.0/# sees what went over the broker (rebirth requests).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mqtt, { MqttClient } from 'mqtt';
import { get as sparkplugPayload } from 'sparkplug-payload';
import { org } from 'sparkplug-payload/lib/sparkplugPayloadProto';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { RegistryCache } from '../../src/ingest/registry';
import { ReadingSink } from '../../src/ingest/sink';
import { SparkplugIngestor } from '../../src/ingest/sparkplug/ingestor';
import { EdgeNodeState } from '../../src/ingest/sparkplug/node-state';
import { toNumber } from '../../src/ingest/sparkplug/payload';
import { parseSparkplugTopic } from '../../src/ingest/sparkplug/topic';
import { DEMO_FACILITIES, seedDemoPlant } from '../../src/sim/demo-plant';
import { registerSparkplugDemoPlant, SparkplugPlant } from '../../src/sim/sparkplug-node';
import { testBroker } from '../helpers/broker';
import { createTestDatabase, seedSmallPlant, TestDatabase } from '../helpers/db';
import { sleep, waitFor } from '../helpers/wait';

const test = suite('ingest: Sparkplug B from the simulator edge nodes');
const codec = sparkplugPayload('spBv1.0')!;
const Proto = org.eclipse.tahu.protobuf.Payload;

let db: TestDatabase;
let plant: Awaited<ReturnType<typeof seedSmallPlant>>;
let broker: Awaited<ReturnType<typeof testBroker>>;
let registry: RegistryCache;
let sink: ReadingSink;
let ingestor: SparkplugIngestor;
let sim: SparkplugPlant;
let observer: MqttClient;
let dir: string;
const seen: { topic: string; payload: Buffer }[] = [];
const devices: Record<string, string> = {};
const CLIENT_ID = `iot-sparkplug-test-${process.pid}`;

// The first Chicago press as one edge node CHI/PRES-01 with devices CHI-PRES-01-SENS and CHI-PRES-01-CNT.
const FACILITY = { ...DEMO_FACILITIES[0], workCenters: [DEMO_FACILITIES[0].workCenters[0]] };
const SENS = 'CHI-PRES-01-SENS';
const CNT = 'CHI-PRES-01-CNT';

async function addDevice(code: string, sparkplug: Record<string, string>, channels: [string, string, string][]): Promise<string> {
  const d = await db.pool.query<{ id: string }>(
    `insert into iot.iot_devices (tenant_id, work_center_id, device_code, device_type, connection_type, connection_config)
     values ($1, $2, $3, 'SENSOR', 'MQTT', $4) returning id`, [plant.tenantId, plant.workCenterId, code, { sparkplug }]);
  for (const [type, unit, address] of channels) {
    await db.pool.query(`insert into iot.device_channels (tenant_id, device_id, sensor_type, unit, protocol_address) values ($1, $2, $3, $4, $5)`,
      [plant.tenantId, d.rows[0].id, type, unit, address]);
  }
  devices[code] = d.rows[0].id;
  return d.rows[0].id;
}

type Row = { sensor_type: string; time: Date; value: number; quality: string; metadata: Record<string, unknown> | null };
const rows = async (deviceId: string, since = new Date(0)) => (await db.pool.query<Row>(
  `select sensor_type, time, value, quality, metadata from iot_private.sensor_readings where device_id = $1 and time >= $2 order by time, sensor_type`,
  [deviceId, since])).rows;
const events = async (deviceId: string, code: string) =>
  (await db.pool.query(`select event_type, severity, event_description from iot.equipment_events where iot_device_id = $1 and event_code = $2`, [deviceId, code])).rows;
const deadLetters = async (like: string) =>
  (await db.pool.query<{ reason: string; topic: string }>(`select reason, topic from iot_private.ingest_dead_letters where reason like $1 order by id`, [like])).rows;
const rebirthRequests = (edgeNode: string) => seen.filter((m) => m.topic === `spBv1.0/CHI/NCMD/${edgeNode}` || m.topic === `spBv1.0/LAB/NCMD/${edgeNode}`)
  .filter((m) => codec.decodePayload(m.payload).metrics?.some((x) => x.name === 'Node Control/Rebirth' && x.value === true));
const key = (sensor: string, t: Date) => `${sensor}@${t.toISOString()}`;
const SENSOR_OF: Record<string, string> = {
  'Process/Temperature': 'TEMPERATURE', 'Process/Vibration': 'VIBRATION', 'Process/Pressure': 'PRESSURE', 'Process/Speed': 'SPEED',
  'Process/Count': 'COUNT', 'Process/Humidity': 'HUMIDITY',
};
/** What the simulator published (and the broker took) for a device since `since`, keyed like rows. */
const produced = (deviceId: string, since: Date, mapped: string[]) => new Map(sim.produced
  .filter((p) => p.deviceId === deviceId && p.sent && p.time >= since && mapped.includes(p.metric))
  .map((p) => [key(SENSOR_OF[p.metric], p.time), p.value]));

function newIngestor(): SparkplugIngestor {
  sink = new ReadingSink(db.pool, { batchSize: 1000, maxWaitMs: 20, bufferMax: 10_000 });
  return new SparkplugIngestor({ brokerUrl: broker.url, clientId: CLIENT_ID, stateDir: join(dir, 'sparkplug'), rebirthIntervalMs: 300, reorderTimeoutMs: 300, hostId: 'iot-test' },
    registry, sink, db.pool);
}

test.before(async () => {
  db = await createTestDatabase('sparkplug');
  plant = await seedSmallPlant(db.pool);
  broker = await testBroker();
  dir = mkdtempSync(join(tmpdir(), 'iot-sparkplug-'));
  await addDevice('SP-SENS', { groupId: 'CHI', edgeNodeId: 'PRES-01', deviceId: SENS }, [
    ['TEMPERATURE', '°F', 'Process/Temperature'], ['VIBRATION', 'mm/s', 'Process/Vibration'], ['PRESSURE', 'PSI', 'Process/Pressure'],
    ['HUMIDITY', '%', 'Process/Humidity']]);
  // Process/Count has no channel: reported at each DBIRTH, not at each DDATA.
  await addDevice('SP-CNT', { groupId: 'CHI', edgeNodeId: 'PRES-01', deviceId: CNT }, [['SPEED', 'sheets/h', 'Process/Speed']]);
  // A hand-driven edge node's own metrics (no deviceId).
  await addDevice('SP-LAB', { groupId: 'LAB', edgeNodeId: 'HAND-1' }, [['PRESSURE', 'PSI', 'Lab/Pressure'], ['COUNT', 'units', 'Lab/Count'],
    ['TEMPERATURE', '°F', 'Lab/Temperature']]);
  observer = await mqtt.connectAsync(broker.url, { clientId: `observer-${process.pid}` });
  observer.on('message', (topic, payload) => seen.push({ topic, payload }));
  await observer.subscribeAsync('spBv1.0/#', { qos: 1 });
  registry = new RegistryCache(db.pool, 0);
  await registry.start();
  ingestor = newIngestor();
  await ingestor.start();
  sim = new SparkplugPlant({ brokerUrl: broker.url, facilities: [FACILITY], intervalMs: 100, dataQos: 1 });
  console.log(`  [sparkplug] broker ${broker.kind} ${broker.url}, tier ${db.tier}`);
});

test.after(async () => {
  await sim?.stop().catch(() => undefined);
  await ingestor?.stop();
  await sink?.close();
  await registry?.stop();
  await observer?.endAsync();
  await broker?.stop();
  await db?.drop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

test('registry: connection_config.sparkplug is checked (IOT01) and one active device per Sparkplug identity', async () => {
  const insert = (code: string, type: string, config: unknown) => db.pool.query(
    `insert into iot.iot_devices (tenant_id, work_center_id, device_code, device_type, connection_type, connection_config)
     values ($1, $2, $3, 'SENSOR', $4, $5)`, [plant.tenantId, plant.workCenterId, code, type, config]);
  const refused = async (p: Promise<unknown>) => p.then(() => {
    throw new Error('accepted');
  }, (e) => e as { code: string; message: string });
  let e = await refused(insert('BAD-1', 'MQTT', { sparkplug: { groupId: 'CHI' } }));
  assert.is(e.code, 'IOT01');
  assert.match(e.message, /sparkplug\.edgeNodeId must be a non-empty string/);
  e = await refused(insert('BAD-2', 'MQTT', { sparkplug: { groupId: 'CHI', edgeNodeId: 'A/B' } }));
  assert.match(e.message, /edgeNodeId must be a non-empty string without \/, \+ or #/);
  e = await refused(insert('BAD-3', 'MODBUS', { host: 'plc', sparkplug: { groupId: 'CHI', edgeNodeId: 'X' } }));
  assert.match(e.message, /only for MQTT devices/);
  e = await refused(insert('DUP-1', 'MQTT', { sparkplug: { groupId: 'CHI', edgeNodeId: 'PRES-01', deviceId: SENS } }));
  assert.is(e.code, '23505', 'a second active device for CHI/PRES-01/CHI-PRES-01-SENS');
  assert.match(e.message, /iot_devices_sparkplug_identity_key/);
});

test('topics: node, device and STATE topics parse; others are named as wrong', () => {
  assert.equal(parseSparkplugTopic('spBv1.0/CHI/DDATA/PRES-01/CHI-PRES-01-SENS'),
    { messageType: 'DDATA', groupId: 'CHI', edgeNodeId: 'PRES-01', deviceId: 'CHI-PRES-01-SENS' });
  assert.equal(parseSparkplugTopic('spBv1.0/CHI/NBIRTH/PRES-01'), { messageType: 'NBIRTH', groupId: 'CHI', edgeNodeId: 'PRES-01' });
  assert.equal(parseSparkplugTopic('spBv1.0/STATE/scada-1'), { messageType: 'STATE', hostId: 'scada-1' });
  assert.match((parseSparkplugTopic('spBv1.0/CHI/DDATA/PRES-01') as { problem: string }).problem, /DDATA topic is spBv1.0\/<group>\/DDATA\/<edge node>\/<device>/);
  assert.match((parseSparkplugTopic('spBv1.0/CHI/XDATA/PRES-01') as { problem: string }).problem, /not a Sparkplug message type/);
});

test('sequence numbers: a late message within the reorder timeout is no gap; a missing one is, once, after it; 255 wraps to 0', () => {
  const s = new EdgeNodeState('G', 'N');
  const feed = (seqs: number[], at: number) => seqs.map((q) => s.checkSeq(q, at));
  assert.equal(feed([254, 255, 0, 2, 1, 3], 1000), ['in-order', 'in-order', 'in-order', 'ahead', 'in-order', 'in-order']);
  assert.is(s.overdueGap(5000, 300), undefined, 'reordered, nothing missing');
  assert.equal(feed([3, 7, 8], 6000), ['late', 'ahead', 'ahead']);
  assert.is(s.overdueGap(6200, 300), undefined, 'not yet overdue');
  assert.equal(s.overdueGap(6300, 300), { expected: 4, received: [7, 8] });
  assert.is(s.overdueGap(9000, 300), undefined, 'counted once');
  assert.equal(feed([9], 9000), ['in-order'], 'the sequence goes on after what arrived');
});

test('births then alias-only data: every value stored once at its metric timestamp; an unmapped metric is reported per birth', async () => {
  const since = new Date();
  await sim.start();
  await waitFor(() => seen.filter((m) => m.topic === `spBv1.0/CHI/DDATA/PRES-01/${SENS}`).length >= 20, 15_000, '20 DDATA per device');
  await sim.pause();
  await sleep(300);
  // What went over the broker: DDATA metrics carry an alias and a value, no name and no datatype.
  const ddata = seen.filter((m) => m.topic === `spBv1.0/CHI/DDATA/PRES-01/${SENS}`);
  assert.ok(ddata.length >= 20);
  for (const m of Proto.decode(ddata[0].payload).metrics) {
    assert.ok(!m.name && toNumber(m.alias as number)! > 0 && !m.datatype, 'alias only, datatype left to the birth');
  }
  const expectSens = produced(SENS, since, ['Process/Temperature', 'Process/Vibration', 'Process/Pressure']);
  const expectCnt = produced(CNT, since, ['Process/Speed']);
  await waitFor(async () => (await rows(devices['SP-SENS'], since)).length >= expectSens.size && (await rows(devices['SP-CNT'], since)).length >= expectCnt.size,
    10_000, 'all values stored');
  await sleep(200);
  for (const [code, expected] of [['SP-SENS', expectSens], ['SP-CNT', expectCnt]] as const) {
    const stored = await rows(devices[code], since);
    assert.is(stored.length, expected.size, `${code}: exactly the values published`);
    for (const r of stored) {
      assert.is(r.value, expected.get(key(r.sensor_type, r.time)), `${code} ${key(r.sensor_type, r.time)} at its metric timestamp`);
      assert.is(r.quality, 'GOOD');
    }
  }
  assert.is(ingestor.stats.unknownAliases, 0);
  assert.is(ingestor.stats.seqGaps, 0);
  await waitFor(async () => (await deadLetters('%has no active channel%')).length, 5000, 'the unmapped-metric dead letter');
  const unmapped = await deadLetters('%has no active channel%');
  assert.is(unmapped.length, 1, 'one dead letter (at the DBIRTH), none per DDATA');
  assert.match(unmapped[0].reason, /group "CHI" edge node "PRES-01" device "CHI-PRES-01-CNT" DBIRTH: device SP-CNT has no active channel with protocol_address "Process\/Count"/);
  console.log(`  [sparkplug] ${expectSens.size + expectCnt.size} values published and stored once, alias-only DDATA decoded by the births`);
});

test('hand-made payloads: node-level metrics, is_null is not a reading, Quality 0 is BAD, Int64 signed, datatype only in the birth', async () => {
  const t0 = Date.now() - 5000;
  const publish = (type: string, payload: Uint8Array) => observer.publishAsync(`spBv1.0/LAB/${type}/HAND-1`, Buffer.from(payload), { qos: 1 });
  await publish('NBIRTH', codec.encodePayload({ timestamp: t0, seq: 0, metrics: [
    { name: 'bdSeq', type: 'UInt64', value: 0 },
    { name: 'Lab/Pressure', alias: 1, type: 'Double', value: 101.5, timestamp: t0 },
    { name: 'Lab/Count', alias: 2, type: 'Int64', value: 7, timestamp: t0 },
    { name: 'Lab/Temperature', alias: 3, type: 'Int16', value: null, timestamp: t0 },
    { name: 'Lab/Label', alias: 4, type: 'String', value: 'batch 7', timestamp: t0 },
  ] }));
  const data = Proto.encode({ timestamp: t0 + 1000, seq: 1, metrics: [
    { alias: 1, timestamp: t0 + 1000, doubleValue: 99.25, properties: { keys: ['Quality'], values: [{ type: 3, intValue: 0 }] } },
    { alias: 1, timestamp: t0 + 2000, isNull: true },
    { alias: 2, timestamp: t0 + 1000, longValue: -5 },
    { alias: 3, timestamp: t0 + 1000, intValue: 0xfffe }, // Int16 -2, sign from the birth's datatype
    { alias: 4, timestamp: t0 + 1000, stringValue: 'batch 8' },
  ] }).finish();
  await publish('NDATA', data);
  const id = devices['SP-LAB'];
  await waitFor(async () => (await rows(id)).length >= 5, 10_000, 'the lab node readings');
  await sleep(200);
  const got = (await rows(id)).map((r) => [r.sensor_type, r.time.getTime() - t0, r.value, r.quality, r.metadata]);
  assert.equal(got, [
    ['COUNT', 0, 7, 'GOOD', null],
    ['PRESSURE', 0, 101.5, 'GOOD', null],
    ['COUNT', 1000, -5, 'GOOD', null],
    ['PRESSURE', 1000, 99.25, 'BAD', { sparkplugQuality: 0 }],
    ['TEMPERATURE', 1000, -2, 'GOOD', null],
  ]);
  assert.ok(ingestor.stats.nullMetrics >= 2, 'the null birth value and the null data value');
  const label = await deadLetters('%Lab/Label%');
  assert.is(label.length, 1, 'the text metric without a channel: reported at the birth, not again for the data');
  assert.match(label[0].reason, /group "LAB" edge node "HAND-1" NBIRTH: device SP-LAB has no active channel with protocol_address "Lab\/Label"/);
});

test('unknown device: dead letter naming group, node and device; once registered, its data is stored without a restart', async () => {
  const t0 = Date.now() - 2000;
  const publish = (type: string, seq: number, metrics: unknown[]) => observer.publishAsync(`spBv1.0/LAB/${type}/HAND-1/NEW-DEV`,
    Buffer.from(codec.encodePayload({ timestamp: t0, seq, metrics: metrics as never })), { qos: 1 });
  await publish('DBIRTH', 2, [{ name: 'Lab/Weight', alias: 10, type: 'Double', value: 12.5, timestamp: t0 }]);
  const letter = await waitFor(async () => (await deadLetters('%device "NEW-DEV" DBIRTH: unknown device%'))[0], 5000, 'the unknown-device dead letter');
  assert.match(letter.reason, /group "LAB" edge node "HAND-1" device "NEW-DEV" DBIRTH: unknown device: no active MQTT device with channels has connection_config.sparkplug \{"groupId":"LAB","edgeNodeId":"HAND-1","deviceId":"NEW-DEV"\}/);
  assert.is(letter.topic, 'spBv1.0/LAB/DBIRTH/HAND-1/NEW-DEV');
  const version = registry.version;
  const id = await addDevice('SP-NEW', { groupId: 'LAB', edgeNodeId: 'HAND-1', deviceId: 'NEW-DEV' }, [['WEIGHT', 'kg', 'Lab/Weight']]);
  await waitFor(() => registry.version > version, 5000, 'the registry to reload on its NOTIFY');
  const data = Proto.encode({ timestamp: t0 + 100, seq: 3, metrics: [{ alias: 10, timestamp: t0 + 100, doubleValue: 12.75 }] }).finish();
  await observer.publishAsync('spBv1.0/LAB/DDATA/HAND-1/NEW-DEV', Buffer.from(data), { qos: 1 });
  await waitFor(async () => (await rows(id)).length === 1, 5000, 'the new device\'s reading');
  assert.equal((await rows(id)).map((r) => [r.sensor_type, r.time.getTime() - t0, r.value]), [['WEIGHT', 100, 12.75]],
    'read by alias with the birth seen before the device was registered');
});

test('unknown alias: a rebirth is requested over the broker, the edge node answers, and its data after the rebirth is stored', async () => {
  const node = sim.node('CHI', 'PRES-01');
  const alias = node.addMetric(SENS, { name: 'Process/Humidity', type: 'Double' });
  const before = rebirthRequests('PRES-01').length;
  const answered = node.rebirthsAnswered;
  const t1 = new Date();
  await node.publishData(SENS, { 'Process/Humidity': 45.5 }, t1);
  await waitFor(() => rebirthRequests('PRES-01').length > before, 5000, 'a rebirth request on the broker');
  await waitFor(() => node.rebirthsAnswered > answered, 5000, 'the edge node to answer');
  await waitFor(() => seen.some((m) => m.topic === `spBv1.0/CHI/DBIRTH/PRES-01/${SENS}` &&
    codec.decodePayload(m.payload).metrics?.some((x) => x.name === 'Process/Humidity')), 5000, 'a DBIRTH naming the new metric');
  await sleep(300);
  const t2 = new Date(t1.getTime() + 500);
  await node.publishData(SENS, { 'Process/Humidity': 46.25 }, t2);
  const id = devices['SP-SENS'];
  const humidity = async () => (await rows(id, t1)).filter((r) => r.sensor_type === 'HUMIDITY');
  await waitFor(async () => (await humidity()).some((r) => r.time.getTime() === t2.getTime()), 10_000, 'humidity after the rebirth');
  // The DBIRTH carried the last value too (45.5, at the birth's timestamp); the alias-only value at t1 was not readable.
  const stored = await humidity();
  assert.ok(!stored.some((r) => r.time.getTime() === t1.getTime()), 'the unreadable message is not guessed at');
  assert.ok(stored.some((r) => r.time.getTime() === t2.getTime() && r.value === 46.25));
  assert.ok(ingestor.stats.unknownAliases >= 1);
  const letters = await waitFor(async () => (await deadLetters(`%metric alias ${alias} not in its birth certificate; rebirth requested%`)).length, 5000, 'the alias dead letter');
  assert.is(letters, 1);
  assert.is(rebirthRequests('PRES-01').length - before, 1, 'one request, not one per message');
});

test('sequence gap: detected, counted once, answered with one rebirth; the message itself is still stored', async () => {
  const node = sim.node('CHI', 'PRES-01');
  await sleep(400); // past the rebirth interval of the previous test
  const gaps = ingestor.stats.seqGaps;
  const before = rebirthRequests('PRES-01').length;
  node.skipSeq(3);
  const t = new Date();
  await sim.tick(t);
  await waitFor(() => ingestor.stats.seqGaps > gaps, 5000, 'the gap to be seen');
  await waitFor(() => rebirthRequests('PRES-01').length > before, 5000, 'a rebirth request');
  await sleep(300);
  for (let i = 1; i <= 5; i++) await sim.tick(new Date(t.getTime() + i * 100));
  await sleep(500);
  assert.is(ingestor.stats.seqGaps - gaps, 1, 'one gap, and the rebirth resets the sequence');
  assert.is(rebirthRequests('PRES-01').length - before, 1);
  await waitFor(async () => (await rows(devices['SP-SENS'], t)).filter((r) => r.time.getTime() === t.getTime()).length === 3, 5000,
    'the gapped message stored');
});

test('NDEATH as the will on an abrupt disconnect: one event per device, once; a stale NDEATH is ignored; the rebirth brings it back', async () => {
  const node = sim.node('CHI', 'PRES-01');
  const [sensId, cntId] = [devices['SP-SENS'], devices['SP-CNT']];
  node.dropOff();
  await waitFor(async () => (await events(sensId, 'SPARKPLUG_NDEATH')).length && (await events(cntId, 'SPARKPLUG_NDEATH')).length, 10_000, 'NDEATH events');
  await sleep(500);
  const sensEvents = await events(sensId, 'SPARKPLUG_NDEATH');
  assert.is(sensEvents.length, 1);
  assert.is((await events(cntId, 'SPARKPLUG_NDEATH')).length, 1);
  assert.equal([sensEvents[0].event_type, sensEvents[0].severity], ['ERROR', 'ERROR']);
  assert.match(sensEvents[0].event_description, /edge node CHI\/PRES-01 went offline \(NDEATH/);
  // Back with a new session (bdSeq + 1); then the previous session's NDEATH, delivered late, changes nothing.
  const stale = node.currentBdSeq;
  await node.connect();
  await waitFor(async () => (await events(sensId, 'SPARKPLUG_ONLINE')).length === 1, 5000, 'the online event');
  const staleBefore = ingestor.stats.staleDeaths;
  await observer.publishAsync('spBv1.0/CHI/NDEATH/PRES-01', Buffer.from(codec.encodePayload({ timestamp: Date.now(),
    metrics: [{ name: 'bdSeq', type: 'UInt64', value: stale }] })), { qos: 1 });
  await waitFor(() => ingestor.stats.staleDeaths > staleBefore, 5000, 'the stale NDEATH to be handled');
  assert.is((await events(sensId, 'SPARKPLUG_NDEATH')).length, 1, 'no second event');
  // DDEATH of one device: one event for it alone.
  await node.deviceDeath(CNT);
  await waitFor(async () => (await events(cntId, 'SPARKPLUG_DDEATH')).length === 1, 5000, 'the DDEATH event');
  assert.is((await events(sensId, 'SPARKPLUG_DDEATH')).length, 0);
  await node.deviceRebirth(CNT);
  await waitFor(async () => (await events(cntId, 'SPARKPLUG_ONLINE')).length === 2, 5000, 'the device online again');
});

test('ingestor restart mid-stream (QoS 1, persistent session): nothing lost, no duplicates', async () => {
  await sleep(400);
  const since = new Date(Date.now() + 50);
  sim.resume();
  await sleep(1000);
  await ingestor.stop();
  await sink.close();
  const storedAtStop = (await rows(devices['SP-SENS'], since)).length;
  await sleep(1000); // the edge nodes go on publishing; the broker queues for the session
  ingestor = newIngestor();
  await ingestor.start();
  await sleep(1000);
  await sim.pause();
  const expectSens = produced(SENS, since, ['Process/Temperature', 'Process/Vibration', 'Process/Pressure', 'Process/Humidity']);
  const expectCnt = produced(CNT, since, ['Process/Speed']);
  await waitFor(async () => (await rows(devices['SP-SENS'], since)).length >= expectSens.size, 10_000, 'the queued values stored');
  await sleep(500);
  const sens = await rows(devices['SP-SENS'], since);
  const cnt = await rows(devices['SP-CNT'], since);
  console.log(`  [sparkplug] restart: ${expectSens.size + expectCnt.size} values published in the window, ${storedAtStop} stored before the stop, ` +
    `${sens.length + cnt.length} stored in all, ${sink.stats.duplicates} redelivered duplicates skipped, ${ingestor.stats.unknownAliases} unknown aliases`);
  assert.is(sens.length, expectSens.size, 'every value of the window, once');
  assert.is(cnt.length, expectCnt.size);
  for (const r of sens) assert.is(r.value, expectSens.get(key(r.sensor_type, r.time)));
  assert.ok(storedAtStop < expectSens.size, 'values were published while the ingestor was away');
  assert.is(ingestor.stats.unknownAliases, 0, 'the saved birth certificates read the queued alias-only DDATA');
  assert.is(ingestor.stats.seqGaps, 0, 'queued and live messages interleaved by the broker are no gap');
  // As a Sparkplug primary host: STATE offline at the stop, online again after the start.
  const states = seen.filter((m) => m.topic === 'spBv1.0/STATE/iot-test').map((m) => JSON.parse(m.payload.toString()).online);
  assert.equal(states.slice(-3), [true, false, true]);
});

test('the demo plant speaks Sparkplug: registerSparkplugDemoPlant maps its devices, the simulator\'s values are stored', async () => {
  await db.pool.query(`update iot.iot_devices set is_active = false where device_code in ('SP-SENS', 'SP-CNT')`);
  await seedDemoPlant(db.pool, [FACILITY]);
  assert.is(await registerSparkplugDemoPlant(db.pool, [FACILITY]), 2);
  await registry.reload(); // as its NOTIFY would (that path: the unknown-device test)
  const demo = (await db.pool.query<{ id: string }>(`select id from iot.iot_devices where device_code = $1`, [SENS])).rows[0].id;
  const since = new Date();
  await sim.tick(since);
  await waitFor(async () => (await rows(demo, since)).length === 3, 5000, 'the demo device\'s readings');
  assert.equal((await rows(demo, since)).map((r) => r.sensor_type), ['PRESSURE', 'TEMPERATURE', 'VIBRATION']);
});

test.run();

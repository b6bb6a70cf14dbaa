import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import mqtt, { MqttClient } from 'mqtt';
import { MqttIngestor } from '../../src/ingest/mqtt';
import { RegistryCache } from '../../src/ingest/registry';
import { ReadingSink } from '../../src/ingest/sink';
import { specs } from '../../src/lib/config';
import { publishAsDevice, testBroker } from '../helpers/broker';
import { loadContract } from '../helpers/contract';
import { createTestDatabase, seedSmallPlant, TestDatabase } from '../helpers/db';
import { poolThroughProxy } from '../helpers/proxy';
import { sleep, waitFor } from '../helpers/wait';

const test = suite('ingest: MQTT end to end through a real broker');
let db: TestDatabase;
let plant: Awaited<ReturnType<typeof seedSmallPlant>>;
let broker: Awaited<ReturnType<typeof testBroker>>;
let registry: RegistryCache;
let sink: ReadingSink;
let ingestor: MqttIngestor;
let publisher: MqttClient;
const run = Math.random().toString(36).slice(2, 8); // keeps client ids and topics apart on a shared broker

const TOPIC = (sensor = 'temperature') => `facility/F1/workcenter/PRESS-1/sensor/${sensor}`;
let seedSensorId: string;

const publish = (topic: string, payload: string) => publishAsDevice(broker.url, publisher, topic, payload);

test.before(async () => {
  db = await createTestDatabase('mqtt');
  plant = await seedSmallPlant(db.pool);
  // The seed's equipment: temp-sensor-01 with a TEMPERATURE channel in °F on WC-PRESS-01 of facility F1.
  const w = await db.pool.query<{ id: string }>(
    `insert into iot.work_centers (tenant_id, facility_id, work_center_code, name, work_center_type)
     values ($1, $2, 'WC-PRESS-01', 'Press 01', 'PRESS') returning id`, [plant.tenantId, plant.facilityId]);
  const d = await db.pool.query<{ id: string }>(
    `insert into iot.iot_devices (tenant_id, work_center_id, device_code, device_type) values ($1, $2, 'temp-sensor-01', 'SENSOR') returning id`,
    [plant.tenantId, w.rows[0].id]);
  seedSensorId = d.rows[0].id;
  await db.pool.query(`insert into iot.device_channels (tenant_id, device_id, sensor_type, unit) values ($1, $2, 'TEMPERATURE', '°F')`,
    [plant.tenantId, seedSensorId]);
  broker = await testBroker();
  console.log(`  [mqtt] broker ${broker.kind} ${broker.url}, tier ${db.tier}`);
  registry = new RegistryCache(db.pool, 0);
  await registry.start();
  sink = new ReadingSink(db.pool, { batchSize: 1000, maxWaitMs: 20, bufferMax: 10_000 });
  // Subscribed as the default configuration does (MQTT_TOPICS=facility/#).
  ingestor = new MqttIngestor({ brokerUrl: broker.url, topics: specs.MQTT_TOPICS.default.split(','), qos: 1,
    clientId: `test-ingest-${run}`, maxFutureSeconds: 300 }, registry, sink);
  await ingestor.start();
  publisher = await mqtt.connectAsync(broker.url, { clientId: `test-pub-${run}` });
  await sleep(200); // subscription granted
});
test.after(async () => {
  await publisher.endAsync();
  await ingestor.stop();
  await sink.close();
  await registry.stop();
  await broker.stop();
  await db.drop();
});

const stored = async (where: string, params: unknown[] = []) =>
  Number((await db.pool.query(`select count(*) from iot_private.sensor_readings where ${where}`, params)).rows[0].count);
const deadLetters = async (like: string) =>
  (await db.pool.query(`select reason, payload from iot_private.ingest_dead_letters where reason like $1`, [like])).rows;

test('a payload published twice at QoS 1 is stored exactly once, its sensor type (any case) stored upper case', async () => {
  const payload = JSON.stringify({ deviceId: plant.deviceCode, sensorType: 'temperature', value: 72.5, unit: '°F',
    timestamp: '2026-03-01T08:00:00.000Z', quality: 'GOOD' });
  const how = await publish(TOPIC(), payload);
  await publish(TOPIC(), payload);
  console.log(`  [mqtt] published with ${how}`);
  await waitFor(() => sink.stats.duplicates >= 1, 5000, 'the duplicate to be seen');
  assert.is(await stored(`time = '2026-03-01T08:00:00Z' and device_id = $1`, [plant.deviceId]), 1);
  const row = (await db.pool.query(`select value, unit, quality, sensor_type, metadata from iot_private.sensor_readings where time = '2026-03-01T08:00:00Z'`)).rows[0];
  assert.equal(row, { value: 72.5, unit: '°F', quality: 'GOOD', sensor_type: 'TEMPERATURE', metadata: null });
});

// The seed's two examples share a timestamp and land on the same channel: the second would be a
// duplicate of the first, so the first is removed once checked.
const contract = loadContract();
if (!contract.contract) console.log(`  [mqtt] skipping the seed's example payloads: ${contract.reason}`);
(contract.contract ? test : test.skip)("each of the seed's example payloads, published on its topic, stores exactly one reading", async () => {
  const { topic_examples: topics, payload_examples: payloads } = contract.contract!.mqtt;
  const topic = topics.find((t) => t.endsWith('/sensor/TEMPERATURE'))!;
  assert.is(topic, 'facility/F1/workcenter/WC-PRESS-01/sensor/TEMPERATURE');
  const expected = [
    { time: new Date('2026-01-10T12:00:00Z'), value: 72.5, unit: '°F', quality: 'GOOD', sensor_type: 'TEMPERATURE', metadata: { quality: 'VERIFIED' } },
    { time: new Date('2026-01-10T12:00:00Z'), value: 70, unit: '°F', quality: 'GOOD', sensor_type: 'TEMPERATURE', metadata: null },
  ];
  const rows = () => db.pool.query(
    `select time, value, unit, quality, sensor_type, metadata from iot_private.sensor_readings where device_id = $1`, [seedSensorId]);
  for (const [i, payload] of payloads.entries()) {
    const stats = { ...sink.stats };
    const how = await publish(topic, JSON.stringify(payload));
    await waitFor(() => sink.stats.stored + sink.stats.duplicates + sink.stats.deadLetters > stats.stored + stats.duplicates + stats.deadLetters,
      5000, `example ${i + 1} to be handled`);
    assert.equal((await rows()).rows, [expected[i]], `example ${i + 1} (published with ${how})`);
    assert.equal(await deadLetters(`%temp-sensor-01%`), [], 'no dead letter');
    assert.equal((await db.pool.query(`select reason from iot_private.ingest_dead_letters where topic = $1`, [topic])).rows, []);
    await db.pool.query(`delete from iot_private.sensor_readings where device_id = $1`, [seedSensorId]);
  }
});

test('a reading in another unit of the quantity is converted to the channel\'s unit, the original kept in metadata', async () => {
  await publish(TOPIC('Temperature'), JSON.stringify({ deviceId: plant.deviceCode, value: 22.5, unit: '°C', timestamp: '2026-03-02T00:00:00Z' }));
  await publish(TOPIC('PRESSURE'), JSON.stringify({ deviceId: plant.deviceCode, value: 2, unit: 'bar', timestamp: '2026-03-02T00:00:00Z',
    quality: 'GoodClamped', line: 'L2' }));
  await publish(TOPIC('PRESSURE'), JSON.stringify({ deviceId: plant.deviceCode, value: 2, unit: 'kg', timestamp: '2026-03-02T00:00:01Z' }));
  await waitFor(async () => (await stored(`time = '2026-03-02T00:00:00Z'`)) === 2, 5000, 'two converted readings');
  const { rows } = await db.pool.query(
    `select sensor_type, value, unit, quality, metadata from iot_private.sensor_readings where time = '2026-03-02T00:00:00Z' order by sensor_type`);
  assert.equal(rows.map((r) => ({ ...r, value: Number(r.value.toPrecision(10)) })), [
    { sensor_type: 'PRESSURE', value: 29.00754755, unit: 'PSI', quality: 'GOOD',
      metadata: { line: 'L2', quality: 'GoodClamped', originalValue: 2, originalUnit: 'bar' } },
    { sensor_type: 'TEMPERATURE', value: 72.5, unit: '°F', quality: 'GOOD', metadata: { originalValue: 22.5, originalUnit: '°C' } },
  ]);
  await waitFor(async () => (await deadLetters('%unit "kg" (mass) cannot be converted to the channel\'s unit "PSI" (pressure)%')).length === 1,
    5000, 'the kg reading to be refused');
});

test('deviceId may be left out when the topic names exactly one channel; timestamp defaults to arrival', async () => {
  const before = Date.now();
  await publisher.publishAsync(TOPIC('vibration'), JSON.stringify({ value: 1.25 }), { qos: 1 });
  await waitFor(async () => (await stored(`sensor_type = 'VIBRATION' and value = 1.25`)) === 1, 5000, 'the reading');
  const t = (await db.pool.query(`select time from iot_private.sensor_readings where sensor_type = 'VIBRATION' and value = 1.25`)).rows[0].time;
  assert.ok(t.getTime() >= before - 1000 && t.getTime() <= Date.now() + 1000);
});

test('malformed payloads become dead letters with reasons; good readings beside them are stored', async () => {
  const t0 = Date.parse('2026-04-01T00:00:00Z');
  const good = (i: number) => ({ deviceId: plant.deviceCode, value: 60 + i, timestamp: new Date(t0 + i * 1000).toISOString() });
  const messages: [string, string][] = [
    [TOPIC(), JSON.stringify(good(1))],
    [TOPIC(), '{"deviceId": "F1-DEV-1", "value": 61,'],                                  // bad JSON
    [TOPIC(), JSON.stringify({ deviceId: plant.deviceCode })],                            // no value
    [TOPIC(), JSON.stringify({ deviceId: plant.deviceCode, value: 'hot' })],              // not a number
    [TOPIC(), '{"deviceId": "F1-DEV-1", "value": 1e999}'],                                // Infinity
    [TOPIC(), JSON.stringify({ deviceId: 'NOPE-9', value: 1 })],                          // unknown device
    [TOPIC(), JSON.stringify({ deviceId: plant.deviceCode, value: 1, timestamp: '2099-01-01T00:00:00Z' })], // future
    [TOPIC(), JSON.stringify({ deviceId: plant.deviceCode, value: 1, unit: 'kg' })],      // no conversion to °F
    [TOPIC(), JSON.stringify({ ...good(7), quality: 'SHINY' })],                          // unknown word: stored UNCERTAIN
    ['facility/NOWHERE/workcenter/X/sensor/temperature', JSON.stringify(good(2))],        // unknown facility
    ['plant/oops', JSON.stringify(good(3))],                                              // not ours: not subscribed
    [TOPIC() + '/extra', JSON.stringify(good(8))],                                        // a level too many
    [TOPIC(), JSON.stringify([good(4), { deviceId: plant.deviceCode, value: null }, good(5)])], // array, one bad item
    [TOPIC(), JSON.stringify(good(6))],
  ];
  await publisher.subscribeAsync('plant/#'); // so 'plant/oops' has the ingestor as its only consumer
  await publisher.unsubscribeAsync('plant/#');
  for (const [topic, payload] of messages) await publisher.publishAsync(topic, payload, { qos: 1 });
  await waitFor(async () => (await stored(`time >= '2026-04-01' and time < '2026-04-02'`)) === 5, 5000, 'five good readings');
  const reasons = (await db.pool.query(`select reason from iot_private.ingest_dead_letters where source = 'MQTT' order by id`)).rows.map((r) => r.reason);
  for (const expected of ['not valid JSON', 'value is missing', 'value "hot" must be a number', 'value 1e999 is beyond what a 64-bit float holds',
    `topic "${TOPIC()}/extra" does not match facility/{facilityCode}/workcenter/{workCenterCode}/sensor/{sensorType}`,
    'unknown device "NOPE-9"', 'in the future', 'unit "kg" (mass) cannot be converted', 'unknown facility "NOWHERE"',
    'item 1: value is missing']) {
    assert.ok(reasons.some((r) => r.includes(expected)), `no dead letter saying ${JSON.stringify(expected)} in ${JSON.stringify(reasons)}`);
  }
  const whole = await deadLetters('%not valid JSON%');
  assert.is(whole[0].payload, '{"deviceId": "F1-DEV-1", "value": 61,', 'the raw payload is kept');
  const shiny = (await db.pool.query(`select quality, metadata from iot_private.sensor_readings where time = '2026-04-01T00:00:07Z'`)).rows;
  assert.equal(shiny, [{ quality: 'UNCERTAIN', metadata: { quality: 'SHINY' } }], 'an unknown quality word is stored as UNCERTAIN, the word kept');
});

test('a device registered while the ingestor runs is recognised without a restart', async () => {
  const d = await db.pool.query<{ id: string }>(
    `insert into iot.iot_devices (tenant_id, work_center_id, device_code) values ($1, $2, 'F1-NEW-7') returning id`,
    [plant.tenantId, plant.workCenterId]);
  await db.pool.query(`insert into iot.device_channels (tenant_id, device_id, sensor_type, unit) values ($1, $2, 'SPEED', 'sheets/h')`,
    [plant.tenantId, d.rows[0].id]);
  await publisher.publishAsync(TOPIC('speed'), JSON.stringify({ deviceId: 'F1-NEW-7', value: 11000 }), { qos: 1 });
  await waitFor(async () => (await stored(`device_id = $1`, [d.rows[0].id])) === 1, 5000, 'the new device reading');
});

test('database down: ingest buffers within its bound, stops reading the broker, and loses nothing', async () => {
  const { proxy, pool } = await poolThroughProxy(db.url, { max: 3, connectionTimeoutMillis: 1000 });
  const reg = new RegistryCache(pool);
  await reg.start();
  const smallSink = new ReadingSink(pool, { batchSize: 50, maxWaitMs: 10, bufferMax: 100 });
  const clientId = `test-ingest-outage-${run}`;
  const outageIngest = new MqttIngestor({ brokerUrl: broker.url, topics: ['facility/F1/workcenter/PRESS-1/sensor/pressure'], qos: 1,
    clientId, maxFutureSeconds: 300 }, reg, smallSink);
  await outageIngest.start();
  await sleep(200);
  await proxy.down();
  const t0 = Date.parse('2026-05-01T00:00:00Z');
  const n = 600; // below mosquitto's default max_queued_messages (1000), which CI runs with
  for (let i = 0; i < n; i++) {
    await publisher.publishAsync(TOPIC('pressure'), JSON.stringify({ deviceId: plant.deviceCode, value: 100 + (i % 7),
      timestamp: new Date(t0 + i * 1000).toISOString() }), { qos: 1 });
  }
  await waitFor(() => outageIngest.stats.paused, 5000, 'the ingestor to pause');
  assert.ok(smallSink.buffered <= 100 + 50, `buffer bounded: ${smallSink.buffered}`);
  assert.ok(outageIngest.stats.messages < n, `broker reads stopped at ${outageIngest.stats.messages} of ${n}`);
  await proxy.up();
  await waitFor(async () => (await stored(`time >= '2026-05-01' and time < '2026-05-02'`)) === n, 20_000, `all ${n} readings`);
  await outageIngest.stop();
  await smallSink.close();
  await reg.stop();
  await pool.end();
  await proxy.down();
});

test.run();

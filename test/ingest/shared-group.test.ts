// MQTT_SHARED_GROUP: two ingest processes (here two ingestors, each with its own sink and
// registry, as two `iot ingest mqtt` would run) share one subscription through MQTT 5 $share, so
// ingest scales by adding processes. Needs a broker with shared subscriptions (TEST_MQTT_URL =
// mosquitto, .ci/start-mosquitto.sh); aedes has none, so there the tests are skipped, saying so.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import mqtt, { MqttClient } from 'mqtt';
import { MqttIngestor } from '../../src/ingest/mqtt';
import { RegistryCache } from '../../src/ingest/registry';
import { ReadingSink } from '../../src/ingest/sink';
import { testBroker } from '../helpers/broker';
import { createTestDatabase, seedSmallPlant, TestDatabase } from '../helpers/db';
import { sleep, waitFor } from '../helpers/wait';

const test = suite('ingest: two ingestors share one MQTT subscription ($share)');
let db: TestDatabase;
let plant: Awaited<ReturnType<typeof seedSmallPlant>>;
let broker: Awaited<ReturnType<typeof testBroker>>;
let publisher: MqttClient | undefined;
const run = Math.random().toString(36).slice(2, 8); // client ids, group and topics apart on a shared broker
const GROUP = `ingest-${run}`;
const TOPIC = `facility/F1/workcenter/PRESS-1/sensor/temperature`;
const SHARED = !!process.env.TEST_MQTT_URL;
const WHY = 'needs an MQTT 5 broker with shared subscriptions (TEST_MQTT_URL=mqtt://127.0.0.1:1884 from .ci/start-mosquitto.sh); aedes has no $share';

interface Member { registry: RegistryCache; sink: ReadingSink; ingestor: MqttIngestor }
async function member(name: string): Promise<Member> {
  const registry = new RegistryCache(db.pool, 0);
  await registry.start();
  const sink = new ReadingSink(db.pool, { batchSize: 500, maxWaitMs: 20, bufferMax: 10_000 });
  const ingestor = new MqttIngestor({ brokerUrl: broker.url, topics: ['facility/#'], qos: 1, clientId: `test-shared-${run}-${name}`,
    sharedGroup: GROUP, maxFutureSeconds: 300 }, registry, sink);
  await ingestor.start();
  return { registry, sink, ingestor };
}
async function stop(m: Member): Promise<void> {
  await m.ingestor.stop();
  await m.sink.close();
  await m.registry.stop();
}

// Readings of one message each 1 ms apart; messages 10 ms apart in reading time, all in the past minute.
const base = Date.now() - 60_000;
let published = 0;
async function publish(messages: number): Promise<void> {
  for (let i = 0; i < messages; i++, published++) {
    const t0 = base + published * 10;
    const payload = JSON.stringify(Array.from({ length: 5 }, (_x, k) => ({
      deviceId: plant.deviceCode, value: 65 + ((published + k) % 7) / 10, timestamp: new Date(t0 + k).toISOString() })));
    await publisher!.publishAsync(TOPIC, payload, { qos: 1 });
  }
}
const storedRows = async () => Number((await db.pool.query(
  `select count(*) as n from iot_private.sensor_readings where device_id = $1`, [plant.deviceId])).rows[0].n);
const distinctRows = async () => Number((await db.pool.query(
  `select count(distinct (device_id, sensor_type, time)) as n from iot_private.sensor_readings where device_id = $1`, [plant.deviceId])).rows[0].n);

test.before(async () => {
  db = await createTestDatabase('shared_group');
  plant = await seedSmallPlant(db.pool);
  broker = await testBroker();
  console.log(`  [shared-group] broker ${broker.kind} ${broker.url}, tier ${db.tier}`);
  if (SHARED) publisher = await mqtt.connectAsync(broker.url, { clientId: `test-shared-pub-${run}` });
});
test.after(async () => {
  await publisher?.endAsync();
  await broker.stop();
  await db.drop();
});

const shared = (name: string, fn: () => Promise<void>) => {
  if (SHARED) return test(name, fn);
  console.log(`  [skip] ${name}: ${WHY}`);
  test.skip(name, () => undefined);
};

shared('two ingestors in one group: every message goes to one of them, each reading stored once, none lost', async () => {
  const a = await member('a');
  const b = await member('b');
  try {
    await sleep(300); // both subscriptions granted
    await publish(400);
    const total = published * 5;
    await waitFor(async () => (await storedRows()) >= total, 20_000, `${total} readings stored`);
    await a.sink.flush();
    await b.sink.flush();
    assert.is(await storedRows(), total, 'each reading stored once');
    assert.is(await distinctRows(), total);
    // Each message went to exactly one member: the sinks stored all between them and saw no duplicate.
    assert.is(a.ingestor.stats.messages + b.ingestor.stats.messages, 400, 'messages received by the group');
    assert.ok(a.ingestor.stats.messages > 0 && b.ingestor.stats.messages > 0,
      `both members received messages (a ${a.ingestor.stats.messages}, b ${b.ingestor.stats.messages})`);
    assert.is(a.sink.stats.stored + b.sink.stats.stored, total);
    assert.is(a.sink.stats.duplicates + b.sink.stats.duplicates, 0, 'no message delivered to both');
    assert.is(a.sink.stats.deadLetters + b.sink.stats.deadLetters, 0);
  } finally {
    await stop(a);
    await stop(b);
  }
});

shared('one member stops while messages keep coming and comes back: nothing lost, nothing stored twice', async () => {
  const before = await storedRows();
  const from = published;
  let a = await member('a');
  const b = await member('b');
  try {
    await sleep(300);
    await publish(200);
    await stop(a); // its persistent session stays in the group; the broker queues its share meanwhile
    await publish(200);
    a = await member('a');
    await publish(100);
    const total = before + (published - from) * 5;
    await waitFor(async () => (await storedRows()) >= total, 20_000, `${total} readings stored`);
    await sleep(300); // a redelivery would show up now
    assert.is(await storedRows(), total, 'every reading published is stored');
    assert.is(await distinctRows(), total, 'and none twice');
  } finally {
    await stop(a);
    await stop(b);
  }
});

test.run();

import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { Pool } from 'pg';
import type { Reading } from '../../src/ingest/reading';
import { ReadingSink } from '../../src/ingest/sink';
import { createTestDatabase, seedSmallPlant, TestDatabase } from '../helpers/db';
import { FlakyProxy, urlThrough } from '../helpers/proxy';
import { sleep, waitFor } from '../helpers/wait';

const test = suite('ingest: the COPY sink');
let db: TestDatabase;
let plant: Awaited<ReturnType<typeof seedSmallPlant>>;

test.before(async () => {
  db = await createTestDatabase('sink');
  plant = await seedSmallPlant(db.pool);
});
test.after(async () => db.drop());

const base = Date.parse('2026-01-01T00:00:00Z');
const reading = (i: number, over: Partial<Reading> = {}): Reading => ({
  time: new Date(base + i * 1000), tenantId: plant.tenantId, deviceId: plant.deviceId, sensorType: 'TEMPERATURE',
  value: 60 + (i % 10), unit: '°F', quality: 'GOOD', ...over,
});
const count = async (where = 'true') =>
  Number((await db.pool.query(`select count(*) from iot_private.sensor_readings where ${where}`)).rows[0].count);

test('stores batches by COPY, once each: duplicates (QoS 1 redeliveries) are skipped', async () => {
  const sink = new ReadingSink(db.pool, { batchSize: 500, maxWaitMs: 20, bufferMax: 10_000 });
  const batch = Array.from({ length: 1200 }, (_, i) => reading(i));
  sink.add(batch);
  sink.add(batch.slice(0, 300)); // redelivered
  await sink.close();
  assert.is(await count(), 1200);
  assert.is(sink.stats.stored, 1200);
  assert.is(sink.stats.duplicates, 300);
  assert.ok(sink.stats.batches >= 3, `batches ${sink.stats.batches}`);
  const hb = await db.pool.query('select last_heartbeat from iot.iot_devices where id = $1', [plant.deviceId]);
  assert.ok(hb.rows[0].last_heartbeat, 'heartbeat updated per batch');
});

test('a reading whose channel was deactivated meanwhile becomes a dead letter; the rest are stored', async () => {
  await db.pool.query(`update iot.device_channels set is_active = false where device_id = $1 and sensor_type = 'PRESSURE'`, [plant.deviceId]);
  const sink = new ReadingSink(db.pool, { batchSize: 100, maxWaitMs: 10, bufferMax: 1000 });
  sink.add([reading(5000), reading(5001, { sensorType: 'PRESSURE', unit: 'PSI' }), reading(5002)]);
  await sink.close();
  assert.is(await count(`time >= '${new Date(base + 5000_000).toISOString()}'`), 2);
  const dl = await db.pool.query(`select reason from iot_private.ingest_dead_letters where source = 'SINK'`);
  assert.is(dl.rowCount, 1);
  assert.match(dl.rows[0].reason, 'PRESSURE');
  await db.pool.query(`update iot.device_channels set is_active = true where device_id = $1`, [plant.deviceId]);
});

test('readings the database refuses are isolated by halving; good readings beside them are stored', async () => {
  const sink = new ReadingSink(db.pool, { batchSize: 64, maxWaitMs: 10, bufferMax: 1000 });
  const batch = Array.from({ length: 64 }, (_, i) => reading(10_000 + i));
  batch[17] = reading(10_017, { quality: 'WEIRD' as never }); // violates sensor_readings_quality_valid
  sink.add(batch);
  await sink.close();
  assert.is(await count(`time >= '${new Date(base + 10_000_000).toISOString()}'`), 63);
  const dl = await db.pool.query(`select reason from iot_private.ingest_dead_letters where reason like '%quality%'`);
  assert.is(dl.rowCount, 1);
});

test('while the database is down the sink holds readings within its bound and stores them all when it returns', async () => {
  const target = new URL(db.url);
  const proxy = new FlakyProxy(target.hostname, Number(target.port || 5432));
  await proxy.up();
  const pool = new Pool({ connectionString: urlThrough(db.url, proxy.port), max: 2, connectionTimeoutMillis: 1000 });
  pool.on('error', () => undefined);
  const sink = new ReadingSink(pool, { batchSize: 100, maxWaitMs: 10, bufferMax: 500 });
  const states: boolean[] = [];
  sink.on('database', (up: boolean) => states.push(up));
  sink.add(Array.from({ length: 50 }, (_, i) => reading(20_000 + i)));
  await sink.flush();
  await proxy.down();
  const start = 20_050;
  let accepted = true;
  let offered = 0;
  for (let i = 0; i < 10 && accepted; i++) {
    accepted = sink.add(Array.from({ length: 100 }, (_, j) => reading(start + i * 100 + j)));
    offered += 100;
  }
  assert.not.ok(accepted, 'add() reports a full buffer so producers stop');
  let released = false;
  const waiting = sink.wait().then(() => (released = true));
  await sleep(300);
  assert.not.ok(released, 'wait() blocks while the database is down');
  assert.ok(sink.buffered <= 600, `buffer stays bounded: ${sink.buffered}`);
  await proxy.up();
  await waiting;
  await sink.close();
  await pool.end();
  await proxy.down();
  assert.is(await count(`time >= '${new Date(base + 20_000_000).toISOString()}'`), 50 + offered);
  assert.equal(states.slice(0, 2), [false, true]);
  assert.ok(sink.stats.failedAttempts > 0);
});

test('an empty flush and a close with nothing queued are harmless', async () => {
  const sink = new ReadingSink(db.pool, { batchSize: 10, maxWaitMs: 10, bufferMax: 100 });
  await sink.flush();
  await sink.close();
  assert.is(sink.stats.batches, 0);
  await waitFor(() => true);
});

test.run();

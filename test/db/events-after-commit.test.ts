// The event detector runs after a batch's commit, in a second transaction (sql/515_events_after_commit.sql).
// What this must not lose: readings stored by a sink that died before (or during) that second
// transaction are still judged, once, by the channel's next batch or by the events__catch_up job.
// The first test kills the real ingest process (`iot ingest mqtt`, SIGKILL) while its detector
// transaction waits on a lock the test holds, after its readings committed.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mqtt from 'mqtt';
import { Client } from 'pg';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { ReadingSink } from '../../src/ingest/sink';
import { crontab, taskList } from '../../src/lib/worker';
import { testBroker } from '../helpers/broker';
import { startIngest, untilSubscribed } from '../helpers/ingest-process';
import { createTestDatabase, seedSmallPlant, TestDatabase } from '../helpers/db';
import { waitFor } from '../helpers/wait';

const test = suite('db: events after the commit (a sink killed between its two transactions loses no event)');
let db: TestDatabase;
let plant: Awaited<ReturnType<typeof seedSmallPlant>>;

test.before(async () => {
  db = await createTestDatabase('events_after_commit');
  plant = await seedSmallPlant(db.pool);
  // Plain hysteresis (an event at the first reading out of range) and a range of 0..100 on every channel.
  await db.pool.query(`insert into iot_private.settings (key, value) values ('excursion_min_seconds', '0'), ('recovery_min_seconds', '0')
    on conflict (key) do update set value = excluded.value`);
  await db.pool.query(`update iot.device_channels set normal_min = 0, normal_max = 100 where device_id = $1`, [plant.deviceId]);
});
test.after(async () => db.drop());

const events = async (sensorType: string) => (await db.pool.query<{ event_timestamp: Date; event_code: string }>(
  `select event_timestamp, event_code from iot_private.equipment_events
   where iot_device_id = $1 and sensor_type = $2 and event_type = 'SENSOR_OUT_OF_RANGE' order by event_timestamp`,
  [plant.deviceId, sensorType])).rows;
const lastJudged = async (sensorType: string) => (await db.pool.query<{ last_time: Date | null }>(
  `select last_time from iot_private.channel_event_state where device_id = $1 and sensor_type = $2`, [plant.deviceId, sensorType])).rows[0]?.last_time ?? null;
const stored = async (sensorType: string, t: number) => Number((await db.pool.query(
  `select count(*) as n from iot_private.sensor_readings where device_id = $1 and sensor_type = $2 and time = $3`,
  [plant.deviceId, sensorType, new Date(t)])).rows[0].n);
const catchUp = async (settle = '30 seconds') => (await db.pool.query<{ channels: number; raised: number }>(
  `select * from iot_private.catch_up_events(settle => $1::interval)`, [settle])).rows[0];

/** Stores readings the way the sink's first transaction does, then drops the connection: the detector never runs. */
async function storeWithoutDetector(sensorType: string, readings: { t: number; value: number; quality?: string }[]): Promise<void> {
  const c = new Client({ connectionString: db.url });
  await c.connect();
  try {
    await c.query('begin; select iot_private.create_reading_staging()');
    for (const r of readings) {
      await c.query(`insert into pg_temp.reading_staging (time, tenant_id, device_id, sensor_type, value, unit, quality)
        values ($1, $2, $3, $4, $5, 'u', $6)`, [new Date(r.t), plant.tenantId, plant.deviceId, sensorType, r.value, r.quality ?? 'GOOD']);
    }
    const { rows } = await c.query('select (iot_private.ingest_staged_readings(detect_events => false)).inserted');
    assert.is(Number(rows[0].inserted), readings.length);
    await c.query('commit');
  } finally {
    await c.end();
  }
}

test('SIGKILL while the detector transaction runs: the readings are stored, and the next batch raises the missed event once', async () => {
  const broker = await testBroker();
  const dataDir = mkdtempSync(join(tmpdir(), 'iot-events-kill-'));
  const run = Math.random().toString(36).slice(2, 8);
  const ingest = startIngest({
    DATABASE_URL: db.url, MQTT_BROKER_URL: broker.url, MQTT_CLIENT_ID: `test-events-kill-${run}`, DATA_DIR: dataDir, LOG_LEVEL: 'info', DEMO: 'false',
  });
  const publisher = await mqtt.connectAsync(broker.url, { clientId: `test-events-kill-pub-${run}` });
  const locker = new Client({ connectionString: db.url });
  await locker.connect();
  const publish = (t: number, value: number) => publisher.publishAsync('facility/F1/workcenter/PRESS-1/sensor/TEMPERATURE',
    JSON.stringify({ deviceId: plant.deviceCode, value, timestamp: new Date(t).toISOString() }), { qos: 1 });
  try {
    await untilSubscribed(ingest);
    const t1 = Date.now() - 60_000;
    await publish(t1, 50);
    await waitFor(async () => (await lastJudged('TEMPERATURE'))?.getTime() === t1, 10_000, 'the first reading judged');

    // The test holds the channel's detector state, so the detector transaction of the next batch waits.
    await locker.query(`begin; select 1 from iot_private.channel_event_state where device_id = '${plant.deviceId}' and sensor_type = 'TEMPERATURE' for update`);
    const t2 = t1 + 1000;
    await publish(t2, 150);
    await waitFor(async () => (await stored('TEMPERATURE', t2)) === 1, 10_000, 'the out-of-range reading stored (its transaction committed)');
    const waiting = await waitFor(async () => (await db.pool.query<{ pid: number }>(
      `select pid from pg_stat_activity where wait_event_type = 'Lock' and query like '%detect_stored_events%'`)).rows[0]?.pid, 10_000,
    'the detector transaction waiting on the lock');
    ingest.child.kill('SIGKILL');
    await ingest.exited;
    await locker.query('rollback');
    // The killed process's backend gets the lock, then finds its client gone: the detector transaction never commits.
    await waitFor(async () => (await db.pool.query(`select 1 from pg_stat_activity where pid = $1`, [waiting])).rowCount === 0, 15_000,
      'the killed ingestor\'s backend to end');
    assert.is((await events('TEMPERATURE')).length, 0, 'no event: the detector transaction was rolled back');
    assert.is((await lastJudged('TEMPERATURE'))?.getTime(), t1, 'the state is where the last committed detector left it');

    // The channel's next batch judges what was missed, in time order: the excursion at t2, closed at t3.
    const sink = new ReadingSink(db.pool, { batchSize: 100, maxWaitMs: 5, bufferMax: 1000 });
    const t3 = t2 + 1000;
    sink.add([{ time: new Date(t3), tenantId: plant.tenantId, deviceId: plant.deviceId, sensorType: 'TEMPERATURE', value: 50, unit: '°F', quality: 'GOOD' }]);
    await sink.close();
    const raised = await events('TEMPERATURE');
    assert.equal(raised.map((e) => [e.event_timestamp.getTime(), e.event_code]), [[t2, 'TEMPERATURE_HIGH']], 'one event, stamped at the missed reading');
    assert.is((await lastJudged('TEMPERATURE'))?.getTime(), t3);
    assert.equal(await catchUp('0 seconds'), { channels: 0, raised: 0 }, 'nothing left for the catch-up job');
    assert.is((await events('TEMPERATURE')).length, 1, 'still one event');
  } finally {
    if (ingest.child.exitCode === null && ingest.child.signalCode === null) ingest.child.kill('SIGKILL');
    await locker.end().catch(() => undefined);
    await publisher.endAsync();
    await broker.stop();
    rmSync(dataDir, { recursive: true, force: true });
  }
});

test('a channel that falls silent after the crash: the events__catch_up job judges its readings once they are 30 s old, once', async () => {
  const t = Date.now() - 120_000;
  // One reading judged as the sink would (its detector call), then two stored whose detector never ran.
  await storeWithoutDetector('PRESSURE', [{ t: t - 5000, value: 40 }]);
  await db.pool.query(`select iot_private.detect_stored_events(array[$1::uuid], array['PRESSURE'], array[$2::timestamptz], array[$2::timestamptz])`, [plant.deviceId, new Date(t - 5000)]);
  assert.is((await lastJudged('PRESSURE'))?.getTime(), t - 5000);
  await storeWithoutDetector('PRESSURE', [{ t, value: 180 }, { t: t + 1000, value: 190 }]);
  assert.is((await events('PRESSURE')).length, 0);
  assert.equal(await catchUp('5 minutes'), { channels: 0, raised: 0 }, 'readings younger than `settle` are left to the sink');
  assert.equal(await catchUp(), { channels: 1, raised: 1 });
  assert.equal((await events('PRESSURE')).map((e) => e.event_timestamp.getTime()), [t]);
  assert.is((await lastJudged('PRESSURE'))?.getTime(), t + 1000);
  assert.equal(await catchUp(), { channels: 0, raised: 0 }, 'a second run finds nothing');
  // Through the worker's task as scheduled (graphile-worker's crontab names it).
  assert.match(crontab(30), /^\* \* \* \* \* events__catch_up /m);
  assert.ok(taskList.events__catch_up);
});

test('BAD readings are never judged, so the catch-up job does not look for them again', async () => {
  const t = Date.now() - 90_000;
  await storeWithoutDetector('VIBRATION', [{ t, value: 500, quality: 'BAD' }]);
  assert.equal(await catchUp(), { channels: 0, raised: 0 });
  assert.is((await events('VIBRATION')).length, 0);
});

test('the sink\'s own detector call after a normal batch leaves nothing to catch up, and a batch of only duplicates runs none', async () => {
  const sink = new ReadingSink(db.pool, { batchSize: 100, maxWaitMs: 5, bufferMax: 1000 });
  const t = Date.now() - 45_000;
  const r = { time: new Date(t), tenantId: plant.tenantId, deviceId: plant.deviceId, sensorType: 'VIBRATION', value: 150, unit: 'mm/s', quality: 'GOOD' as const };
  sink.add([r]);
  await sink.flush();
  sink.add([{ ...r }]); // a redelivery
  await sink.close();
  assert.is(sink.stats.stored, 1);
  assert.is(sink.stats.duplicates, 1);
  assert.is(sink.stats.eventDetectionFailures, 0);
  assert.equal((await events('VIBRATION')).map((e) => e.event_timestamp.getTime()), [t]);
  assert.equal(await catchUp('0 seconds'), { channels: 0, raised: 0 });
});

test.run();

// Hardening (issue 7, findings 1 sink side, 2 and 7): the sink never wedges, old readings lock
// nothing, and a shutdown while the database is down loses nothing.
//  - Findings 1 and 2 hand readings straight to a running ReadingSink (as every protocol does,
//    bypassing the MQTT parser), with another tenant querying all the while.
//  - Finding 7 runs the real `iot ingest mqtt` process against a database behind a proxy that is
//    taken down, stops it with SIGTERM (and kill -9), and starts it again.
// After each: the sink (or the process) still works, a good reading right after is stored, another
// tenant's query is answered within a second, the expected dead letters are there, counters moved.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mqtt, { MqttClient } from 'mqtt';
import type { Reading } from '../../src/ingest/reading';
import { ReadingSink } from '../../src/ingest/sink';
import { specs } from '../../src/lib/config';
import { testBroker } from '../helpers/broker';
import { createTestDatabase, seedSmallPlant, TestDatabase } from '../helpers/db';
import { FlakyProxy, urlThrough } from '../helpers/proxy';
import { IngestProcess, startIngest, untilSubscribed } from '../helpers/ingest-process';
import { sleep, waitFor } from '../helpers/wait';

const test = suite('hardening: the sink never wedges, old readings lock nothing, SIGTERM loses nothing');
let db: TestDatabase;
let plant: Awaited<ReturnType<typeof seedSmallPlant>>;
let other: Awaited<ReturnType<typeof seedSmallPlant>>;
let sink: ReadingSink;

test.before(async () => {
  db = await createTestDatabase('hardening_durability');
  plant = await seedSmallPlant(db.pool);
  other = await seedSmallPlant(db.pool, 'other', 'F2');
  sink = new ReadingSink(db.pool, { batchSize: 5000, maxWaitMs: 20, bufferMax: 100_000 });
  console.log(`  [hardening/durability] tier ${db.tier}`);
});
test.after(async () => {
  await Promise.race([sink.close({ deadlineMs: 10_000 }), sleep(15_000)]);
  await db.drop();
});

/** Fails (instead of hanging the suite) when `p` does not settle within `ms`. */
async function within<T>(ms: number, p: Promise<T>, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what}: not done within ${ms} ms`)), ms)));
  try {
    return await Promise.race([p, late]);
  } finally {
    clearTimeout(timer);
  }
}

const reading = (time: Date | number, over: Partial<Reading> = {}): Reading => ({
  time: time instanceof Date ? time : new Date(time), tenantId: plant.tenantId, deviceId: plant.deviceId, sensorType: 'TEMPERATURE',
  value: 70, unit: '°F', quality: 'GOOD', ...over,
});
const stored = async (from: number, to: number) => Number((await db.pool.query(
  'select count(*) from iot_private.sensor_readings where device_id = $1 and time >= $2 and time < $3',
  [plant.deviceId, new Date(from), new Date(to)])).rows[0].count);

let goodSeq = 0;
/** A good reading stamped now, handed to the running sink, is stored within seconds. */
async function goodReadingIsStored(target = sink): Promise<void> {
  const t = Date.now() - 1000 - ++goodSeq;
  assert.ok(target.add([reading(t, { value: 60 + goodSeq / 100 })]), 'the sink takes readings');
  await waitFor(async () => (await stored(t, t + 1)) === 1, 5000, 'the good reading handed over after the attack to be stored');
}

/** Another tenant's query (over all of its readings, no time filter) is answered within a second. */
async function otherTenantAnswers(): Promise<number> {
  const started = Date.now();
  await db.asRole('iot_operator', { tenant_id: other.tenantId }, (c) => c.query('select count(*) from iot.sensor_readings'));
  const ms = Date.now() - started;
  assert.ok(ms < 1000, `another tenant's query took ${ms} ms`);
  return ms;
}

/** Runs `attack` while another tenant queries every 50 ms; returns the slowest answer (ms). */
async function whileAnotherTenantQueries(attack: () => Promise<unknown>): Promise<number> {
  let stop = false;
  let slowest = 0;
  let failure: unknown;
  const probe = (async () => {
    while (!stop) {
      const started = Date.now();
      try {
        await db.asRole('iot_operator', { tenant_id: other.tenantId }, (c) => c.query('select count(*) from iot.sensor_readings'));
      } catch (error) {
        failure ??= error;
      }
      slowest = Math.max(slowest, Date.now() - started);
      await sleep(50);
    }
  })();
  try {
    await attack();
  } finally {
    stop = true;
    await probe;
  }
  assert.is(failure, undefined, `another tenant's query failed meanwhile: ${(failure as Error)?.message}`);
  assert.ok(slowest < 1000, `another tenant waited ${slowest} ms`);
  return slowest;
}

async function deadLetters(reasonLike: string): Promise<{ reason: string; payload: string; source: string }[]> {
  return (await db.pool.query(`select reason, payload, source from iot_private.ingest_dead_letters where reason like $1 order by id`,
    [reasonLike])).rows;
}

/** Partitions (tier 3) or chunks (tiers 1-2) of the readings table. */
async function storageUnits(): Promise<Set<string>> {
  const sql = db.tier === 3
    ? `select partition_name as n from iot_private.partition_bounds('sensor_readings')`
    : `select chunk_name as n from timescaledb_information.chunks where hypertable_schema = 'iot_private' and hypertable_name = 'sensor_readings'`;
  return new Set((await db.pool.query(sql)).rows.map((r) => r.n as string));
}

test('finding 1 (sink side): readings whose time cannot be written wedge nothing: dead letters, and 20,000 readings after them are stored', async () => {
  const before = { ...sink.stats };
  // 1e16 ms is beyond a Date (Invalid Date); -8e15 is a Date PostgreSQL cannot hold (271,000 BC).
  sink.add([reading(new Date(1e16))]);
  sink.add([reading(new Date(1e16))]);
  sink.add([reading(new Date(-8e15)), reading(new Date(8.64e15))]);
  // A reading that throws while its COPY line is made (after it passed the checks): it must end
  // as a dead letter, not as a COPY left waiting for data.
  let reads = 0;
  const trap = reading(Date.now() - 5000);
  Object.defineProperty(trap, 'time', { get: () => (++reads > 1 ? (() => { throw new Error('trap: no time today'); })() : new Date(Date.now() - 5000)) });
  sink.add([trap]);
  const t0 = Date.now() - 3_600_000;
  await within(30_000, (async () => {
    for (let i = 0; i < 20_000; i += 1000) {
      sink.add(Array.from({ length: 1000 }, (_, j) => reading(t0 + (i + j) * 10)));
      await sink.wait();
    }
    await waitFor(async () => (await stored(t0, t0 + 200_000)) === 20_000, 25_000, '20,000 readings after the bad ones');
  })(), 'storing 20,000 readings after the attack');
  assert.is((await deadLetters('reading refused before writing: timestamp Invalid Date is not a valid date-time')).length, 2);
  assert.is((await deadLetters(`reading refused before writing: timestamp ${new Date(-8e15).toISOString()} is before the year 2000`)).length, 1);
  assert.is((await deadLetters('reading refused before writing: timestamp +275760-09-13T00:00:00.000Z is more than 300 s in the future')).length, 1);
  await waitFor(async () => (await deadLetters('the reading could not be written: trap: no time today')).length === 1, 5000, 'the trapped reading as a dead letter');
  assert.is(sink.stats.deadLetters - before.deadLetters, 5, 'the dead-letter counter moved by 5');
  assert.is(sink.stats.stored - before.stored, 20_000);
  await goodReadingIsStored();
  await otherTenantAnswers();
});

test('finding 2: a batch dated 2001, 2010 and now is stored, makes at most two new partitions or chunks, holds no one up', async () => {
  const units = await storageUnits();
  const now = Date.now() - 2000;
  const times = [Date.parse('2001-05-06T07:08:09Z'), Date.parse('2010-10-11T12:13:14Z'), now];
  await whileAnotherTenantQueries(async () => {
    sink.add(times.map((t) => reading(t)));
    await within(20_000, sink.flush(), 'the batch');
  });
  for (const t of times) assert.is(await stored(t, t + 1), 1, `reading at ${new Date(t).toISOString()} stored`);
  const made = [...await storageUnits()].filter((u) => !units.has(u));
  assert.ok(made.length <= 2, `new partitions/chunks: ${made.join(', ')}`);
  if (db.tier === 3) assert.equal(made.sort(), ['sensor_readings_p20010101_20020101', 'sensor_readings_p20100101_20110101']);
  await goodReadingIsStored();
});

test('finding 2: 5,000 readings on 5,000 days since 2000 are stored in about a hundred partitions or chunks, never blocking another tenant', async () => {
  const units = await storageUnits();
  const t0 = Date.UTC(2000, 0, 3);
  const step = Math.floor((Date.now() - 86_400_000 - t0) / 5000);
  const times = Array.from({ length: 5000 }, (_, i) => t0 + i * step + 1234);
  const before = sink.stats.stored;
  const slowest = await whileAnotherTenantQueries(async () => {
    sink.add(times.map((t) => reading(t, { sensorType: 'PRESSURE', unit: 'PSI', value: 100 })));
    await within(120_000, sink.flush(), 'the 5,000-day batch');
  });
  assert.is(sink.stats.stored - before, 5000);
  const made = [...await storageUnits()].filter((u) => !units.has(u)).length;
  console.log(`  [hardening/durability] 5,000 readings on 5,000 days: ${made} new ${db.tier === 3 ? 'partitions' : 'chunks'}, ` +
    `another tenant waited ${slowest} ms at most`);
  // A year each before the last two years, a month each in those, a day each in the last 92 days.
  const years = new Date().getUTCFullYear() - 2000 + 1;
  assert.ok(made <= years + 25 + 93, `${made} new partitions/chunks`);
  await goodReadingIsStored();
  await otherTenantAnswers();
});

test('finding 2: with an accepted age (INGEST_MAX_AGE_DAYS=30) readings from 2001 and 2010 are dead letters naming it', async () => {
  const aged = new ReadingSink(db.pool, { batchSize: 100, maxWaitMs: 10, bufferMax: 1000, maxAgeMs: 30 * 86_400_000 });
  try {
    const units = await storageUnits();
    aged.add([reading(Date.parse('2001-01-01T00:00:01Z'), { value: 71 }), reading(Date.parse('2010-01-01T00:00:01Z'), { value: 71 })]);
    await within(10_000, aged.flush(), 'the batch');
    assert.is((await deadLetters('reading refused before writing: timestamp 20%-01-01T00:00:01.000Z is more than 30 days old (INGEST_MAX_AGE_DAYS)')).length, 2);
    assert.is((await storageUnits()).size, units.size, 'nothing made for them');
    await goodReadingIsStored(aged);
  } finally {
    await aged.close();
  }
});

// ---- Finding 7: the real ingest process, stopped while the database is down -------------------

async function stop(p: IngestProcess, signal: NodeJS.Signals) {
  p.signalledAt = Date.now();
  p.child.kill(signal);
  const result = await Promise.race([p.exited, sleep(30_000).then(() => undefined)]);
  if (!result) {
    p.child.kill('SIGKILL');
    throw new Error(`iot ingest mqtt still running 30 s after ${signal}:\n${p.out.slice(-3000)}`);
  }
  return result;
}

/** Publishes n readings stamped from t0 (10 ms apart), 100 a message, at QoS 1. */
async function publishReadings(publisher: MqttClient, t0: number, n: number): Promise<void> {
  for (let i = 0; i < n; i += 100) {
    const payload = JSON.stringify(Array.from({ length: Math.min(100, n - i) }, (_, j) => ({
      deviceId: plant.deviceCode, value: 60 + ((i + j) % 20), timestamp: new Date(t0 + (i + j) * 10).toISOString() })));
    await publisher.publishAsync('facility/F1/workcenter/PRESS-1/sensor/TEMPERATURE', payload, { qos: 1 });
  }
}

async function durabilityRun(signal: 'SIGTERM' | 'SIGKILL', n: number, t0: number) {
  const run = Math.random().toString(36).slice(2, 8);
  const broker = await testBroker();
  const target = new URL(db.url);
  const proxy = new FlakyProxy(target.hostname, Number(target.port || 5432));
  await proxy.up();
  const dataDir = mkdtempSync(join(tmpdir(), 'iot-durability-'));
  const env = {
    DATABASE_URL: urlThrough(db.url, proxy.port), MQTT_BROKER_URL: broker.url, MQTT_CLIENT_ID: `test-durability-${run}`,
    DATA_DIR: dataDir, LOG_LEVEL: 'info', DEMO: 'false',
  };
  const publisher = await mqtt.connectAsync(broker.url, { clientId: `test-durability-pub-${run}` });
  let second: IngestProcess | undefined;
  try {
    const first = startIngest(env);
    await untilSubscribed(first);
    await proxy.down(); // the database is unreachable from here on
    await publishReadings(publisher, t0, n);
    await sleep(3000); // the ingestor has taken (and acknowledged) them all: n is within INGEST_BUFFER_MAX
    const stopped = await stop(first, signal);
    const spillDir = join(dataDir, 'ingest-spill');
    const spills = existsSync(spillDir) ? readdirSync(spillDir) : [];
    const spilled = spills.length ? JSON.parse(readFileSync(join(spillDir, spills[0]), 'utf8').split('\n', 1)[0]).readings as number : 0;
    await proxy.up();
    second = startIngest(env);
    await untilSubscribed(second);
    // Everything spilled is stored after the restart (and, with QoS 1, whatever the broker still held).
    if (signal === 'SIGTERM') {
      await waitFor(async () => (await stored(t0, t0 + n * 10)) === n, 60_000, `${n} readings after the restart`).catch((error) => {
        throw new Error(`${error.message}\n--- first run\n${first.out.slice(-3000)}\n--- second run\n${second!.out.slice(-3000)}`);
      });
    }
    else await sleep(5000);
    const after = await stored(t0, t0 + n * 10);
    const left = existsSync(spillDir) ? readdirSync(spillDir) : [];
    // The restarted process works: a reading published now is stored.
    const t = Date.now() - 1000;
    await publisher.publishAsync('facility/F1/workcenter/PRESS-1/sensor/TEMPERATURE',
      JSON.stringify({ deviceId: plant.deviceCode, value: 65, timestamp: new Date(t).toISOString() }), { qos: 1 });
    await waitFor(async () => (await stored(t, t + 1)) === 1, 10_000, 'a reading published after the restart');
    await otherTenantAnswers();
    return { stopped, spilled, spills, after, left, out: first.out };
  } finally {
    if (second && second.child.exitCode === null) await stop(second, 'SIGTERM').catch(() => undefined);
    await publisher.endAsync();
    await proxy.down();
    await broker.stop();
    rmSync(dataDir, { recursive: true, force: true });
  }
}

test('finding 7: SIGTERM while the database is down spills the buffer to DATA_DIR; the next start stores every reading', async () => {
  const n = 30_000;
  const r = await durabilityRun('SIGTERM', n, Date.now() - 7_200_000);
  console.log(`  [hardening/durability] SIGTERM with the database down: ${n} readings acknowledged, ${r.spilled} spilled, ` +
    `exit ${r.stopped.code} after ${r.stopped.ms} ms; after the restart ${r.after} of ${n} stored`);
  assert.is(r.stopped.code, 0, `exit status\n${r.out.slice(-2000)}`);
  assert.ok(r.stopped.ms < 20_000, `stopped after ${r.stopped.ms} ms`);
  assert.is(r.spills.length, 1, 'one spill file');
  assert.is(r.spilled, n, 'every unwritten reading in it');
  assert.match(r.out, 'unwritten readings and dead letters kept in a spill file');
  assert.is(r.after, n, 'every reading stored after the restart');
  assert.equal(r.left, [], 'the spill file is removed once stored');
});

test('finding 7: kill -9 while the database is down loses what was buffered, at most INGEST_BUFFER_MAX readings (the figure for the README)', async () => {
  const n = 10_000;
  const r = await durabilityRun('SIGKILL', n, Date.now() - 10_800_000);
  const lost = n - r.after;
  console.log(`  [hardening/durability] kill -9 with the database down: ${n} readings acknowledged, ${r.after} stored after the restart, ${lost} lost`);
  assert.is(r.stopped.signal, 'SIGKILL');
  assert.equal(r.spills, [], 'kill -9 leaves no spill file');
  assert.ok(lost <= Number(specs.INGEST_BUFFER_MAX.default), `lost ${lost}`);
});

test.run();

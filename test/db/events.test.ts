// Threshold and anomaly events raised per ingest batch (sql/510_batch_events.sql), through the real
// ingest path: ReadingSink -> COPY -> iot_private.ingest_staged_readings() -> detect_batch_events().
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import type { Quality, Reading } from '../../src/ingest/reading';
import { ReadingSink } from '../../src/ingest/sink';
import { createTestDatabase, seedSmallPlant, TestDatabase } from '../helpers/db';

const test = suite('db: threshold and anomaly events per batch');
let db: TestDatabase;
let plant: Awaited<ReturnType<typeof seedSmallPlant>>;

test.before(async () => {
  db = await createTestDatabase('events');
  plant = await seedSmallPlant(db.pool);
});
test.after(async () => db.drop());

type Channel = { sensorType: string; unit: string; min?: number | null; max?: number | null };

/** A new device on the plant's work center with the given channels (own normal range if given). */
async function device(code: string, channels: Channel[]): Promise<string> {
  const { rows } = await db.pool.query<{ id: string }>(
    `insert into iot.iot_devices (tenant_id, work_center_id, device_code) values ($1, $2, $3) returning id`,
    [plant.tenantId, plant.workCenterId, code]);
  for (const c of channels) {
    await db.pool.query(
      `insert into iot.device_channels (tenant_id, device_id, sensor_type, unit, normal_min, normal_max) values ($1, $2, $3, $4, $5, $6)`,
      [plant.tenantId, rows[0].id, c.sensorType, c.unit, c.min ?? null, c.max ?? null]);
  }
  return rows[0].id;
}

/** Readings of one channel: `values[i]` at `start + i * stepMs`. */
function series(deviceId: string, ch: Channel, start: number, values: number[], stepMs = 1000, quality: Quality = 'GOOD'): Reading[] {
  return values.map((value, i) => ({
    time: new Date(start + i * stepMs), tenantId: plant.tenantId, deviceId, sensorType: ch.sensorType, value, unit: ch.unit, quality,
  }));
}

/** Ingests each array as one batch, in order, through the sink (one writer: batches in time order). */
async function ingest(...batches: Reading[][]): Promise<void> {
  const sink = new ReadingSink(db.pool, { batchSize: 5000, maxWaitMs: 5, bufferMax: 100_000, writers: 1 });
  for (const batch of batches) {
    sink.add(batch);
    await sink.flush();
  }
  await sink.close();
  assert.is(sink.stats.deadLetters, 0, 'no reading was refused');
}

interface EventRow { time: Date; event_type: string; severity: string; message: string; details: Record<string, unknown> }
async function events(deviceId: string, type?: string): Promise<EventRow[]> {
  const { rows } = await db.pool.query<EventRow>(
    `select time, event_type, severity, message, details from iot_private.equipment_events
     where device_id = $1 and ($2::text is null or event_type = $2) order by time, event_type`, [deviceId, type ?? null]);
  return rows;
}
const OOR = 'SENSOR_OUT_OF_RANGE';
const ANOMALY = 'ANOMALY_DETECTED';

/** Deterministic uniform noise in [-amplitude, amplitude] (mulberry32). */
function noise(seed: number, amplitude: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((((t ^ (t >>> 14)) >>> 0) / 4294967296) * 2 - 1) * amplitude;
  };
}
const fill = <T = number>(n: number, f: (i: number) => T): T[] => Array.from({ length: n }, (_, i) => f(i));
const day = (n: number) => Date.parse('2026-03-01T00:00:00Z') + n * 86_400_000;

test('a run of out-of-range readings over several batches raises one event; hysteresis decides when it ends', async () => {
  const temp: Channel = { sensorType: 'temperature', unit: '°F' }; // type default 60-75: margin 0.75, reset at <= 74.25
  const id = await device('EV-HYST', [temp]);
  const t0 = day(0);
  await ingest(
    series(id, temp, t0, [...fill(20, () => 70), 76, 77, 78]),
    series(id, temp, t0 + 23_000, fill(30, () => 80)),
    series(id, temp, t0 + 53_000, fill(30, () => 79)),
  );
  let oor = await events(id, OOR);
  assert.is(oor.length, 1, 'one event for the whole excursion');
  assert.is(oor[0].time.getTime(), t0 + 20_000, 'at the first reading outside the range');
  assert.is(oor[0].severity, 'MEDIUM', '1 °F over is within 20% of the width');
  assert.is(oor[0].message, 'temperature 76 °F above normal range 60–75 on device EV-HYST');
  assert.equal(oor[0].details, { value: 76, normalMin: 60, normalMax: 75, side: 'above', hysteresisMargin: 0.75 });

  // Back inside but within the margin (74.5 > 74.25), then out again: the same excursion.
  await ingest(series(id, temp, t0 + 83_000, [74.5, 74.3, 74.26, 76, 77]));
  assert.is((await events(id, OOR)).length, 1, 'inside by less than the margin does not end the excursion');

  // Well inside (74.25 is exactly on the margin: it ends), then out again: a second event, in the next batch.
  await ingest(series(id, temp, t0 + 88_000, [74.25, 70, 71]));
  await ingest(series(id, temp, t0 + 91_000, [72, 80.5, 81]));
  oor = await events(id, OOR);
  assert.is(oor.length, 2);
  assert.is(oor[1].time.getTime(), t0 + 92_000);
  assert.is(oor[1].severity, 'HIGH', '5.5 °F over is more than 20% of the 15 °F width');

  // Within one batch: in, out below, back, out above: two more.
  await ingest(series(id, temp, t0 + 94_000, [70, 70, 59, 58, 65, 90]));
  oor = await events(id, OOR);
  assert.is(oor.length, 4);
  assert.match(oor[2].message, 'temperature 59 °F below normal range 60–75');
  assert.is(oor[2].details.side, 'below');
  const state = await db.pool.query(
    `select out_of_range, excursion_side, excursion_started_at from iot_private.channel_event_state where device_id = $1`, [id]);
  assert.equal(state.rows[0], { out_of_range: true, excursion_side: 'above', excursion_started_at: new Date(t0 + 99_000) });
});

test('duplicates re-ingested and late readings raise nothing new; BAD readings are ignored', async () => {
  const temp: Channel = { sensorType: 'temperature', unit: '°F' };
  const id = await device('EV-DUP', [temp]);
  const t0 = day(1);
  const first = series(id, temp, t0, [...fill(40, () => 70), ...fill(10, () => 90), ...fill(10, () => 70)]);
  await ingest(first);
  const before = await events(id);
  assert.is(before.filter((e) => e.event_type === OOR).length, 1);
  // QoS 1 redelivery of the whole run, in one batch and split over two.
  await ingest(first);
  await ingest(first.slice(0, 45), first.slice(45));
  // Late readings (older than what events were computed from), out of range: stored, but no events.
  await ingest(series(id, temp, t0 + 500, fill(20, () => 95)));
  assert.equal(await events(id), before);
  const stored = await db.pool.query(`select count(*)::int as n from iot_private.sensor_readings where device_id = $1`, [id]);
  assert.is(stored.rows[0].n, 80, 'the late readings were stored');
  // A device-flagged BAD reading neither opens nor closes an excursion.
  await ingest(series(id, temp, t0 + 60_000, [99, 99], 1000, 'BAD'));
  assert.equal(await events(id), before);
});

test('one-sided ranges: vibration 0–2.5 by default, an upper or lower bound alone', async () => {
  const vib: Channel = { sensorType: 'vibration', unit: 'mm/s' };
  const speed: Channel = { sensorType: 'speed', unit: 'sheets/h', max: 10_000 }; // no type default: upper bound only
  const power: Channel = { sensorType: 'power', unit: 'kW', min: 5 }; // lower bound only
  const id = await device('EV-ONESIDED', [vib, speed, power]);
  const t0 = day(2);
  await ingest([
    ...series(id, vib, t0, [1.2, 1.4, 2.6, 3.1, 2.45, 2.6, 2.3, 3.5]), // margin 0.125: 2.45 holds, 2.3 ends
    // margin 500: 9600 holds, 9500 ends; 12,100 is more than 20% of 10,000 over
    ...series(id, speed, t0, [9000, 10_100, 9600, 10_200, 9500, 12_100]),
    ...series(id, power, t0, [6, 4.9, 5.2, 4, 5.25, 4.8]), // margin 0.25: 5.2 holds, 5.25 ends
  ]);
  const oor = await events(id, OOR);
  const messages = oor.map((e) => e.message);
  assert.equal(messages.filter((m) => m.startsWith('vibration')), [
    'vibration 2.6 mm/s above normal range 0–2.5 on device EV-ONESIDED',
    'vibration 3.5 mm/s above normal range 0–2.5 on device EV-ONESIDED',
  ]);
  assert.equal(oor.filter((e) => e.message.startsWith('speed')).map((e) => [e.message, e.severity]), [
    ['speed 10100 sheets/h above normal maximum 10000 on device EV-ONESIDED', 'MEDIUM'],
    ['speed 12100 sheets/h above normal maximum 10000 on device EV-ONESIDED', 'HIGH'],
  ]);
  assert.equal(messages.filter((m) => m.startsWith('power')), [
    'power 4.9 kW below normal minimum 5 on device EV-ONESIDED',
    'power 4.8 kW below normal minimum 5 on device EV-ONESIDED',
  ]);
  assert.equal(oor.find((e) => e.message.startsWith('speed'))!.details,
    { value: 10_100, normalMin: null, normalMax: 10_000, side: 'above', hysteresisMargin: 500 });
});

test("a channel's own range overrides its sensor type's default, end by end; no range, no threshold events", async () => {
  const pressure: Channel = { sensorType: 'pressure', unit: 'PSI', min: 10, max: 20 }; // type default 80-120
  const temp: Channel = { sensorType: 'temperature', unit: '°F', max: 90 }; // min falls back to 60
  const weight: Channel = { sensorType: 'weight', unit: 'kg' }; // no range anywhere
  const humid: Channel = { sensorType: 'humidity', unit: '%RH', max: 30 }; // 35 (default min) >= 30: own ends only
  const id = await device('EV-OVERRIDE', [pressure, temp, weight, humid]);
  const t0 = day(3);
  await ingest([
    ...series(id, pressure, t0, [15, 12, 25]),
    ...series(id, temp, t0, [80, 88, 59, 70, 95]),
    ...series(id, weight, t0, [1, 1000, -50, 1e6, 3]),
    ...series(id, humid, t0, [10, 20, 31]),
  ]);
  assert.equal((await events(id, OOR)).map((e) => e.message).sort(), [
    'humidity 31 %RH above normal maximum 30 on device EV-OVERRIDE',
    'pressure 25 PSI above normal range 10–20 on device EV-OVERRIDE',
    'temperature 59 °F below normal range 60–90 on device EV-OVERRIDE',
    'temperature 95 °F above normal range 60–90 on device EV-OVERRIDE',
  ]);
});

test('a spike raises one ANOMALY_DETECTED; normal noise and a flat line raise none', async () => {
  const power: Channel = { sensorType: 'power', unit: 'kW' }; // no range: only the anomaly detector
  const flat: Channel = { sensorType: 'weight', unit: 'kg' };
  const id = await device('EV-SPIKE', [power, flat]);
  const t0 = day(4);
  const rnd = noise(42, 1); // uniform, sigma 0.58: never beyond 1.8 sigma, steps never beyond 2.5
  const quiet = (n: number, from: number) => fill(n, (i) => 50 + 3 * Math.sin((from + i) / 200) + rnd());
  await ingest(
    series(id, power, t0, quiet(1000, 0), 2000),
    [...series(id, power, t0 + 2_000_000, quiet(1000, 1000), 2000), ...series(id, flat, t0, fill(200, () => 250), 2000)],
  );
  assert.equal(await events(id), [], 'noise and a flat line: no events');
  // The flat line moves by its last digit (0.1 kg on 250: below the 1%-of-mean floor), then a spike.
  await ingest([...series(id, power, t0 + 4_000_000, [...quiet(100, 2000), 80, ...quiet(100, 2101)], 2000),
                ...series(id, flat, t0 + 400_000, [250.1, 250, 250.2], 2000)]);
  const anomalies = await events(id, ANOMALY);
  assert.is(anomalies.length, 1, anomalies.map((e) => e.message).join('\n'));
  const a = anomalies[0];
  assert.is(a.time.getTime(), t0 + 4_000_000 + 100 * 2000);
  assert.is(a.severity, 'HIGH', 'about 30 sigma');
  assert.is(a.details.value, 80);
  assert.ok((a.details.zScore as number) > 8, `zScore ${a.details.zScore}`);
  assert.ok(Math.abs((a.details.mean as number) - 50) < 4, `mean ${a.details.mean}`);
  assert.is(a.details.windowMinutes, 60);
  assert.ok((a.details.readings as number) >= 1000, `the baseline holds the previous hour: ${a.details.readings}`);
  assert.match(a.message, /^power 80 kW on device EV-SPIKE is [\d.]+ standard deviations above the mean [\d.]+ of the previous 60 min/);
});

test('a storm of spikes within 5 minutes raises one event; the next one after 5 minutes raises another', async () => {
  const power: Channel = { sensorType: 'power', unit: 'kW' };
  const id = await device('EV-STORM', [power]);
  const t0 = day(5);
  const rnd = noise(7, 0.5);
  await ingest(series(id, power, t0, fill(720, () => 20 + rnd()), 5000)); // an hour every 5 s
  // Spikes and drops every 20 s for 4 minutes, over three batches.
  const t1 = t0 + 720 * 5000;
  const storm = fill(48, (i) => (i % 4 === 0 ? (i % 8 === 0 ? 40 : 2) : 20 + rnd()));
  await ingest(series(id, power, t1, storm.slice(0, 16), 5000), series(id, power, t1 + 80_000, storm.slice(16, 32), 5000),
               series(id, power, t1 + 160_000, storm.slice(32), 5000));
  let anomalies = await events(id, ANOMALY);
  assert.is(anomalies.length, 1, anomalies.map((e) => e.message).join('\n'));
  assert.is(anomalies[0].time.getTime(), t1);
  const last = await db.pool.query(`select last_anomaly_at from iot_private.channel_event_state where device_id = $1`, [id]);
  assert.equal(last.rows[0].last_anomaly_at, new Date(t1));
  // Quiet for an hour, then a drop at t1 + 65 min: a second event.
  const t2 = t1 + 240_000;
  await ingest(series(id, power, t2, [...fill(732, () => 20 + rnd()), 1], 5000));
  anomalies = await events(id, ANOMALY);
  assert.is(anomalies.length, 2);
  assert.is(anomalies[1].time.getTime(), t2 + 732 * 5000);
  assert.match(anomalies[1].message, 'below the mean');
});

test('a level step fires once; a slow channel gets a stretched baseline (30 sampling intervals) and one event per episode', async () => {
  const power: Channel = { sensorType: 'power', unit: 'kW' };
  const slow: Channel = { sensorType: 'weight', unit: 'kg' };
  const id = await device('EV-STEP', [power, slow]);
  const t0 = day(6);
  const rnd = noise(3, 0.2);
  // 1 Hz: step from 30 to 33 (about 26 sigma) and staying there.
  await ingest(series(id, power, t0, [...fill(600, () => 30 + rnd()), ...fill(600, () => 33 + rnd())]));
  // Every 5 minutes: 60 min would hold only 12 readings; 150 min hold 30. The shift to 600 stays
  // anomalous for two readings, 5 minutes apart (the rate limit would let both through): one episode.
  await ingest(series(id, slow, t0, [...fill(40, () => 500 + rnd() * 10), 600, 600, 600], 300_000));
  const anomalies = await events(id, ANOMALY);
  assert.equal(anomalies.map((e) => [e.time.getTime(), e.message.split(' ')[0]]),
    [[t0 + 600_000, 'power'], [t0 + 40 * 300_000, 'weight']]);
  assert.is(anomalies[1].details.windowMinutes, 150);
  assert.is(anomalies[1].details.readings, 30);
});

test('concurrent batches of one channel: one event per excursion, no deadlock', async () => {
  const temp: Channel = { sensorType: 'temperature', unit: '°F' };
  const id = await device('EV-CONCURRENT', [temp]);
  const other = await device('EV-CONCURRENT-2', [temp]);
  const t0 = day(7);
  const sink = new ReadingSink(db.pool, { batchSize: 50, maxWaitMs: 5, bufferMax: 100_000, writers: 4 });
  sink.add(fill(2000, (i) => i).flatMap((i) => [
    ...series(id, temp, t0 + i * 1000, [90 + (i % 3)]),
    ...series(other, temp, t0 + i * 1000, [95]),
  ]));
  await sink.close();
  assert.is(sink.stats.stored, 4000);
  assert.is((await events(id, OOR)).length, 1);
  assert.is((await events(other, OOR)).length, 1);
});

// Last: a refresh moves the rollup watermark to the present, after which historical readings are
// "late" and reach the rollup views only at the next refresh.
test('the baseline comes from the rollups across batches, before and after a rollup refresh', async () => {
  const power: Channel = { sensorType: 'power', unit: 'kW' };
  const before = await device('EV-ROLLUP-1', [power]);
  const after = await device('EV-ROLLUP-2', [power]);
  const rnd = noise(11, 0.5);
  // An hour at 1 Hz up to the present, in one-minute batches, on both devices.
  const start = Math.floor(Date.now() / 1000) * 1000 - 62 * 60_000;
  await ingest(...fill(62, (b) => [before, after].flatMap((id) => series(id, power, start + b * 60_000, fill(60, () => 100 + rnd())))));
  const spike = async (id: string) => {
    await ingest(series(id, power, start + 62 * 60_000, [106])); // a lone spike in a batch of its own
    const anomalies = await events(id, ANOMALY);
    assert.is(anomalies.length, 1);
    assert.ok((anomalies[0].details.readings as number) >= 3500, `readings ${anomalies[0].details.readings}`);
    assert.ok(Math.abs((anomalies[0].details.mean as number) - 100) < 0.1);
  };
  await spike(before); // rollup views aggregate raw readings (watermark -infinity on tiers 2-3)
  await db.pool.query('select iot_private.refresh_rollups()');
  await spike(after); // rollup table below the watermark, raw readings above it
});

test.run();

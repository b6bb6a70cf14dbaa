// Threshold and anomaly events raised per ingest batch (sql/510_batch_events.sql), through the real
// ingest path: ReadingSink -> COPY -> iot_private.ingest_staged_readings() -> detect_batch_events().
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import type { Quality, Reading } from '../../src/ingest/reading';
import { ReadingSink } from '../../src/ingest/sink';
import { rejects } from '../helpers/assert';
import { createTestDatabase, seedSmallPlant, TestDatabase } from '../helpers/db';
import { refreshRollups } from '../helpers/tier';

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

interface EventRow {
  event_timestamp: Date; event_type: string; event_code: string; severity: string; event_description: string;
  metadata: Record<string, unknown>;
}
async function events(deviceId: string, type?: string): Promise<EventRow[]> {
  const { rows } = await db.pool.query<EventRow>(
    `select event_timestamp, event_type, event_code, severity, event_description, metadata from iot_private.equipment_events
     where iot_device_id = $1 and ($2::text is null or event_type = $2) order by event_timestamp, event_type`, [deviceId, type ?? null]);
  return rows;
}
/** Minimum durations of excursions (iot_private.settings); 0 and 0 is plain hysteresis. */
async function durations(excursionSeconds: number, recoverySeconds: number): Promise<void> {
  await db.pool.query(
    `insert into iot_private.settings (key, value) values ('excursion_min_seconds', $1), ('recovery_min_seconds', $2)
     on conflict (key) do update set value = excluded.value, updated_at = now()`, [String(excursionSeconds), String(recoverySeconds)]);
}
const at = (ms: number) => new Date(ms).toISOString();
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


// Plain hysteresis first (both minimum durations 0): the margin alone decides.
test('plain hysteresis: a run of out-of-range readings over several batches raises one event; the margin decides when it ends', async () => {
  const defaults = await db.pool.query(`select key, value from iot_private.settings
    where key in ('excursion_min_seconds', 'recovery_min_seconds', 'counter_sensor_types') order by key`);
  assert.equal(defaults.rows.map((r) => [r.key, r.value]),
    [['counter_sensor_types', 'COUNT'], ['excursion_min_seconds', '30'], ['recovery_min_seconds', '30']], 'the defaults');
  await durations(0, 0);
  const temp: Channel = { sensorType: 'TEMPERATURE', unit: '°F' }; // type default 60-75: margin 0.75, back at <= 74.25
  const id = await device('EV-HYST', [temp]);
  const t0 = day(0);
  await ingest(
    series(id, temp, t0, [...fill(20, () => 70), 76, 77, 78]),
    series(id, temp, t0 + 23_000, fill(30, () => 80)),
    series(id, temp, t0 + 53_000, fill(30, () => 79)),
  );
  let oor = await events(id, OOR);
  assert.is(oor.length, 1, 'one event for the whole excursion');
  assert.is(oor[0].event_timestamp.getTime(), t0 + 20_000, 'at the first reading outside the range');
  assert.is(oor[0].severity, 'WARNING', '1 °F over is within 20% of the width');
  assert.is(oor[0].event_code, 'TEMPERATURE_HIGH');
  assert.is(oor[0].event_description, 'TEMPERATURE above normal range 60–75 on device EV-HYST for 0 s, peak 76 °F');
  const { confirmedAt, ...rest } = oor[0].metadata;
  assert.equal(rest, { value: 76, normalMin: 60, normalMax: 75, side: 'above', hysteresisMargin: 0.75,
    durationSeconds: 0, minExcursionSeconds: 0, minRecoverySeconds: 0 });
  assert.is(new Date(confirmedAt as string).getTime(), t0 + 20_000);

  // Back inside but within the margin (74.5 > 74.25), then out again: the same excursion.
  await ingest(series(id, temp, t0 + 83_000, [74.5, 74.3, 74.26, 76, 77]));
  assert.is((await events(id, OOR)).length, 1, 'inside by less than the margin does not end the excursion');

  // Well inside (74.25 is exactly on the margin: it ends), then out again: a second event, in the next batch.
  await ingest(series(id, temp, t0 + 88_000, [74.25, 70, 71]));
  await ingest(series(id, temp, t0 + 91_000, [72, 80.5, 81]));
  oor = await events(id, OOR);
  assert.is(oor.length, 2);
  assert.is(oor[1].event_timestamp.getTime(), t0 + 92_000);
  assert.is(oor[1].severity, 'ERROR', '5.5 °F over is more than 20% of the 15 °F width');

  // Within one batch: in, out below, back, out above: two more.
  await ingest(series(id, temp, t0 + 94_000, [70, 70, 59, 58, 65, 90]));
  oor = await events(id, OOR);
  assert.is(oor.length, 4);
  assert.is(oor[2].event_description, 'TEMPERATURE below normal range 60–75 on device EV-HYST for 0 s, peak 59 °F');
  assert.equal([oor[2].metadata.side, oor[2].event_code], ['below', 'TEMPERATURE_LOW']);
  const state = await db.pool.query(
    `select out_of_range, excursion_side, excursion_started_at, excursion_confirmed, excursion_peak_value
     from iot_private.channel_event_state where device_id = $1`, [id]);
  assert.equal(state.rows[0], { out_of_range: true, excursion_side: 'above', excursion_started_at: new Date(t0 + 99_000),
    excursion_confirmed: true, excursion_peak_value: 90 });
});

test('duplicates re-ingested and late readings raise nothing new; BAD readings are ignored', async () => {
  await durations(0, 0);
  const temp: Channel = { sensorType: 'TEMPERATURE', unit: '°F' };
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
  await durations(0, 0);
  const vib: Channel = { sensorType: 'VIBRATION', unit: 'mm/s' };
  const speed: Channel = { sensorType: 'SPEED', unit: 'sheets/h', max: 10_000 }; // no type default: upper bound only
  const power: Channel = { sensorType: 'POWER', unit: 'kW', min: 5 }; // lower bound only
  const id = await device('EV-ONESIDED', [vib, speed, power]);
  const t0 = day(2);
  await ingest([
    ...series(id, vib, t0, [1.2, 1.4, 2.6, 3.1, 2.45, 2.6, 2.3, 3.5]), // margin 0.125: 2.45 holds, 2.3 ends
    // margin 500: 9600 holds, 9500 ends; 12,100 is more than 20% of 10,000 over
    ...series(id, speed, t0, [9000, 10_100, 9600, 10_200, 9500, 12_100]),
    ...series(id, power, t0, [6, 4.9, 5.2, 4, 5.25, 4.8]), // margin 0.25: 5.2 holds, 5.25 ends
  ]);
  const oor = await events(id, OOR);
  const messages = oor.map((e) => e.event_description);
  assert.equal(messages.filter((m) => m.startsWith('VIBRATION')), [
    'VIBRATION above normal range 0–2.5 on device EV-ONESIDED for 0 s, peak 2.6 mm/s',
    'VIBRATION above normal range 0–2.5 on device EV-ONESIDED for 0 s, peak 3.5 mm/s',
  ]);
  assert.equal(oor.filter((e) => e.event_description.startsWith('SPEED')).map((e) => [e.event_description, e.severity, e.event_code]), [
    ['SPEED above normal maximum 10000 on device EV-ONESIDED for 0 s, peak 10100 sheets/h', 'WARNING', 'SPEED_HIGH'],
    ['SPEED above normal maximum 10000 on device EV-ONESIDED for 0 s, peak 12100 sheets/h', 'ERROR', 'SPEED_HIGH'],
  ]);
  assert.equal(oor.filter((e) => e.event_description.startsWith('POWER')).map((e) => [e.event_description, e.event_code]), [
    ['POWER below normal minimum 5 on device EV-ONESIDED for 0 s, peak 4.9 kW', 'POWER_LOW'],
    ['POWER below normal minimum 5 on device EV-ONESIDED for 0 s, peak 4.8 kW', 'POWER_LOW'],
  ]);
  const speedEvent = oor.find((e) => e.event_description.startsWith('SPEED'))!.metadata;
  assert.equal([speedEvent.value, speedEvent.normalMin, speedEvent.normalMax, speedEvent.side, speedEvent.hysteresisMargin],
    [10_100, null, 10_000, 'above', 500]);
});

test("a channel's own range overrides its sensor type's default, end by end; no range, no threshold events", async () => {
  await durations(0, 0);
  const pressure: Channel = { sensorType: 'PRESSURE', unit: 'PSI', min: 10, max: 20 }; // type default 80-120
  const temp: Channel = { sensorType: 'TEMPERATURE', unit: '°F', max: 90 }; // min falls back to 60
  const weight: Channel = { sensorType: 'WEIGHT', unit: 'kg' }; // no range anywhere
  const humid: Channel = { sensorType: 'HUMIDITY', unit: '%RH', max: 30 }; // 35 (default min) >= 30: own ends only
  const id = await device('EV-OVERRIDE', [pressure, temp, weight, humid]);
  const t0 = day(3);
  await ingest([
    ...series(id, pressure, t0, [15, 12, 25]),
    ...series(id, temp, t0, [80, 88, 59, 70, 95]),
    ...series(id, weight, t0, [1, 1000, -50, 1e6, 3]),
    ...series(id, humid, t0, [10, 20, 31]),
  ]);
  assert.equal((await events(id, OOR)).map((e) => e.event_description).sort(), [
    'HUMIDITY above normal maximum 30 on device EV-OVERRIDE for 0 s, peak 31 %RH',
    'PRESSURE above normal range 10–20 on device EV-OVERRIDE for 0 s, peak 25 PSI',
    'TEMPERATURE above normal range 60–90 on device EV-OVERRIDE for 0 s, peak 95 °F',
    'TEMPERATURE below normal range 60–90 on device EV-OVERRIDE for 0 s, peak 59 °F',
  ]);
});

// The defaults from here on: out of range for 30 s to open an excursion, back for 30 s to close it.
test('minimum durations: a noisy fault crossing the bound back and forth for 60 s raises one event per excursion', async () => {
  await durations(30, 30); // the defaults
  const pressure: Channel = { sensorType: 'PRESSURE', unit: 'PSI' }; // 80-120: margin 2, back at <= 118
  const small = await device('EV-NOISY-5', [pressure]);
  const whole = await device('EV-NOISY-ALL', [pressure]);
  const t0 = day(8);
  const rnd = noise(5, 4); // a fault at 121 PSI with +-4 of noise: wider than the 2 PSI hysteresis
  const fault = () => fill(60, () => 121 + rnd());
  const faults = [fault(), fault()];
  const values = [...fill(40, () => 100), ...faults[0], ...fill(60, () => 100), ...faults[1], ...fill(60, () => 100)];
  // The series is what the issue saw: inside the hysteresis band and out again, many times per fault.
  const reentries = (f: number[]) => f.filter((v, i) => i > 0 && v <= 118 && f.slice(0, i).some((u) => u > 120)).length;
  assert.ok(faults.every((f) => reentries(f) >= 4), `re-entries ${faults.map(reentries)}`);
  const readings = (id: string) => series(id, pressure, t0, values);
  const batches = (r: Reading[], n: number) => fill(Math.ceil(r.length / n), (i) => r.slice(i * n, i * n + n));
  await ingest(...batches(readings(small), 5)); // 1 Hz in batches of 5
  await ingest(readings(whole));
  const oor = await events(small, OOR);
  assert.is(oor.length, 2, oor.map((e) => e.event_description).join('\n'));
  const firstOut = (offset: number, f: number[]) => t0 + (offset + f.findIndex((v) => v > 120)) * 1000;
  assert.equal(oor.map((e) => e.event_timestamp.getTime()), [firstOut(40, faults[0]), firstOut(160, faults[1])],
    'stamped at the first reading out of range');
  for (const [i, e] of oor.entries()) {
    const confirmed = new Date(e.metadata.confirmedAt as string).getTime();
    assert.ok(confirmed - e.event_timestamp.getTime() >= 30_000 && confirmed - e.event_timestamp.getTime() < 35_000, `confirmed ${at(confirmed)}`);
    const upTo = faults[i].slice(0, (confirmed - t0) / 1000 - (i === 0 ? 40 : 160) + 1);
    assert.is(e.metadata.value, Math.max(...upTo), 'the peak up to the event');
    assert.equal([e.severity, e.event_code, e.metadata.minExcursionSeconds, e.metadata.minRecoverySeconds], ['WARNING', 'PRESSURE_HIGH', 30, 30]);
    assert.match(e.event_description, /^PRESSURE above normal range 80–120 on device EV-NOISY-5 for 3\d s, peak 12[0-5](\.\d+)? PSI$/);
  }
  const strip = (rows: EventRow[]) => rows.map((e) => [e.event_timestamp, e.severity, e.event_code, e.metadata]);
  assert.equal(strip(await events(whole, OOR)), strip(oor), 'the same events whatever the batches');
  let backFrom = values.length - 1;
  while (backFrom > 0 && values[backFrom - 1] <= 118) backFrom--;
  const state = await db.pool.query(`select out_of_range, excursion_confirmed, back_since from iot_private.channel_event_state where device_id = $1`, [small]);
  assert.equal(state.rows[0], { out_of_range: false, excursion_confirmed: false, back_since: new Date(t0 + backFrom * 1000) });
});

test('minimum durations: a spike shorter than the minimum raises nothing; 30 s out of range raises one event', async () => {
  const pressure: Channel = { sensorType: 'PRESSURE', unit: 'PSI' };
  const id = await device('EV-SHORT', [pressure]);
  const t0 = day(9);
  await ingest(series(id, pressure, t0, [...fill(40, () => 100), ...fill(10, () => 130), ...fill(60, () => 100)]));
  // Two spikes of 5 s, 20 s apart (24 s from the first out reading to the last): still too short.
  await ingest(series(id, pressure, t0 + 110_000, [...fill(5, () => 125), ...fill(15, () => 100), ...fill(5, () => 75), ...fill(60, () => 100)]));
  // Out of range for 29 s (30 readings): nothing. For 30 s (31 readings): one event.
  await ingest(series(id, pressure, t0 + 195_000, [...fill(30, () => 124), ...fill(40, () => 100)]));
  assert.equal(await events(id, OOR), [], 'nothing shorter than 30 s');
  // Then 30 s below, back for 20 s (less than a recovery), and above for 40 s: one excursion.
  await ingest(series(id, pressure, t0 + 265_000, [...fill(31, () => 74), ...fill(20, () => 100), ...fill(40, () => 130)]));
  const oor = await events(id, OOR);
  assert.equal(oor.map((e) => [e.event_timestamp.getTime(), e.event_code, e.severity, e.metadata.durationSeconds, e.metadata.value]),
    [[t0 + 265_000, 'PRESSURE_LOW', 'WARNING', 30, 74]], 'a recovery must last 30 s');
  // 40 s back inside ends it (at 30 s): the next excursion is a new event (10 PSI over 40 is 25% of the width).
  await ingest(series(id, pressure, t0 + 356_000, [...fill(40, () => 100), ...fill(40, () => 130)]));
  const again = await events(id, OOR);
  assert.equal(again.map((e) => [e.event_timestamp.getTime(), e.severity, e.event_code]),
    [[t0 + 265_000, 'WARNING', 'PRESSURE_LOW'], [t0 + 396_000, 'ERROR', 'PRESSURE_HIGH']]);
});

test('the minimum durations are settings, checked when written', async () => {
  for (const [key, value] of [['excursion_min_seconds', 'soon'], ['recovery_min_seconds', '-5'], ['excursion_min_seconds', '90000'],
                              ['counter_sensor_types', 'count']]) {
    await rejects(() => db.pool.query(`update iot_private.settings set value = $2 where key = $1`, [key, value]), key, '22023');
  }
  await db.pool.query(`update iot_private.settings set value = ' 45.5 ' where key = 'excursion_min_seconds'`);
  await db.pool.query(`update iot_private.settings set value = 'COUNT, PRESS_COUNTER' where key = 'counter_sensor_types'`);
  await db.pool.query(`update iot_private.settings set value = '30' where key = 'excursion_min_seconds'`);
  await db.pool.query(`update iot_private.settings set value = 'COUNT' where key = 'counter_sensor_types'`);
});

test('cumulative counters are judged on their rate: a steady counter (with a reset) raises nothing', async () => {
  const count: Channel = { sensorType: 'COUNT', unit: 'units' };
  const id = await device('EV-COUNT', [count]);
  const t0 = day(10);
  let v = 1_000_000; // a lifetime counter, reset once to 0
  const values = fill(4200, (i) => (i === 3000 ? (v = 0) : (v += 4 + (i % 3))));
  const r = series(id, count, t0, values);
  await ingest(...fill(70, (b) => r.slice(b * 60, b * 60 + 60)));
  assert.equal(await events(id), [], 'no event from a counter counting (a reset is not an anomaly)');
  const state = await db.pool.query(`select baseline_count, baseline_sum from iot_private.channel_event_state where device_id = $1`, [id]);
  const { baseline_count: n, baseline_sum: sum } = state.rows[0];
  assert.ok(n > 3400 && Math.abs(sum / n - 5) < 0.01, `the cached baseline holds rates: ${n} readings, mean ${sum / n}`);
});

test('cumulative counters: a stall and a rate jump each raise one anomaly, on live and backfill batches alike', async () => {
  const count: Channel = { sensorType: 'COUNT', unit: 'units' };
  const live = await device('EV-STALL-LIVE', [count]);
  const backfill = await device('EV-STALL-BACKFILL', [count]);
  const jump = await device('EV-JUMP', [count]);
  const t0 = day(11);
  let v = 500;
  const stalled = fill(4200, (i) => (i >= 3900 && i < 4020 ? v : (v += 4 + (i % 3)))); // stopped for 2 minutes
  let w = 0;
  const doubled = fill(4200, (i) => (w += (i >= 3900 ? 10 : 4) + (i % 3))); // 5 a second, then 11
  const chunks = (id: string, values: number[], n: number) => {
    const r = series(id, count, t0, values);
    return fill(Math.ceil(r.length / n), (b) => r.slice(b * n, b * n + n));
  };
  await ingest(...chunks(live, stalled, 60)); // a minute per batch: the cached history of rates
  await ingest(...chunks(backfill, stalled, 600)); // ten minutes per batch: rates minute by minute from raw readings
  await ingest(...chunks(jump, doubled, 60));
  for (const id of [live, backfill]) {
    const a = await events(id);
    assert.is(a.length, 1, a.map((e) => e.event_description).join('\n'));
    assert.equal([a[0].event_type, a[0].event_code, a[0].event_timestamp.getTime()], [ANOMALY, 'COUNT_RATE_ANOMALY', t0 + 3900_000]);
    assert.equal([a[0].metadata.judgedOn, a[0].metadata.value, a[0].metadata.counterValue], ['rate', 0, stalled[3900]]);
    assert.ok(Math.abs((a[0].metadata.mean as number) - 5) < 0.05, `mean rate ${a[0].metadata.mean}`);
    assert.ok((a[0].metadata.readings as number) >= 3500, `readings ${a[0].metadata.readings}`);
    assert.match(a[0].event_description, /^COUNT rate 0 units\/s on device EV-STALL-\w+ is [\d.]+ standard deviations below the mean rate [\d.]+ of the previous 60 min/);
  }
  const j = await events(jump);
  assert.equal(j.map((e) => [e.event_code, e.event_timestamp.getTime(), e.metadata.value]), [['COUNT_RATE_ANOMALY', t0 + 3900_000, 10]]);
});

test('a spike raises one ANOMALY_DETECTED; normal noise and a flat line raise none', async () => {
  const power: Channel = { sensorType: 'POWER', unit: 'kW' }; // no range: only the anomaly detector
  const flat: Channel = { sensorType: 'WEIGHT', unit: 'kg' };
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
  assert.is(anomalies.length, 1, anomalies.map((e) => e.event_description).join('\n'));
  const a = anomalies[0];
  assert.is(a.event_timestamp.getTime(), t0 + 4_000_000 + 100 * 2000);
  assert.is(a.severity, 'ERROR', 'about 30 sigma');
  assert.is(a.event_code, 'POWER_ANOMALY');
  assert.is(a.metadata.value, 80);
  assert.ok((a.metadata.zScore as number) > 8, `zScore ${a.metadata.zScore}`);
  assert.ok(Math.abs((a.metadata.mean as number) - 50) < 4, `mean ${a.metadata.mean}`);
  assert.is(a.metadata.windowMinutes, 60);
  assert.ok((a.metadata.readings as number) >= 1000, `the baseline holds the previous hour: ${a.metadata.readings}`);
  assert.match(a.event_description, /^POWER 80 kW on device EV-SPIKE is [\d.]+ standard deviations above the mean [\d.]+ of the previous 60 min/);
});

test('a storm of spikes within 5 minutes raises one event; the next one after 5 minutes raises another', async () => {
  const power: Channel = { sensorType: 'POWER', unit: 'kW' };
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
  assert.is(anomalies.length, 1, anomalies.map((e) => e.event_description).join('\n'));
  assert.is(anomalies[0].event_timestamp.getTime(), t1);
  const last = await db.pool.query(`select last_anomaly_at from iot_private.channel_event_state where device_id = $1`, [id]);
  assert.equal(last.rows[0].last_anomaly_at, new Date(t1));
  // Quiet for an hour, then a drop at t1 + 65 min: a second event.
  const t2 = t1 + 240_000;
  await ingest(series(id, power, t2, [...fill(732, () => 20 + rnd()), 1], 5000));
  anomalies = await events(id, ANOMALY);
  assert.is(anomalies.length, 2);
  assert.is(anomalies[1].event_timestamp.getTime(), t2 + 732 * 5000);
  assert.match(anomalies[1].event_description, 'below the mean');
});

test('a level step fires once; a slow channel gets a stretched baseline (30 sampling intervals) and one event per episode', async () => {
  const power: Channel = { sensorType: 'POWER', unit: 'kW' };
  const slow: Channel = { sensorType: 'WEIGHT', unit: 'kg' };
  const id = await device('EV-STEP', [power, slow]);
  const t0 = day(6);
  const rnd = noise(3, 0.2);
  // 1 Hz: step from 30 to 33 (about 26 sigma) and staying there.
  await ingest(series(id, power, t0, [...fill(600, () => 30 + rnd()), ...fill(600, () => 33 + rnd())]));
  // Every 5 minutes: 60 min would hold only 12 readings; 150 min hold 30. The shift to 600 stays
  // anomalous for two readings, 5 minutes apart (the rate limit would let both through): one episode.
  await ingest(series(id, slow, t0, [...fill(40, () => 500 + rnd() * 10), 600, 600, 600], 300_000));
  const anomalies = await events(id, ANOMALY);
  assert.equal(anomalies.map((e) => [e.event_timestamp.getTime(), e.event_description.split(' ')[0]]),
    [[t0 + 600_000, 'POWER'], [t0 + 40 * 300_000, 'WEIGHT']]);
  assert.is(anomalies[1].metadata.windowMinutes, 150);
  assert.is(anomalies[1].metadata.readings, 30);
});

test('concurrent batches of one channel: one event per excursion, no deadlock', async () => {
  const temp: Channel = { sensorType: 'TEMPERATURE', unit: '°F' };
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

// The fast path (iot_private.save_plain_channel_states) settles plain channels without the full
// detector: the two must give the same events and the same channel state, batch after batch.
test('fast path and full detector agree: same events, same channel state, over live traffic with excursions, spikes and steps', async () => {
  const { Pool } = await import('pg');
  const full = new Pool({ connectionString: db.url, max: 2, options: '-c iot.event_fast_path=off' });
  const chans: Channel[] = [
    { sensorType: 'TEMPERATURE', unit: '°F' }, { sensorType: 'VIBRATION', unit: 'mm/s' }, { sensorType: 'PRESSURE', unit: 'PSI' },
    { sensorType: 'SPEED', unit: 'sheets/h' }, { sensorType: 'COUNT', unit: 'units' }, { sensorType: 'HUMIDITY', unit: '%RH', min: null, max: 55 },
  ];
  const fast = await device('EV-FAST', chans);
  const slow = await device('EV-FULL', chans);
  const r = noise(5, 1);
  const T = 900; // 15 minutes at 1 Hz
  const value: Record<string, (i: number) => number> = {
    TEMPERATURE: (i) => (i >= 200 && i < 260 ? 80 : i === 400 ? 74.9 : 67 + r() * 0.5),  // excursion, then a spike inside the range
    VIBRATION: (i) => (i < 300 ? 1.2 : 2.0) + r() * 0.1,                                // a step within the range
    PRESSURE: (i) => (i < 450 ? 70 : 100) + r() * 2,                                    // out of range (confirmed), then back
    SPEED: (i) => (i === 350 ? 2000 : 1000 + r() * 5),                                  // no range: a spike only
    COUNT: (i) => (i < 500 ? i * 10 : (i - 500) * 10),                                  // a counter with a reset
    HUMIDITY: (i) => (i >= 600 && i < 700 ? 52.5 + r() * 0.2 : 45 + r()),               // near the upper bound's margin
  };
  const values = chans.map((c) => fill(T, (i) => value[c.sensorType](i)));
  const t0 = Date.parse('2026-04-01T10:00:17Z');
  const batchesOf = (id: string) => {
    const out: Reading[][] = [];
    const sizes = noise(9, 1);
    for (let i = 0; i < T;) {
      const n = 1 + Math.floor(Math.abs(sizes()) * 40);
      const batch = chans.flatMap((c, k) => series(id, c, t0 + i * 1000, values[k].slice(i, i + n),
        1000, i % 97 === 3 ? 'BAD' : 'GOOD'));
      if (i % 53 === 1) batch.push({ ...batch[0] }); // a reading twice in one batch
      out.push(batch);
      i += n;
    }
    return out;
  };
  const fastBatches = batchesOf(fast);
  const slowBatches = batchesOf(slow);
  const fastSink = new ReadingSink(db.pool, { batchSize: 5000, maxWaitMs: 5, bufferMax: 100_000, writers: 1 });
  const slowSink = new ReadingSink(full, { batchSize: 5000, maxWaitMs: 5, bufferMax: 100_000, writers: 1 });
  for (let b = 0; b < fastBatches.length; b++) {
    fastSink.add(fastBatches[b]);
    await fastSink.flush();
    slowSink.add(slowBatches[b]);
    await slowSink.flush();
  }
  await fastSink.close();
  await slowSink.close();
  await full.end();
  // Floats to 9 significant digits: tier 1's continuous aggregates add a window's sums in another order than
  // the raw path, so a sigma may differ in its 15th digit between the two devices (the events do not).
  const rounded = (v: unknown): unknown => typeof v === 'number' ? Number(v.toPrecision(9))
    : Array.isArray(v) ? v.map(rounded)
    : v && typeof v === 'object' && !(v instanceof Date) ? Object.fromEntries(Object.entries(v).map(([k, x]) => [k, rounded(x)])) : v;
  const strip = (rows: EventRow[]) => rounded(rows.map((e) => ({ ...e, event_description: e.event_description.replace('EV-FAST', 'EV-FULL') })));
  const fastEvents = strip(await events(fast));
  assert.equal(fastEvents, strip(await events(slow)));
  const kinds = new Set((fastEvents as EventRow[]).map((e) => `${e.event_type}/${e.event_code}`));
  for (const k of [`${OOR}/TEMPERATURE_HIGH`, `${OOR}/PRESSURE_LOW`, `${ANOMALY}/TEMPERATURE_ANOMALY`, `${ANOMALY}/VIBRATION_ANOMALY`, `${ANOMALY}/SPEED_ANOMALY`]) {
    assert.ok(kinds.has(k), `the traffic raised ${k} (raised: ${[...kinds].join(', ')})`);
  }
  const state = async (id: string) => (await db.pool.query(
    `select sensor_type, last_time, last_value, out_of_range, excursion_started_at, excursion_side, excursion_confirmed,
            excursion_peak_value, back_since, anomalous, last_anomaly_at, baseline_end, baseline_window, baseline_count,
            baseline_sum, baseline_sum_sq
     from iot_private.channel_event_state where device_id = $1 order by sensor_type`, [id])).rows;
  assert.equal(rounded(await state(fast)), rounded(await state(slow)));
});

test('fast path: a plain live batch needs no full detector, in a new minute too (its baseline cache refreshed); a spike or an excursion do', async () => {
  const temp: Channel = { sensorType: 'TEMPERATURE', unit: '°F' };
  const id = await device('EV-FAST-ROUTE', [temp]);
  const t0 = Date.parse('2026-04-02T10:00:05Z');
  const rnd = noise(3, 0.3);
  await ingest(series(id, temp, t0, fill(40, () => 67 + rnd()))); // 40 s of history: its minute's cache
  let cacheEnd = 0;
  const route = async (values: number[], start: number): Promise<string[] | null> => {
    const client = await db.pool.connect();
    try {
      await client.query('begin');
      await client.query('select iot_private.create_reading_staging()');
      for (const [i, v] of values.entries()) {
        await client.query(`insert into pg_temp.reading_staging (time, tenant_id, device_id, sensor_type, value, unit, quality)
                            values ($1, $2, $3, 'TEMPERATURE', $4, '°F', 'GOOD')`, [new Date(start + i * 1000), plant.tenantId, id, v]);
      }
      const { rows } = await client.query(`select iot_private.save_plain_channel_states(array['COUNT'], 4, 30)::text[] as slow`);
      const cache = await client.query(`select baseline_end from iot_private.channel_event_state where device_id = $1`, [id]);
      cacheEnd = cache.rows[0].baseline_end.getTime();
      return rows[0].slow;
    } finally {
      await client.query('rollback');
      client.release();
    }
  };
  assert.is(await route([67.1, 66.9, 67.2], t0 + 40_000), null, 'plain: settled by the fast path');
  assert.equal(await route([67.1, 75], t0 + 40_000), [id], 'a spike goes to the full detector');
  assert.equal(await route([67.1, 90], t0 + 40_000), [id], 'an out-of-range reading goes to the full detector');
  assert.is(cacheEnd, Date.parse('2026-04-02T10:00:00Z'), 'the cache of the minute the batch starts in');
  assert.is(await route([67.1], t0 + 80_000), null, 'a new minute: settled too, its baseline cache refreshed from the rollups');
  assert.is(cacheEnd, Date.parse('2026-04-02T10:01:00Z'));
});

// Last: a refresh moves the rollup watermark to the present, after which historical readings are
// "late" and reach the rollup views only at the next refresh.
test('the baseline comes from the rollups across batches, before and after a rollup refresh', async () => {
  const power: Channel = { sensorType: 'POWER', unit: 'kW' };
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
    assert.ok((anomalies[0].metadata.readings as number) >= 3500, `readings ${anomalies[0].metadata.readings}`);
    assert.ok(Math.abs((anomalies[0].metadata.mean as number) - 100) < 0.1);
  };
  await spike(before); // rollup views aggregate raw readings (watermark -infinity on tiers 2-3)
  await refreshRollups(db.pool);
  await spike(after); // rollup table below the watermark, raw readings above it
});

test.run();

// The rollup path of sensor health (iot_private.channel_sensor_health, what the health job scores
// with) against its raw reference (channel_sensor_health_raw), on a plant whose readings sit on
// every boundary the rollup path relies on: the 24 h window's ends (a reading exactly at each),
// whole hours against the ragged minutes at both ends, hours and minutes wholly inside, wholly
// outside and straddling a bound of the normal range (both bounds, one bound, a channel's own
// range), and the rollups' watermarks: before any refresh (all live), after one (materialized),
// new readings above the watermark (live, unrefreshed; also in the 1-day rollup's current day),
// late readings below it (then refreshed).
// On every tier: tier 1 reads continuous aggregates, tiers 2-3 rollup tables.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { ReadingSink } from '../../src/ingest/sink';
import { createTestDatabase, seedSmallPlant, TestDatabase } from '../helpers/db';
import { refreshRollups, serverTier } from '../helpers/tier';

const test = suite('db: sensor health from the rollups equals raw readings (window ends, range bounds, watermarks)');
let db: TestDatabase;
let plant: Awaited<ReturnType<typeof seedSmallPlant>>;
let device2: string;

const MINUTE = 60_000;
const HOUR = 60 * MINUTE;
const AT = Math.floor(Date.now() / MINUTE) * MINUTE; // a whole minute
const HOUR_OF_AT = Math.floor(AT / HOUR) * HOUR;

interface Reading { time: number; device: string; sensorType: string; value: number }

async function ingest(readings: Reading[]): Promise<void> {
  const sink = new ReadingSink(db.pool, { batchSize: 5000, maxWaitMs: 5, bufferMax: 100_000 });
  sink.add(readings.map((r) => ({ time: new Date(r.time), tenantId: plant.tenantId, deviceId: r.device, sensorType: r.sensorType,
    value: r.value, unit: 'u', quality: 'GOOD' as const })));
  await sink.close();
  assert.is(sink.stats.deadLetters, 0, 'no reading refused');
}

/** Temperature (range 60..75) by the hour it falls in: clean, wholly above, minutes alternating, readings alternating. */
function temperature(t: number): number {
  const hour = Math.floor(t / HOUR) % 4;
  const minute = Math.floor(t / MINUTE);
  if (hour === 0) return 70;
  if (hour === 1) return 80; // wholly outside: exact from the hour's sums
  if (hour === 2) return minute % 2 ? 78 : 70; // the hour straddles, each minute is clean or wholly outside
  return Math.floor(t / 20_000) % 3 === 0 ? 55 : 70; // minutes straddle the lower bound: raw readings
}

test.before(async () => {
  db = await createTestDatabase('health_fast_path');
  plant = await seedSmallPlant(db.pool);
  device2 = (await db.pool.query(`insert into iot.iot_devices (tenant_id, work_center_id, device_code, device_type)
    values ($1, $2, 'F1-DEV-2', 'SENSOR') returning id`, [plant.tenantId, plant.workCenterId])).rows[0].id;
  // A channel range of its own (65..70), a lower bound only (speed has no type range), an inactive channel.
  await db.pool.query(`insert into iot.device_channels (tenant_id, device_id, sensor_type, unit, normal_min, normal_max, is_active) values
    ($1, $2, 'TEMPERATURE', 'u', 65, 70, true), ($1, $2, 'SPEED', 'u', 100, null, true), ($1, $2, 'HUMIDITY', 'u', null, null, false)`,
  [plant.tenantId, device2]);
  const readings: Reading[] = [];
  for (let t = AT - 26 * HOUR; t < AT; t += 20_000) {
    readings.push({ time: t, device: plant.deviceId, sensorType: 'TEMPERATURE', value: temperature(t) });
    readings.push({ time: t + 7_000, device: device2, sensorType: 'TEMPERATURE', value: 64 + (Math.floor(t / 20_000) % 8) });
    readings.push({ time: t + 3_000, device: device2, sensorType: 'SPEED', value: 90 + (Math.floor(t / 60_000) % 21) });
    if (t % MINUTE === 0) readings.push({ time: t, device: plant.deviceId, sensorType: 'VIBRATION', value: t % (7 * MINUTE) ? 2.5 : 2.5001 });
  }
  // Pressure (80..120) only at the window's edges: exactly at its start (in), just before (out),
  // just before its end (in) and exactly at it (out, a reading of the next minute).
  for (const [time, value] of [[AT - 24 * HOUR, 130], [AT - 24 * HOUR - 1, 10], [AT - 1, 70], [AT, 500]]) {
    readings.push({ time, device: plant.deviceId, sensorType: 'PRESSURE', value });
  }
  await ingest(readings);
  // The inactive channel's readings (from when it was active: the sink refuses them now).
  await db.pool.query(`insert into iot_private.sensor_readings (time, tenant_id, device_id, sensor_type, value, unit, quality)
    select t, $1, $2, 'HUMIDITY', 99, 'u', 'GOOD' from generate_series($3::timestamptz, $4::timestamptz, interval '20 seconds') t`,
  [plant.tenantId, device2, new Date(AT - 26 * HOUR), new Date(AT - 1000)]);
});
test.after(async () => db.drop());

const fields = 'device_id, sensor_type, readings, avg_deviation, max_deviation, score';
async function health(fn: 'channel_sensor_health' | 'channel_sensor_health_raw', at: number) {
  return (await db.pool.query(`select ${fields} from iot_private.${fn}($1, $2) order by device_id, sensor_type`,
    [[plant.workCenterId], new Date(at)])).rows;
}

/** The rollup path and raw readings agree at `at`; returns the rollup path's rows. */
async function assertSameAsRaw(at: number, label: string) {
  const fast = await health('channel_sensor_health', at);
  const raw = await health('channel_sensor_health_raw', at);
  const key = (r: { device_id: string; sensor_type: string }) => `${r.device_id === device2 ? 'dev2' : 'dev1'} ${r.sensor_type}`;
  assert.equal(fast.map(key), raw.map(key), `${label}: the same channels`);
  fast.forEach((f, i) => {
    const r = raw[i];
    assert.is(f.readings, r.readings, `${label}: ${key(f)} readings`);
    assert.ok(Math.abs(f.avg_deviation - r.avg_deviation) <= 1e-9 * Math.max(1, Math.abs(r.avg_deviation)),
      `${label}: ${key(f)} average deviation ${f.avg_deviation} vs raw ${r.avg_deviation}`);
    assert.is(f.max_deviation, r.max_deviation, `${label}: ${key(f)} max deviation`);
    assert.ok(Math.abs(Number(f.score) - Number(r.score)) <= 0.01, `${label}: ${key(f)} score ${f.score} vs raw ${r.score}`);
  });
  return fast;
}

/** Instants that put the window's ends on and off the hour grid. */
const INSTANTS: [number, string][] = [
  [AT, 'at a whole minute'], [AT + 30_000, 'at a half minute'], [AT - 37 * MINUTE, '37 minutes earlier'], [HOUR_OF_AT, 'at a whole hour'],
];

/** The 1m and 1h rollups' watermarks: materialized below, aggregated live from raw readings at and above. */
async function watermarks(): Promise<{ m: number; h: number }> {
  const sql = serverTier() === 1
    ? `select replace(replace(c.user_view_name, 'sensor_readings_', ''), '_cagg', '') as rollup,
              _timescaledb_functions.to_timestamp(_timescaledb_functions.cagg_watermark(c.mat_hypertable_id)) as mark
       from _timescaledb_catalog.continuous_agg c`
    : 'select rollup_name as rollup, watermark as mark from iot_private.rollup_watermarks';
  const rows = (await db.pool.query(sql)).rows;
  const mark = (rollup: string) => new Date(rows.find((r) => r.rollup === rollup).mark).getTime();
  return { m: mark('1m'), h: mark('1h') };
}

test('before any refresh (everything aggregated live): equal to raw readings at every instant', async () => {
  for (const [at, label] of INSTANTS) await assertSameAsRaw(at, label);
  const rows = await assertSameAsRaw(AT, 'check');
  assert.equal(rows.map((r) => r.sensor_type).sort(), ['PRESSURE', 'SPEED', 'TEMPERATURE', 'TEMPERATURE', 'VIBRATION'],
    'the inactive channel is left out');
  const pressure = rows.find((r) => r.sensor_type === 'PRESSURE');
  assert.is(Number(pressure.readings), 2, 'the readings at the window start and just before its end, not those outside');
});

test('after a refresh (materialized rollups): equal to raw readings, through straddling hours and minutes', async () => {
  await refreshRollups(db.pool);
  // The fixture reaches every branch: hours wholly outside, hours and minutes straddling a bound.
  const kinds = (await db.pool.query(`
    select count(*) filter (where value_min > 75) as hours_outside,
           count(*) filter (where value_min <= 75 and value_max > 75) as hours_straddling
    from iot_private.sensor_readings_1h where device_id = $1 and sensor_type = 'TEMPERATURE'`, [plant.deviceId])).rows[0];
  assert.ok(Number(kinds.hours_outside) > 0 && Number(kinds.hours_straddling) > 0, JSON.stringify(kinds));
  const minutes = (await db.pool.query(`select count(*) as n from iot_private.sensor_readings_1m
    where device_id = $1 and sensor_type = 'TEMPERATURE' and value_min < 60 and value_max >= 60`, [plant.deviceId])).rows[0];
  assert.ok(Number(minutes.n) > 0, 'minutes straddling the lower bound');
  for (const [at, label] of INSTANTS) await assertSameAsRaw(at, `refreshed, ${label}`);
});

test('readings above the watermark (not yet refreshed) count at once', async () => {
  const now = Date.now();
  const atLive = Math.floor(now / MINUTE) * MINUTE + MINUTE; // its window ends after these readings
  const marks = await watermarks();
  const times = [now - 2_000, now - 1_000];
  assert.ok(times.every((t) => t >= marks.m && t >= marks.h), `readings above both watermarks (${JSON.stringify(marks)})`);
  const before = await health('channel_sensor_health', atLive);
  await ingest(times.map((time) => ({ time, device: plant.deviceId, sensorType: 'VIBRATION', value: 9 })));
  const after = await assertSameAsRaw(atLive, 'live readings');
  const vib = (rows: typeof after) => rows.find((r) => r.device_id === plant.deviceId && r.sensor_type === 'VIBRATION');
  assert.is(Number(vib(after).readings), Number(vib(before).readings) + 2);
  assert.ok(Number(vib(after).score) < Number(vib(before).score), 'the live readings lower the score');
  // The 1-day rollup's current day (summed from the 1-hour rollup above its watermark) has them too.
  const day = (await db.pool.query(`
    select (select v.reading_count from iot_private.sensor_readings_1d v where v.device_id = $1 and v.sensor_type = 'VIBRATION'
              and v.bucket = date_bin('1 day', $2::timestamptz, timestamptz '2000-01-01 00:00Z')) as rollup,
           (select count(*) from iot_private.sensor_readings r where r.device_id = $1 and r.sensor_type = 'VIBRATION'
              and r.time >= date_bin('1 day', $2::timestamptz, timestamptz '2000-01-01 00:00Z')
              and r.time < date_bin('1 day', $2::timestamptz, timestamptz '2000-01-01 00:00Z') + interval '1 day') as raw`,
  [plant.deviceId, new Date(times[1])])).rows[0];
  assert.is(String(day.rollup), String(day.raw), 'the current day of the 1-day rollup counts the live readings');
});

test('late readings below the watermark are counted after the next refresh', async () => {
  const before = await health('channel_sensor_health', AT);
  // In a clean hour 8-11 hours back (it then straddles), and in the ragged first minutes of the
  // window (off the 20 s grid of the stored readings, so none is a duplicate).
  const base = Math.floor(HOUR_OF_AT / HOUR) - 8;
  const cleanHour = (base - (base % 4)) * HOUR;
  assert.is(temperature(cleanHour + 1000), 70, 'a clean hour');
  const late = [cleanHour + 90_500, AT - 24 * HOUR + 10_500, AT - 24 * HOUR + 30_250];
  assert.ok((await watermarks()).h > late[0], 'the late readings are below the watermark');
  await ingest(late.map((time) => ({ time, device: plant.deviceId, sensorType: 'TEMPERATURE', value: 90 + (time % 7) })));
  await refreshRollups(db.pool);
  const after = await assertSameAsRaw(AT, 'late readings, refreshed');
  const temp = (rows: typeof after) => rows.find((r) => r.device_id === plant.deviceId && r.sensor_type === 'TEMPERATURE');
  assert.is(Number(temp(after).readings), Number(temp(before).readings) + 3);
  for (const [at, label] of INSTANTS) await assertSameAsRaw(at, `late readings, refreshed, ${label}`);
});

test.run();

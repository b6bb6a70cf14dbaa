// The rollups against the raw readings they summarise, on every tier: readings now, a backfilled
// day, then late readings of several ages (minutes to 120 days); after each refresh every bucket of
// sensor_readings_1m/_1h/_1d must equal the aggregate computed from raw readings. Then retention
// drops the raw chunks older than 30 days: the rollups of those days must stay exactly as they were
// (a rollup outlives its raw data), also after further refreshes and late readings.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { ReadingSink } from '../../src/ingest/sink';
import { createTestDatabase, seedSmallPlant, TestDatabase } from '../helpers/db';
import { materializedRollupRows, onTiers, refreshRollups } from '../helpers/tier';

const test = suite('db: rollups equal the aggregates of raw readings (late data, backfill, retention)');
let db: TestDatabase;
let plant: Awaited<ReturnType<typeof seedSmallPlant>>;

const MINUTE = 60_000;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;
const ROLLUPS = [['1m', '1 minute'], ['1h', '1 hour'], ['1d', '1 day']] as const;
const SENSORS = [['TEMPERATURE', '°F'], ['PRESSURE', 'PSI'], ['VIBRATION', 'mm/s']] as const;
let seed = 42;
const random = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);

test.before(async () => {
  db = await createTestDatabase('rollups_differential');
  plant = await seedSmallPlant(db.pool);
});
test.after(async () => db.drop());

/** Readings of every sensor at the given times, through the sink (the ingest path, late-data marks included). */
async function ingest(times: number[]): Promise<number> {
  const sink = new ReadingSink(db.pool, { batchSize: 5000, maxWaitMs: 5, bufferMax: 100_000 });
  sink.add(times.flatMap((t) => SENSORS.map(([sensorType, unit]) => ({
    time: new Date(t), tenantId: plant.tenantId, deviceId: plant.deviceId, sensorType, unit, quality: 'GOOD' as const,
    value: Math.round((10 + random() * 90) * 1000) / 1000,
  }))));
  await sink.close();
  assert.is(sink.stats.deadLetters, 0, 'no reading refused');
  return times.length * SENSORS.length;
}

/** Buckets where the rollup view and the aggregate of raw readings differ (from `from` on), with a sample. */
async function mismatches(rollup: string, width: string, from = '-infinity'): Promise<{ n: number; sample: unknown[] }> {
  const { rows } = await db.pool.query(`
    with raw as (
      select date_bin('${width}', time, timestamptz '2000-01-01 00:00Z') as bucket, tenant_id, device_id, sensor_type,
             count(*) as n, sum(value) as s, sum(value * value) as sq, min(value) as lo, max(value) as hi
      from iot_private.sensor_readings group by 1, 2, 3, 4
    ), v as (select * from iot_private.sensor_readings_${rollup})
    select coalesce(raw.bucket, v.bucket) as bucket, raw.sensor_type, raw.n, v.reading_count
    from raw full join v using (bucket, tenant_id, device_id, sensor_type)
    where coalesce(raw.bucket, v.bucket) >= $1::timestamptz
      and (v.reading_count is distinct from raw.n
        or abs(v.value_sum - raw.s) > 1e-9 * greatest(abs(raw.s), 1)
        or abs(v.value_sum_sq - raw.sq) > 1e-9 * greatest(abs(raw.sq), 1)
        or v.value_min is distinct from raw.lo or v.value_max is distinct from raw.hi)
    order by 1`, [from]);
  return { n: rows.length, sample: rows.slice(0, 3) };
}

async function assertRollupsEqualRaw(when: string, from?: string) {
  for (const [g, w] of ROLLUPS) {
    const m = await mismatches(g, w, from);
    assert.is(m.n, 0, `${g} ${when}: ${m.n} buckets differ from raw readings, e.g. ${JSON.stringify(m.sample)}`);
  }
}

async function timedRefresh(): Promise<number> {
  const t = Date.now();
  await refreshRollups(db.pool);
  return Date.now() - t;
}

/** What is left to refresh: tier 1 TimescaleDB's log of inserts below the watermark, tiers 2-3 ours. */
async function pendingInvalidations(): Promise<number> {
  const table = db.tier === 1 ? '_timescaledb_catalog.continuous_aggs_hypertable_invalidation_log' : 'iot_private.rollup_invalidations';
  return Number((await db.pool.query(`select count(*) as n from ${table}`)).rows[0].n);
}

const now = Date.now();
/** The UTC day restored from a backup in the first test: fully covered by readings, 9 to 10 days old. */
const backfillDay = Math.floor((now - 10 * DAY) / DAY) * DAY;
const every = (from: number, to: number, step: number) => Array.from({ length: Math.floor((to - from) / step) }, (_, i) => from + i * step);

test('current and backfilled readings: the rollups equal raw aggregates before and after the first refresh', async () => {
  await ingest(every(now - 6 * HOUR, now, 20_000));
  await ingest(every(backfillDay, backfillDay + DAY, MINUTE)); // a day restored from a backup, before any refresh
  await assertRollupsEqualRaw('before the first refresh');
  const ms = await timedRefresh();
  await assertRollupsEqualRaw('after the first refresh');
  assert.ok(await materializedRollupRows(db.pool, '1m', db.tier) >= 1440 * SENSORS.length, 'the 1m rollup is stored, not only computed live');
  assert.ok(await materializedRollupRows(db.pool, '1d', db.tier) >= SENSORS.length);
  const idle = await timedRefresh();
  console.log(`  [figures] tier ${db.tier}: first refresh ${ms} ms (${await materializedRollupRows(db.pool, '1m', db.tier)} 1m rows), a refresh with nothing new ${idle} ms`);
});

test('late readings of several ages (3 min to 120 days) reach every rollup at the next refresh', async () => {
  const ages = [3 * MINUTE, 5 * HOUR, 3 * DAY, 10 * DAY + 7 * HOUR, 40 * DAY, 120 * DAY];
  let late = 0;
  // One batch per age, and one batch mixing all ages.
  for (const age of ages) late += await ingest(every(now - age - 10 * MINUTE, now - age, 30_000).map((t) => t + 500));
  late += await ingest(ages.map((age) => now - age - 250));
  const hidden = await mismatches('1m', '1 minute');
  assert.ok(hidden.n > 0, 'late readings below the watermark are not in the 1m rollup before a refresh (else this test proves nothing)');
  assert.ok(await pendingInvalidations() > 0, 'the late readings were recorded as invalidations');
  const ms = await timedRefresh();
  await assertRollupsEqualRaw('after late readings and a refresh');
  assert.is(await pendingInvalidations(), 0, 'every invalidation was processed');
  const idle = await timedRefresh();
  console.log(`  [figures] tier ${db.tier}: refresh after ${late} late readings over ${ages.length} ages ${ms} ms, then ${idle} ms with nothing new`);
});

onTiers(test, [1], 'compression is a TimescaleDB community feature (tier 1 only)')('tier 1: compressed chunks are read, rolled up and take late readings (deduplicated)', async () => {
  const compressed = Number((await db.pool.query(`select iot_private.compress_telemetry_before(now() - interval '1 day') as n`)).rows[0].n);
  assert.ok(compressed >= 3, `compressed ${compressed} chunks`);
  const again = Number((await db.pool.query(`select iot_private.compress_telemetry_before(now() - interval '1 day') as n`)).rows[0].n);
  assert.is(again, 0, 'compressed chunks are not compressed again');
  await assertRollupsEqualRaw('reading compressed chunks');
  const count = async () => Number((await db.pool.query(`select count(*) as n from iot_private.sensor_readings`)).rows[0].n);
  const before = await count();
  // Late readings into compressed days, and one reading delivered twice (its first copy is compressed).
  const late = every(now - 3 * DAY - 5 * MINUTE, now - 3 * DAY, 15_000).map((t) => t + 125);
  await ingest([...late, now - (10 * DAY + 7 * HOUR) - 10 * MINUTE + 500]);
  assert.is(await count(), before + late.length * SENSORS.length, 'new late readings stored, the repeated one not');
  await refreshRollups(db.pool);
  await assertRollupsEqualRaw('after late readings into compressed chunks');
  const stats = (await db.pool.query(`select sum(before_compression_total_bytes)::bigint as b, sum(after_compression_total_bytes)::bigint as a
    from chunk_compression_stats('iot_private.sensor_readings') where compression_status = 'Compressed'`)).rows[0];
  console.log(`  [figures] tier 1: ${compressed} chunks compressed, ${stats.b} -> ${stats.a} bytes (test data is small: see the README for demo data)`);
});

test('readings arriving now are in the rollups at once (current up to the latest reading)', async () => {
  await ingest([Date.now()]);
  const { rows } = await db.pool.query(`select max(bucket) as b from iot_private.sensor_readings_1m`);
  assert.ok(Date.now() - new Date(rows[0].b).getTime() < 2 * MINUTE, `latest 1m bucket ${rows[0].b}`);
  await assertRollupsEqualRaw('with a reading just now');
});

test('retention drops raw readings older than 30 days; the rollups of those days stay as they were', async () => {
  const cutoff = new Date(now - 30 * DAY);
  const snapshot = async () => {
    const out: Record<string, unknown[]> = {};
    for (const [g] of ROLLUPS) {
      out[g] = (await db.pool.query(`select bucket, sensor_type, reading_count, value_sum, value_sum_sq, value_min, value_max
        from iot_private.sensor_readings_${g} where bucket < $1 order by bucket, sensor_type`, [cutoff])).rows;
    }
    return out;
  };
  const before = await snapshot();
  for (const [g] of ROLLUPS) assert.ok(before[g].length > 0, `${g} has buckets older than the cutoff to keep`);
  const dropped = Number((await db.pool.query(`select iot_private.drop_telemetry_before($1) as n`, [cutoff])).rows[0].n);
  assert.ok(dropped >= 2, `dropped ${dropped} chunks/partitions (40 and 120 days old)`);
  const old = await db.pool.query(`select count(*)::int as n from iot_private.sensor_readings where time < $1`, [cutoff]);
  assert.is(old.rows[0].n, 0, 'no raw reading older than the cutoff is left');
  const from = (await db.pool.query(`select iot_private.telemetry_retained_from() as t`)).rows[0].t as Date;
  assert.ok(from.getTime() <= cutoff.getTime() && from.getTime() > now - 40 * DAY, `retained from ${from.toISOString()}`);

  await timedRefresh();
  assert.equal(await snapshot(), before, 'a refresh after retention leaves the older rollups as they were');
  await assertRollupsEqualRaw('after retention, over the retained range', from.toISOString());

  // More late readings inside the retained range, then another refresh: still exact, old days still kept.
  await ingest(every(now - 2 * DAY, now - 2 * DAY + 5 * MINUTE, 10_000).map((t) => t + 750));
  await timedRefresh();
  await assertRollupsEqualRaw('after retention and more late readings', from.toISOString());
  assert.equal(await snapshot(), before, 'and the older rollups are still kept');
});

test('rollup retention per relation: the 1m rollup is dropped after its days, 1h and 1d are kept, refreshes do not bring it back', async () => {
  const cutoff = Date.now() - 5 * DAY;
  const keep = async (g: string) => Number((await db.pool.query(`select count(*) as n from iot_private.sensor_readings_${g} where bucket < $1`, [new Date(cutoff)])).rows[0].n);
  const [h, d] = [await keep('1h'), await keep('1d')];
  assert.ok(await keep('1m') > 1000, 'there are old 1m buckets (the backfilled day)');
  await db.pool.query(`update iot_private.settings set value = '5' where key = 'rollup_1m_retention_days'`);
  const result = (await db.pool.query(`select rollup_name, dropped::int as n from iot_private.apply_rollup_retention() order by 1`)).rows;
  assert.ok(result.find((r) => r.rollup_name === '1m').n > 0, JSON.stringify(result));
  assert.equal(result.filter((r) => r.rollup_name !== '1m').map((r) => r.n), [0, 0]);
  // Tier 1 drops whole chunks of the continuous aggregate (10 days each): allow one chunk's slack there.
  const slack = db.tier === 1 ? 10 * DAY : 0;
  const left = Number((await db.pool.query(`select count(*) as n from iot_private.sensor_readings_1m where bucket < $1`, [new Date(cutoff - slack)])).rows[0].n);
  assert.is(left, 0, '1m buckets older than the retention are gone');
  // A late reading in the backfilled day, whose 1m buckets are gone but whose hour and day buckets exist
  // (not now - 10 days + 3 h: after 21:00 UTC that is the next day, which has no 1h or 1d bucket yet).
  await ingest([backfillDay + 3 * HOUR + 900]);
  await refreshRollups(db.pool);
  assert.is(Number((await db.pool.query(`select count(*) as n from iot_private.sensor_readings_1m where bucket < $1`, [new Date(cutoff - slack)])).rows[0].n), 0,
    'a refresh does not recompute dropped 1m buckets');
  assert.equal([await keep('1h'), await keep('1d')], [h, d], '1h and 1d rollups are kept');
  const bad = await db.pool.query(`update iot_private.settings set value = 'soon' where key = 'rollup_1h_retention_days'`).then(() => null, (e) => e);
  assert.is(bad?.code, '22023', 'a retention setting that is not a number of days is refused');
});

test.run();

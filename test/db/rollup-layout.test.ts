// The rollup tables' physical order (tiers 2-3). A dashboard reads a time range of a rollup; when a
// refresh wrote its rows in hash-aggregate order, the rows of one bucket lay on as many pages as
// there were channels (tier 2 at 51.8M readings: the last hour of the 1-minute rollup read 27,700
// pages for 18,000 rows, 71 ms; written in bucket order, 28 ms).
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { ReadingSink } from '../../src/ingest/sink';
import { createTestDatabase, seedSmallPlant, TestDatabase } from '../helpers/db';
import { onTiers, refreshRollups } from '../helpers/tier';

const test = suite('db: rollup tables are written in bucket order');
let db: TestDatabase;
let plant: Awaited<ReturnType<typeof seedSmallPlant>>;

test.before(async () => {
  db = await createTestDatabase('rollup_layout');
  plant = await seedSmallPlant(db.pool);
});
test.after(async () => db.drop());

onTiers(test, [2, 3], 'tier 1 keeps its rollups in TimescaleDB continuous aggregates, whose layout TimescaleDB decides')(
  'a first refresh of three days writes every rollup table in bucket order', async () => {
    const start = Date.now() - 3 * 86_400_000;
    const readings = [];
    for (let t = start; t < Date.now() - 120_000; t += 30_000) {
      for (const sensorType of ['TEMPERATURE', 'PRESSURE']) {
        readings.push({ time: new Date(t), tenantId: plant.tenantId, deviceId: plant.deviceId, sensorType,
          value: 50 + Math.sin(t / 600_000), unit: sensorType === 'TEMPERATURE' ? '°F' : 'PSI', quality: 'GOOD' as const });
      }
    }
    readings.sort(() => Math.random() - 0.5); // arrival order is not time order
    const sink = new ReadingSink(db.pool, { batchSize: 5000, maxWaitMs: 5, bufferMax: 100_000 });
    sink.add(readings);
    await sink.close();
    await refreshRollups(db.pool);
    for (const g of ['1m', '1h', '1d']) {
      const { rows } = await db.pool.query(`
        select count(*)::int as rows, count(*) filter (where bucket < previous)::int as out_of_order
        from (select bucket, lag(bucket) over (order by ctid) as previous from iot_private.sensor_readings_${g}_rollup) r`);
      assert.ok(rows[0].rows > (g === '1d' ? 3 : 100), `rollup ${g} has rows (${rows[0].rows})`);
      assert.is(rows[0].out_of_order, 0, `rollup ${g}: ${rows[0].out_of_order} of ${rows[0].rows} rows stored before an earlier bucket`);
    }
  });

onTiers(test, [2, 3], 'tier 1 refreshes continuous aggregates, whose buckets TimescaleDB computes')(
  'a refresh from a session in a daylight-saving time zone writes each day once', async () => {
    // Europe/Amsterdam's day of 2026-03-29 is 23 hours long: a day step of `+ interval '1 day'` in that
    // session split the 1-day bucket in two inserts (duplicate key; every later refresh rolled back).
    const from = Date.parse('2026-03-27T00:00:00Z');
    const to = Date.parse('2026-03-31T00:00:00Z');
    const readings = [];
    for (let t = from; t < to; t += 600_000) {
      readings.push({ time: new Date(t), tenantId: plant.tenantId, deviceId: plant.deviceId, sensorType: 'VIBRATION',
        value: 1, unit: 'mm/s', quality: 'GOOD' as const });
    }
    const sink = new ReadingSink(db.pool, { batchSize: 5000, maxWaitMs: 5, bufferMax: 100_000 });
    sink.add(readings);
    await sink.close();
    const client = await db.pool.connect();
    try {
      await client.query(`set timezone = 'Europe/Amsterdam'`);
      for (const g of ['1m', '1h', '1d']) {
        await client.query(`select iot_private.recompute_rollup($1, $2, $3)`, [g, new Date(from), new Date(to)]);
      }
    } finally {
      await client.query('reset timezone');
      client.release();
    }
    const { rows } = await db.pool.query(`
      select to_char(bucket at time zone 'UTC', 'YYYY-MM-DD HH24:MI') as day, reading_count::int as n
      from iot_private.sensor_readings_1d_rollup where sensor_type = 'VIBRATION' order by bucket`);
    assert.equal(rows, ['27', '28', '29', '30'].map((d) => ({ day: `2026-03-${d} 00:00`, n: 144 })));
    const hours = await db.pool.query(`select count(*)::int as buckets, min(reading_count)::int as least, max(reading_count)::int as most
      from iot_private.sensor_readings_1h_rollup where sensor_type = 'VIBRATION'`);
    assert.equal(hours.rows[0], { buckets: 96, least: 6, most: 6 });
    const infinite = await db.pool.query(`select iot_private.recompute_rollup('1h', '-infinity', now())`).catch((e: { code?: string; message: string }) => e);
    assert.is((infinite as { code?: string }).code, '22023', 'an unbounded range is refused, not looped over');
  });

test.run();

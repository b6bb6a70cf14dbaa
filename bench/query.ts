// npm run bench:query — typical dashboard queries on the rollups and on raw readings, on a plant of
// BENCH_DEVICES x 3 sensors reporting every BENCH_INTERVAL_S seconds for BENCH_DAYS days (defaults:
// 100 x 3, 15 s, 30 days = 51.8 million readings), per tier (BENCH_DATABASE_URL picks the server).
// Not a test: it prints a table with the median of BENCH_REPEATS runs of each and the ratio.
import { Pool } from 'pg';
import { setLogLevel } from '../src/lib/log';
import { benchDatabase, fmt, handleArguments, seedBenchPlant } from './support';

handleArguments(`
npm run bench:query: dashboard queries on the 1m/1h/1d rollups and on raw readings, with the ratio.

Variables:
  BENCH_DAYS         days of readings (30)
  BENCH_INTERVAL_S   seconds between readings of a channel (15)
  BENCH_REPEATS      runs of each query; the median is printed (5)
  (the plant: 100 devices with 3 sensors each, bench/support.ts seedBenchPlant)`);

const DAYS = Number(process.env.BENCH_DAYS ?? 30);
const INTERVAL_S = Number(process.env.BENCH_INTERVAL_S ?? 15);
const REPEATS = Number(process.env.BENCH_REPEATS ?? 5);

/** Writes the readings in the database itself, a day at a time (no client round trip per row). */
async function fill(pool: Pool, end: Date): Promise<number> {
  const start = new Date(end.getTime() - DAYS * 86_400_000);
  await pool.query(`select iot_private.ensure_partitions('sensor_readings', $1, $2)`, [start, end]);
  let total = 0;
  for (let d = 0; d < DAYS; d++) {
    const from = new Date(start.getTime() + d * 86_400_000);
    const r = await pool.query(
      `insert into iot_private.sensor_readings (time, tenant_id, device_id, sensor_type, value, unit, quality)
       select t, c.tenant_id, c.device_id, c.sensor_type,
              case c.sensor_type when 'TEMPERATURE' then 68 when 'PRESSURE' then 100 else 1.2 end
                + sin(extract(epoch from t) / 600 + hashtext(c.device_id::text))
                  * case c.sensor_type when 'TEMPERATURE' then 2 when 'PRESSURE' then 5 else 0.3 end, c.unit, 'GOOD'
       from generate_series($1::timestamptz, $1::timestamptz + interval '1 day' - make_interval(secs => $2), make_interval(secs => $2)) t
       cross join (select d.tenant_id, ch.device_id, ch.sensor_type, ch.unit from iot.device_channels ch join iot.iot_devices d on d.id = ch.device_id) c`,
      [from, INTERVAL_S]);
    total += r.rowCount ?? 0;
    process.stderr.write(`\r  (filling: day ${d + 1} of ${DAYS}, ${fmt(total)} readings)`);
  }
  process.stderr.write('\n');
  return total;
}

async function median(pool: Pool, text: string, values: unknown[]): Promise<{ ms: number; rows: number }> {
  const times: number[] = [];
  let rows = 0;
  for (let i = 0; i < REPEATS; i++) {
    const t0 = process.hrtime.bigint();
    rows = (await pool.query(text, values)).rowCount ?? 0;
    times.push(Number(process.hrtime.bigint() - t0) / 1e6);
  }
  times.sort((a, b) => a - b);
  return { ms: times[Math.floor(times.length / 2)], rows };
}

async function main() {
  setLogLevel('warn');
  const db = await benchDatabase('query');
  const pool = new Pool({ connectionString: db.url, max: 2 });
  try {
    const plant = await seedBenchPlant(pool);
    const end = new Date(Math.floor(Date.now() / 60_000) * 60_000);
    const t0 = Date.now();
    const readings = await fill(pool, end);
    const filled = (Date.now() - t0) / 1000;
    const t1 = Date.now();
    await pool.query('call iot_private.refresh_all_rollups()');
    const refreshed = (Date.now() - t1) / 1000;
    await pool.query('analyze');
    const device = plant.devices[0].id;
    const queries: { name: string; rollup: [string, unknown[]]; raw: [string, unknown[]] }[] = [
      {
        name: 'one device, 30 days, hourly',
        rollup: [`select bucket, avg_value, min_value, max_value from iot.sensor_readings_1h
                  where device_id = $1 and sensor_type = 'TEMPERATURE' and bucket >= $2 order by bucket`, [device, new Date(end.getTime() - 30 * 86_400_000)]],
        raw: [`select date_trunc('hour', reading_timestamp) as bucket, avg(reading_value), min(reading_value), max(reading_value)
               from iot.sensor_readings where iot_device_id = $1 and sensor_type = 'TEMPERATURE' and reading_timestamp >= $2
               group by 1 order by 1`, [device, new Date(end.getTime() - 30 * 86_400_000)]],
      },
      {
        name: 'all devices, last hour, per minute',
        rollup: [`select bucket, device_id, sensor_type, avg_value from iot.sensor_readings_1m where bucket >= $1 order by bucket`,
          [new Date(end.getTime() - 3_600_000)]],
        raw: [`select date_trunc('minute', reading_timestamp) as bucket, iot_device_id, sensor_type, avg(reading_value)
               from iot.sensor_readings where reading_timestamp >= $1 group by 1, 2, 3 order by 1`, [new Date(end.getTime() - 3_600_000)]],
      },
      {
        name: 'all devices, 30 days, daily',
        rollup: [`select bucket, device_id, sensor_type, avg_value from iot.sensor_readings_1d where bucket >= $1 order by bucket`,
          [new Date(end.getTime() - 30 * 86_400_000)]],
        raw: [`select date_trunc('day', reading_timestamp) as bucket, iot_device_id, sensor_type, avg(reading_value)
               from iot.sensor_readings where reading_timestamp >= $1 group by 1, 2, 3 order by 1`, [new Date(end.getTime() - 30 * 86_400_000)]],
      },
      {
        name: 'health overview: sensor health of every channel, last 24 h',
        rollup: ['select * from iot_private.channel_sensor_health($1, $2)', [plant.workCenters, end]],
        raw: ['select * from iot_private.channel_sensor_health_raw($1, $2)', [plant.workCenters, end]],
      },
    ];
    const rows: string[] = [];
    for (const q of queries) {
      const r = await median(pool, ...q.rollup);
      const w = await median(pool, ...q.raw);
      rows.push(`| ${q.name} | ${r.ms.toFixed(1)} ms (${fmt(r.rows)} rows) | ${w.ms.toFixed(0)} ms (${fmt(w.rows)} rows) | ${(w.ms / r.ms).toFixed(w.ms / r.ms < 10 ? 1 : 0)}x |`);
    }
    console.log([
      `query benchmark (PostgreSQL ${db.version}, tier ${db.tier}): ${fmt(readings)} readings (${plant.devices.length} devices x 3 sensors, ` +
        `every ${INTERVAL_S} s, ${DAYS} days) written in ${filled.toFixed(0)} s, rollups refreshed in ${refreshed.toFixed(0)} s; median of ${REPEATS} runs`,
      '',
      '| query | on the rollups | on raw readings | raw / rollups |',
      '|---|---:|---:|---:|',
      ...rows,
    ].join('\n'));
  } finally {
    await pool.end();
    await db.drop();
  }
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});

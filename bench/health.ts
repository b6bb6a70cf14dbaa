// npm run bench:health — one full scoring pass over many work centers, and how much the rollup
// path saves over reading raw readings. Prints figures; not a test.
// BENCH_WORK_CENTERS (1000) work centers x 3 channels (one in ten overheating for an hour) with 24 h of readings every
// BENCH_HEALTH_STEP_SECONDS (default 60; set 1 for 1-second data, which needs ~260M rows of disk and
// time). The rollup path reads one row per channel-minute whatever the reading rate; the raw path
// reads every reading.
import { Pool } from 'pg';
import { setLogLevel } from '../src/lib/log';
import { benchDatabase, fmt, handleArguments } from './support';

handleArguments(`
npm run bench:health: one full scoring pass over many work centers with 24 h of readings, and how
much the rollup path saves over reading raw readings.

Variables:
  BENCH_WORK_CENTERS           work centers, 3 channels each (1000)
  BENCH_HEALTH_STEP_SECONDS    seconds between readings (60; 1 needs ~260M rows of disk and time)`);

const WORK_CENTERS = Number(process.env.BENCH_WORK_CENTERS ?? 1000);
const STEP = Number(process.env.BENCH_HEALTH_STEP_SECONDS ?? 60);

async function timed<T>(fn: () => Promise<T>): Promise<[T, number]> {
  const t = process.hrtime.bigint();
  const r = await fn();
  return [r, Number(process.hrtime.bigint() - t) / 1e9];
}

async function main() {
  setLogLevel('warn');
  const db = await benchDatabase('health');
  const pool = new Pool({ connectionString: db.url, max: 4 });
  try {
    const at = new Date(Math.floor(Date.now() / 60_000) * 60_000);
    await pool.query(`
      with t as (insert into iot.tenants (tenant_code, name) values ('bench', 'Bench') returning id),
      f as (insert into iot.facilities (tenant_id, facility_code, name) select id, 'B1', 'Bench' from t returning id, tenant_id),
      w as (insert into iot.work_centers (tenant_id, facility_id, work_center_code, name, work_center_type)
            select f.tenant_id, f.id, 'WC' || g, 'WC' || g, 'PRESS' from f, generate_series(1, $1) g returning id, tenant_id, work_center_code),
      d as (insert into iot.iot_devices (tenant_id, work_center_id, device_code) select tenant_id, id, work_center_code || '-S' from w returning id, tenant_id)
      insert into iot.device_channels (tenant_id, device_id, sensor_type, unit)
      select d.tenant_id, d.id, s.t, s.u from d, (values ('TEMPERATURE', '°F'), ('VIBRATION', 'mm/s'), ('PRESSURE', 'PSI')) s(t, u)`, [WORK_CENTERS]);
    const [loaded, loadSeconds] = await timed(async () => {
      await pool.query(`select iot_private.ensure_partitions('sensor_readings', $1::timestamptz - interval '25 hours', $1)`, [at]);
      const r = await pool.query(`
        insert into iot_private.sensor_readings (time, tenant_id, device_id, sensor_type, value, unit, quality)
        select ts, c.tenant_id, c.device_id, c.sensor_type,
               -- In range most of the time; one work center in ten overheats for an hour a day.
               case c.sensor_type when 'TEMPERATURE' then 68 + 3 * sin(extract(epoch from ts) / 3000 + hashtext(c.device_id::text) % 7)
                                       + case when abs(hashtext(c.device_id::text)) % 10 = 0 and extract(hour from ts at time zone 'UTC') = 3 then 10 else 0 end
                                  when 'VIBRATION' then 1.2 + 0.5 * sin(extract(epoch from ts) / 2000)
                                  else 100 + 10 * sin(extract(epoch from ts) / 5000) end,
               'u', 'GOOD'
        from iot.device_channels c,
             generate_series($1::timestamptz - interval '24 hours', $1::timestamptz - interval '1 second', make_interval(secs => $2)) ts`, [at, STEP]);
      await pool.query('select iot_private.refresh_rollups()');
      await pool.query('analyze');
      return r.rowCount ?? 0;
    });
    const ids = (await pool.query('select array_agg(id) as ids from iot.work_centers')).rows[0].ids;
    const [, rollupSeconds] = await timed(() => pool.query('select count(*) from iot_private.channel_sensor_health($1, $2)', [ids, at]));
    const [, rawSeconds] = await timed(() => pool.query('select count(*) from iot_private.channel_sensor_health_raw($1, $2)', [ids, at]));
    const [stored, passSeconds] = await timed(async () => (await pool.query('select iot_private.store_health_scores(null, $1) as n', [at])).rows[0].n);
    const [alerts, alertSeconds] = await timed(async () => (await pool.query('select iot_private.raise_predictive_alerts(null, $1) as n', [at])).rows[0].n);
    const straddling = (await pool.query(`select count(*) from iot_private.sensor_readings_1m b join iot.device_channels c on c.device_id = b.device_id and c.sensor_type = b.sensor_type
       join iot.sensor_types st on st.sensor_type = c.sensor_type
       where b.bucket >= $1::timestamptz - interval '24 hours' and ((b.value_min < st.normal_min and b.value_max >= st.normal_min) or (b.value_max > st.normal_max and b.value_min <= st.normal_max))`, [at])).rows[0].count;
    console.log([
      `health benchmark (PostgreSQL ${db.version}, tier ${db.tier})`,
      `  data            ${fmt(WORK_CENTERS)} work centers x 3 channels, 24 h every ${STEP} s = ${fmt(loaded)} readings (loaded + rolled up in ${loadSeconds.toFixed(1)} s); ${fmt(Number(straddling))} channel-minutes straddle a bound`,
      `  full pass       ${passSeconds.toFixed(2)} s to score and store ${fmt(stored)} work centers (all five dimensions, history, risk factors)`,
      `  alerts          ${alertSeconds.toFixed(2)} s to evaluate alerts (${alerts} raised)`,
      `  sensor health   rollup path ${rollupSeconds.toFixed(2)} s, raw path ${rawSeconds.toFixed(2)} s: ${(rawSeconds / rollupSeconds).toFixed(1)}x faster with rollups` +
        (STEP > 1 ? ` (raw path reads ${STEP}x more rows at 1-second data; the rollup path the same)` : ''),
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

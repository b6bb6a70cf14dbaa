// npm run bench:query — typical dashboard queries on the rollups and on raw readings, on a plant of
// 100 devices x 3 sensors reporting every BENCH_INTERVAL_S seconds for BENCH_DAYS days (defaults:
// 15 s, 30 days = 51.8 million readings), per tier (BENCH_DATABASE_URL picks the server).
// Not a test: it prints a table with the median of BENCH_REPEATS runs of each, the time the server
// spent on it (EXPLAIN ANALYZE: planning + execution; the rest is transfer and parsing in the
// client), and the ratio. A second, clearly labelled row set times a plant sampling every second
// (BENCH_FAST_*), where one 1-minute bucket summarises 60 readings instead of 4.
import { readFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { Pool } from 'pg';
import { projectRoot } from '../src/lib/db/migrate';
import { setLogLevel } from '../src/lib/log';
import { benchDatabase, fmt, handleArguments, seedBenchPlant } from './support';

handleArguments(`
npm run bench:query: dashboard queries on the 1m/1h/1d rollups and on raw readings, with the ratio.

Variables:
  BENCH_DAYS             days of readings (30)
  BENCH_INTERVAL_S       seconds between readings of a channel (15)
  BENCH_REPEATS          runs of each query; the median is printed (5)
  BENCH_FAST_DEVICES     devices (x 3 sensors) of a second plant sampling every BENCH_FAST_INTERVAL_S
                         over the last hour, in its own tenant (100; 0 leaves it out)
  BENCH_FAST_INTERVAL_S  seconds between its readings (1)
  BENCH_KEEP             1: keep the filled database and print its URL (for iterating with psql)
  BENCH_REUSE_URL        URL of a database kept by BENCH_KEEP=1: skip the fill and time the queries on it
  BENCH_ROLLUPS_ONLY     1: time only the rollup side (raw readings take minutes at this scale; for iterating)
  (the plant: 100 devices with 3 sensors each in 10 work centers, bench/support.ts seedBenchPlant)`);

const DAYS = Number(process.env.BENCH_DAYS ?? 30);
const INTERVAL_S = Number(process.env.BENCH_INTERVAL_S ?? 15);
const REPEATS = Number(process.env.BENCH_REPEATS ?? 5);
const FAST_DEVICES = Number(process.env.BENCH_FAST_DEVICES ?? 100);
const FAST_INTERVAL_S = Number(process.env.BENCH_FAST_INTERVAL_S ?? 1);
const KEEP = process.env.BENCH_KEEP === '1';
const REUSE_URL = process.env.BENCH_REUSE_URL;
const ROLLUPS_ONLY = process.env.BENCH_ROLLUPS_ONLY === '1';
const HOUR = 3_600_000;
const DAY = 24 * HOUR;

/** Writes the readings in the database itself, a day at a time (no client round trip per row). */
async function fill(pool: Pool, end: Date): Promise<number> {
  const start = new Date(end.getTime() - DAYS * DAY);
  await pool.query(`select iot_private.ensure_partitions('sensor_readings', $1, $2)`, [start, end]);
  let total = 0;
  for (let d = 0; d < DAYS; d++) {
    const from = new Date(start.getTime() + d * DAY);
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

/**
 * The 1 s plant: tenant "benchfast", one work center of FAST_DEVICES devices x 3 sensors, readings
 * every FAST_INTERVAL_S over the hour before `end`; written below the rollups' watermark, so it is
 * marked for the next refresh (as the sink marks late readings) and refreshed. Returns its tenant.
 */
async function fillFastPlant(pool: Pool, end: Date): Promise<{ tenantId: string; readings: number }> {
  let tenantId = (await pool.query(`select id from iot.tenants where tenant_code = 'benchfast'`)).rows[0]?.id as string | undefined;
  if (!tenantId) {
    tenantId = (await pool.query(`
      with t as (insert into iot.tenants (tenant_code, name) values ('benchfast', 'Bench 1 s') returning id),
      f as (insert into iot.facilities (tenant_id, facility_code, name) select id, 'BF', 'Bench 1 s' from t returning id, tenant_id),
      w as (insert into iot.work_centers (tenant_id, facility_id, work_center_code, name, work_center_type)
            select tenant_id, id, 'WCF', 'WCF', 'PRESS' from f returning id, tenant_id),
      d as (insert into iot.iot_devices (tenant_id, work_center_id, device_code)
            select tenant_id, id, 'BF-WCF-D' || g from w, generate_series(1, $1::int) g returning id, tenant_id)
      insert into iot.device_channels (tenant_id, device_id, sensor_type, unit)
      select d.tenant_id, d.id, s.t, s.u from d, (values ('TEMPERATURE', '°F'), ('VIBRATION', 'mm/s'), ('PRESSURE', 'PSI')) s(t, u)
      returning tenant_id`, [FAST_DEVICES])).rows[0].tenant_id as string;
  }
  const from = new Date(end.getTime() - HOUR);
  const r = await pool.query(`
    insert into iot_private.sensor_readings (time, tenant_id, device_id, sensor_type, value, unit, quality)
    select t, ch.tenant_id, ch.device_id, ch.sensor_type, 50 + sin(extract(epoch from t) / 60 + hashtext(ch.device_id::text)), ch.unit, 'GOOD'
    from iot.device_channels ch, generate_series($2::timestamptz, $3::timestamptz - make_interval(secs => $4), make_interval(secs => $4)) t
    where ch.tenant_id = $1`, [tenantId, from, end, FAST_INTERVAL_S]);
  await pool.query('select iot_private.invalidate_rollups($1, $2)', [from, end]);
  await pool.query('call iot_private.refresh_all_rollups()');
  await pool.query('analyze iot_private.sensor_readings');
  return { tenantId, readings: r.rowCount ?? 0 };
}

/** A reused database: takes out the 1 s plant's readings of an earlier run, so "all devices" is the main plant. */
async function removeFastPlantReadings(pool: Pool, end: Date): Promise<void> {
  const tenant = (await pool.query(`select id from iot.tenants where tenant_code = 'benchfast'`)).rows[0];
  if (!tenant) return;
  const from = new Date(end.getTime() - HOUR);
  await pool.query('delete from iot_private.sensor_readings where tenant_id = $1', [tenant.id]);
  await pool.query('select iot_private.invalidate_rollups($1, $2)', [from, end]);
  await pool.query('call iot_private.refresh_all_rollups()');
}

/** Median client round trip of REPEATS runs (query, transfer, parsing), and the rows returned. */
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

/** Server time of one run (EXPLAIN ANALYZE without per-node timing: planning + execution, no transfer). */
async function serverMs(pool: Pool, text: string, values: unknown[]): Promise<number> {
  const plan = (await pool.query(`explain (analyze, timing off, format json) ${text}`, values)).rows[0]['QUERY PLAN'][0];
  return plan['Planning Time'] + plan['Execution Time'];
}

/** A panel's SQL from a dashboard JSON, with the Grafana macros and variables this benchmark uses filled in. */
function dashboardSql(file: string, title: string, from: Date, to: Date, interval: string, vars: Record<string, string>): string {
  const dashboard = JSON.parse(readFileSync(join(projectRoot, 'deploy/grafana/dashboards', file), 'utf8')) as
    { panels: { title?: string; targets?: { rawSql?: string }[] }[] };
  const sql = dashboard.panels.find((p) => p.title === title)?.targets?.[0]?.rawSql;
  if (!sql) throw new Error(`no panel "${title}" with SQL in ${file}`);
  const f = `'${from.toISOString()}'`;
  const t = `'${to.toISOString()}'`;
  return sql
    .replace(/\$__timeFilter\(([^()]+)\)/g, (_m, col: string) => `${col.trim()} BETWEEN ${f} AND ${t}`)
    .replace(/\$__timeFrom\(\)/g, f).replace(/\$__timeTo\(\)/g, t).replace(/\$__interval\b/g, interval)
    .replace(/\$(\w+)/g, (m, name: string) => vars[name] ?? m);
}

/** The bench plant and the end of its readings in a database filled by an earlier BENCH_KEEP=1 run. */
async function reusedPlant(pool: Pool) {
  const workCenters = (await pool.query(`select array_agg(w.id order by w.work_center_code) as ids from iot.work_centers w
    join iot.tenants t on t.id = w.tenant_id where t.tenant_code = 'bench'`)).rows[0].ids as string[];
  const devices = (await pool.query(`select d.id, d.device_code as code from iot.iot_devices d
    join iot.tenants t on t.id = d.tenant_id where t.tenant_code = 'bench' order by d.device_code`)).rows as { id: string; code: string }[];
  const meta = JSON.parse((await pool.query(`select value from iot_private.settings where key = 'bench_query_fill'`)).rows[0].value);
  return { plant: { workCenters, devices }, ...meta as { end: string; readings: number; filled: number; refreshed: number } };
}

async function reusedDatabase(url: string) {
  const c = new Pool({ connectionString: url, max: 1 });
  const version = (await c.query('show server_version')).rows[0].server_version as string;
  const tier = Number((await c.query(`select value from iot_private.settings where key = 'timescale_tier'`)).rows[0].value);
  await c.end();
  return { url, tier, version, drop: async () => undefined };
}

type Query = { name: string; rollup: [string, unknown[]]; raw: [string, unknown[]] };

function plantQueries(plant: { workCenters: string[]; devices: { id: string }[] }, end: Date): Query[] {
  const device = plant.devices[0].id;
  const days30 = new Date(end.getTime() - 30 * DAY);
  const hour1 = new Date(end.getTime() - HOUR);
  const days7 = new Date(end.getTime() - 7 * DAY);
  const sensorTypes = `'PRESSURE','TEMPERATURE','VIBRATION'`;
  return [
    {
      name: 'one device, 30 days, hourly',
      rollup: [`select bucket, avg_value, min_value, max_value from iot.sensor_readings_1h
                where device_id = $1 and sensor_type = 'TEMPERATURE' and bucket >= $2 order by bucket`, [device, days30]],
      raw: [`select date_trunc('hour', reading_timestamp) as bucket, avg(reading_value), min(reading_value), max(reading_value)
             from iot.sensor_readings where iot_device_id = $1 and sensor_type = 'TEMPERATURE' and reading_timestamp >= $2
             group by 1 order by 1`, [device, days30]],
    },
    {
      name: 'all devices, last hour, per minute',
      rollup: [`select bucket, device_id, sensor_type, avg_value from iot.sensor_readings_1m where bucket >= $1 order by bucket`, [hour1]],
      raw: [`select date_trunc('minute', reading_timestamp) as bucket, iot_device_id, sensor_type, avg(reading_value)
             from iot.sensor_readings where reading_timestamp >= $1 group by 1, 2, 3 order by 1`, [hour1]],
    },
    {
      name: 'all devices, 30 days, daily',
      rollup: [`select bucket, device_id, sensor_type, avg_value from iot.sensor_readings_1d where bucket >= $1 order by bucket`, [days30]],
      raw: [`select date_trunc('day', reading_timestamp) as bucket, iot_device_id, sensor_type, avg(reading_value)
             from iot.sensor_readings where reading_timestamp >= $1 group by 1, 2, 3 order by 1`, [days30]],
    },
    {
      // deploy/grafana/dashboards/sensor-timelines.json as Grafana runs it over 7 days (the 1-hour
      // rollup; $__interval 10m at 1000 points), against the same series computed from raw readings.
      name: 'sensor timeline dashboard: one work center (30 channels), 7 days, 1 h resolution',
      rollup: [dashboardSql('sensor-timelines.json', 'Sensor readings (avg, min, max per device)', days7, end, '10m',
        { work_center: `'${plant.workCenters[0]}'`, sensor_type: sensorTypes }), []],
      raw: [`with g as (
               select date_bin('1 hour', r.reading_timestamp, timestamptz '2000-01-01') as time, d.device_code || ' ' || r.sensor_type as series,
                      avg(r.reading_value) as avg_value, min(r.reading_value) as min_value, max(r.reading_value) as max_value
               from iot.sensor_readings r join iot.iot_devices d on d.id = r.iot_device_id
               where r.reading_timestamp between $1 and $2 and d.work_center_id = $3 and r.sensor_type in (${sensorTypes})
               group by 1, 2)
             select g.time, g.series || ' ' || s.stat as metric, s.value
             from g cross join lateral (values ('avg', g.avg_value), ('min', g.min_value), ('max', g.max_value)) as s(stat, value)
             order by 1`, [days7, end, plant.workCenters[0]]],
    },
    {
      name: 'health overview: sensor health of every channel (300), last 24 h',
      rollup: ['select * from iot_private.channel_sensor_health($1, $2)', [plant.workCenters, end]],
      raw: ['select * from iot_private.channel_sensor_health_raw($1, $2)', [plant.workCenters, end]],
    },
  ];
}

function fastPlantQueries(tenantId: string, end: Date): Query[] {
  const hour1 = new Date(end.getTime() - HOUR);
  return [{
    name: `1 s plant: all its devices, last hour, per minute`,
    rollup: [`select bucket, device_id, sensor_type, avg_value from iot.sensor_readings_1m
              where tenant_id = $1 and bucket >= $2 and bucket < $3 order by bucket`, [tenantId, hour1, end]],
    raw: [`select date_trunc('minute', reading_timestamp) as bucket, iot_device_id, sensor_type, avg(reading_value)
           from iot.sensor_readings where tenant_id = $1 and reading_timestamp >= $2 and reading_timestamp < $3
           group by 1, 2, 3 order by 1`, [tenantId, hour1, end]],
  }];
}

async function timeQueries(pool: Pool, queries: Query[]): Promise<string[]> {
  const rows: string[] = [];
  for (const q of queries) {
    const r = await median(pool, ...q.rollup);
    const rs = await serverMs(pool, ...q.rollup);
    const rollupCells = `| ${q.name} | ${r.ms.toFixed(1)} ms (${fmt(r.rows)} rows) | ${rs.toFixed(1)} ms |`;
    if (ROLLUPS_ONLY) {
      rows.push(`${rollupCells} (not timed) | | |`);
      continue;
    }
    const w = await median(pool, ...q.raw);
    const ws = await serverMs(pool, ...q.raw);
    const ratio = w.ms / r.ms;
    rows.push(`${rollupCells} ${fmt(w.ms)} ms (${fmt(w.rows)} rows) | ${fmt(ws)} ms | ${ratio.toFixed(ratio < 10 ? 1 : 0)}x |`);
  }
  return rows;
}

async function main() {
  setLogLevel('warn');
  const db = REUSE_URL ? await reusedDatabase(REUSE_URL) : await benchDatabase('query');
  const pool = new Pool({ connectionString: db.url, max: 2 });
  let keep = KEEP || !!REUSE_URL;
  try {
    let plant: { workCenters: string[]; devices: { id: string; code: string }[] };
    let end: Date;
    let readings: number;
    let filled: number;
    let refreshed: number;
    if (REUSE_URL) {
      const r = await reusedPlant(pool);
      ({ plant, readings, filled, refreshed } = r);
      end = new Date(r.end);
      await removeFastPlantReadings(pool, end);
    } else {
      plant = await seedBenchPlant(pool);
      end = new Date(Math.floor(Date.now() / 60_000) * 60_000);
      const t0 = Date.now();
      readings = await fill(pool, end);
      filled = (Date.now() - t0) / 1000;
      const t1 = Date.now();
      await pool.query('call iot_private.refresh_all_rollups()');
      refreshed = (Date.now() - t1) / 1000;
      await pool.query('analyze');
      await pool.query(`insert into iot_private.settings (key, value) values ('bench_query_fill', $1)`,
        [JSON.stringify({ end: end.toISOString(), readings, filled, refreshed })]);
    }
    const loadBefore = loadavg()[0];
    const rows = await timeQueries(pool, plantQueries(plant, end));
    // After the rows above (its readings would otherwise be among "all devices").
    let fast: { tenantId: string; readings: number } | undefined;
    let fastRows: string[] = [];
    if (FAST_DEVICES > 0) {
      fast = await fillFastPlant(pool, end);
      fastRows = await timeQueries(pool, fastPlantQueries(fast.tenantId, end));
    }
    const loadAfter = loadavg()[0];
    console.log([
      `query benchmark, tier ${db.tier} (PostgreSQL ${db.version}): ${fmt(readings)} readings (${plant.devices.length} devices x 3 sensors, ` +
        `every ${INTERVAL_S} s, ${DAYS} days) written in ${filled.toFixed(0)} s, rollups refreshed in ${refreshed.toFixed(0)} s; ` +
        `median of ${REPEATS} runs; load average ${loadBefore.toFixed(2)} before, ${loadAfter.toFixed(2)} after the queries`,
      '',
      '| query | on the rollups | of which in the server | on raw readings | of which in the server | raw / rollups |',
      '|---|---:|---:|---:|---:|---:|',
      ...rows,
      ...(fast ? [
        `| *second plant, own tenant: ${FAST_DEVICES} devices x 3 sensors every ${FAST_INTERVAL_S} s for the last hour (${fmt(fast.readings)} readings)* | | | | | |`,
        ...fastRows] : []),
      '',
      '"of which in the server": planning + execution of one run (EXPLAIN ANALYZE, timing off); the rest of the round trip is',
      'sending the rows and parsing them in the client.',
    ].join('\n'));
  } catch (error) {
    keep = !!REUSE_URL; // a fill that failed half way is not worth keeping
    throw error;
  } finally {
    await pool.end();
    if (keep) console.log(`database kept: BENCH_REUSE_URL=${db.url}`);
    else await db.drop();
  }
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});

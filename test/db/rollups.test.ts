import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { makeWorkerUtils } from 'graphile-worker';
import { Client } from 'pg';
import { ReadingSink } from '../../src/ingest/sink';
import { startWorker } from '../../src/lib/worker';
import { createTestDatabase, seedSmallPlant, TestDatabase } from '../helpers/db';
import { waitFor } from '../helpers/wait';
import { materializedRollupRows, onTiers, refreshRollups } from '../helpers/tier';

const test = suite('db: rollups, heartbeat watchdog, retention, scheduled jobs');
let db: TestDatabase;
let plant: Awaited<ReturnType<typeof seedSmallPlant>>;

test.before(async () => {
  db = await createTestDatabase('rollups');
  plant = await seedSmallPlant(db.pool);
});
test.after(async () => db.drop());

async function store(times: Date[], value: (i: number) => number, sensorType = 'TEMPERATURE') {
  const sink = new ReadingSink(db.pool, { batchSize: 5000, maxWaitMs: 5, bufferMax: 100_000 });
  sink.add(times.map((time, i) => ({ time, tenantId: plant.tenantId, deviceId: plant.deviceId, sensorType, value: value(i),
    unit: sensorType === 'TEMPERATURE' ? '°F' : 'PSI', quality: 'GOOD' as const })));
  await sink.close();
}

/** Rollup view vs. the same aggregate computed from raw readings, bucket by bucket. */
async function mismatches(view: string, width: string): Promise<number> {
  const { rows } = await db.pool.query(`
    with raw as (
      select date_bin('${width}', time, timestamptz '2000-01-01 00:00Z') as bucket, device_id, sensor_type,
             count(*) as n, avg(value) as a, min(value) as lo, max(value) as hi
      from iot_private.sensor_readings group by 1, 2, 3
    )
    select count(*)::int as bad
    from raw full join iot_private.${view} v using (bucket, device_id, sensor_type)
    where v.reading_count is distinct from raw.n
       or abs(v.value_sum / v.reading_count - raw.a) > 1e-9
       or v.value_min is distinct from raw.lo or v.value_max is distinct from raw.hi`);
  return rows[0].bad;
}

test('the database runs without JIT: a rollup query is not compiled (it cost ~580 ms per query on tier 2 at 51.8M readings)', async () => {
  const fresh = new Client({ connectionString: db.url }); // a new session gets the database's settings
  await fresh.connect();
  try {
    assert.is((await fresh.query('show jit')).rows[0].jit, 'off');
    await fresh.query('set jit_above_cost = 0'); // would compile anything if jit were on
    const plan = (await fresh.query(`explain (analyze, format json) select bucket, avg_value from iot.sensor_readings_1m
      where bucket >= now() - interval '1 hour'`)).rows[0]['QUERY PLAN'][0];
    assert.is(plan.JIT, undefined, 'no JIT section in the plan');
  } finally {
    await fresh.end();
  }
});

test('rollup views equal aggregates of raw readings before, during and after refreshes', async () => {
  const now = Date.now();
  const times = Array.from({ length: 3 * 3600 }, (_, i) => new Date(now - 3 * 3600_000 + i * 1000)); // 3 h at 1 Hz
  await store(times, (i) => 60 + Math.sin(i / 100) * 5);
  for (const [g, w] of [['1m', '1 minute'], ['1h', '1 hour'], ['1d', '1 day']]) {
    assert.is(await mismatches(`sensor_readings_${g}`, w), 0, `${g} before refresh`);
  }
  await refreshRollups(db.pool); // what the rollups__refresh job runs, on every tier
  const stored = await materializedRollupRows(db.pool, '1m', db.tier);
  assert.ok(stored > 170, `1m rollup rows stored (not only computed live): ${stored}`);
  for (const [g, w] of [['1m', '1 minute'], ['1h', '1 hour'], ['1d', '1 day']]) {
    assert.is(await mismatches(`sensor_readings_${g}`, w), 0, `${g} after refresh`);
  }
  if (db.tier > 1) {
    const again = Number((await db.pool.query('select iot_private.refresh_rollups() as n')).rows[0].n);
    assert.ok(again < 5, `a second refresh right after does little: ${again}`);
  }
});

test('late readings below the watermark are hidden until the next refresh, which repairs their range', async () => {
  const late = Array.from({ length: 120 }, (_, i) => new Date(Date.now() - 2 * 3600_000 + i * 1000 + 500)); // half-second offsets: new rows
  await store(late, () => 99, 'PRESSURE');
  assert.ok(await mismatches('sensor_readings_1m', '1 minute') > 0, 'below the watermark: not in the rollup before a refresh');
  // Tiers 2-3 record the late range themselves; tier 1 relies on TimescaleDB's invalidation log.
  const log = db.tier === 1 ? '_timescaledb_catalog.continuous_aggs_hypertable_invalidation_log' : 'iot_private.rollup_invalidations';
  assert.ok((await db.pool.query(`select count(*)::int as n from ${log}`)).rows[0].n >= 1, 'the late batch left an invalidation');
  await refreshRollups(db.pool);
  assert.is(await mismatches('sensor_readings_1m', '1 minute'), 0);
  assert.is(await mismatches('sensor_readings_1h', '1 hour'), 0);
  assert.is((await db.pool.query(`select count(*)::int as n from ${log}`)).rows[0].n, 0);
});

onTiers(test, [1], 'continuous aggregates and their policies exist on tier 1 only')('tier 1: no TimescaleDB refresh policy; the graphile-worker job refreshes (background jobs fail on PostgreSQL 15.20)', async () => {
  const policies = await db.pool.query(`select count(*)::int as n from timescaledb_information.jobs
    where proc_name = 'policy_refresh_continuous_aggregate'`);
  assert.is(policies.rows[0].n, 0);
  // What a TimescaleDB background job does here: a job that runs `select 1` is run by the scheduler.
  await db.pool.query(`create or replace procedure public.h6_probe_job(job_id int, config jsonb) language plpgsql as $$ begin perform 1; end $$`);
  const job = (await db.pool.query(`select add_job('public.h6_probe_job', '1 hour', initial_start => now()) as id`)).rows[0].id;
  const stats = await waitFor(async () => (await db.pool.query(`select last_run_status from timescaledb_information.job_stats
    where job_id = $1 and last_run_status is not null`, [job])).rows[0], 30_000, 'the TimescaleDB scheduler to run the probe job');
  const version = Number((await db.pool.query(`select current_setting('server_version_num') as v`)).rows[0].v);
  console.log(`  [figures] tier 1, PostgreSQL ${version}: a TimescaleDB background job doing nothing ended ${stats.last_run_status}`);
  const failed = (await db.pool.query(`select job_name, last_error from iot_private.failed_maintenance_jobs() where source = 'timescaledb'`)).rows;
  // Whatever the scheduler made of it, /healthz's source of truth says the same.
  assert.is(failed.some((f) => f.job_name.includes(`[${job}]`)), stats.last_run_status === 'Failed', JSON.stringify(failed));
  await db.pool.query(`select delete_job($1)`, [job]);
  await db.pool.query(`drop procedure public.h6_probe_job`);
});

test('a maintenance job that fails for good is listed by failed_maintenance_jobs (for /healthz and metrics)', async () => {
  const runner = await startWorker(db.url, 1, 365);
  const utils = await makeWorkerUtils({ connectionString: db.url });
  try {
    await db.pool.query(`alter procedure iot_private.refresh_all_rollups() rename to refresh_all_rollups_away`);
    await utils.addJob('rollups__refresh', {}, { maxAttempts: 1 });
    const failed = await waitFor(async () => (await db.pool.query(`select * from iot_private.failed_maintenance_jobs()
      where source = 'graphile-worker' and job_name = 'rollups__refresh'`)).rows[0], 10_000, 'the failed job to be listed');
    assert.match(failed.last_error, 'refresh_all_rollups');
    assert.is(failed.last_status, 'Failed');
  } finally {
    await db.pool.query(`alter procedure iot_private.refresh_all_rollups_away() rename to refresh_all_rollups`).catch(() => undefined);
    await runner.stop();
    const ids = (await db.pool.query(`select id from graphile_worker.jobs where task_identifier = 'rollups__refresh'`)).rows.map((r) => r.id);
    await utils.completeJobs(ids); // the next test expects an empty queue
    await utils.release();
  }
  assert.is((await db.pool.query(`select count(*)::int as n from iot_private.failed_maintenance_jobs()`)).rows[0].n, 0, 'none once it is gone');
});

test('the tenant-filtered rollup views add avg/stddev and the device code', async () => {
  const rows = await db.asRole('iot_analyst', { tenant_id: plant.tenantId }, async (c) =>
    (await c.query(`select device_code, avg_value, stddev_value, reading_count from iot.sensor_readings_1h where sensor_type = 'TEMPERATURE'`)).rows);
  assert.ok(rows.length >= 3);
  assert.ok(rows.every((r) => r.device_code === plant.deviceCode && r.stddev_value > 0));
  const none = await db.asRole('iot_analyst', { tenant_id: '00000000-0000-0000-0000-000000000000' }, async (c) =>
    (await c.query(`select count(*)::int as n from iot.sensor_readings_1h`)).rows[0].n);
  assert.is(none, 0);
});

test('heartbeat watchdog: one HEARTBEAT_TIMEOUT event per silence and one recovery event, not one per run', async () => {
  await db.pool.query(`update iot.iot_devices set last_heartbeat = now() - interval '10 minutes', heartbeat_timeout_seconds = 60 where id = $1`, [plant.deviceId]);
  const first = (await db.pool.query('select iot_private.check_device_heartbeats() as n')).rows[0].n;
  const second = (await db.pool.query('select iot_private.check_device_heartbeats() as n')).rows[0].n;
  assert.equal([first, second], [1, 0]);
  // Time passes: the event is five minutes old, the device was heard from since and fell silent again.
  await db.pool.query(`update iot_private.equipment_events set event_timestamp = now() - interval '5 minutes' where event_type = 'HEARTBEAT_TIMEOUT'`);
  await db.pool.query(`update iot.iot_devices set last_heartbeat = now() - interval '2 minutes' where id = $1`, [plant.deviceId]);
  const third = (await db.pool.query('select iot_private.check_device_heartbeats() as n')).rows[0].n;
  assert.is(third, 1, 'heard from again, then silent again: a new event');
  const restored = async () => (await db.pool.query(`select count(*)::int as n from iot_private.equipment_events
    where iot_device_id = $1 and event_type = 'STARTUP' and event_code = 'HEARTBEAT_RESTORED' and severity = 'INFO'`, [plant.deviceId])).rows[0].n;
  assert.is(await restored(), 1, 'one recovery event for the first silence');
  await db.pool.query('select iot_private.check_device_heartbeats()');
  assert.is(await restored(), 1, 'and only one');
  const ev = await db.pool.query(`select severity, event_description from iot_private.equipment_events where event_type = 'HEARTBEAT_TIMEOUT' order by event_timestamp`);
  assert.match(ev.rows[0].event_description, plant.deviceCode);
});

test('retention drops only whole chunks/partitions older than the cutoff', async () => {
  await store([new Date(Date.now() - 40 * 86400_000)], () => 1);
  const before = Number((await db.pool.query(`select count(*) from iot_private.sensor_readings`)).rows[0].count);
  const dropped = (await db.pool.query(`select iot_private.drop_telemetry_before(now() - interval '30 days') as n`)).rows[0].n;
  assert.ok(dropped >= 1, `dropped ${dropped}`);
  const after = Number((await db.pool.query(`select count(*) from iot_private.sensor_readings`)).rows[0].count);
  assert.is(before - after, 1);
});

test('graphile-worker runs the tasks (rollups, partitions, heartbeats, retention)', async () => {
  const runner = await startWorker(db.url, 1, 365);
  try {
    const utils = await makeWorkerUtils({ connectionString: db.url });
    for (const task of ['rollups__refresh', 'telemetry__create_partitions', 'devices__check_heartbeats', 'telemetry__apply_retention']) {
      await utils.addJob(task, task === 'telemetry__apply_retention' ? { days: 365 } : {});
    }
    await utils.release();
    await waitFor(async () => (await db.pool.query(`select count(*)::int as n from graphile_worker.jobs`)).rows[0].n === 0, 10_000, 'jobs to finish');
    // Anomalies queue one health recalculation per work center (a burst coalesces on the job key).
    for (let i = 0; i < 3; i++) {
      await db.pool.query(`insert into iot_private.equipment_events (tenant_id, work_center_id, event_type, severity, event_description)
        values ($1, $2, 'ANOMALY_DETECTED', 'WARNING', 'spike')`, [plant.tenantId, plant.workCenterId]);
    }
    const jobs = await db.pool.query(`select task_identifier, key from graphile_worker.jobs`);
    assert.equal(jobs.rows.map((j) => [j.task_identifier, j.key]), [['health__calculate_scores', `health:${plant.workCenterId}`]]);
  } finally {
    await runner.stop();
  }
});

test.run();

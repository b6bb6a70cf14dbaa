import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { ReadingSink } from '../../src/ingest/sink';
import { rejects } from '../helpers/assert';
import { createTestDatabase, seedSmallPlant, TestDatabase } from '../helpers/db';

const test = suite('db: health scores, OEE, predictive-maintenance alerts');
let db: TestDatabase;
let plant: Awaited<ReturnType<typeof seedSmallPlant>>;
const AT = new Date(Math.floor(Date.now() / 60_000) * 60_000); // a whole minute

test.before(async () => {
  db = await createTestDatabase('health');
  plant = await seedSmallPlant(db.pool);
});
test.after(async () => db.drop());

async function store(sensorType: string, unit: string, values: number[], startMsAgo: number, stepMs: number, deviceId = plant.deviceId) {
  const sink = new ReadingSink(db.pool, { batchSize: 5000, maxWaitMs: 5, bufferMax: 100_000 });
  sink.add(values.map((value, i) => ({ time: new Date(AT.getTime() - startMsAgo + i * stepMs), tenantId: plant.tenantId, deviceId,
    sensorType, value, unit, quality: 'GOOD' as const })));
  await sink.close();
}
const one = async (sql: string, params: unknown[] = []) => (await db.pool.query(sql, params)).rows[0];

test('sensor health: exact average deviation against the normal range, from rollups and raw minutes alike', async () => {
  // temperature 60..75 (width 15): 600 readings at 10 s steps; a third of them 3 °F over, a few straddle minutes.
  const values = Array.from({ length: 600 }, (_, i) => (i % 3 === 0 ? 78 : 70));
  await store('temperature', '°F', values, 2 * 3600_000, 10_000);
  // vibration 0..2.5: all inside.
  await store('vibration', 'mm/s', Array.from({ length: 100 }, () => 1.2), 3600_000, 30_000);
  await db.pool.query('select iot_private.refresh_rollups()'); // some minutes from rollup tables, later ones live
  const rows = (await db.pool.query(`select sensor_type, readings, avg_deviation, score from iot_private.channel_sensor_health($1, $2) order by 1`,
    [[plant.workCenterId], AT])).rows;
  const temp = rows.find((r) => r.sensor_type === 'temperature');
  assert.is(Number(temp.readings), 600);
  assert.ok(Math.abs(temp.avg_deviation - 1) < 1e-9, `avg deviation ${temp.avg_deviation}`); // 200 x 3 / 600
  assert.is(Number(temp.score), Number((100 - (1 / 15) * 100).toFixed(2)));
  assert.is(Number(rows.find((r) => r.sensor_type === 'vibration').score), 100);
  const raw = (await db.pool.query(`select sensor_type, readings, avg_deviation, score from iot_private.channel_sensor_health_raw($1, $2) order by 1`,
    [[plant.workCenterId], AT])).rows;
  assert.equal(raw.map((r) => [r.sensor_type, r.readings, Number(r.score)]), rows.map((r) => [r.sensor_type, r.readings, Number(r.score)]),
    'the rollup path gives the same figures as raw readings');
});

test('a dimension without data is left out and the weights renormalised', async () => {
  const h = await one(`select * from iot_private.compute_health_scores($1, $2)`, [[plant.workCenterId], AT]);
  assert.is(h.oee_health_score, null, 'no production runs: no OEE');
  assert.is(h.performance_health_score, null);
  assert.is(h.quality_health_score, null, 'no SPC limits or alerts: no quality dimension');
  assert.is(Number(h.reliability_health_score), 100);
  const sensor = Number(h.sensor_health_score);
  const expected = Math.round(((0.30 * sensor + 0.15 * 100) / 0.45) * 100) / 100;
  assert.is(Number(h.overall_score), expected);
  assert.is(Number(h.details.weightsUsed), 0.45);
  assert.is(h.risk_factors[0].dimension, 'sensor');
  assert.is(h.risk_factors[0].channels[0].sensorType, 'temperature');
});

test('OEE from runs and breakdowns: availability x performance x quality', async () => {
  const start = new Date(AT.getTime() - 10 * 3600_000);
  const end = new Date(AT.getTime() - 2 * 3600_000); // 8 h run
  await db.pool.query(
    `insert into iot.production_runs (tenant_id, work_center_id, status, actual_start, actual_end, good_count, scrap_count, rework_count,
       ideal_cycle_time_seconds, planned_quantity, shift)
     values ($1, $2, 'COMPLETED', $3, $4, 18000, 1500, 500, 1, 20000, 'A')`, [plant.tenantId, plant.workCenterId, start, end]);
  await db.pool.query(`insert into iot.maintenance_records (tenant_id, work_center_id, maintenance_type, description, started_at, ended_at)
     values ($1, $2, 'BREAKDOWN', 'feeder jam', $3, $4)`, [plant.tenantId, plant.workCenterId,
    new Date(start.getTime() + 3600_000), new Date(start.getTime() + 7200_000)]); // 1 h down
  const o = await one(`select * from iot.work_center_oee($1, $2, $3)`, [plant.workCenterId, new Date(AT.getTime() - 86400_000), AT]);
  // planned 480 min, down 60, run 420; performance = 20000 s / 25200 s; quality = 18000 / 20000
  assert.is(Number(o.planned_minutes), 480);
  assert.is(Number(o.run_minutes), 420);
  assert.is(Number(o.availability), 0.875);
  assert.is(Number(o.performance), Number((20000 / 25200).toFixed(4)));
  assert.is(Number(o.quality), 0.9);
  assert.ok(Math.abs(Number(o.oee) - 0.875 * (20000 / 25200) * 0.9) < 1e-3);
  const trend = (await db.pool.query(`select * from iot.oee_trends($1, $2, 'day', $3)`, [new Date(AT.getTime() - 2 * 86400_000), AT, plant.workCenterId])).rows;
  assert.ok(trend.some((t) => Number(t.oee) > 0));
  const shifts = (await db.pool.query(`select distinct shift from iot.oee_trends($1, $2, 'shift', $3)`, [new Date(AT.getTime() - 2 * 86400_000), AT, plant.workCenterId])).rows;
  assert.equal(shifts.map((s) => s.shift), ['A']);
  const summary = await one(`select * from iot.production_summary($1, $2)`, [new Date(AT.getTime() - 86400_000), AT]);
  assert.equal([Number(summary.good_count), Number(summary.quality_rate), Number(summary.attainment)], [18000, 0.9, 0.9]);
  const util = await one(`select * from iot.work_center_utilization($1, $2)`, [new Date(AT.getTime() - 86400_000), AT]);
  assert.is(util.status, 'IDLE');
  assert.is(Number(util.runtime_minutes), 420);
});

test('quality and reliability dimensions count SPC alerts and breakdowns', async () => {
  const ch = await one(`select id from iot.device_channels where device_id = $1 and sensor_type = 'temperature'`, [plant.deviceId]);
  const lim = await one(`insert into iot.spc_control_limits (tenant_id, channel_id, center_line, sigma, baseline_from, baseline_to, sample_count)
     values ($1, $2, 70, 1, now() - interval '3 days', now() - interval '2 days', 1000) returning id`, [plant.tenantId, ch.id]);
  for (const sev of ['HIGH', 'LOW', 'LOW']) {
    await db.pool.query(`insert into iot.spc_alerts (tenant_id, work_center_id, channel_id, control_limit_id, rule, severity, detected_at)
      values ($1, $2, $3, $4, 1, $5, $6)`, [plant.tenantId, plant.workCenterId, ch.id, lim.id, sev, new Date(AT.getTime() - 3600_000)]);
  }
  await db.pool.query(`insert into iot.maintenance_records (tenant_id, work_center_id, maintenance_type, description, started_at, ended_at)
     values ($1, $2, 'BREAKDOWN', 'motor', now() - interval '20 days', now() - interval '20 days' + interval '1 hour')`, [plant.tenantId, plant.workCenterId]);
  const h = await one(`select * from iot_private.compute_health_scores($1, $2)`, [[plant.workCenterId], AT]);
  assert.is(Number(h.quality_health_score), 80);      // 100 - 10 - 5 - 5
  assert.is(Number(h.reliability_health_score), 60);  // two breakdowns in 30 days
  assert.ok(h.oee_health_score !== null && h.performance_health_score !== null);
  assert.is(Number(h.details.weightsUsed), 1);
});

test('stored once per instant; status bands, 7-day change and trend from the history', async () => {
  assert.is((await one(`select iot_private.store_health_scores($1, $2) as n`, [[plant.workCenterId], AT])).n, 1);
  assert.is((await one(`select iot_private.store_health_scores($1, $2) as n`, [[plant.workCenterId], AT])).n, 0, 'idempotent');
  const now = await one(`select overall_score from iot_private.equipment_health_scores where time = $1`, [AT]);
  // A week ago it was 20 points better: trend RAPIDLY_DEGRADING.
  const weekAgo = new Date(AT.getTime() - 7 * 86400_000 - 3600_000);
  await db.pool.query(`insert into iot_private.equipment_health_scores (time, tenant_id, work_center_id, overall_score, health_status)
    values ($1, $2, $3, $4, 'EXCELLENT')`, [weekAgo, plant.tenantId, plant.workCenterId, Math.min(100, Number(now.overall_score) + 20)]);
  const later = new Date(AT.getTime() + 60_000);
  await db.pool.query(`select iot_private.store_health_scores($1, $2)`, [[plant.workCenterId], later]);
  const h = await one(`select * from iot_private.equipment_health_scores where time = $1`, [later]);
  assert.ok(Number(h.score_change_7day) <= -10, `change ${h.score_change_7day}`);
  assert.is(h.trend_direction, 'RAPIDLY_DEGRADING');
  const bands = (await db.pool.query(`select iot_private.health_status(s) as b from unnest(array[95, 80, 60, 35, 29.99]::numeric[]) s`)).rows.map((r) => r.b);
  assert.equal(bands, ['EXCELLENT', 'GOOD', 'FAIR', 'POOR', 'CRITICAL']);
  const trends = (await db.pool.query(`select iot_private.health_trend(c) as t from unnest(array[6, 0, -7, -11]::numeric[]) c`)).rows.map((r) => r.t);
  assert.equal(trends, ['IMPROVING', 'STABLE', 'DEGRADING', 'RAPIDLY_DEGRADING']);
});

test('predictive alerts: raised on poor health with RUL from the falling trend; one open alert per failure mode', async () => {
  const wc2 = await seedSmallPlant(db.pool, 'acme2', 'F2');
  // Falling history: 80 -> 35 over 6 days, points every 12 h.
  for (let i = 0; i <= 12; i++) {
    const t = new Date(AT.getTime() - (12 - i) * 12 * 3600_000);
    const score = 80 - i * 3.75;
    await db.pool.query(`insert into iot_private.equipment_health_scores (time, tenant_id, work_center_id, overall_score, health_status,
       trend_direction, risk_factors, recommended_action)
       values ($1, $2, $3, $4, iot_private.health_status($4), 'RAPIDLY_DEGRADING', '[{"dimension":"sensor","score":40,"pointsLost":18}]', 'Plan maintenance')`,
      [t, wc2.tenantId, wc2.workCenterId, score]);
  }
  const raised = await one(`select iot_private.raise_predictive_alerts($1, $2) as n`, [[wc2.workCenterId], AT]);
  assert.is(raised.n, 1);
  const a = await one(`select * from iot.predictive_maintenance_alerts where work_center_id = $1`, [wc2.workCenterId]);
  assert.equal([a.alert_type, a.failure_mode, a.status], ['HEALTH_DEGRADATION', 'SENSOR_DEVIATION', 'OPEN']);
  // slope -3.75 per 12 h = -0.3125/h; from 35 to 30: 16 h
  assert.ok(Math.abs(Number(a.remaining_useful_life_hours) - 16) < 0.5, `RUL ${a.remaining_useful_life_hours}`);
  assert.equal([a.severity, a.urgency], ['CRITICAL', 'IMMEDIATE']);
  assert.ok(Number(a.probability_lower) <= Number(a.failure_probability) && Number(a.failure_probability) <= Number(a.probability_upper));
  assert.ok(Number(a.failure_probability) > 0.4 && Number(a.failure_probability) < 0.7);
  const again = await one(`select iot_private.raise_predictive_alerts($1, $2) as n`, [[wc2.workCenterId], AT]);
  assert.is(again.n, 0, 'nothing changed: nothing rewritten');
  const count = await one(`select count(*)::int as n from iot.predictive_maintenance_alerts where work_center_id = $1`, [wc2.workCenterId]);
  assert.is(count.n, 1);

  // Workflow, as an operator of that tenant.
  await db.asRole('iot_operator', { tenant_id: wc2.tenantId, sub: 'mia' }, async (c) => {
    await c.query('savepoint s');
    await rejects(() => c.query(`select iot.start_predictive_maintenance_alert($1)`, [a.id]), 'is OPEN, it cannot become IN_PROGRESS', 'IOT02');
    await c.query('rollback to savepoint s');
    const ack = (await c.query(`select * from iot.acknowledge_predictive_maintenance_alert($1)`, [a.id])).rows[0];
    assert.equal([ack.status, ack.acknowledged_by], ['ACKNOWLEDGED', 'mia']);
    await c.query(`select iot.schedule_predictive_maintenance_alert($1, now() + interval '4 hours')`, [a.id]);
    await c.query(`select iot.start_predictive_maintenance_alert($1)`, [a.id]);
    const failedAt = new Date(new Date(a.predicted_failure_date).getTime() + 10 * 3600_000);
    const done = (await c.query(`select * from iot.resolve_predictive_maintenance_alert($1, true, $2, 'bearing replaced')`, [a.id, failedAt])).rows[0];
    assert.equal([done.status, done.prediction_accuracy, Number(done.prediction_error_hours)], ['RESOLVED', 'ACCURATE', 10]);
    await c.query('savepoint t');
    await rejects(() => c.query(`select iot.acknowledge_predictive_maintenance_alert($1)`, [a.id]), 'is RESOLVED', 'IOT02');
    await c.query('rollback to savepoint t');
    const dash = (await c.query(`select iot.predictive_maintenance_dashboard() as d`)).rows[0].d;
    assert.is(dash.equipment.length, 1, 'only its own tenant');
  });
  await db.asRole('iot_operator', { tenant_id: plant.tenantId }, async (c) =>
    rejects(() => c.query(`select iot.acknowledge_predictive_maintenance_alert($1)`, [a.id]), 'not found', 'IOT04'));
});

test('calculateEquipmentHealthScore as an operator stores and returns the score; other tenants get IOT04', async () => {
  const at = new Date(AT.getTime() + 120_000);
  await db.asRole('iot_operator', { tenant_id: plant.tenantId }, async (c) => {
    const r = (await c.query(`select * from iot.calculate_equipment_health_score($1, $2)`, [plant.workCenterId, at])).rows[0];
    assert.ok(r.overall_score !== null && r.health_status);
    const list = (await c.query(`select count(*)::int as n from iot.equipment_health_scores(null, $1, null, null)`, [plant.workCenterId])).rows[0];
    assert.ok(list.n >= 3);
    const trend = (await c.query(`select * from iot.equipment_health_trends('day', now() - interval '30 days', now() + interval '1 day', $1)`, [plant.workCenterId])).rows;
    assert.ok(trend.length >= 2);
  });
  const other = await seedSmallPlant(db.pool, 'acme3', 'F3');
  await db.asRole('iot_operator', { tenant_id: other.tenantId }, async (c) =>
    rejects(() => c.query(`select iot.calculate_equipment_health_score($1)`, [plant.workCenterId]), 'not found', 'IOT04'));
});

test.run();

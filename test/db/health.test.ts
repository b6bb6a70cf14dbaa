import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { ReadingSink } from '../../src/ingest/sink';
import { rejects } from '../helpers/assert';
import { createTestDatabase, seedSmallPlant, TestDatabase } from '../helpers/db';
import { refreshRollups } from '../helpers/tier';

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
  await store('TEMPERATURE', '°F', values, 2 * 3600_000, 10_000);
  // vibration 0..2.5: all inside.
  await store('VIBRATION', 'mm/s', Array.from({ length: 100 }, () => 1.2), 3600_000, 30_000);
  await refreshRollups(db.pool); // some minutes from rollup tables, later ones live
  const rows = (await db.pool.query(`select sensor_type, readings, avg_deviation, score from iot_private.channel_sensor_health($1, $2) order by 1`,
    [[plant.workCenterId], AT])).rows;
  const temp = rows.find((r) => r.sensor_type === 'TEMPERATURE');
  assert.is(Number(temp.readings), 600);
  assert.ok(Math.abs(temp.avg_deviation - 1) < 1e-9, `avg deviation ${temp.avg_deviation}`); // 200 x 3 / 600
  assert.is(Number(temp.score), Number((100 - (1 / 15) * 100).toFixed(2)));
  assert.is(Number(rows.find((r) => r.sensor_type === 'VIBRATION').score), 100);
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
  assert.is(Number(h.overall_health_score), expected);
  assert.is(Number(h.details.weightsUsed), 0.45);
  assert.is(h.risk_factors[0].dimension, 'sensor');
  assert.is(h.risk_factors[0].channels[0].sensorType, 'TEMPERATURE');
  // 78 °F every 30 s, 70 between: never back inside for the 30 s a recovery takes, so one excursion.
  assert.equal([h.anomaly_detected, h.anomaly_severity, h.anomaly_type, h.details.anomalyEvents24h], [true, 'WARNING', 'TEMPERATURE_HIGH', 1]);
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
  assert.ok(trend.some((t) => Number(t.oee_percentage) > 0));
  const shifts = (await db.pool.query(`select distinct shift from iot.oee_trends($1, $2, 'shift', $3)`, [new Date(AT.getTime() - 2 * 86400_000), AT, plant.workCenterId])).rows;
  assert.equal(shifts.map((s) => s.shift), ['A']);
  const summary = await one(`select * from iot.production_summary($1, $2)`, [new Date(AT.getTime() - 86400_000), AT]);
  assert.equal([Number(summary.total_good_quantity), Number(summary.average_yield), Number(summary.attainment)], [18000, 90, 90]);
  const util = await one(`select * from iot.work_center_utilization($1, $2)`, [new Date(AT.getTime() - 86400_000), AT]);
  assert.is(util.status, 'IDLE');
  assert.is(Number(util.today_runtime), 420);
});

test('quality and reliability dimensions count SPC alerts and breakdowns', async () => {
  const ch = await one(`select id from iot.device_channels where device_id = $1 and sensor_type = 'TEMPERATURE'`, [plant.deviceId]);
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
  const now = await one(`select overall_health_score from iot_private.equipment_health_scores where score_timestamp = $1`, [AT]);
  // A week ago it was 20 points better: trend RAPIDLY_DEGRADING.
  const weekAgo = new Date(AT.getTime() - 7 * 86400_000 - 3600_000);
  // A week ago can be last month, whose monthly partition a database made this month does not have yet.
  await db.pool.query(`select iot_private.ensure_partitions('equipment_health_scores', $1, $1)`, [weekAgo]);
  await db.pool.query(`insert into iot_private.equipment_health_scores (score_timestamp, tenant_id, work_center_id, overall_health_score, health_status)
    values ($1, $2, $3, $4, 'EXCELLENT')`, [weekAgo, plant.tenantId, plant.workCenterId, Math.min(100, Number(now.overall_health_score) + 20)]);
  const later = new Date(AT.getTime() + 60_000);
  await db.pool.query(`select iot_private.store_health_scores($1, $2)`, [[plant.workCenterId], later]);
  const h = await one(`select * from iot_private.equipment_health_scores where score_timestamp = $1`, [later]);
  assert.ok(Number(h.health_score_change_7d) <= -10, `change ${h.health_score_change_7d}`);
  assert.ok(h.id, 'each score has an id');
  assert.is(h.trend_direction, 'RAPIDLY_DEGRADING');
  const bands = (await db.pool.query(`select iot_private.health_status(s) as b from unnest(array[95, 80, 60, 35, 29.99]::numeric[]) s`)).rows.map((r) => r.b);
  assert.equal(bands, ['EXCELLENT', 'GOOD', 'FAIR', 'POOR', 'CRITICAL']);
  const trends = (await db.pool.query(`select iot_private.health_trend(c) as t from unnest(array[6, 0, -7, -11]::numeric[]) c`)).rows.map((r) => r.t);
  assert.equal(trends, ['IMPROVING', 'STABLE', 'DEGRADING', 'RAPIDLY_DEGRADING']);
});

test('below the minimum scored weight: no score and no status, and the action names the missing data', async () => {
  const idle = await seedSmallPlant(db.pool, 'idle', 'F9'); // channels, but no readings, runs, SPC or breakdowns
  const h = await one(`select * from iot_private.compute_health_scores($1, $2)`, [[idle.workCenterId], AT]);
  assert.equal([h.overall_health_score, h.health_status, h.trend_direction], [null, null, null], `scored ${h.overall_health_score} ${h.health_status}`);
  assert.is(Number(h.reliability_health_score), 100, 'the dimensions are kept');
  assert.equal([Number(h.details.weightsUsed), Number(h.details.minScoredWeight)], [0.15, 0.4]);
  assert.match(h.recommended_action, /^Not enough data to score \(weight 0\.15 of the 0\.40 needed\)\. Missing: readings in the last 24 h from active channels with a normal range \(sensor health\); production runs in the last 7 days \(OEE and performance health\); SPC control limits \(quality health\)\./);
  assert.is((await one(`select iot_private.store_health_scores($1, $2) as n`, [[idle.workCenterId], AT])).n, 1, 'stored, unscored');
  const stored = await one(`select overall_health_score, health_status from iot_private.equipment_health_scores where work_center_id = $1`, [idle.workCenterId]);
  assert.equal(stored, { overall_health_score: null, health_status: null });
  // The minimum is a setting (checked when written): at 0.15 reliability alone would score.
  await rejects(() => db.pool.query(`update iot_private.settings set value = '1.5' where key = 'health_min_scored_weight'`),
    'health_min_scored_weight', '22023');
  await db.pool.query(`update iot_private.settings set value = '0.15' where key = 'health_min_scored_weight'`);
  const lax = await one(`select * from iot_private.compute_health_scores($1, $2)`, [[idle.workCenterId], AT]);
  assert.equal([Number(lax.overall_health_score), lax.health_status], [100, 'EXCELLENT']);
  await db.pool.query(`update iot_private.settings set value = '0.40' where key = 'health_min_scored_weight'`);
});

test("health scores carry the window's threshold and anomaly events: anomaly_detected, the highest severity and its code", async () => {
  const wc = await seedSmallPlant(db.pool, 'anom', 'F8');
  // Through the ingest path: pressure over 120 PSI for a minute, 10 minutes ago: one PRESSURE_HIGH WARNING.
  await store('PRESSURE', 'PSI', Array.from({ length: 60 }, () => 124), 11 * 60_000, 1000, wc.deviceId);
  await store('PRESSURE', 'PSI', Array.from({ length: 60 }, () => 100), 10 * 60_000, 1000, wc.deviceId);
  const raised = await one(`select event_code, severity from iot_private.equipment_events where work_center_id = $1`, [wc.workCenterId]);
  assert.equal(raised, { event_code: 'PRESSURE_HIGH', severity: 'WARNING' });
  const h0 = await one(`select * from iot_private.compute_health_scores($1, $2)`, [[wc.workCenterId], AT]);
  assert.equal([h0.anomaly_detected, h0.anomaly_severity, h0.anomaly_type, h0.details.anomalyEvents24h], [true, 'WARNING', 'PRESSURE_HIGH', 1]);

  const event = (hoursAgo: number, type: string, code: string, severity: string) => db.pool.query(
    `insert into iot_private.equipment_events (event_timestamp, tenant_id, work_center_id, event_type, event_code, severity, event_description)
     values ($1, $2, $3, $4, $5, $6, 'test')`, [new Date(AT.getTime() - hoursAgo * 3600_000), wc.tenantId, wc.workCenterId, type, code, severity]);
  await db.pool.query(`select iot_private.ensure_partitions('equipment_events', $1, $2)`,
    [new Date(AT.getTime() - 26 * 3600_000), new Date(AT.getTime() + 3600_000)]);
  await event(3, 'ANOMALY_DETECTED', 'VIBRATION_ANOMALY', 'ERROR');
  await event(1, 'SENSOR_OUT_OF_RANGE', 'TEMPERATURE_HIGH', 'ERROR'); // the latest of the highest severity
  await event(2, 'SENSOR_OUT_OF_RANGE', 'PRESSURE_LOW', 'WARNING');
  await event(1, 'MAINTENANCE_REQUIRED', 'MAINTENANCE_REQUIRED', 'CRITICAL'); // not a threshold or anomaly event
  await event(0.5, 'HEARTBEAT_TIMEOUT', 'HEARTBEAT_TIMEOUT', 'WARNING');
  await event(25, 'ANOMALY_DETECTED', 'VIBRATION_ANOMALY', 'CRITICAL'); // before the window
  await event(-0.5, 'ANOMALY_DETECTED', 'VIBRATION_ANOMALY', 'CRITICAL'); // after the score's instant
  assert.is((await one(`select iot_private.store_health_scores($1, $2) as n`, [[wc.workCenterId], AT])).n, 1);
  const h = await one(`select * from iot_private.equipment_health_scores where work_center_id = $1 and score_timestamp = $2`, [wc.workCenterId, AT]);
  assert.equal([h.anomaly_detected, h.anomaly_severity, h.anomaly_type, h.details.anomalyEvents24h], [true, 'ERROR', 'TEMPERATURE_HIGH', 4]);
  const later = await one(`select * from iot_private.compute_health_scores($1, $2)`, [[wc.workCenterId], new Date(AT.getTime() + 23.5 * 3600_000)]);
  assert.equal([later.anomaly_detected, later.anomaly_severity, later.anomaly_type], [true, 'CRITICAL', 'VIBRATION_ANOMALY'],
    'a day on: the CRITICAL event after the first instant is the highest left in the window');
});

test('calculateEquipmentHealthScore as an operator stores and returns the score; other tenants get IOT04', async () => {
  const at = new Date(AT.getTime() + 120_000);
  await db.asRole('iot_operator', { tenant_id: plant.tenantId }, async (c) => {
    const r = (await c.query(`select * from iot.calculate_equipment_health_score($1, $2)`, [plant.workCenterId, at])).rows[0];
    assert.ok(r.overall_health_score !== null && r.health_status);
    assert.is(r.score_timestamp.getTime(), at.getTime());
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

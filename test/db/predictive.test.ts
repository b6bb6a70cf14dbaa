// Predictive-maintenance alerts and models under the seed's names and values (sql/540-542,
// db/migrations/000006): when a trend may predict, what an alert carries, the maintenance
// catalogue, and deployPredictiveMaintenanceModel.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { rejects } from '../helpers/assert';
import { migrate } from '../../src/lib/db/migrate';
import { extractPreviousRelease } from '../helpers/release';
import { createTestDatabase, seedSmallPlant, TestDatabase } from '../helpers/db';
import { startTestApi } from '../helpers/graphql';

const test = suite('db: predictive-maintenance alerts, models and catalogue');
let db: TestDatabase;
let plant: Awaited<ReturnType<typeof seedSmallPlant>>;
const AT = new Date(Math.floor(Date.now() / 60_000) * 60_000); // a whole minute
const HOUR = 3600_000;

test.before(async () => {
  db = await createTestDatabase('predictive');
  plant = await seedSmallPlant(db.pool);
});
test.after(async () => {
  await db.drop();
  if ('dir' in release) release.remove();
});

const one = async (sql: string, params: unknown[] = []) => (await db.pool.query(sql, params)).rows[0];
const raise = async (workCenterId: string, at = AT) =>
  (await one(`select iot_private.raise_predictive_alerts($1, $2) as n`, [[workCenterId], at])).n as number;
const alertsOf = async (workCenterId: string) =>
  (await db.pool.query(`select * from iot.predictive_maintenance_alerts where work_center_id = $1 order by alert_timestamp`, [workCenterId])).rows;

/** Stores health scores as the scorer would (only the columns the alert raiser reads). */
async function scores(p: { tenantId: string; workCenterId: string }, points: { ago: number; score: number }[],
  riskFactors: unknown = [{ dimension: 'sensor', score: 40, pointsLost: 18, channels: [{ deviceCode: 'F-DEV', sensorType: 'VIBRATION', score: 40 }] }],
  trend: string | null = null) {
  for (const { ago, score } of points) {
    await db.pool.query(`select iot_private.ensure_partitions('equipment_health_scores', $1, $1)`, [new Date(AT.getTime() - ago)]);
    await db.pool.query(`insert into iot_private.equipment_health_scores (score_timestamp, tenant_id, work_center_id, overall_health_score,
         health_status, trend_direction, risk_factors, recommended_action)
       values ($1, $2, $3, $4, iot_private.health_status($4), $5, $6, 'Plan maintenance')`,
      [new Date(AT.getTime() - ago), p.tenantId, p.workCenterId, score, trend, JSON.stringify(riskFactors)]);
  }
}

async function anomalies(p: { tenantId: string; workCenterId: string }, agos: number[], sensorType = 'VIBRATION') {
  await db.pool.query(`select iot_private.ensure_partitions('equipment_events', $1, $2)`, [new Date(AT.getTime() - Math.max(...agos)), AT]);
  for (const ago of agos) {
    await db.pool.query(`insert into iot_private.equipment_events (event_timestamp, tenant_id, work_center_id, sensor_type, event_type, severity,
        event_description) values ($1, $2, $3, $4, 'ANOMALY_DETECTED', 'WARNING', 'spike')`,
      [new Date(AT.getTime() - ago), p.tenantId, p.workCenterId, sensorType]);
  }
}

test('predictive alerts: raised on poor health with RUL from the falling trend; one open alert per failure mode', async () => {
  const wc2 = await seedSmallPlant(db.pool, 'acme2', 'F2');
  // Falling history: 80 -> 35 over 36 h, points every 3 h.
  await scores(wc2, Array.from({ length: 13 }, (_, i) => ({ ago: (12 - i) * 3 * HOUR, score: 80 - i * 3.75 })),
    [{ dimension: 'sensor', score: 40, pointsLost: 18 }], 'RAPIDLY_DEGRADING');
  assert.is(await raise(wc2.workCenterId), 1);
  const [a] = await alertsOf(wc2.workCenterId);
  assert.equal([a.alert_type, a.alert_reason, a.predicted_failure_mode, a.status], ['FAILURE_PREDICTION', 'HEALTH_DEGRADATION', 'SENSOR_DEVIATION', 'OPEN']);
  // slope -3.75 per 3 h = -1.25/h; from 35 to 30: 4 h
  assert.ok(Math.abs(Number(a.rul_hours) - 4) < 0.1, `RUL ${a.rul_hours}`);
  assert.is(Number(a.time_to_failure_hours), Number(a.rul_hours));
  assert.is(Number(a.rul_confidence), 1, 'a perfect line over 36 hours');
  assert.equal([a.severity, a.urgency], ['CRITICAL', 'IMMEDIATE']);
  assert.ok(Number(a.confidence_interval_lower) <= Number(a.failure_probability) && Number(a.failure_probability) <= Number(a.confidence_interval_upper));
  assert.ok(Number(a.failure_probability) > 0.9, `failure within the horizon is all but certain: ${a.failure_probability}`);
  assert.is(new Date(a.alert_timestamp).getTime(), AT.getTime(), 'raised at the scoring instant');
  assert.is(await raise(wc2.workCenterId), 0, 'nothing changed: nothing rewritten');
  assert.is((await alertsOf(wc2.workCenterId)).length, 1);

  // Workflow, as an operator of that tenant.
  await db.asRole('iot_operator', { tenant_id: wc2.tenantId, sub: 'mia' }, async (c) => {
    await c.query('savepoint s');
    await rejects(() => c.query(`select iot.start_predictive_maintenance_alert($1)`, [a.id]), 'is OPEN, it cannot become IN_PROGRESS', 'IOT02');
    await c.query('rollback to savepoint s');
    const ack = (await c.query(`select * from iot.acknowledge_predictive_maintenance_alert($1)`, [a.id])).rows[0];
    assert.equal([ack.status, ack.acknowledged_by], ['ACKNOWLEDGED', 'mia']);
    await c.query(`select iot.schedule_predictive_maintenance_alert($1, now() + interval '4 hours')`, [a.id]);
    await c.query(`select iot.start_predictive_maintenance_alert($1)`, [a.id]);
    const failedAt = new Date(new Date(a.predicted_failure_timestamp).getTime() + 10 * HOUR);
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

test('3 scores over 3 minutes give no trend: no RUL, and no alert on an EXCELLENT machine however many anomalies', async () => {
  // The demo's case: an EXCELLENT machine whose score dipped a point in 3 minutes, with anomaly events.
  const calm = await seedSmallPlant(db.pool, 'calm', 'C1');
  await scores(calm, [{ ago: 2 * 60_000, score: 96 }, { ago: 60_000, score: 95.5 }, { ago: 0, score: 95 }]);
  await anomalies(calm, Array.from({ length: 5 }, (_, i) => i * 60_000));
  assert.is(await raise(calm.workCenterId), 0);
  assert.is((await alertsOf(calm.workCenterId)).length, 0, 'no alert: 3 minutes are no trend, and anomalies need a baseline');

  // A POOR machine is alerted on its status, but 3 scores over 3 minutes still give no RUL.
  const poor = await seedSmallPlant(db.pool, 'poor', 'P1');
  await scores(poor, [{ ago: 2 * 60_000, score: 46 }, { ago: 60_000, score: 45 }, { ago: 0, score: 44 }]);
  assert.is(await raise(poor.workCenterId), 1);
  const [a] = await alertsOf(poor.workCenterId);
  assert.equal([a.alert_type, a.alert_reason, a.rul_hours, a.rul_confidence, a.time_to_failure_hours], ['FAILURE_PREDICTION', 'HEALTH_DEGRADATION', null, null, null]);
  assert.equal([a.severity, a.urgency], ['HIGH', 'URGENT'], 'from the measured POOR status, not from a 3-minute line (which gave 14 minutes: CRITICAL)');
  assert.is(a.feature_values.trendPoints, 3);
});

test('a degradation over the minimum span raises an RUL alert carrying model, confidence, indicators and a maintenance plan', async () => {
  const deg = await seedSmallPlant(db.pool, 'deg', 'D1');
  // 92 -> 70 over 24 h, every 30 minutes, with a little scatter.
  const series = Array.from({ length: 49 }, (_, i) => ({ ago: (48 - i) * 30 * 60_000, score: 92 - (22 * i) / 48 + (i % 3 === 0 ? 0.4 : -0.2) }));
  // Only its last 6 hours: under the 12-hour minimum span, no trend, and FAIR alone raises nothing.
  const short = await seedSmallPlant(db.pool, 'short', 'S1');
  await scores(short, series.slice(-13));
  assert.is(await raise(short.workCenterId), 0, '6 hours of scores are no trend');

  await scores(deg, series);
  assert.is(await raise(deg.workCenterId), 1);
  const [a] = await alertsOf(deg.workCenterId);
  assert.equal([a.alert_type, a.alert_reason, a.predicted_failure_mode], ['RUL_THRESHOLD', 'RUL_WITHIN_HORIZON', 'BEARING_WEAR']);
  // slope about -0.92/h from about 70 to 30: about 44 h
  assert.ok(Math.abs(Number(a.rul_hours) - 44) < 3, `RUL ${a.rul_hours}`);
  assert.ok(Number(a.rul_confidence) > 0.95, `confidence ${a.rul_confidence}`);
  assert.ok(Number(a.time_to_failure_uncertainty_hours) > 0 && Number(a.time_to_failure_uncertainty_hours) < 20,
    `uncertainty ${a.time_to_failure_uncertainty_hours}`);
  assert.ok(Math.abs(Number(a.time_to_failure_uncertainty_hours) - (Number(a.rul_upper_hours) - Number(a.rul_lower_hours)) / 2) < 0.11);
  assert.equal([a.severity, a.urgency, a.business_impact], ['HIGH', 'URGENT', 'CRITICAL'], 'RUL < 72 h with confidence >= 0.65; a press');
  const model = await one(`select * from iot.predictive_maintenance_models where id = $1`, [a.model_id]);
  assert.equal([model.tenant_id, model.model_code, model.model_type, model.algorithm, model.deployment_status],
    [deg.tenantId, 'HEALTH_TREND', 'RUL_ESTIMATION', 'LINEAR_TREND_REGRESSION', 'PRODUCTION']);
  assert.equal([a.model_version, a.algorithm_used], ['1', 'LINEAR_TREND_REGRESSION']);
  assert.is(model.model_parameters.minTrendSpanHours, 12);
  assert.equal([a.feature_values.trendPoints, a.feature_values.trendSpanHours], [49, 24]);
  assert.is(a.primary_indicators[0].dimension, 'sensor');
  assert.is(a.primary_indicators[0].channels[0].sensorType, 'VIBRATION');
  // From the catalogue's shipped PRESS / BEARING_WEAR row.
  assert.ok(a.required_parts.includes('Cylinder bearing set'), `parts ${a.required_parts}`);
  assert.ok(a.required_skills.includes('Mechanical fitter'));
  assert.is(Number(a.estimated_maintenance_duration_hours), 6);
  assert.match(a.recommended_action, /cylinder bearings/);
  assert.is(Number(a.estimated_downtime_hours), 6);
  assert.is(Number(a.estimated_repair_cost), 3000);
  assert.ok(a.action_checklist.some((c: string) => /Check sensor/.test(c)));
});

test('an anomaly rate well above the machine\'s own baseline raises ANOMALY_DETECTED; a machine that always spikes does not', async () => {
  const flat = Array.from({ length: 96 }, (_, i) => ({ ago: (95 - i) * HOUR, score: 96 + (i % 2 ? 0.3 : -0.3) }));
  const rising = await seedSmallPlant(db.pool, 'spiky1', 'A1');
  await scores(rising, flat, []);
  await anomalies(rising, [40 * HOUR]);                                       // baseline: 1 in 3 days
  await anomalies(rising, [1, 3, 5, 8, 11, 13, 17, 20].map((h) => h * HOUR)); // 8 in the last 24 h
  const steady = await seedSmallPlant(db.pool, 'spiky2', 'A2');
  await scores(steady, flat, []);
  await anomalies(steady, Array.from({ length: 16 }, (_, i) => (i * 6 + 1) * HOUR), 'TEMPERATURE'); // 4 a day, all along

  assert.is(await raise(rising.workCenterId), 1);
  const [a] = await alertsOf(rising.workCenterId);
  assert.equal([a.alert_type, a.alert_reason, a.predicted_failure_mode, a.severity, a.rul_hours],
    ['ANOMALY_DETECTED', 'ANOMALY_RATE', 'BEARING_WEAR', 'MEDIUM', null]);
  const model = await one(`select model_code, model_type, algorithm from iot.predictive_maintenance_models where id = $1`, [a.model_id]);
  assert.equal(model, { model_code: 'ANOMALY_RATE', model_type: 'ANOMALY_DETECTION', algorithm: 'Z_SCORE' });
  assert.is(a.algorithm_used, 'Z_SCORE');
  assert.is(a.feature_values.anomalies24h, 8);
  assert.ok(a.feature_values.anomalyTailProbability < 1e-5, `P ${a.feature_values.anomalyTailProbability}`);
  assert.is(a.primary_indicators[0].sensorType, 'VIBRATION');
  assert.is(await raise(steady.workCenterId), 0, '4 a day against 4 a day is its normal');
  // Five channels upset once each by one stop are not one channel going wrong.
  const stop = await seedSmallPlant(db.pool, 'spiky3', 'A3');
  await scores(stop, flat, []);
  for (const type of ['TEMPERATURE', 'VIBRATION', 'PRESSURE', 'SPEED', 'COUNT']) await anomalies(stop, [2 * HOUR], type);
  assert.is(await raise(stop.workCenterId), 0, 'one event per channel');
});

test('no alert while a work center is under maintenance, nor from the pre-repair window for a day after it', async () => {
  const m = await seedSmallPlant(db.pool, 'maint', 'R1');
  await scores(m, Array.from({ length: 12 }, (_, i) => ({ ago: (11 - i) * HOUR, score: 45 })));
  const record = await one(`insert into iot.maintenance_records (tenant_id, work_center_id, maintenance_type, description, started_at)
    values ($1, $2, 'BREAKDOWN', 'bearing seized', $3) returning id`, [m.tenantId, m.workCenterId, new Date(AT.getTime() - 5 * HOUR)]);
  assert.is(await raise(m.workCenterId), 0, 'being repaired');
  await db.pool.query(`update iot.maintenance_records set ended_at = $2 where id = $1`, [record.id, new Date(AT.getTime() - 2 * HOUR)]);
  assert.is(await raise(m.workCenterId), 0, 'repaired 2 h ago: the POOR score still averages the broken hours');
  assert.is(await raise(m.workCenterId, new Date(AT.getTime() + 21 * HOUR)), 0, 'still within 24 h of the repair');
  await db.pool.query(`update iot.maintenance_records set started_at = started_at - interval '2 days', ended_at = ended_at - interval '2 days' where id = $1`, [record.id]);
  assert.is(await raise(m.workCenterId), 1, 'two days after the repair, POOR is news');
});

test('the maintenance catalogue: shipped defaults for every tenant, a tenant\'s own rows override them, only its own are writable', async () => {
  const t = await seedSmallPlant(db.pool, 'cat', 'K1');
  const other = await seedSmallPlant(db.pool, 'cat2', 'K2');
  await db.asRole('iot_operator', { tenant_id: t.tenantId }, async (c) => {
    const defaults = (await c.query(`select count(*)::int as n from iot.maintenance_catalogue where tenant_id is null`)).rows[0].n;
    assert.ok(defaults >= 15, `defaults visible: ${defaults}`);
    const own = (await c.query(`insert into iot.maintenance_catalogue (work_center_type, failure_mode, required_parts, required_skills,
        estimated_maintenance_duration_hours, recommended_action)
      values ('PRESS', 'BEARING_WEAR', '{"SKF 6312 bearing"}', '{"Our fitter"}', 2.5, 'Swap the cassette') returning tenant_id`)).rows[0];
    assert.is(own.tenant_id, t.tenantId, 'the tenant comes from the token');
    const changed = await c.query(`update iot.maintenance_catalogue set estimated_maintenance_duration_hours = 1 where tenant_id is null`);
    assert.is(changed.rowCount, 0, 'shipped defaults are read-only');
    await c.query('savepoint s');
    await rejects(() => c.query(`insert into iot.maintenance_catalogue (tenant_id, failure_mode, estimated_maintenance_duration_hours)
      values ($1, 'OVERHEATING', 1)`, [other.tenantId]), 'permission denied');
    await c.query('rollback to savepoint s');
    await rejects(() => c.query(`select * from iot_private.maintenance_plan($1, 'PRESS', 'BEARING_WEAR')`, [t.tenantId]), 'permission denied');
  });
  await db.pool.query(`insert into iot.maintenance_catalogue (tenant_id, work_center_type, failure_mode, required_parts, required_skills,
      estimated_maintenance_duration_hours) values ($1, 'PRESS', 'BEARING_WEAR', '{"SKF 6312 bearing"}', '{"Our fitter"}', 2.5)`, [t.tenantId]);
  const mine = await one(`select * from iot_private.maintenance_plan($1, 'PRESS', 'BEARING_WEAR')`, [t.tenantId]);
  assert.equal([mine.required_parts, Number(mine.estimated_maintenance_duration_hours)], [['SKF 6312 bearing'], 2.5]);
  const theirs = await one(`select * from iot_private.maintenance_plan($1, 'PRESS', 'BEARING_WEAR')`, [other.tenantId]);
  assert.is(Number(theirs.estimated_maintenance_duration_hours), 6, 'other tenants keep the default');
  const anyType = await one(`select * from iot_private.maintenance_plan($1, 'STITCHER', 'BEARING_WEAR')`, [other.tenantId]);
  assert.is(Number(anyType.estimated_maintenance_duration_hours), 4, 'the any-type row when the type has none');
  const unknown = await one(`select * from iot_private.maintenance_plan($1, 'PRESS', 'SOMETHING_NEW')`, [other.tenantId]);
  assert.ok(unknown, 'GENERAL_DEGRADATION for a mode without a row');
  await db.asRole('iot_analyst', { tenant_id: t.tenantId }, async (c) =>
    rejects(() => c.query(`delete from iot.maintenance_catalogue`), 'permission denied'));
});

test('deployPredictiveMaintenanceModel: one PRODUCTION model per scope, the previous one demoted to STAGING and kept', async () => {
  const t = await seedSmallPlant(db.pool, 'dep', 'M1');
  const other = await seedSmallPlant(db.pool, 'dep2', 'M2');
  await db.pool.query(`select iot_private.ensure_builtin_models($1)`, [[t.tenantId, other.tenantId]]);
  await db.asRole('iot_operator', { tenant_id: t.tenantId, sub: 'ops' }, async (c) => {
    const q = async (sql: string, params: unknown[] = []) => (await c.query(sql, params)).rows;
    const builtin = (await q(`select * from iot.predictive_maintenance_models where model_code = 'HEALTH_TREND'`))[0];
    assert.equal([builtin.deployment_status, builtin.deployment_scope, builtin.model_type], ['PRODUCTION', 'all/any', 'RUL_ESTIMATION']);
    const lstm = (await q(`insert into iot.predictive_maintenance_models (model_code, model_type, algorithm, prediction_horizon_hours,
        training_sample_count, precision_score, recall_score, f1_score, mean_absolute_error, retraining_frequency, feature_importance)
      values ('LSTM-RUL', 'RUL_ESTIMATION', 'LSTM', 336, 120000, 0.91, 0.84, 0.87, 11.5, 'MONTHLY', '{"VIBRATION": 0.6, "TEMPERATURE": 0.4}')
      returning *`))[0];
    assert.is(lstm.deployment_status, 'DEVELOPMENT');
    const press = (await q(`insert into iot.predictive_maintenance_models (model_code, model_type, algorithm, work_center_id, work_center_type)
      values ('RF-PRESS-1', 'RUL_ESTIMATION', 'RANDOM_FOREST', $1, 'PRESS') returning *`, [t.workCenterId]))[0];
    assert.is(press.deployment_scope, `work_center:${t.workCenterId}/any`);

    const deployed = (await q(`select * from iot.deploy_predictive_maintenance_model($1)`, [lstm.id]))[0];
    assert.is(deployed.deployment_status, 'PRODUCTION');
    assert.ok(deployed.deployed_at);
    const status = async () => Object.fromEntries((await q(`select model_code, deployment_status from iot.predictive_maintenance_models`))
      .map((r) => [r.model_code, r.deployment_status]));
    assert.equal(await status(), { HEALTH_TREND: 'STAGING', ANOMALY_RATE: 'PRODUCTION', RANGE_EXCURSION: 'PRODUCTION', 'LSTM-RUL': 'PRODUCTION', 'RF-PRESS-1': 'DEVELOPMENT' });
    await q(`select iot.deploy_predictive_maintenance_model($1)`, [press.id]);
    assert.equal(await status(), { HEALTH_TREND: 'STAGING', ANOMALY_RATE: 'PRODUCTION', RANGE_EXCURSION: 'PRODUCTION', 'LSTM-RUL': 'PRODUCTION', 'RF-PRESS-1': 'PRODUCTION' },
      'a model for one work center is another scope');
    await q(`select iot.deploy_predictive_maintenance_model($1)`, [builtin.id]);
    assert.equal(await status(), { HEALTH_TREND: 'PRODUCTION', ANOMALY_RATE: 'PRODUCTION', RANGE_EXCURSION: 'PRODUCTION', 'LSTM-RUL': 'STAGING', 'RF-PRESS-1': 'PRODUCTION' },
      'deployed back; the LSTM is kept');
    const again = (await q(`select * from iot.deploy_predictive_maintenance_model($1)`, [builtin.id]))[0];
    assert.is(again.deployment_status, 'PRODUCTION', 'deploying the deployed model changes nothing');

    await c.query('savepoint s');
    await rejects(() => c.query(`update iot.predictive_maintenance_models set deployment_status = 'PRODUCTION' where id = $1`, [lstm.id]),
      'predictive_maintenance_models_one_production_key');
    await c.query('rollback to savepoint s');
    const theirs = (await db.pool.query(`select id from iot.predictive_maintenance_models where tenant_id = $1 and model_code = 'HEALTH_TREND'`,
      [other.tenantId])).rows[0];
    await rejects(() => c.query(`select iot.deploy_predictive_maintenance_model($1)`, [theirs.id]), 'not found', 'IOT04');
  });
  await db.asRole('iot_analyst', { tenant_id: t.tenantId }, async (c) => {
    const m = (await c.query(`select id from iot.predictive_maintenance_models limit 1`)).rows[0];
    await rejects(() => c.query(`select iot.deploy_predictive_maintenance_model($1)`, [m.id]), 'permission denied');
  });
});

test('a demoted built-in model raises nothing; its PRODUCTION successor\'s parameters are the ones used', async () => {
  const t = await seedSmallPlant(db.pool, 'tuned', 'T1');
  await db.pool.query(`select iot_private.ensure_builtin_models($1)`, [[t.tenantId]]);
  const series = Array.from({ length: 49 }, (_, i) => ({ ago: (48 - i) * 30 * 60_000, score: 92 - (22 * i) / 48 }));
  await scores(t, series);
  // Version 2 of HEALTH_TREND asks for 36 hours of scores: deployed, the 24 hours here are no trend.
  const v2 = await one(`insert into iot.predictive_maintenance_models (tenant_id, model_code, model_type, algorithm, version, model_parameters)
    values ($1, 'HEALTH_TREND', 'RUL_ESTIMATION', 'LINEAR_TREND_REGRESSION', 2, '{"minTrendSpanHours": 36}') returning id`, [t.tenantId]);
  await db.asRole('iot_operator', { tenant_id: t.tenantId }, async (c) =>
    rejects(() => c.query(`select iot_private.raise_predictive_alerts($1, $2)`, [[t.workCenterId], AT]), 'permission denied'));
  await db.pool.query(`select iot.deploy_predictive_maintenance_model($1)`, [v2.id]);
  assert.is(await raise(t.workCenterId), 0, 'v2 needs 36 h');
  await db.pool.query(`update iot.predictive_maintenance_models set model_parameters = '{"minTrendSpanHours": 6}' where id = $1`, [v2.id]);
  assert.is(await raise(t.workCenterId), 1);
  const [a] = await alertsOf(t.workCenterId);
  assert.equal([a.model_id, a.model_version], [v2.id, '2']);
});

test('next_retraining_at follows last_retrained_at and the retraining frequency unless set', async () => {
  const t = await seedSmallPlant(db.pool, 'retrain', 'RETRAIN');
  const at = new Date('2026-11-01T00:00:00Z');
  const weekly = await one(`insert into iot.predictive_maintenance_models (tenant_id, model_code, model_type, algorithm, retraining_frequency, last_retrained_at)
    values ($1, 'W', 'FAILURE_PREDICTION', 'RANDOM_FOREST', 'WEEKLY', $2) returning id, next_retraining_at`, [t.tenantId, at]);
  assert.is(weekly.next_retraining_at.toISOString(), '2026-11-08T00:00:00.000Z');
  const q = await one(`update iot.predictive_maintenance_models set retraining_frequency = 'QUARTERLY' where id = $1 returning next_retraining_at`, [weekly.id]);
  assert.is(q.next_retraining_at.toISOString(), '2027-02-01T00:00:00.000Z');
  const onDemand = await one(`update iot.predictive_maintenance_models set retraining_frequency = 'ON_DEMAND' where id = $1 returning next_retraining_at`, [weekly.id]);
  assert.is(onDemand.next_retraining_at, null);
});

test('through GraphQL: an operator edits the catalogue, registers and deploys a model, and reads the alert fields clients use', async () => {
  const t = await seedSmallPlant(db.pool, 'gql', 'G1');
  await db.pool.query(`select iot_private.ensure_builtin_models($1)`, [[t.tenantId]]);
  await scores(t, Array.from({ length: 13 }, (_, i) => ({ ago: (12 - i) * HOUR, score: 48 - i })));
  assert.is(await raise(t.workCenterId), 1);
  const api = await startTestApi(db.url);
  try {
    const op = api.token('iot_operator', t.tenantId, 'gql-op');
    const created = await api.gql(`mutation { createMaintenanceCatalogue(input: { maintenanceCatalogue: {
        workCenterType: "PRESS", failureMode: "BEARING_WEAR", requiredParts: ["Bearing 6312"], requiredSkills: ["Fitter"],
        estimatedMaintenanceDurationHours: 3 } }) { maintenanceCatalogue { id tenantId estimatedMaintenanceDurationHours } } }`, {}, op);
    assert.equal(created.errors, undefined, JSON.stringify(created.errors));
    assert.is(created.data.createMaintenanceCatalogue.maintenanceCatalogue.tenantId, t.tenantId);
    const model = await api.gql(`mutation { createPredictiveMaintenanceModel(input: { predictiveMaintenanceModel: {
        modelCode: "GB-1", modelType: "FAILURE_PREDICTION", algorithm: "GRADIENT_BOOSTING", retrainingFrequency: "WEEKLY" } })
        { predictiveMaintenanceModel { id deploymentStatus } } }`, {}, op);
    assert.equal(model.errors, undefined, JSON.stringify(model.errors));
    const id = model.data.createPredictiveMaintenanceModel.predictiveMaintenanceModel.id;
    const deployed = await api.gql(`mutation($id: UUID!) { deployPredictiveMaintenanceModel(input: { modelId: $id })
        { predictiveMaintenanceModel { modelCode deploymentStatus deployedAt } } }`, { id }, op);
    assert.equal(deployed.errors, undefined, JSON.stringify(deployed.errors));
    assert.is(deployed.data.deployPredictiveMaintenanceModel.predictiveMaintenanceModel.deploymentStatus, 'PRODUCTION');
    const excursion = (await db.pool.query(`select deployment_status from iot.predictive_maintenance_models
      where tenant_id = $1 and model_code = 'RANGE_EXCURSION'`, [t.tenantId])).rows[0];
    assert.is(excursion.deployment_status, 'STAGING', 'the built-in FAILURE_PREDICTION model of that scope was demoted');
    const analyst = await api.gql(`mutation($id: UUID!) { deployPredictiveMaintenanceModel(input: { modelId: $id }) { clientMutationId } }`,
      { id }, api.token('iot_analyst', t.tenantId));
    assert.match(analyst.errors?.[0]?.message ?? '', /permission denied/);
    const alerts = await api.gql(`{ predictiveMaintenanceAlerts { nodes { id alertType severity predictedFailureMode timeToFailureHours
        recommendedAction rulConfidence requiredParts requiredSkills estimatedMaintenanceDurationHours algorithmUsed modelVersion } } }`, {}, op);
    assert.equal(alerts.errors, undefined, JSON.stringify(alerts.errors));
    const a = alerts.data.predictiveMaintenanceAlerts.nodes[0];
    assert.equal([a.alertType, a.predictedFailureMode, a.algorithmUsed], ['FAILURE_PREDICTION', 'BEARING_WEAR', 'LINEAR_TREND_REGRESSION']);
    assert.ok(a.recommendedAction && a.requiredSkills.length > 0);
  } finally {
    await api.close();
  }
});

// Release 0.1.0's alerts and models (its db/ and sql/ from git) upgrade in place through 000006.
const release = extractPreviousRelease();
const tier = (process.env.TEST_TIMESCALE_TIER as 'auto') ?? 'auto';
if ('skip' in release) {
  console.log(`[skip] db/predictive upgrade: ${release.skip}`);
  test.skip('release 0.1.0 alerts and models upgrade in place', () => undefined);
} else {
  test('release 0.1.0 alerts and models upgrade in place: values mapped, metrics split, one PRODUCTION per scope', async () => {
    const old = await createTestDatabase('predictive_upgrade', { migrate: false });
    try {
      await migrate({ connectionString: old.url, root: release.dir, requestedTier: tier });
      const q = async (sql: string, params: unknown[] = []) => (await old.pool.query(sql, params)).rows;
      const tenant = (await q(`insert into iot.tenants (tenant_code, name) values ('old', 'Old') returning id`))[0].id;
      const facility = (await q(`insert into iot.facilities (tenant_id, facility_code, name) values ($1, 'OLD1', 'Old') returning id`, [tenant]))[0].id;
      const wc = (await q(`insert into iot.work_centers (tenant_id, facility_id, work_center_code, name, work_center_type)
        values ($1, $2, 'CUT-1', 'Cutter', 'CUTTER') returning id`, [tenant, facility]))[0].id;
      const [m1, m2, m3] = (await q(`insert into iot.predictive_maintenance_models (tenant_id, model_name, model_type, is_deployed, deployed_at, metrics)
        values ($1, 'health trend v1', 'HEALTH_TREND_REGRESSION', true, now() - interval '2 days', '{"precision": 0.8, "recall": 0.7, "rmse": 22.9}'),
               ($1, 'health trend v2', 'HEALTH_TREND_REGRESSION', true, now() - interval '1 day', '{"f1_score": 0.75, "mae": 9}'),
               ($1, 'z', 'ANOMALY_ZSCORE', false, null, '{"precision": "high"}')
        returning id`, [tenant])).map((r) => r.id);
      const created = new Date(Date.now() - 5 * HOUR);
      const [a1, a2] = (await q(`insert into iot.predictive_maintenance_alerts (tenant_id, work_center_id, model_id, alert_type, failure_mode,
          severity, urgency, failure_probability, probability_lower, probability_upper, remaining_useful_life_hours, rul_lower_hours, rul_upper_hours,
          predicted_failure_date, estimated_cost, description, recommended_actions, evidence, created_at)
        values ($1, $2, null, 'ANOMALY', 'ANOMALOUS_BEHAVIOUR', 'MEDIUM', 'SOON', 0.2, 0.1, 0.3, 20, 10, 30, now() + interval '20 hours', 1500,
                'anomaly', '["Inspect", "Check sensor (5 points lost)"]', '{"riskFactors": [{"dimension": "sensor", "pointsLost": 5}]}', $4),
               ($1, $2, $3, 'RAPID_DEGRADATION', 'SENSOR_DEVIATION', 'HIGH', 'URGENT', 0.6, null, null, null, null, null, null, null,
                'falling', '[]', '{}', $4)
        returning id`, [tenant, wc, m2, created])).map((r) => r.id);

      await migrate({ connectionString: old.url, requestedTier: tier });

      const models: Record<string, Record<string, any>> = Object.fromEntries(
        (await q(`select * from iot.predictive_maintenance_models where tenant_id = $1`, [tenant])).map((m) => [m.id, m]));
      assert.equal([models[m1].model_code, models[m1].model_type, models[m1].algorithm, models[m1].deployment_status],
        ['health trend v1', 'RUL_ESTIMATION', 'LINEAR_TREND_REGRESSION', 'STAGING'], 'two were deployed in one scope: the older is demoted');
      assert.equal([Number(models[m1].precision_score), Number(models[m1].recall_score), models[m1].evaluation_details.rmse], [0.8, 0.7, 22.9]);
      assert.equal([models[m2].deployment_status, Number(models[m2].f1_score), Number(models[m2].mean_absolute_error)], ['PRODUCTION', 0.75, 9]);
      assert.equal([models[m3].model_type, models[m3].algorithm, models[m3].deployment_status, models[m3].precision_score],
        ['ANOMALY_DETECTION', 'Z_SCORE', 'DEVELOPMENT', null], 'a metric that is not a number stays in evaluation_details only');
      const builtins = Object.fromEntries(Object.values(models).filter((m) => m.evaluation_details.builtIn).map((m) => [m.model_code, m.deployment_status]));
      assert.equal(builtins, { HEALTH_TREND: 'STAGING', ANOMALY_RATE: 'PRODUCTION', RANGE_EXCURSION: 'PRODUCTION' }, 'the built-in trend model does not displace the deployed one');

      const alerts = Object.fromEntries((await q(`select * from iot.predictive_maintenance_alerts`)).map((a) => [a.id, a]));
      const x = alerts[a1];
      assert.equal([x.alert_type, x.alert_reason, x.predicted_failure_mode, Number(x.rul_hours), Number(x.confidence_interval_lower),
        Number(x.confidence_interval_upper), Number(x.estimated_repair_cost), Number(x.time_to_failure_uncertainty_hours)],
        ['ANOMALY_DETECTED', 'ANOMALY_RATE', 'ANOMALOUS_BEHAVIOUR', 20, 0.1, 0.3, 1500, 10]);
      assert.is(new Date(x.alert_timestamp).getTime(), created.getTime());
      assert.ok(x.predicted_failure_timestamp);
      assert.equal([x.recommended_action, x.action_checklist], ['Inspect', ['Check sensor (5 points lost)']]);
      assert.equal(x.primary_indicators, [{ dimension: 'sensor', pointsLost: 5 }]);
      assert.equal([models[x.model_id].model_code, x.algorithm_used, x.model_version], ['ANOMALY_RATE', 'Z_SCORE', '1']);
      assert.equal([x.required_skills, Number(x.estimated_maintenance_duration_hours)], [['Maintenance technician'], 2], 'from the catalogue');
      const y = alerts[a2];
      assert.equal([y.alert_type, y.alert_reason, y.model_id, y.algorithm_used, y.recommended_action, y.required_parts],
        ['FAILURE_PREDICTION', 'RAPID_DEGRADATION', m2, 'LINEAR_TREND_REGRESSION', null, ['Replacement sensor']]);
    } finally {
      await old.drop();
    }
  });
}

test.run();

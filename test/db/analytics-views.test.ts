// The analytics views for SQL users (sql/810_analytics_views.sql) on a small known plant: each
// returns what its definition promises (OEE per shift and day, today's production and utilisation,
// the latest health with its risk, MTTA/MTTR from alerts with known timestamps, prediction
// accuracy), as a tenant's analyst login, and another tenant's analyst sees none of it.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { randomBytes } from 'node:crypto';
import { Client } from 'pg';
import { adminUrl, createTestDatabase, seedSmallPlant, TestDatabase, asLogin as asLoginOf } from '../helpers/db';

const test = suite('analytics views');
const suffix = randomBytes(3).toString('hex');
const password = randomBytes(12).toString('hex');
const acmeLogin = `h12_acme_${suffix}`;
const globexLogin = `h12_globex_${suffix}`;
const VIEWS = ['production_summary_today', 'oee_daily', 'oee_by_shift', 'work_center_utilization_today', 'equipment_health_overview',
  'alert_timeline', 'alert_statistics', 'open_alerts_by_severity', 'prediction_accuracy'];
let db: TestDatabase;
let acme: Awaited<ReturnType<typeof seedSmallPlant>>;
let globex: Awaited<ReturnType<typeof seedSmallPlant>>;

const as = <T>(user: string, fn: (c: Client) => Promise<T>) => asLoginOf(db.url, user, password, fn);
const rows = (user: string, sql: string) => as(user, async (c) => (await c.query(sql)).rows);
const num = (v: unknown) => (v === null || v === undefined ? null : Number(v));

/**
 * A plant with known figures. Yesterday (UTC, the facility's zone): shift A 06:00-14:00 with a 48-minute
 * breakdown, 20000 units (19000 good) at 1 s ideal; shift B 14:00-22:00, no stop, 25000 units (all good).
 * Today: one run since midnight, 3000 good + 100 scrap of 5000 planned. Alerts at known minutes.
 */
async function seedKnownPlant(p: typeof acme, alertMinutes: { ack: number[]; resolve: number }) {
  const q = (sql: string, params: unknown[] = []) => db.pool.query(sql, params);
  await q(`update iot.work_centers set ideal_cycle_time_seconds = 1, oee_target = 0.85 where id = $1`, [p.workCenterId]);
  await q(`insert into iot.production_runs (tenant_id, work_center_id, job_number, shift, status, actual_start, actual_end,
             planned_quantity, good_count, scrap_count, rework_count, ideal_cycle_time_seconds)
           values ($1, $2, 'A-1', 'A', 'COMPLETED', date_trunc('day', now()) - interval '18 hours', date_trunc('day', now()) - interval '10 hours', 22000, 19000, 1000, 0, 1),
                  ($1, $2, 'B-1', 'B', 'COMPLETED', date_trunc('day', now()) - interval '10 hours', date_trunc('day', now()) - interval '2 hours', 26000, 25000, 0, 0, 1),
                  ($1, $2, 'T-1', 'A', 'RUNNING', date_trunc('day', now()), null, 5000, 3000, 100, 0, 1)`, [p.tenantId, p.workCenterId]);
  await q(`insert into iot.maintenance_records (tenant_id, work_center_id, maintenance_type, description, started_at, ended_at)
           values ($1, $2, 'BREAKDOWN', 'Jam', date_trunc('day', now()) - interval '16 hours', date_trunc('day', now()) - interval '16 hours' + interval '48 minutes')`,
  [p.tenantId, p.workCenterId]);
  // Health: an older and a latest score; the latest costs most on the sensor dimension.
  await q(`select iot_private.ensure_partitions('equipment_health_scores', now() - interval '2 days', now())`);
  await q(`insert into iot_private.equipment_health_scores (score_timestamp, tenant_id, work_center_id, overall_health_score, health_status, trend_direction, risk_factors, recommended_action)
           values (now() - interval '1 day', $1, $2, 90, 'EXCELLENT', 'STABLE', '[]', 'No action needed.'),
                  (now() - interval '1 minute', $1, $2, 42.5, 'POOR', 'RAPIDLY_DEGRADING',
                   '[{"dimension": "sensor", "pointsLost": 30.5}, {"dimension": "oee", "pointsLost": 5}]', 'Inspect the bearings.')`,
  [p.tenantId, p.workCenterId]);
  // Predictive alerts raised 3 h and 2 h ago, acknowledged after ack[0] and ack[1] minutes; the first
  // resolved `resolve` minutes after it was raised, judged ACCURATE; one older resolved false alarm.
  await q(`insert into iot.predictive_maintenance_alerts (tenant_id, work_center_id, alert_type, predicted_failure_mode, severity, urgency, status,
             failure_probability, description, alert_reason, alert_timestamp, acknowledged_at, resolved_at, prediction_accuracy, prediction_error_hours, rul_hours)
           values ($1, $2, 'FAILURE_PREDICTION', 'BEARING_WEAR', 'HIGH', 'URGENT', 'RESOLVED', 0.7, 'a', 'HEALTH_DEGRADATION',
                   now() - interval '3 hours', now() - interval '3 hours' + make_interval(mins => $3), now() - interval '3 hours' + make_interval(mins => $5), 'ACCURATE', -6, 30),
                  ($1, $2, 'FAILURE_PREDICTION', 'OVERHEATING', 'HIGH', 'URGENT', 'ACKNOWLEDGED', 0.6, 'b', 'HEALTH_DEGRADATION',
                   now() - interval '2 hours', now() - interval '2 hours' + make_interval(mins => $4), null, null, null, 12),
                  ($1, $2, 'FAILURE_PREDICTION', 'BEARING_WEAR', 'LOW', 'ROUTINE', 'RESOLVED', 0.2, 'c', 'HEALTH_DEGRADATION',
                   now() - interval '5 days', null, now() - interval '4 days', 'INCORRECT', null, null)`,
  [p.tenantId, p.workCenterId, alertMinutes.ack[0], alertMinutes.ack[1], alertMinutes.resolve]);
  // An equipment event acknowledged after 10 minutes, an open one, and an INFO event (not an alert).
  await q(`select iot_private.ensure_partitions('equipment_events', now() - interval '1 day', now())`);
  await q(`insert into iot_private.equipment_events (tenant_id, work_center_id, event_timestamp, event_type, severity, event_description, acknowledged, acknowledged_at)
           values ($1, $2, now() - interval '60 minutes', 'SENSOR_OUT_OF_RANGE', 'ERROR', 'hot', true, now() - interval '50 minutes'),
                  ($1, $2, now() - interval '30 minutes', 'SENSOR_OUT_OF_RANGE', 'CRITICAL', 'hotter', false, null),
                  ($1, $2, now() - interval '20 minutes', 'STARTUP', 'INFO', 'started', false, null)`, [p.tenantId, p.workCenterId]);
  // A system alert resolved after 30 minutes.
  await q(`insert into iot.system_alerts (tenant_id, alert_type, severity, work_center_id, message, raised_at, resolved_at)
           values ($1, 'HEALTH_CRITICAL', 'CRITICAL', $2, 'score low', now() - interval '40 minutes', now() - interval '10 minutes')`,
  [p.tenantId, p.workCenterId]);
}

test.before(async () => {
  // The figures are of "yesterday" and "today" (UTC), seeded here and read by every test: a run that
  // would pass midnight in between waits for the new day first (the suite takes about a second).
  const toMidnight = 86_400_000 - (Date.now() % 86_400_000);
  if (toMidnight < 30_000) await new Promise((r) => setTimeout(r, toMidnight + 1000));
  db = await createTestDatabase('analytics_views');
  acme = await seedSmallPlant(db.pool, 'acme', 'F1');
  globex = await seedSmallPlant(db.pool, 'globex', 'G1');
  // acme: MTTA (30 + 10) / 2 = 20 min, MTTR 120 min. globex: other figures, which must not leak in.
  await seedKnownPlant(acme, { ack: [30, 10], resolve: 120 });
  await seedKnownPlant(globex, { ack: [300, 500], resolve: 900 });
  await db.pool.query(`select iot_private.set_analyst_login($1, array['acme'], $2)`, [acmeLogin, password]);
  await db.pool.query(`select iot_private.set_analyst_login($1, array['globex'], $2)`, [globexLogin, password]);
});

test.after(async () => {
  await db?.drop();
  const admin = new Client({ connectionString: adminUrl() });
  await admin.connect();
  for (const role of [acmeLogin, globexLogin]) await admin.query(`drop role if exists ${role}`);
  await admin.end();
});

test('every view and every column is documented, hidden from GraphQL and readable by iot_analyst', async () => {
  for (const v of VIEWS) {
    const view = (await db.pool.query(`select obj_description($1::regclass, 'pg_class') as doc,
        has_table_privilege('iot_analyst', $1, 'select') as readable,
        (select array_agg(attname) from pg_attribute where attrelid = $1::regclass and attnum > 0
           and col_description($1::regclass, attnum) is null) as undocumented,
        (select reloptions from pg_class where oid = $1::regclass) as options`, [`iot.${v}`])).rows[0];
    assert.match(view.doc, /^@omit\n\S/, `${v}: comment starts with @omit and explains the view`);
    assert.ok(view.readable, `${v}: iot_analyst may select`);
    assert.is(view.undocumented, null, `${v}: columns without a comment`);
    assert.ok((view.options ?? []).includes('security_barrier=true'), `${v}: security barrier`);
  }
});

test('oee_by_shift: each shift gets its own OEE (the breakdown counts in shift A only)', async () => {
  const r = await rows(acmeLogin, `select shift, runs, availability_percentage, performance_percentage, quality_percentage, oee_percentage,
                                    target_oee_percentage, run_minutes, downtime_minutes from oee_by_shift
                                   where day = (now() - interval '1 day')::date order by shift`);
  assert.is(r.length, 2);
  // A: planned 480, down 48, run 432 min; 20000 units x 1 s / 25920 s; quality 19000/20000.
  assert.equal(r[0].shift, 'A');
  assert.is(num(r[0].availability_percentage), 90);
  assert.is(num(r[0].performance_percentage), 77.16);
  assert.is(num(r[0].quality_percentage), 95);
  assert.is(num(r[0].oee_percentage), 65.97);
  assert.is(num(r[0].downtime_minutes), 48);
  assert.is(num(r[0].target_oee_percentage), 85);
  // B: no stop; 25000 s ideal over 28800 s; all good.
  assert.equal([r[1].shift, num(r[1].availability_percentage), num(r[1].performance_percentage), num(r[1].quality_percentage), num(r[1].oee_percentage)],
    ['B', 100, 86.81, 100, 86.81]);
});

// Regression (found by this suite): iot.oee_trends(..., 'shift'), GraphQL oeeTrends(bucket: "shift"), gave
// every shift of a day the whole day's OEE.
test('oeeTrends by shift: the same per-shift figures as oee_by_shift, not the day\'s', async () => {
  const r = await rows(acmeLogin, `select shift, oee_percentage, availability_percentage from iot.oee_trends(now() - interval '3 days', now(), 'shift')
                                   where calculation_date = (now() - interval '1 day')::date order by shift`);
  assert.equal(r.map((x) => [x.shift, num(x.oee_percentage), num(x.availability_percentage)]), [['A', 65.97, 90], ['B', 86.81, 100]]);
});

test('oee_daily: the day combines both shifts', async () => {
  const r = await rows(acmeLogin, `select availability_percentage, quality_percentage, good_count, total_count, run_minutes, downtime_minutes
                                     from oee_daily where day = (now() - interval '1 day')::date`);
  assert.is(r.length, 1);
  // planned 960, down 48 -> 95%; good 44000 of 45000.
  assert.is(num(r[0].availability_percentage), 95);
  assert.is(num(r[0].quality_percentage), 97.78);
  assert.equal([num(r[0].good_count), num(r[0].total_count), num(r[0].run_minutes), num(r[0].downtime_minutes)], [44000, 45000, 912, 48]);
});

test("production_summary_today and work_center_utilization_today: today's run", async () => {
  const [p] = await rows(acmeLogin, `select facility_code, work_center_code, active_runs, runs, total_good_quantity, total_scrap_quantity,
                                       planned_quantity, average_yield, attainment from production_summary_today`);
  assert.equal({ ...p, total_good_quantity: num(p.total_good_quantity), total_scrap_quantity: num(p.total_scrap_quantity),
    planned_quantity: num(p.planned_quantity), average_yield: num(p.average_yield), attainment: num(p.attainment) },
  { facility_code: 'F1', work_center_code: 'PRESS-1', active_runs: 1, runs: 1, total_good_quantity: 3000, total_scrap_quantity: 100,
    planned_quantity: 5000, average_yield: 96.77, attainment: 60 });
  const [u] = await rows(acmeLogin, `select status, active_run_progress, setup_minutes from work_center_utilization_today`);
  assert.equal([u.status, num(u.active_run_progress), num(u.setup_minutes)], ['RUNNING', 62, 0]);
});

test('equipment_health_overview: the latest score, its status, trend and top risk, and the open alerts', async () => {
  const r = await rows(acmeLogin, `select work_center_id, overall_health_score, health_status, trend_direction, top_risk_dimension,
                                          top_risk_points_lost, recommended_action, open_alerts, highest_open_severity, shortest_rul_hours
                                     from equipment_health_overview`);
  assert.is(r.length, 1);
  assert.equal({ ...r[0], overall_health_score: num(r[0].overall_health_score), top_risk_points_lost: num(r[0].top_risk_points_lost),
    shortest_rul_hours: num(r[0].shortest_rul_hours) }, {
    work_center_id: acme.workCenterId, overall_health_score: 42.5, health_status: 'POOR', trend_direction: 'RAPIDLY_DEGRADING',
    top_risk_dimension: 'sensor', top_risk_points_lost: 30.5, recommended_action: 'Inspect the bearings.',
    open_alerts: 1, highest_open_severity: 'HIGH', shortest_rul_hours: 12,
  });
});

test('alert_statistics: mean time to acknowledge and to resolve per source, from known timestamps', async () => {
  const r = await rows(acmeLogin, `select source, sum(alert_count)::int as alerts, sum(acknowledged_count)::int as acked,
      sum(resolved_count)::int as resolved, sum(open_count)::int as open,
      round(sum(mean_time_to_acknowledge_minutes * acknowledged_count) / nullif(sum(acknowledged_count), 0), 2) as mtta,
      round(sum(mean_time_to_resolve_minutes * resolved_count) / nullif(sum(resolved_count), 0), 2) as mttr
    from alert_statistics where day >= date_trunc('day', now() - interval '1 day', 'UTC') group by source order by source`);
  assert.equal(r.map((x) => ({ ...x, mtta: num(x.mtta), mttr: num(x.mttr) })), [
    { source: 'EQUIPMENT_EVENT', alerts: 2, acked: 1, resolved: 0, open: 1, mtta: 10, mttr: null }, // the INFO event is not an alert
    { source: 'PREDICTIVE_MAINTENANCE', alerts: 2, acked: 2, resolved: 1, open: 0, mtta: 20, mttr: 120 },
    { source: 'SYSTEM', alerts: 1, acked: 0, resolved: 1, open: 0, mtta: null, mttr: 30 },
  ]);
});

test('open_alerts_by_severity: what is open now', async () => {
  const r = await rows(acmeLogin, `select source, severity, open_count from open_alerts_by_severity order by source, severity`);
  assert.equal(r, [
    { source: 'EQUIPMENT_EVENT', severity: 'CRITICAL', open_count: 1 },
    { source: 'PREDICTIVE_MAINTENANCE', severity: 'HIGH', open_count: 1 },
  ]);
});

test('prediction_accuracy: per failure mode and work center type', async () => {
  const r = await rows(acmeLogin, `select failure_mode, work_center_type, resolved_alerts, judged_alerts, accurate, incorrect,
                                          accuracy_percentage, mean_absolute_error_hours from prediction_accuracy order by 1`);
  assert.equal(r.map((x) => ({ ...x, accuracy_percentage: num(x.accuracy_percentage), mean_absolute_error_hours: num(x.mean_absolute_error_hours) })), [
    { failure_mode: 'BEARING_WEAR', work_center_type: 'PRESS', resolved_alerts: 2, judged_alerts: 2, accurate: 1, incorrect: 1,
      accuracy_percentage: 50, mean_absolute_error_hours: 6 },
  ]);
});

test("another tenant's analyst sees none of it, and the raw history stays closed", async () => {
  for (const v of VIEWS) {
    const seen = await rows(globexLogin, `select * from ${v}`);
    const leaked = seen.filter((x) => x.work_center_id === acme.workCenterId || x.tenant_id === acme.tenantId || x.facility_code === 'F1');
    assert.equal(leaked, [], `${v}: acme rows visible to globex`);
  }
  // globex's own, different figures: the MTTA it sees is its own.
  const [g] = await rows(globexLogin, `select round(sum(mean_time_to_acknowledge_minutes * acknowledged_count) / sum(acknowledged_count), 2) as mtta
                                         from alert_statistics where source = 'PREDICTIVE_MAINTENANCE'`);
  assert.is(num(g.mtta), 400);
  // A login mapped to no tenant sees nothing at all.
  await db.pool.query(`delete from iot_private.sql_role_tenants where role_name = $1`, [globexLogin]);
  try {
    for (const v of VIEWS) assert.equal(await rows(globexLogin, `select * from ${v}`), [], `${v}: rows for a login without tenants`);
  } finally {
    await db.pool.query(`insert into iot_private.sql_role_tenants (role_name, tenant_id) values ($1, $2)`, [globexLogin, globex.tenantId]);
  }
});

test.run();

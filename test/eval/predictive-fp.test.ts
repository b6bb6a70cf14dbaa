// Evaluation of predictive-maintenance alerts on a simulated plant with known faults: the seed's
// success metric, a false-positive rate under 5%.
//   - The demo plant (10 work centers, 50 channels) runs for 18 simulated days, readings every 5
//     minutes, through the real pipeline: ReadingSink (COPY -> ingest_staged_readings -> threshold
//     and anomaly events), rollup refresh, health scoring and alert raising every hour (as the
//     worker does), all in SQL.
//   - Ground truth from the simulator (src/sim/plant-simulator.ts): 6 degradations on 5 work
//     centers (bearing wear, overheating, pressure loss; 2.5-4 days from first wear to failure; one
//     press fails twice), the other 5 healthy all along. Every work center has transient faults
//     (4 a day, 5-30 minutes: overheating, vibration, pressure drops, stops) that are not failures.
//   - The operator's part is played too: a BREAKDOWN maintenance record opens at each failure and
//     closes after the repair, when the work center's open alerts are resolved with the failure.
// Definitions (horizon H = the model's prediction_horizon_hours, 168 h):
//   an alert (a row of iot.predictive_maintenance_alerts, raised at alert_timestamp) is a true
//   positive when its work center fails within (alert_timestamp, alert_timestamp + H], else a false
//   positive; false-positive rate = false positives / all alerts. Also printed: false alerts per 100
//   machine-days, and alerts raised while the machine was actually degrading.
//   A failure is detected when an alert on its work center was raised in the H before it (and
//   after the previous repair); lead time = failure - first such alert.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import type { Reading } from '../../src/ingest/reading';
import { ReadingSink } from '../../src/ingest/sink';
import { DEMO_FACILITIES, seedDemoPlant } from '../../src/sim/demo-plant';
import { Degradation, PlantSimulator } from '../../src/sim/plant-simulator';
import { createTestDatabase, TestDatabase } from '../helpers/db';
import { refreshRollups } from '../helpers/tier';

const test = suite('eval: predictive-maintenance false positives on a simulated plant with known faults');
let db: TestDatabase | undefined;
test.after(async () => db?.drop());

const HOUR = 3600_000;
const DAY = 24 * HOUR;
const DAYS = 18;
const STEP_SECONDS = 300;

test('alerts on a simulated plant: false-positive rate under 5%, detection rate and lead time', async () => {
  db = await createTestDatabase('predictive_fp');
  const pool = db.pool;
  const tier = db.tier;
  // Simulated days end an hour before now: every reading is in the past, as a replay is.
  const end = Math.floor(Date.now() / HOUR) * HOUR - HOUR;
  const t0 = end - DAYS * DAY;
  const at = (days: number) => new Date(t0 + days * DAY);
  const degradations: Degradation[] = [
    { workCenter: 'CHI/PRES-01', mode: 'BEARING_WEAR', startsAt: at(2.5), failsAt: at(6), repairHours: 8 },
    { workCenter: 'ATL/BIND-01', mode: 'OVERHEATING', startsAt: at(4), failsAt: at(7), repairHours: 6 },
    { workCenter: 'RTM/CUTT-01', mode: 'PRESSURE_DEVIATION', startsAt: at(6), failsAt: at(9.5), repairHours: 6 },
    { workCenter: 'CHI/FOLD-01', mode: 'BEARING_WEAR', startsAt: at(9), failsAt: at(13), repairHours: 8 },
    { workCenter: 'ATL/CUTT-01', mode: 'OVERHEATING', startsAt: at(11), failsAt: at(13.5), repairHours: 6 },
    { workCenter: 'CHI/PRES-01', mode: 'PRESSURE_DEVIATION', startsAt: at(12), failsAt: at(16), repairHours: 8 },
  ];
  let seed = 20260601;
  const random = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
  const sim = new PlantSimulator(DEMO_FACILITIES, { faultRate: 4 / 86400, faultMinutes: [5, 30], random, degradations });

  const tenantId = await seedDemoPlant(pool);
  const devices = new Map((await pool.query(`select device_code, id from iot.iot_devices where tenant_id = $1`, [tenantId])).rows
    .map((r) => [r.device_code as string, r.id as string]));
  const workCenters = new Map((await pool.query(`select w.id, f.facility_code || '/' || w.work_center_code as key
      from iot.work_centers w join iot.facilities f on f.id = w.facility_id where w.tenant_id = $1`, [tenantId])).rows
    .map((r) => [r.key as string, r.id as string]));
  await pool.query(`select iot_private.ensure_builtin_models($1)`, [[tenantId]]);
  const horizon = Number((await pool.query(`select prediction_horizon_hours as h from iot.predictive_maintenance_models
      where tenant_id = $1 and model_code = 'HEALTH_TREND' and deployment_status = 'PRODUCTION'`, [tenantId])).rows[0].h);


  const started = Date.now();
  const timing = { ingest: 0, rollups: 0, scoring: 0, alerts: 0 };
  const sink = new ReadingSink(pool, { batchSize: 10_000, maxWaitMs: 5, bufferMax: 100_000, writers: 1 });
  let readings = 0;
  for (let hour = 0; hour < DAYS * 24; hour++) {
    const from = t0 + hour * HOUR;
    const to = from + HOUR;
    let t = Date.now();
    const batch: Reading[] = [];
    for (let ts = from; ts < to; ts += STEP_SECONDS * 1000) {
      const now = new Date(ts);
      for (const r of sim.tick(now, STEP_SECONDS)) {
        batch.push({ time: now, tenantId, deviceId: devices.get(r.payload.deviceId)!, sensorType: r.payload.sensorType,
          value: r.payload.value, unit: r.payload.unit, quality: 'GOOD' });
      }
    }
    sink.add(batch);
    await sink.flush();
    readings += batch.length;
    timing.ingest += Date.now() - t;
    // The operator: a breakdown record at each failure, closed after the repair with the alerts resolved.
    for (const d of degradations) {
      const wc = workCenters.get(d.workCenter)!;
      const fail = d.failsAt.getTime();
      const repaired = fail + d.repairHours * HOUR;
      if (fail >= from && fail < to) {
        await pool.query(`insert into iot.maintenance_records (tenant_id, work_center_id, maintenance_type, description, failure_mode, started_at)
          values ($1, $2, 'BREAKDOWN', 'simulated failure', $3, $4)`, [tenantId, wc, d.mode, d.failsAt]);
      }
      if (repaired >= from && repaired < to) {
        await pool.query(`update iot.maintenance_records set ended_at = $3 where work_center_id = $1 and started_at = $2`, [wc, d.failsAt, new Date(repaired)]);
        await pool.query(`select iot.resolve_predictive_maintenance_alert(id, true, $2, 'repaired') from iot.predictive_maintenance_alerts
          where work_center_id = $1 and status <> 'RESOLVED'`, [wc, d.failsAt]);
      }
    }
    t = Date.now();
    await refreshRollups(pool); // the rollups__refresh job's procedure, every tier (late hours included)
    timing.rollups += Date.now() - t;
    t = Date.now();
    await pool.query(`select iot_private.store_health_scores(null, $1)`, [new Date(to)]);
    timing.scoring += Date.now() - t;
    t = Date.now();
    await pool.query(`select iot_private.raise_predictive_alerts(null, $1)`, [new Date(to)]);
    timing.alerts += Date.now() - t;
  }
  await sink.close();
  assert.is(sink.stats.deadLetters, 0);

  // Scoring ---------------------------------------------------------------------------------------
  const keyOf = new Map([...workCenters].map(([k, v]) => [v, k]));
  const alerts = (await pool.query(`select id, work_center_id, alert_timestamp, alert_type, alert_reason, severity, predicted_failure_mode,
      rul_hours, rul_confidence, predicted_failure_timestamp, prediction_accuracy, prediction_error_hours
      from iot.predictive_maintenance_alerts where tenant_id = $1 order by alert_timestamp`, [tenantId])).rows
    .map((a) => ({ ...a, key: keyOf.get(a.work_center_id)!, ts: new Date(a.alert_timestamp).getTime() }));
  const H = Number(horizon) * HOUR;
  const upcoming = (key: string, ts: number) =>
    degradations.find((d) => d.workCenter === key && d.failsAt.getTime() > ts && d.failsAt.getTime() <= ts + H);
  const falsePositives = alerts.filter((a) => !upcoming(a.key, a.ts));
  const whileDegrading = alerts.filter((a) => sim.condition(a.key, new Date(a.ts)).state === 'DEGRADING');
  const fpRate = alerts.length ? falsePositives.length / alerts.length : 0;
  const detections = degradations.map((d) => {
    const previousRepair = Math.max(0, ...degradations.filter((p) => p.workCenter === d.workCenter && p.failsAt < d.failsAt)
      .map((p) => p.failsAt.getTime() + p.repairHours * HOUR));
    const fail = d.failsAt.getTime();
    const before = alerts.filter((a) => a.key === d.workCenter && a.ts < fail && a.ts >= Math.max(fail - H, previousRepair));
    return { d, first: before[0], leadHours: before.length ? (fail - before[0].ts) / HOUR : null,
             modeMatch: before.some((a) => a.predicted_failure_mode === d.mode) };
  });
  const detected = detections.filter((x) => x.first);
  const leads = detected.map((x) => x.leadHours!).sort((a, b) => a - b);
  const median = (v: number[]) => (v.length ? (v.length % 2 ? v[(v.length - 1) / 2] : (v[v.length / 2 - 1] + v[v.length / 2]) / 2) : NaN);
  const withRul = alerts.filter((a) => a.rul_hours !== null && upcoming(a.key, a.ts));
  const rulErrors = withRul.map((a) => (new Date(a.predicted_failure_timestamp).getTime() - upcoming(a.key, a.ts)!.failsAt.getTime()) / HOUR);
  const machineDays = workCenters.size * DAYS;
  const count = (xs: { [k: string]: unknown }[], k: string) =>
    Object.entries(xs.reduce<Record<string, number>>((m, x) => ((m[String(x[k])] = (m[String(x[k])] ?? 0) + 1), m), {}))
      .map(([v, n]) => `${v} ${n}`).join(', ');

  const s = (ms: number) => (ms / 1000).toFixed(1);
  console.log(`  [predictive] ${readings} readings, ${DAYS} simulated days x ${workCenters.size} work centers, scored and alerted hourly, ` +
    `in ${s(Date.now() - started)} s (ingest ${s(timing.ingest)}, rollups ${s(timing.rollups)}, scoring ${s(timing.scoring)}, ` +
    `alerts ${s(timing.alerts)}; tier ${tier})`);
  console.log(`  [predictive] ${alerts.length} alerts (${count(alerts, 'alert_type')}; severity ${count(alerts, 'severity')}); ` +
    `false positives ${falsePositives.length} -> false-positive rate ${(fpRate * 100).toFixed(1)}% (target < 5%), ` +
    `${((falsePositives.length / machineDays) * 100).toFixed(2)} false alerts per 100 machine-days; ` +
    `${whileDegrading.length}/${alerts.length} raised while the machine was degrading`);
  console.log(`  [predictive] detection: ${detected.length}/${degradations.length} failures alerted within ${horizon} h before them ` +
    `(${detections.map((x) => (x.first ? 'x' : '-')).join('')}); lead time median ${median(leads).toFixed(1)} h, ` +
    `min ${leads.length ? leads[0].toFixed(1) : '-'} h, max ${leads.length ? leads[leads.length - 1].toFixed(1) : '-'} h; ` +
    `failure mode named right in ${detections.filter((x) => x.modeMatch).length}/${detected.length}`);
  console.log(`  [predictive] RUL on true alerts: ${withRul.length} with a remaining life, predicted failure minus actual: median ` +
    `${median([...rulErrors].sort((a, b) => a - b)).toFixed(1)} h (positive = predicted late); resolved alerts' accuracy: ` +
    `${count(alerts.filter((a) => a.prediction_accuracy), 'prediction_accuracy') || 'none'}`);
  for (const fp of falsePositives) {
    console.log(`  [predictive]   false positive: ${fp.key} ${fp.alert_type}/${fp.alert_reason} ${fp.severity} ${fp.predicted_failure_mode} ` +
      `at day ${((fp.ts - t0) / DAY).toFixed(2)} (${sim.condition(fp.key, new Date(fp.ts)).state})`);
  }
  for (const x of detections.filter((y) => !y.first)) {
    console.log(`  [predictive]   missed: ${x.d.workCenter} ${x.d.mode} failing at day ${((x.d.failsAt.getTime() - t0) / DAY).toFixed(1)}`);
  }

  assert.ok(alerts.length >= degradations.length, `alerts raised: ${alerts.length}`);
  assert.ok(fpRate < 0.05, `false-positive rate ${(fpRate * 100).toFixed(1)}% (the seed's target: under 5%)`);
  // Measured (tier 3): 7 alerts, 0 false positives; 6/6 failures detected, lead time median 31 h
  // (9-42 h). The bounds leave a little slack.
  assert.ok(detected.length >= 5, `failures detected: ${detected.length}/${degradations.length}`);
  assert.ok(median(leads) >= 20, `median lead time ${median(leads)} h`);
});

test.run();

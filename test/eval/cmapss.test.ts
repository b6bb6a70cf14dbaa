// Evaluation on real data: NASA C-MAPSS FD001 turbofan engines replayed as telemetry and scored by
// the predictive-maintenance RUL estimator (sql/540's least-squares trend of a health score
// extrapolated to a threshold, as iot_private.rul_from_health_series in sql/550).
//   - Each engine is a work center with one device and one channel per informative sensor
//     (CMAPSS_S2 ... CMAPSS_S21); cycle k is stored at T0 + k hours through ReadingSink, so the
//     readings take the real ingest path (COPY -> ingest_staged_readings -> sensor_readings).
//   - The health index, its calibration (fleet baseline, directions, degradation at failure, then
//     threshold and fit window by RMSE on training engines cut short) and the estimates are SQL over
//     iot_private.sensor_readings. The test engines' true RUL is used only for scoring.
//   - Predicted RUL is capped at 125 cycles (the literature's piecewise-linear target); a line that
//     does not fall predicts the cap.
// Reported: RMSE at each test engine's last cycle against the true RUL capped at 125 (the literature's
// comparison; LSTM about 16) and uncapped, the NASA score, and the share of engines whose true RUL
// lies within [rul_lower, rul_upper]. Bounds asserted are the measured figures with a little slack.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import type { Reading } from '../../src/ingest/reading';
import { ReadingSink } from '../../src/ingest/sink';
import { Cmapss, coverage, Engine, FD001_SENSORS, loadCmapss, nasaScore, rmse, SENSOR_INFO, sensorType } from '../helpers/cmapss';
import { createTestDatabase, TestDatabase } from '../helpers/db';

const test = suite('eval: remaining useful life on NASA C-MAPSS FD001');
const data = loadCmapss();
let db: TestDatabase | undefined;
const T0 = new Date('2020-01-01T00:00:00Z');
const HOUR = 3600_000;
const CAP = 125;

test.after(async () => db?.drop());

interface Estimate {
  work_center_code: string;
  last_step: number;
  health: number;
  rul: number | null;
  rul_lower: number | null;
  rul_upper: number | null;
  rul_capped: number;
}

// Without the datasets (../shared/datasets, or CMAPSS_DATASETS_DIR) the evaluation counts as skipped, saying why.
if ('missing' in data) console.log(`  [cmapss] skipped: ${data.missing} (the datasets sit in shared/datasets beside the repository)`);
const evaluation = 'missing' in data ? test.skip : test;

evaluation('replays FD001 through the ingest path and scores the SQL RUL estimator on the test engines', async () => {
  const fd = data as Cmapss;
  db = await createTestDatabase('cmapss');
  const pool = db.pool;
  const started = Date.now();

  // Registry: sensor types, one tenant and facility, a work center + device + channels per engine.
  for (const s of FD001_SENSORS) {
    await pool.query(`insert into iot.sensor_types (sensor_type, description, default_unit) values ($1, $2, $3)`,
      [sensorType(s), `C-MAPSS ${SENSOR_INFO[s].name}`, SENSOR_INFO[s].unit]);
  }
  const tenantId = (await pool.query(`insert into iot.tenants (tenant_code, name) values ('nasa', 'C-MAPSS') returning id`)).rows[0].id;
  const facilityId = (await pool.query(`insert into iot.facilities (tenant_id, facility_code, name) values ($1, 'FD001', 'C-MAPSS FD001') returning id`,
    [tenantId])).rows[0].id;
  const engines = [...fd.train.map((e) => ({ code: `TRAIN-${String(e.unit).padStart(3, '0')}`, e })),
    ...fd.test.map((e) => ({ code: `TEST-${String(e.unit).padStart(3, '0')}`, e }))];
  const registry = (await pool.query<{ code: string; work_center_id: string; device_id: string }>(
    `with wc as (
       insert into iot.work_centers (tenant_id, facility_id, work_center_code, name, work_center_type)
       select $1, $2, c, 'Turbofan ' || c, 'OTHER' from unnest($3::text[]) c returning id, work_center_code
     ), dev as (
       insert into iot.iot_devices (tenant_id, work_center_id, device_code, device_type)
       select $1, wc.id, wc.work_center_code || '-DEV', 'SENSOR' from wc returning id, work_center_id, device_code
     ), ch as (
       insert into iot.device_channels (tenant_id, device_id, sensor_type, unit)
       select $1, dev.id, st.sensor_type, st.default_unit from dev cross join iot.sensor_types st where st.sensor_type = any ($4)
       returning 1
     )
     select wc.work_center_code as code, wc.id as work_center_id, dev.id as device_id, (select count(*) from ch) as channels
     from wc join dev on dev.work_center_id = wc.id`,
    [tenantId, facilityId, engines.map((x) => x.code), FD001_SENSORS.map(sensorType)])).rows;
  const byCode = new Map(registry.map((r) => [r.code, r]));

  // Replay: cycle k at T0 + k hours, every engine's readings through the sink in batches.
  const sink = new ReadingSink(pool, { batchSize: 5000, maxWaitMs: 5, bufferMax: 50_000, writers: 2 });
  const readingsOf = (e: Engine, deviceId: string): Reading[] => e.cycles.flatMap((cycle, i) => FD001_SENSORS.map((s) => ({
    time: new Date(T0.getTime() + cycle * HOUR), tenantId, deviceId, sensorType: sensorType(s), value: e.sensors[s][i],
    unit: SENSOR_INFO[s].unit, quality: 'GOOD' as const,
  })));
  for (const { code, e } of engines) {
    if (!sink.add(readingsOf(e, byCode.get(code)!.device_id))) await sink.wait();
  }
  await sink.close();
  const ingested = Date.now();
  const expected = engines.reduce((n, x) => n + x.e.cycles.length, 0) * FD001_SENSORS.length;
  assert.is(sink.stats.deadLetters, 0);
  assert.is(sink.stats.stored, expected);

  // Calibrate on the training engines only.
  const trainIds = fd.train.map((e) => byCode.get(`TRAIN-${String(e.unit).padStart(3, '0')}`)!.work_center_id);
  const testIds = fd.test.map((e) => byCode.get(`TEST-${String(e.unit).padStart(3, '0')}`)!.work_center_id);
  const k = (await pool.query(`select * from iot_private.calibrate_rul('cmapss_fd001', $1, $2, interval '1 hour', $3, rul_cap => $4)`,
    [trainIds, T0, FD001_SENSORS.map(sensorType), CAP])).rows[0];
  const calibrated = Date.now();

  // Estimate each test engine at its last cycle.
  const estimates = async (extra = '', params: unknown[] = []) => {
    const rows = (await pool.query<Estimate>(
      `select w.work_center_code, e.* from iot_private.estimate_rul('cmapss_fd001', $1, $2${extra}) e
       join iot.work_centers w on w.id = e.work_center_id order by w.work_center_code`, [testIds, T0, ...params])).rows;
    assert.is(rows.length, fd.test.length);
    return rows;
  };
  const est = await estimates();
  const estimated = Date.now();
  const truth = fd.rul;
  const truthCapped = truth.map((t) => Math.min(t, CAP));
  est.forEach((r, i) => assert.is(r.last_step, fd.test[i].cycles[fd.test[i].cycles.length - 1], 'a step is a cycle'));
  const pred = est.map((r) => r.rul_capped);
  const lower = est.map((r) => r.rul_lower);
  const upper = est.map((r) => r.rul_upper);
  const figures = {
    rmseCapped: rmse(pred, truthCapped),
    rmseUncapped: rmse(pred, truth),
    nasa: nasaScore(pred, truthCapped),
    coverage: coverage(truth, lower, upper),
    coverageCapped: coverage(truthCapped, lower.map((l) => (l === null ? null : Math.min(l, CAP))), upper),
    bounded: upper.filter((u) => u !== null).length,
    meanError: pred.reduce((s, p, i) => s + p - truthCapped[i], 0) / pred.length,
  };
  // Variants for comparison (same calibration): the product's fixed threshold 30, and the line's
  // fitted value as the starting point instead of the last raw health value.
  const at30 = (await estimates(', threshold => 30')).map((r) => r.rul_capped);
  const fitAnchor = (await estimates(', anchor_on_fit => true')).map((r) => r.rul_capped);

  const t = (ms: number) => (ms / 1000).toFixed(1);
  console.log(`  [cmapss] ${expected} readings (${fd.train.length} training + ${fd.test.length} test engines x ${FD001_SENSORS.length} sensors) ` +
    `ingested in ${t(ingested - started)} s, calibrated in ${t(calibrated - ingested)} s, estimated in ${t(estimated - calibrated)} s (tier ${db.tier})`);
  console.log(`  [cmapss] calibration: sensors ${k.sensor_types.join(',')} directions ${k.directions.join(',')}; ` +
    `degradation at failure ${Number(k.degradation_at_failure).toFixed(2)} (= health 30); threshold ${k.threshold}, window ${k.fit_window}, ` +
    `training RMSE ${k.details.trainRmse} over ${k.details.cases} cut engines`);
  console.log(`  [cmapss] grid (threshold/window: training RMSE): ${k.details.grid.slice(0, 8).map((g: { threshold: number; window: number; rmse: number }) =>
    `${g.threshold}/${g.window}: ${g.rmse}`).join(', ')} ...`);
  console.log(`  [cmapss] test RMSE at the last cycle, prediction capped at ${CAP}: ${figures.rmseCapped.toFixed(2)} against true RUL capped at ${CAP} ` +
    `(literature: LSTM ~16), ${figures.rmseUncapped.toFixed(2)} against uncapped truth`);
  console.log(`  [cmapss] NASA score ${figures.nasa.toFixed(0)} (capped truth); mean error ${figures.meanError.toFixed(1)} cycles (positive = late)`);
  console.log(`  [cmapss] bounds: true RUL inside [rul_lower, rul_upper] for ${(figures.coverage * 100).toFixed(0)}% of engines ` +
    `(${(figures.coverageCapped * 100).toFixed(0)}% with truth and lower bound capped); ${figures.bounded}/100 have a finite upper bound`);
  console.log(`  [cmapss] variants: threshold 30 -> RMSE ${rmse(at30, truthCapped).toFixed(2)}; line anchor -> RMSE ${rmse(fitAnchor, truthCapped).toFixed(2)} (capped truth)`);

  // Measured (tiers 2 and 3 alike): calibration threshold 55, window 30 (training RMSE 25.4); test RMSE
  // 22.9 against capped truth, 23.2 uncapped; NASA score 2388; bounds cover 58% (31% when they carried
  // only the slope's error; still short of 95%: the curvature of wear is not in them). A little slack.
  assert.ok(k.details.cases >= 600, `training cases ${k.details.cases}`);
  assert.ok(figures.rmseCapped <= 24, `RMSE (capped truth) ${figures.rmseCapped}`);
  assert.ok(figures.rmseUncapped <= 24.5, `RMSE (uncapped truth) ${figures.rmseUncapped}`);
  assert.ok(figures.nasa <= 2800, `NASA score ${figures.nasa}`);
  assert.ok(figures.coverage >= 0.5, `coverage of the bounds ${figures.coverage}`);
  assert.ok(rmse(at30, truthCapped) > figures.rmseCapped, 'the calibrated threshold beats the fixed 30');
});

test.run();

// Evaluation on real data: NAB's machine_temperature_system_failure series (22,695 readings at
// 5-minute steps, four labelled failure windows) replayed through the real ingest path
// (ReadingSink -> ingest_staged_readings() -> detect_batch_events()), a day (288 readings) per
// batch, in file order (the file repeats one hour: those readings arrive as duplicates/late data).
// Two channels receive the series:
//   - NAB-ANOMALY: a sensor type without a normal range, so only the anomaly detector speaks;
//   - NAB-RANGE:   a temperature channel with the range 50-110 (the machine runs at 60-105 outside
//                  the failures; the sensor type's 60-75 default would not fit it), thresholds and
//                  anomalies together.
// Reported: labelled windows with at least one event inside, events outside every window (false
// positives) and false positives per 1000 readings. The bounds asserted are the measured figures
// with a little slack, so a change to the detectors that makes them worse fails here.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import type { Reading } from '../../src/ingest/reading';
import { ReadingSink } from '../../src/ingest/sink';
import { createTestDatabase, seedSmallPlant, TestDatabase } from '../helpers/db';
import { loadNab, NabData, scoreEvents } from '../helpers/nab';

const test = suite('eval: anomaly and threshold events on NAB machine temperature');
const nab = loadNab();
let db: TestDatabase | undefined;

test.after(async () => db?.drop());

// Without the datasets (../shared/datasets, or NAB_DATASETS_DIR) the evaluation counts as skipped, saying why.
if ('missing' in nab) console.log(`  [nab] skipped: ${nab.missing} (the datasets sit in shared/datasets beside the repository)`);
const evaluation = 'missing' in nab ? test.skip : test;

evaluation('replays the series and detects the failure windows with few false positives', async () => {
  const data = nab as NabData;
  db = await createTestDatabase('nab');
  const plant = await seedSmallPlant(db.pool);
  await db.pool.query(`insert into iot.sensor_types (sensor_type, description, default_unit) values ('MACHINE_TEMPERATURE', 'NAB machine temperature', '°F')`);
  const channel = async (code: string, sensorType: string, min: number | null, max: number | null) => {
    const d = await db!.pool.query<{ id: string }>(
      `insert into iot.iot_devices (tenant_id, work_center_id, device_code) values ($1, $2, $3) returning id`,
      [plant.tenantId, plant.workCenterId, code]);
    await db!.pool.query(
      `insert into iot.device_channels (tenant_id, device_id, sensor_type, unit, normal_min, normal_max) values ($1, $2, $3, '°F', $4, $5)`,
      [plant.tenantId, d.rows[0].id, sensorType, min, max]);
    return { deviceId: d.rows[0].id, sensorType };
  };
  const anomalyOnly = await channel('NAB-ANOMALY', 'MACHINE_TEMPERATURE', null, null);
  const ranged = await channel('NAB-RANGE', 'TEMPERATURE', 50, 110);

  const started = Date.now();
  const sink = new ReadingSink(db.pool, { batchSize: 2 * 288, maxWaitMs: 5, bufferMax: 100_000, writers: 1 });
  for (let i = 0; i < data.points.length; i += 288) {
    sink.add(data.points.slice(i, i + 288).flatMap((p): Reading[] => [anomalyOnly, ranged].map((c) => ({
      time: p.time, tenantId: plant.tenantId, deviceId: c.deviceId, sensorType: c.sensorType, value: p.value, unit: '°F', quality: 'GOOD',
    }))));
    await sink.flush();
  }
  await sink.close();
  const seconds = (Date.now() - started) / 1000;
  assert.is(sink.stats.deadLetters, 0);
  assert.is(sink.stats.duplicates, 2 * 12, 'the repeated hour is stored once');

  const events = async (deviceId: string, types: string[]) => (await db!.pool.query<{ event_timestamp: Date }>(
    `select event_timestamp from iot_private.equipment_events where iot_device_id = $1 and event_type = any ($2) order by event_timestamp`,
    [deviceId, types])).rows.map((r) => r.event_timestamp);
  const readings = data.points.length;
  const anomaly = scoreEvents(await events(anomalyOnly.deviceId, ['ANOMALY_DETECTED']), data.windows, readings);
  const threshold = scoreEvents(await events(ranged.deviceId, ['SENSOR_OUT_OF_RANGE']), data.windows, readings);
  const both = scoreEvents(await events(ranged.deviceId, ['SENSOR_OUT_OF_RANGE', 'ANOMALY_DETECTED']), data.windows, readings);
  const line = (label: string, s: typeof anomaly) =>
    console.log(`  [nab] ${label}: ${s.windowsDetected}/${data.windows.length} windows detected (${s.windowsHit.map((h) => (h ? 'x' : '-')).join('')}), ` +
      `${s.events} events, ${s.falsePositives} false positives, ${s.falsePositivesPer1000.toFixed(2)} per 1000 readings`);
  console.log(`  [nab] ${readings} readings in ${Math.ceil(readings / 288)} batches of 288, replayed in ${seconds.toFixed(1)} s (tier ${db.tier})`);
  line('anomaly detector alone (no range)   ', anomaly);
  line('thresholds alone (range 50-110)     ', threshold);
  line('thresholds + anomalies (range 50-110)', both);

  // Measured (k = 4, tiers 2 and 3 alike): anomalies 4/4 windows, 26 false positives (1.15 per 1000);
  // thresholds 3/4 windows, 3 false positives; together 4/4, 29. The bounds leave a little slack.
  // The excursion minimums (30 s out, 30 s back) change nothing here: at 5-minute sampling they ask
  // for two readings out of range to open an excursion and two back inside to close it.
  assert.ok(anomaly.windowsDetected >= 4, `anomaly detector: ${anomaly.windowsDetected} windows`);
  assert.ok(anomaly.falsePositives <= 30, `anomaly detector: ${anomaly.falsePositives} false positives`);
  assert.ok(threshold.windowsDetected >= 3, `thresholds: ${threshold.windowsDetected} windows`);
  assert.ok(threshold.falsePositives <= 4, `thresholds: ${threshold.falsePositives} false positives`);
  assert.ok(both.windowsDetected >= 4, `thresholds + anomalies: ${both.windowsDetected} windows`);
  assert.ok(both.falsePositives <= 34, `thresholds + anomalies: ${both.falsePositives} false positives`);
});

test.run();

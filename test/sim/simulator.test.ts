import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { DEMO_FACILITIES, seedDemoHistory, seedDemoPlant } from '../../src/sim/demo-plant';
import { PlantSimulator } from '../../src/sim/plant-simulator';
import { createTestDatabase, TestDatabase } from '../helpers/db';

const test = suite('demo plant: seed and simulator');
let db: TestDatabase;
test.before(async () => {
  db = await createTestDatabase('sim');
});
test.after(async () => db.drop());

test('the seed registers every facility, work center, device and channel, and is idempotent', async () => {
  const a = await seedDemoPlant(db.pool);
  const b = await seedDemoPlant(db.pool);
  assert.is(a, b);
  const { rows } = await db.pool.query(`select
      (select count(*)::int from iot.facilities) f, (select count(*)::int from iot.work_centers) w,
      (select count(*)::int from iot.iot_devices) d, (select count(*)::int from iot.device_channels) c,
      (select array_agg(distinct work_center_type order by work_center_type) from iot.work_centers) types`);
  const wcs = DEMO_FACILITIES.flatMap((f) => f.workCenters);
  assert.equal(rows[0], { f: 3, w: wcs.length, d: wcs.length * 2, c: wcs.length * 5, types: ['BINDER', 'CUTTER', 'FOLDER', 'PRESS'] });
});

test('demo history gives every work center OEE for the last week, once', async () => {
  const tenantId = await seedDemoPlant(db.pool);
  const written = await seedDemoHistory(db.pool, tenantId);
  assert.ok(written >= 140, `runs written: ${written}`);
  assert.is(await seedDemoHistory(db.pool, tenantId), 0, 'idempotent');
  const oee = (await db.pool.query(`select oee, availability, performance, quality from iot.oee_for(null, now() - interval '7 days', now())`)).rows;
  assert.is(oee.length, DEMO_FACILITIES.flatMap((f) => f.workCenters).length);
  for (const o of oee) {
    assert.ok(Number(o.oee) > 0.4 && Number(o.oee) < 0.95, `plausible OEE ${o.oee}`);
    assert.ok(Number(o.quality) > 0.9);
  }
  const ids = (await db.pool.query(`select array_agg(id) as ids from iot.work_centers`)).rows[0].ids;
  const scores = (await db.pool.query(`select oee_health_score, performance_health_score from iot_private.compute_health_scores($1, now())`, [ids])).rows;
  assert.ok(scores.every((s) => s.oee_health_score !== null && s.performance_health_score !== null));
});

test('each tick gives one plausible reading per channel on contract topics, and faults show up', () => {
  let seed = 42;
  const random = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
  const sim = new PlantSimulator(DEMO_FACILITIES, 0.05, random);
  const channels = DEMO_FACILITIES.flatMap((f) => f.workCenters.flatMap((w) => w.devices.flatMap((d) => d.channels))).length;
  let hot = 0;
  let lastCount = -1;
  for (let t = 0; t < 600; t++) {
    const readings = sim.tick(new Date(Date.UTC(2026, 0, 1, 0, 0, t)), 1);
    assert.is(readings.length, channels);
    for (const r of readings) {
      assert.match(r.topic, /^facility\/[A-Z]+\/workcenter\/[A-Z]+-\d\d\/sensor\/[a-z]+$/);
      assert.ok(Number.isFinite(r.payload.value));
      if (r.payload.sensorType === 'temperature' && r.payload.value > 75) hot++;
    }
    const count = readings.find((r) => r.payload.deviceId === 'CHI-PRES-01-CNT' && r.payload.sensorType === 'count')!.payload.value;
    assert.ok(count >= lastCount, 'the counter never goes backwards');
    lastCount = count;
  }
  assert.ok(hot > 0, 'some overheating faults occurred');
});

test.run();

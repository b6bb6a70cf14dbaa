// OEE, production summary and utilisation: what is unknown stays unknown. PostgreSQL's least()
// ignores nulls, so least(1, unknown) read as 100% performance and 100% progress of no run.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { createTestDatabase, seedSmallPlant, TestDatabase } from '../helpers/db';

const test = suite('db: OEE, production summary, utilisation');
let db: TestDatabase;
let plant: Awaited<ReturnType<typeof seedSmallPlant>>;

test.before(async () => {
  db = await createTestDatabase('oee');
  plant = await seedSmallPlant(db.pool);
});
test.after(async () => db.drop());
const one = async (sql: string, params: unknown[] = []) => (await db.pool.query(sql, params)).rows[0];

test('a work center without an ideal cycle time has no performance and no OEE, not 100%', async () => {
  const end = new Date(Date.now() - 3600_000);
  const start = new Date(end.getTime() - 4 * 3600_000);
  await db.pool.query(`insert into iot.production_runs (tenant_id, work_center_id, status, actual_start, actual_end, good_count, scrap_count)
    values ($1, $2, 'COMPLETED', $3, $4, 900, 100)`, [plant.tenantId, plant.workCenterId, start, end]);
  const o = await one(`select * from iot.work_center_oee($1, $2, now())`, [plant.workCenterId, new Date(start.getTime() - 3600_000)]);
  assert.equal([Number(o.availability), o.performance, Number(o.quality), o.oee], [1, null, 0.9, null]);
});

test('no active run: utilisation shows no run progress; an active run shows its share of the plan', async () => {
  const idle = await one(`select * from iot.work_center_utilization() where work_center_id = $1`, [plant.workCenterId]);
  assert.equal([idle.status, idle.current_production_run_id, idle.active_run_progress], ['IDLE', null, null]);
  const run = await one(`insert into iot.production_runs (tenant_id, work_center_id, status, actual_start, good_count, scrap_count, planned_quantity)
    values ($1, $2, 'RUNNING', now() - interval '10 minutes', 240, 10, 1000) returning id`, [plant.tenantId, plant.workCenterId]);
  const busy = await one(`select * from iot.work_center_utilization() where work_center_id = $1`, [plant.workCenterId]);
  assert.equal([busy.status, busy.current_production_run_id, Number(busy.active_run_progress)], ['RUNNING', run.id, 25]);
  const summary = await one(`select * from iot.production_summary() where work_center_id = $1`, [plant.workCenterId]);
  assert.equal([summary.active_runs, summary.scheduled_runs], [1, 0]);
});

test.run();

// Live events (issue 8): every change a dashboard shows is a NOTIFY from the database on the
// tenant's channel (sql/600_live_events.sql, sql/110_ingest.sql), in the shapes of the live-events
// contract of issue 8. Listens with real pg Clients on the channels the API uses.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { Client, PoolClient } from 'pg';
import type { Reading } from '../../src/ingest/reading';
import { ReadingSink } from '../../src/ingest/sink';
import { migrate } from '../../src/lib/db/migrate';
import pruneTask from '../../workers/live_events__prune';
import { rejects } from '../helpers/assert';
import { extractPreviousRelease } from '../helpers/release';
import { createTestDatabase, seedSmallPlant, TestDatabase } from '../helpers/db';
import { sleep } from '../helpers/wait';

const test = suite('db: live events over LISTEN/NOTIFY');
let db: TestDatabase;
let plant: Awaited<ReturnType<typeof seedSmallPlant>>;
let rival: Awaited<ReturnType<typeof seedSmallPlant>>;
let live: Listener;       // plant's tenant, every prefix
let rivalEars: Listener;  // the other tenant, every prefix

const PREFIXES = ['iot_readings', 'iot_live_readings', 'iot_events', 'iot_health', 'iot_alerts', 'iot_spc'];
const SENTINEL = '{"sentinel": true}';
type Notice = { prefix: string; payload: any };

/** A LISTENing pg Client on a tenant's channels, collecting what arrives. */
class Listener {
  notices: Notice[] = [];
  private constructor(private client: Client, private byChannel: Map<string, string>, readonly channels: Map<string, string>) {}
  static async open(tenantId: string): Promise<Listener> {
    const client = new Client({ connectionString: db.url });
    await client.connect();
    const channels = new Map<string, string>();
    const byChannel = new Map<string, string>();
    for (const prefix of PREFIXES) {
      const { rows } = await client.query<{ c: string }>('select iot_private.notify_channel($1, $2) as c', [prefix, tenantId]);
      channels.set(prefix, rows[0].c);
      byChannel.set(rows[0].c, prefix);
      await client.query(`listen "${rows[0].c}"`);
    }
    const l = new Listener(client, byChannel, channels);
    client.on('notification', (n) => l.notices.push({ prefix: byChannel.get(n.channel) ?? n.channel, payload: JSON.parse(n.payload ?? 'null') }));
    return l;
  }
  /** Every notice committed before now has arrived: NOTIFYs are delivered in commit order, so wait for a later one. */
  async settle(): Promise<void> {
    const before = this.notices.length;
    await db.pool.query('select pg_notify($1, $2)', [this.channels.get('iot_readings'), SENTINEL]);
    const deadline = Date.now() + 10_000;
    while (!this.notices.slice(before).some((n) => n.payload?.sentinel)) {
      if (Date.now() > deadline) throw new Error('the sentinel notice did not arrive within 10 s');
      await sleep(5);
    }
  }
  /** Settles, then hands out (and forgets) what arrived on `prefix`, sentinels left out. */
  async take(prefix: string): Promise<any[]> {
    await this.settle();
    const mine = this.notices.filter((n) => n.prefix === prefix && !n.payload?.sentinel).map((n) => n.payload);
    this.notices = this.notices.filter((n) => n.prefix !== prefix);
    return mine;
  }
  async close() {
    await this.client.end();
  }
}

/** Runs `sql` as an API operator of `tenantId` and COMMITS (NOTIFY is sent at commit only). */
async function asOperator<T = any>(tenantId: string, sql: string, params: unknown[]): Promise<T[]> {
  const c = await db.pool.connect();
  try {
    await c.query('begin');
    await c.query(`select set_config('jwt.claims.tenant_id', $1, true), set_config('jwt.claims.sub', 'mia', true)`, [tenantId]);
    await c.query('set local role iot_operator');
    const { rows } = await c.query(sql, params);
    await c.query('commit');
    return rows as T[];
  } catch (e) {
    await c.query('rollback');
    throw e;
  } finally {
    c.release();
  }
}

async function ingest(readings: Reading[]): Promise<void> {
  const sink = new ReadingSink(db.pool, { batchSize: 10_000, maxWaitMs: 5, bufferMax: 100_000, writers: 1 });
  sink.add(readings);
  await sink.flush();
  await sink.close();
  assert.is(sink.stats.deadLetters, 0, 'no reading was refused');
}
const reading = (deviceId: string, sensorType: string, value: number, time: Date, unit = '°F', quality: Reading['quality'] = 'GOOD',
  tenantId = plant.tenantId): Reading => ({ time, tenantId, deviceId, sensorType, value, unit, quality });
const unitOf: Record<string, string> = { TEMPERATURE: '°F', VIBRATION: 'mm/s', PRESSURE: 'PSI' };

async function setInterval(ms: number) {
  await db.pool.query(`update iot_private.settings set value = $1 where key = 'live_reading_interval_ms'`, [String(ms)]);
}
async function columnsOf(relation: string): Promise<string[]> {
  const { rows } = await db.pool.query<{ attname: string }>(
    `select attname from pg_attribute where attrelid = $1::regclass and attnum > 0 and not attisdropped order by attname`, [relation]);
  return rows.map((r) => r.attname);
}
const keys = (o: object) => Object.keys(o).sort();

test.before(async () => {
  db = await createTestDatabase('live_events');
  plant = await seedSmallPlant(db.pool, 'acme', 'F1');
  rival = await seedSmallPlant(db.pool, 'rival', 'F2');
  live = await Listener.open(plant.tenantId);
  rivalEars = await Listener.open(rival.tenantId);
});
test.after(async () => {
  await live?.close();
  await rivalEars?.close();
  await db.drop();
});

// Upgrade ------------------------------------------------------------------------------------------
// The previous release's db/ and sql/ come from git; without the history this test is skipped.
const release = extractPreviousRelease();
const withRelease = 'skip' in release
  ? ((name: string) => {
      console.log(`  [skip] ${name}: ${(release as { skip: string }).skip}`);
      test.skip(name, () => undefined);
    }) as unknown as typeof test
  : test;
test.after(() => ('remove' in release ? release.remove() : undefined));

withRelease('migration 000010 back-fills parameter_code of existing control limits (a release 0.1.0 database)', async () => {
  if ('skip' in release) throw new Error(release.skip);
  const old = await createTestDatabase('live_events_upgrade', { migrate: false });
  try {
    const tier = (process.env.TEST_TIMESCALE_TIER as 'auto') ?? 'auto';
    await migrate({ connectionString: old.url, root: release.dir, requestedTier: tier });
    const one = async (sql: string, params: unknown[] = []) => (await old.pool.query(sql, params)).rows[0];
    const tenant = (await one(`insert into iot.tenants (tenant_code, name) values ('old', 'Old') returning id`)).id;
    const facility = (await one(`insert into iot.facilities (tenant_id, facility_code, name) values ($1, 'OLD1', 'Old') returning id`, [tenant])).id;
    const wc = (await one(`insert into iot.work_centers (tenant_id, facility_id, work_center_code, name, work_center_type)
      values ($1, $2, 'PRESS-9', 'Press 9', 'PRESS') returning id`, [tenant, facility])).id;
    const device = (await one(`insert into iot.iot_devices (tenant_id, work_center_id, device_code, name) values ($1, $2, 'OLD-DEV', 'Old') returning id`,
      [tenant, wc])).id;
    const channel = (await one(`insert into iot.device_channels (tenant_id, device_id, sensor_type, unit) values ($1, $2, 'temperature', '°F') returning id`,
      [tenant, device])).id;
    await old.pool.query(`insert into iot.spc_control_limits (tenant_id, channel_id, center_line, sigma, baseline_from, baseline_to, sample_count, is_active)
      values ($1, $2, 70, 1, now() - interval '3 hours', now() - interval '2 hours', 50, false),
             ($1, $2, 71, 1, now() - interval '2 hours', now() - interval '1 hour', 50, true)`, [tenant, channel]);
    await migrate({ connectionString: old.url, requestedTier: tier });
    const { rows } = await old.pool.query('select parameter_code, is_active from iot.spc_control_limits order by center_line');
    assert.equal(rows, [{ parameter_code: 'OLD-DEV.TEMPERATURE', is_active: false }, { parameter_code: 'OLD-DEV.TEMPERATURE', is_active: true }]);
  } finally {
    await old.drop();
  }
});

// Sensor readings ---------------------------------------------------------------------------------
test('iot_live_readings: one notice per device per batch, the latest reading of each sensor type as iot.sensor_readings shows it, and the count', async () => {
  await setInterval(1500);
  const t = Date.now() - 2000;
  await ingest([
    reading(plant.deviceId, 'TEMPERATURE', 70, new Date(t)), reading(plant.deviceId, 'TEMPERATURE', 71, new Date(t + 100)),
    reading(plant.deviceId, 'PRESSURE', 100, new Date(t + 50), 'PSI'),
  ]);
  const [n, ...more] = await live.take('iot_live_readings');
  assert.ok(n, 'a notice arrived');
  assert.is(more.length, 0, 'one notice for the device');
  assert.equal(keys(n), ['count', 'deviceId', 'facilityId', 'readings', 'tenantId', 'workCenterId']);
  assert.equal([n.tenantId, n.facilityId, n.workCenterId, n.deviceId], [plant.tenantId, plant.facilityId, plant.workCenterId, plant.deviceId]);
  assert.is(n.count, 3, 'every stored reading is counted');
  assert.equal(n.readings.map((r: any) => [r.sensor_type, r.reading_value]), [['PRESSURE', 100], ['TEMPERATURE', 71]], 'latest per sensor type');
  const { rows } = await db.pool.query(
    `select to_jsonb(r) as j from iot.sensor_readings r where r.iot_device_id = $1 and r.sensor_type = 'TEMPERATURE' and r.reading_timestamp = $2`,
    [plant.deviceId, new Date(t + 100)]);
  assert.equal(n.readings[1], rows[0].j, 'the reading is the view\'s row, id included');
  assert.equal(keys(n.readings[0]), await columnsOf('iot.sensor_readings'));
  const [summary] = await live.take('iot_readings');
  assert.equal([summary.readingCount, summary.deviceCount], [3, 1], 'the per-tenant batch notice is still sent');
});

test('iot_live_readings: batches within the interval send nothing; the next notice after it counts their readings too', async () => {
  await setInterval(1500);
  await sleep(1600); // the device was notified in the previous test
  const t = Date.now() - 1000;
  await ingest([reading(plant.deviceId, 'TEMPERATURE', 72, new Date(t))]);
  await ingest([reading(plant.deviceId, 'TEMPERATURE', 73, new Date(t + 10)), reading(plant.deviceId, 'TEMPERATURE', 74, new Date(t + 20))]);
  const first = await live.take('iot_live_readings');
  assert.is(first.length, 1, 'two batches within the interval: one notice');
  assert.is(first[0].count, 1);
  await sleep(1600);
  await ingest([reading(plant.deviceId, 'PRESSURE', 101, new Date(t + 30), 'PSI')]);
  const next = await live.take('iot_live_readings');
  assert.is(next.length, 1);
  assert.is(next[0].count, 3, 'the 2 readings held back plus this batch\'s 1');
  assert.equal(next[0].readings.map((r: any) => r.sensor_type), ['PRESSURE'], 'this batch\'s latest values');
  // A batch of duplicates stores nothing: no notice and nothing counted.
  await sleep(1600);
  await ingest([reading(plant.deviceId, 'PRESSURE', 101, new Date(t + 30), 'PSI')]);
  assert.is((await live.take('iot_live_readings')).length, 0, 'a redelivered reading is not news');
  await ingest([reading(plant.deviceId, 'PRESSURE', 102, new Date(t + 40), 'PSI')]);
  const [after] = await live.take('iot_live_readings');
  assert.is(after.count, 1, 'the duplicate was not counted');
});

test('flush_live_readings(): a device that fell silent after a held-back batch gets its trailing notice, once', async () => {
  await setInterval(1000);
  await sleep(1100);
  const t = Date.now() - 500;
  await ingest([reading(plant.deviceId, 'TEMPERATURE', 72.5, new Date(t))]); // due: sent
  await ingest([reading(plant.deviceId, 'TEMPERATURE', 72.7, new Date(t + 10)), reading(plant.deviceId, 'TEMPERATURE', 72.9, new Date(t + 20))]);
  assert.is((await live.take('iot_live_readings')).length, 1, 'the second batch was held back');
  assert.is((await db.pool.query('select iot_private.flush_live_readings() as n')).rows[0].n, 0, 'not before the interval is over');
  await sleep(1100);
  assert.is((await db.pool.query('select iot_private.flush_live_readings() as n')).rows[0].n, 1);
  const [n, ...more] = await live.take('iot_live_readings');
  assert.is(more.length, 0);
  assert.equal([n.deviceId, n.count, n.facilityId, n.workCenterId], [plant.deviceId, 2, plant.facilityId, plant.workCenterId]);
  const temp = n.readings.find((r: any) => r.sensor_type === 'TEMPERATURE');
  assert.equal([temp.reading_value, new Date(temp.reading_timestamp).getTime()], [72.9, t + 20], 'the value held back');
  assert.equal(keys(temp), await columnsOf('iot.sensor_readings'));
  assert.is((await db.pool.query('select iot_private.flush_live_readings() as n')).rows[0].n, 0, 'sent once');
  await sleep(1100);
  await ingest([reading(plant.deviceId, 'TEMPERATURE', 73, new Date(t + 30))]);
  const [next] = await live.take('iot_live_readings');
  assert.is(next.count, 1, 'the flushed readings are not counted again');
  await setInterval(1500);
});

test('live_reading_interval_ms: refused outside 100..3600000 ms; migrate writes LIVE_READING_INTERVAL_MS', async () => {
  await rejects(() => setInterval(50), /live_reading_interval_ms must be a whole number of milliseconds from 100 to 3600000, not 50/, '22023');
  await rejects(() => setInterval('soon' as unknown as number), /not soon/, '22023');
  await migrate({ connectionString: db.url, requestedTier: (process.env.TEST_TIMESCALE_TIER as 'auto') ?? 'auto', liveReadingIntervalMs: 2500 });
  const { rows } = await db.pool.query(
    `select value, extract(epoch from iot_private.live_reading_interval())::float8 as s from iot_private.settings where key = 'live_reading_interval_ms'`);
  assert.equal([rows[0].value, rows[0].s], ['2500', 2.5]);
  await migrate({ connectionString: db.url, requestedTier: (process.env.TEST_TIMESCALE_TIER as 'auto') ?? 'auto' });
  assert.is((await db.pool.query(`select value from iot_private.settings where key = 'live_reading_interval_ms'`)).rows[0].value, '2500',
    'a migrate without the option keeps the stored value');
  await setInterval(1500);
});

// Equipment events --------------------------------------------------------------------------------
test('iot_events: a new equipment event with its routing keys and the iot.equipment_events row', async () => {
  const [ev] = await asOperator(plant.tenantId,
    `select * from iot.record_equipment_event($1, 'MAINTENANCE_REQUIRED', 'belt worn', 'WARNING', '{"belt": 3}', null, $2)`,
    [plant.workCenterId, plant.deviceId]);
  const [n, ...more] = await live.take('iot_events');
  assert.ok(n);
  assert.is(more.length, 0, JSON.stringify(more.map((x) => [x.event?.event_type, x.event?.event_description])));
  assert.equal([n.tenantId, n.facilityId, n.workCenterId, n.deviceId], [plant.tenantId, plant.facilityId, plant.workCenterId, plant.deviceId]);
  assert.equal(keys(n.event), await columnsOf('iot.equipment_events'));
  const { rows } = await db.pool.query('select to_jsonb(e) as j from iot.equipment_events e where e.id = $1', [ev.id]);
  assert.equal(n.event, rows[0].j);
  assert.equal([n.event.event_type, n.event.severity, n.event.metadata], ['MAINTENANCE_REQUIRED', 'WARNING', { belt: 3 }]);
  assert.is(n.id, ev.id, 'the earlier flat keys are still there for existing listeners');
});

// Health scores -----------------------------------------------------------------------------------
test('iot_health: one notice per new score, with the previous status and whether it changed; the scoring job too', async () => {
  const T = Date.now() - 3 * 3600_000;
  await db.pool.query(`select iot_private.ensure_partitions('equipment_health_scores', $1, now())`, [new Date(T)]);
  const insert = (minutes: number[], statuses: string[]) => db.pool.query(
    `insert into iot_private.equipment_health_scores (score_timestamp, tenant_id, work_center_id, overall_health_score, health_status)
     select $1::timestamptz + make_interval(mins => m), $2, $3, 50, s from unnest($4::int[], $5::text[]) u(m, s)`,
    [new Date(T), plant.tenantId, plant.workCenterId, minutes, statuses]);
  await insert([0], ['GOOD']);
  let [n] = await live.take('iot_health');
  assert.equal(keys(n), ['facilityId', 'previousStatus', 'score', 'statusChanged', 'tenantId', 'workCenterId']);
  assert.equal([n.tenantId, n.facilityId, n.workCenterId], [plant.tenantId, plant.facilityId, plant.workCenterId]);
  assert.equal(keys(n.score), await columnsOf('iot.equipment_health_scores'));
  assert.equal([n.previousStatus, n.statusChanged, n.score.health_status], [null, false, 'GOOD'], 'a first score changes no status');
  await insert([1], ['GOOD']);
  [n] = await live.take('iot_health');
  assert.equal([n.previousStatus, n.statusChanged], ['GOOD', false]);
  // One statement storing several scores: one notice per row, each against the score before it.
  await insert([2, 3], ['POOR', 'CRITICAL']);
  const two = await live.take('iot_health');
  assert.equal(two.map((x) => [x.previousStatus, x.score.health_status, x.statusChanged]).sort(),
    [['GOOD', 'POOR', true], ['POOR', 'CRITICAL', true]]);
  // The scoring job's own insert.
  const stored = (await db.pool.query('select iot_private.store_health_scores(array[$1]::uuid[], now()) as n', [plant.workCenterId])).rows[0].n;
  assert.is(stored, 1);
  const job = await live.take('iot_health');
  assert.is(job.length, 1);
  const row = (await db.pool.query(`select to_jsonb(h) as j from iot.equipment_health_scores h where h.work_center_id = $1
    order by score_timestamp desc limit 1`, [plant.workCenterId])).rows[0].j;
  assert.equal(job[0].score, row);
  assert.is(job[0].previousStatus, 'CRITICAL');
  assert.is(job[0].statusChanged, row.health_status !== 'CRITICAL');
});

// Payloads too big for NOTIFY --------------------------------------------------------------------------
test('outbox: a payload of 7,900 bytes or more is NOTIFYed by id with its routing keys; live_event_payload returns it', async () => {
  await db.pool.query(`insert into iot_private.equipment_health_scores (score_timestamp, tenant_id, work_center_id, overall_health_score,
    health_status, risk_factors, details) values (now() - interval '1 minute', $1, $2, 40, 'POOR', $3, $4)`,
    [plant.tenantId, plant.workCenterId, JSON.stringify([{ dimension: 'sensor', note: 'r'.repeat(5000) }]), JSON.stringify({ blob: 'x'.repeat(20000) })]);
  const [n, ...more] = await live.take('iot_health');
  assert.is(more.length, 0);
  assert.type(n.outbox, 'number');
  assert.equal([n.kind, n.tenantId, n.facilityId, n.workCenterId, n.score], ['iot_health', plant.tenantId, plant.facilityId, plant.workCenterId, undefined]);
  assert.ok('previousStatus' in n && 'statusChanged' in n, 'small top-level values travel with the id');
  const full = (await db.pool.query('select iot_private.live_event_payload($1) as p', [n.outbox])).rows[0].p;
  assert.is(full.score.details.blob.length, 20000);
  assert.equal([full.score.health_status, full.tenantId, full.workCenterId, full.statusChanged], ['POOR', plant.tenantId, plant.workCenterId, n.statusChanged]);
  // The limit is generic, on the bytes of the text sent: {"a": "..."} is 9 bytes around the string.
  const sized = async (bytes: number) => (await db.pool.query(
    `select iot_private.notify_live_event('iot_events', $1, jsonb_build_object('a', repeat('y', $2))) as id`, [plant.tenantId, bytes - 9])).rows[0].id;
  assert.is(await sized(7899), null, '7,899 bytes go inline');
  const boxed = await sized(7900);
  assert.ok(Number(boxed) > 0, '7,900 bytes go to the outbox');
  const sent = await live.take('iot_events');
  assert.is(sent.length, 2);
  assert.is(sent[0].a.length, 7890);
  assert.equal(sent[1], { outbox: Number(boxed), kind: 'iot_events' }, 'a long string is not copied into the notice');
  // Operators and analysts cannot read the outbox.
  await db.asRole('iot_operator', { tenant_id: plant.tenantId }, async (c) =>
    rejects(() => c.query('select iot_private.live_event_payload($1)', [n.outbox]), /permission denied/));
});

test('outbox: live_events__prune deletes payloads older than an hour and keeps newer ones', async () => {
  await db.pool.query(`update iot_private.live_event_outbox set created_at = now() - interval '61 minutes'
                       where id = (select min(id) from iot_private.live_event_outbox)`);
  const before = Number((await db.pool.query('select count(*) as n from iot_private.live_event_outbox')).rows[0].n);
  const logged: string[] = [];
  const helpers = {
    query: (text: string, values?: unknown[]) => db.pool.query(text, values),
    logger: { info: (m: string) => logged.push(m), warn: (m: string) => logged.push(m) },
  };
  await pruneTask({}, helpers as never);
  const after = Number((await db.pool.query('select count(*) as n from iot_private.live_event_outbox')).rows[0].n);
  assert.is(after, before - 1);
  assert.match(logged.join('\n'), /deleted 1 outbox payloads older than 60 minutes/);
  assert.is((await db.pool.query(`select iot_private.prune_live_event_outbox('0 seconds') as n`)).rows[0].n, after);
});

// Predictive-maintenance alerts ---------------------------------------------------------------------
test('iot_alerts: created, critical changes and every workflow step, once each, with the row as committed; no-op updates send nothing', async () => {
  const [a] = (await db.pool.query(
    `insert into iot.predictive_maintenance_alerts (tenant_id, work_center_id, alert_type, alert_reason, predicted_failure_mode,
       severity, urgency, failure_probability, description)
     values ($1, $2, 'FAILURE_PREDICTION', 'HEALTH_DEGRADATION', 'BEARING_WEAR', 'HIGH', 'URGENT', 0.6, 'health falling') returning *`,
    [plant.tenantId, plant.workCenterId])).rows;
  let got = await live.take('iot_alerts');
  assert.is(got.length, 1);
  let n = got[0];
  assert.equal(keys(n), ['alert', 'becameCritical', 'change', 'critical', 'facilityId', 'previousStatus', 'tenantId', 'workCenterId']);
  assert.equal([n.change, n.previousStatus, n.critical, n.becameCritical], ['CREATED', null, false, false]);
  assert.equal([n.tenantId, n.facilityId, n.workCenterId, n.alert.id], [plant.tenantId, plant.facilityId, plant.workCenterId, a.id]);
  assert.equal(keys(n.alert), await columnsOf('iot.predictive_maintenance_alerts'));

  const step = async (sql: string, params: unknown[] = [a.id]) => {
    await db.pool.query(sql, params);
    return live.take('iot_alerts');
  };
  assert.is((await step(`update iot.predictive_maintenance_alerts set description = 'still falling', updated_at = now() where id = $1`)).length, 0,
    'nothing relevant changed: nothing sent');
  [n] = await step(`update iot.predictive_maintenance_alerts set severity = 'CRITICAL' where id = $1`);
  assert.equal([n.change, n.previousStatus, n.critical, n.becameCritical, n.alert.severity], ['UPDATED', 'OPEN', true, true, 'CRITICAL']);
  [n] = await step(`update iot.predictive_maintenance_alerts set urgency = 'IMMEDIATE' where id = $1`);
  assert.equal([n.change, n.critical, n.becameCritical], ['UPDATED', true, false], 'already critical');

  const workflow = async (sql: string, params: unknown[]) => {
    await asOperator(plant.tenantId, sql, params);
    const sent = await live.take('iot_alerts');
    assert.is(sent.length, 1, `one notice for ${sql}`);
    return sent[0];
  };
  n = await workflow('select (iot.acknowledge_predictive_maintenance_alert($1)).status', [a.id]);
  assert.equal([n.change, n.previousStatus, n.alert.status, n.alert.acknowledged_by], ['ACKNOWLEDGED', 'OPEN', 'ACKNOWLEDGED', 'mia']);
  const at = new Date(Date.now() + 86400_000);
  n = await workflow('select (iot.schedule_predictive_maintenance_alert($1, $2)).status', [a.id, at]);
  assert.equal([n.change, n.previousStatus], ['SCHEDULED', 'ACKNOWLEDGED']);
  assert.is(new Date(n.alert.scheduled_for).getTime(), at.getTime(), 'the row as committed, with the second statement\'s scheduled_for');
  n = await workflow('select (iot.start_predictive_maintenance_alert($1)).status', [a.id]);
  assert.equal([n.change, n.previousStatus], ['IN_PROGRESS', 'SCHEDULED']);
  n = await workflow(`select (iot.resolve_predictive_maintenance_alert($1, false, null, 'bearing greased')).status`, [a.id]);
  assert.equal([n.change, n.previousStatus, n.alert.status, n.alert.resolution_notes, n.alert.prediction_accuracy],
    ['RESOLVED', 'IN_PROGRESS', 'RESOLVED', 'bearing greased', 'INCORRECT']);
  assert.is(n.critical, true);

  // Created critical; a rolled-back change sends nothing.
  await db.pool.query(
    `insert into iot.predictive_maintenance_alerts (tenant_id, work_center_id, alert_type, alert_reason, predicted_failure_mode,
       severity, urgency, failure_probability, description)
     values ($1, $2, 'FAILURE_PREDICTION', 'HEALTH_DEGRADATION', 'BEARING_WEAR', 'MEDIUM', 'IMMEDIATE', 0.9, 'failing') returning id`,
    [plant.tenantId, plant.workCenterId]);
  [n] = await live.take('iot_alerts');
  assert.equal([n.change, n.critical, n.becameCritical], ['CREATED', true, true]);
  await db.asRole('iot_operator', { tenant_id: plant.tenantId }, (c) =>
    c.query('select iot.acknowledge_predictive_maintenance_alert($1)', [n.alert.id]));
  assert.is((await live.take('iot_alerts')).length, 0, 'rolled back: nothing sent');
});

// SPC ------------------------------------------------------------------------------------------------
async function channelId(deviceId: string, sensorType: string): Promise<string> {
  return (await db.pool.query('select id from iot.device_channels where device_id = $1 and sensor_type = $2', [deviceId, sensorType])).rows[0].id;
}
async function addLimit(channel: string, center: number, sigma: number, code: string | null = null) {
  return (await db.pool.query(
    `insert into iot.spc_control_limits (tenant_id, channel_id, center_line, sigma, baseline_from, baseline_to, sample_count, parameter_code)
     select tenant_id, id, $2, $3, now() - interval '2 hours', now() - interval '1 hour', 100, $4 from iot.device_channels where id = $1
     returning *`, [channel, center, sigma, code])).rows[0];
}

test('spc_control_limits.parameter_code: <device_code>.<SENSOR_TYPE> by default, kept when limits are recomputed, unique per tenant', async () => {
  const vib = await channelId(plant.deviceId, 'VIBRATION');
  // A baseline window in the past (the late path), 40 readings with spread.
  const T = Date.now() - 5 * 3600_000;
  await ingest(Array.from({ length: 40 }, (_, i) => reading(plant.deviceId, 'VIBRATION', 1 + ((i * 7) % 5) * 0.05, new Date(T + i * 10_000), 'mm/s')));
  const custom = await addLimit(vib, 1.1, 0.05, 'LINE1.VIB');
  assert.is(custom.parameter_code, 'LINE1.VIB');
  const recomputed = (await db.pool.query('select * from iot_private.compute_spc_control_limits(array[$1]::uuid[], $2, $3)',
    [vib, new Date(T - 1000), new Date(T + 400_000)])).rows[0];
  assert.ok(recomputed && recomputed.id !== custom.id);
  assert.is(recomputed.parameter_code, 'LINE1.VIB', 'the chart keeps its name');
  const press = await channelId(plant.deviceId, 'PRESSURE');
  await rejects(() => addLimit(press, 100, 2, 'LINE1.VIB'), /spc_control_limits_parameter_code_active_key/, '23505');
  const theirs = await addLimit(await channelId(rival.deviceId, 'VIBRATION'), 1, 0.1, 'LINE1.VIB');
  assert.is(theirs.parameter_code, 'LINE1.VIB', 'codes are unique per tenant, not across tenants');
  const temp = await addLimit(await channelId(plant.deviceId, 'TEMPERATURE'), 70, 2);
  assert.is(temp.parameter_code, `${plant.deviceCode}.TEMPERATURE`);
  await live.take('iot_live_readings');
  await live.take('iot_spc');
});

test('iot_spc measurement: per batch, only channels with an active limit; zones and out-of-control computed; BAD left out', async () => {
  // TEMPERATURE: center 70, sigma 2 (UCL 76, LCL 64). PRESSURE has no limit.
  const t = Date.now() - 20_000;
  const values: [number, Reading['quality']][] = [[70.5, 'GOOD'], [68, 'GOOD'], [67.5, 'GOOD'], [74.5, 'GOOD'], [77, 'GOOD'], [72, 'BAD'], [66, 'GOOD']];
  await ingest([
    ...values.map(([v, q], i) => reading(plant.deviceId, 'TEMPERATURE', v, new Date(t + i * 100), '°F', q)),
    reading(plant.deviceId, 'PRESSURE', 100, new Date(t), 'PSI'),
  ]);
  const sent = await live.take('iot_spc');
  assert.is(sent.length, 1, 'one notice, for the channel with a limit');
  const n = sent[0];
  assert.equal(keys(n), ['controlLimitId', 'deviceId', 'facilityId', 'kind', 'parameterCode', 'points', 'tenantId', 'workCenterId']);
  assert.equal([n.kind, n.parameterCode, n.tenantId, n.facilityId, n.workCenterId, n.deviceId],
    ['measurement', `${plant.deviceCode}.TEMPERATURE`, plant.tenantId, plant.facilityId, plant.workCenterId, plant.deviceId]);
  assert.equal(n.points.map((p: any) => p.value), [70.5, 68, 67.5, 74.5, 77, 66], 'in time order, the BAD reading left out');
  assert.equal(n.points.map((p: any) => p.zone), ['+C', '-C', '-B', '+A', '+A', '-B'], 'boundaries belong to the inner zone');
  assert.equal(n.points.map((p: any) => p.outOfControl), [false, false, false, false, true, false]);
  assert.equal(keys(n.points[0]), ['centerLine', 'lowerControlLimit', 'outOfControl', 'sigma', 'timestamp', 'upperControlLimit', 'value', 'zone']);
  assert.equal([n.points[0].centerLine, n.points[0].sigma, n.points[0].upperControlLimit, n.points[0].lowerControlLimit], [70, 2, 76, 64]);
  assert.is(new Date(n.points[0].timestamp).getTime(), t);

  // 60 points in one batch: the 50 newest, by id (50 points are over 7,900 bytes).
  await ingest(Array.from({ length: 60 }, (_, i) => reading(plant.deviceId, 'TEMPERATURE', 70 + (i % 2 ? 0.5 : -0.5), new Date(t + 1000 + i * 10))));
  const [big] = await live.take('iot_spc');
  const full = big.outbox ? (await db.pool.query('select iot_private.live_event_payload($1) as p', [big.outbox])).rows[0].p : big;
  if (big.outbox) assert.equal([big.kind, big.parameterCode], ['measurement', `${plant.deviceCode}.TEMPERATURE`]);
  assert.is(full.points.length, 50);
  assert.is(new Date(full.points[0].timestamp).getTime(), t + 1000 + 10 * 10, 'the 11th is the oldest kept');
  assert.is(new Date(full.points[49].timestamp).getTime(), t + 1000 + 59 * 10);
});

test('iot_spc alert: each SPC alert the evaluation raises, with its parameter code and routing keys', async () => {
  // The out-of-control points above are over 5 s old: the evaluation looks at them now.
  const raised = (await db.pool.query('select iot_private.evaluate_spc() as n')).rows[0].n;
  assert.ok(raised >= 1, 'the 3.5 sigma point raised rule 1');
  const sent = (await live.take('iot_spc')).filter((x) => x.kind === 'alert');
  assert.is(sent.length, raised);
  const rows = (await db.pool.query('select to_jsonb(a) as j from iot.spc_alerts a order by created_at')).rows.map((r) => r.j);
  assert.equal(sent.map((x) => x.alert).sort((a, b) => a.rule - b.rule), rows.sort((a: any, b: any) => a.rule - b.rule));
  assert.ok(sent.some((x) => x.alert.rule === 1));
  for (const x of sent) {
    assert.equal(keys(x), ['alert', 'controlLimitId', 'deviceId', 'facilityId', 'kind', 'parameterCode', 'tenantId', 'workCenterId']);
    assert.equal([x.parameterCode, x.deviceId, x.facilityId, x.workCenterId], [`${plant.deviceCode}.TEMPERATURE`, plant.deviceId, plant.facilityId, plant.workCenterId]);
  }
  assert.equal(keys(sent[0].alert), await columnsOf('iot.spc_alerts'));
});

// Queue, isolation ---------------------------------------------------------------------------------
test('iot.notification_queue_usage(): the NOTIFY queue\'s fill, a number from 0 to 1', async () => {
  const u = (await db.pool.query('select iot.notification_queue_usage() as u')).rows[0].u;
  assert.type(u, 'number');
  assert.ok(u >= 0 && u <= 1, `usage ${u}`);
});

// Cost of the batch function ------------------------------------------------------------------
// 5,000 current readings (so the live path, not the late path) of `devices` devices x 4 sensor
// types, staged in the session's table, then one timed call of ingest_staged_readings().
const BENCH_TYPES = ['TEMPERATURE', 'VIBRATION', 'PRESSURE', 'HUMIDITY'];

async function benchDevices(n: number): Promise<string[]> {
  const { rows } = await db.pool.query<{ id: string }>(
    `insert into iot.iot_devices (tenant_id, work_center_id, device_code)
     select $1, $2, 'BENCH-' || g from generate_series(1, $3::int) g returning id`, [plant.tenantId, plant.workCenterId, n]);
  const ids = rows.map((r) => r.id);
  await db.pool.query(
    `insert into iot.device_channels (tenant_id, device_id, sensor_type, unit)
     select $1, d, t, case t when 'TEMPERATURE' then '°F' when 'VIBRATION' then 'mm/s' when 'PRESSURE' then 'PSI' else '%RH' end
     from unnest($2::uuid[]) d cross join unnest($3::text[]) t`, [plant.tenantId, ids, BENCH_TYPES]);
  return ids;
}

async function timeBatch(client: PoolClient, deviceIds: string[], readings = 5000): Promise<number> {
  const perChannel = Math.ceil(readings / (deviceIds.length * BENCH_TYPES.length));
  await client.query('begin');
  await client.query('select iot_private.create_reading_staging()');
  await client.query(
    `insert into pg_temp.reading_staging (time, tenant_id, device_id, sensor_type, value, unit, quality)
     select now() - make_interval(secs => j * 0.00001), $1, d, t, 70 + (j % 7) * 0.1,
            case t when 'TEMPERATURE' then '°F' when 'VIBRATION' then 'mm/s' when 'PRESSURE' then 'PSI' else '%RH' end, 'GOOD'
     from unnest($2::uuid[]) d cross join unnest($3::text[]) t cross join generate_series(0, $4::int - 1) j`,
    [plant.tenantId, deviceIds, BENCH_TYPES, perChannel]);
  const t0 = process.hrtime.bigint();
  const { rows } = await client.query<{ inserted: string }>('select (iot_private.ingest_staged_readings()).inserted');
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  await client.query('commit');
  assert.is(Number(rows[0].inserted), deviceIds.length * BENCH_TYPES.length * perChannel, 'every staged reading stored');
  return ms;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

test('cost: ingest_staged_readings() on a 5,000-reading batch (figures printed, not asserted)', async () => {
  const ids = await benchDevices(125);
  const client = await db.pool.connect();
  try {
    const runs = async (label: string) => {
      const ms: number[] = [];
      for (let i = 0; i < 14; i++) ms.push(await timeBatch(client, ids));
      const kept = ms.slice(3);
      console.log(`  [cost] ${label}: median ${median(kept).toFixed(1)} ms, min ${Math.min(...kept).toFixed(1)} ms over ${kept.length} batches`);
    };
    await setInterval(1000);
    await runs('125 devices x 4 channels, live interval 1000 ms');
    await setInterval(100); // shorter than a batch: every device notified in every batch
    await runs('every device notified every batch (interval 100 ms)');
    await setInterval(1000);
    await db.pool.query(
      `insert into iot.spc_control_limits (tenant_id, channel_id, center_line, sigma, baseline_from, baseline_to, sample_count)
       select c.tenant_id, c.id, 70.3, 0.2, now() - interval '2 hours', now() - interval '1 hour', 100
       from iot.device_channels c where c.device_id = any ($1::uuid[])`, [ids.slice(0, 25)]);
    await runs('plus 100 channels with active SPC limits');
  } finally {
    client.release();
  }
  await setInterval(1500);
});

test('isolation: the other tenant\'s channels heard nothing of all this, and this tenant hears nothing of theirs', async () => {
  await rivalEars.settle();
  const heard = rivalEars.notices.filter((n) => !n.payload?.sentinel);
  assert.is(heard.length, 0, `the rival heard ${JSON.stringify(heard.slice(0, 3))}`);
  await live.take('iot_live_readings');
  await ingest([reading(rival.deviceId, 'TEMPERATURE', 70, new Date(), '°F', 'GOOD', rival.tenantId)]);
  const theirs = await rivalEars.take('iot_live_readings');
  assert.is(theirs.length, 1, 'the rival hears its own reading');
  assert.is(theirs[0].tenantId, rival.tenantId);
  assert.is((await live.take('iot_live_readings')).length, 0, 'this tenant does not');
});

test.run();

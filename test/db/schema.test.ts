import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { migrate } from '../../src/lib/db/migrate';
import { rejects } from '../helpers/assert';
import { onTiers } from '../helpers/tier';
import { createTestDatabase, seedSmallPlant, TestDatabase } from '../helpers/db';

const test = suite('db: migrations, tiers, constraints, tenancy');
let db: TestDatabase;
let plant: Awaited<ReturnType<typeof seedSmallPlant>>;

test.before(async () => {
  db = await createTestDatabase('schema');
  plant = await seedSmallPlant(db.pool);
  console.log(`  [schema] storage tier ${db.tier}`);
});
test.after(async () => db.drop());

test('re-running migrate applies nothing new and keeps the tier', async () => {
  const again = await migrate({ connectionString: db.url });
  assert.equal(again.applied, []);
  assert.equal(again.tier, db.tier);
  const { rows } = await db.pool.query('select iot.timescale_tier() as tier');
  assert.is(rows[0].tier, db.tier);
});

test('time-series tables are hypertables on tiers 1-2 and partitioned on tier 3', async () => {
  const names = ['sensor_readings', 'equipment_events', 'equipment_health_scores'];
  if (db.tier < 3) {
    const { rows } = await db.pool.query(
      `select hypertable_name from timescaledb_information.hypertables where hypertable_schema = 'iot_private' order by 1`);
    assert.equal(rows.map((r) => r.hypertable_name), [...names].sort());
  } else {
    const { rows } = await db.pool.query(
      `select c.relname from pg_partitioned_table p join pg_class c on c.oid = p.partrelid
       where c.relnamespace = 'iot_private'::regnamespace order by 1`);
    assert.equal(rows.map((r) => r.relname), [...names].sort());
    const parts = await db.pool.query(
      `select count(*)::int as n from pg_inherits where inhparent = 'iot_private.sensor_readings'::regclass`);
    assert.ok(parts.rows[0].n >= 8, `expected a week of daily partitions ahead, got ${parts.rows[0].n}`);
  }
});

onTiers(test, [3], 'tiers 1-2 use TimescaleDB chunks, not partitions')('tier 3: partitions appear for old readings and the job makes them ahead', async () => {
  const made = await db.pool.query(`select iot_private.ensure_partitions('sensor_readings', now() - interval '40 days', now() - interval '39 days') as n`);
  assert.is(made.rows[0].n, 2);
  const again = await db.pool.query(`select iot_private.create_partitions_ahead(10) as n`);
  assert.ok(again.rows[0].n >= 2);
});

// Found by CI: two sink writers with readings of the same old day; the second waited for the first's
// partition and then failed its whole batch with "no partition of sensor_readings holds ...".
onTiers(test, [3], 'tiers 1-2 use TimescaleDB chunks, not partitions')('tier 3: two sessions needing the same new partition both succeed', async () => {
  const day = new Date(Date.now() - 200 * 86400_000);
  const [a, b] = [await db.pool.connect(), await db.pool.connect()];
  try {
    await a.query('begin');
    await b.query('begin');
    await a.query(`select iot_private.ensure_partitions_for('sensor_readings', array[$1::timestamptz])`, [day]);
    const second = b.query(`select iot_private.ensure_partitions_for('sensor_readings', array[$1::timestamptz]) as made`, [day]);
    await new Promise((r) => setTimeout(r, 300)); // b now waits for a's lock
    await a.query('commit');
    const made = (await second).rows[0].made;
    assert.is(made, 0, 'the partition a made is used, not an error');
    await b.query('commit');
  } finally {
    await a.query('rollback').catch(() => undefined);
    await b.query('rollback').catch(() => undefined);
    a.release();
    b.release();
  }
});

test('connection_config is validated per connection type with code IOT01 naming the field', async () => {
  const insert = (type: string, config: object) => db.pool.query(
    `insert into iot.iot_devices (tenant_id, work_center_id, device_code, connection_type, connection_config) values ($1, $2, $3, $4, $5)`,
    [plant.tenantId, plant.workCenterId, `D-${type}-${Math.random().toString(36).slice(2, 7)}`, type, config]);
  for (const [type, config, field] of [
    ['OPC_UA', {}, 'endpointUrl'],
    ['OPC_UA', { endpointUrl: 'http://x' }, 'endpointUrl'],
    ['OPC_UA', { endpointUrl: 'opc.tcp://plc:4840', samplingIntervalMs: -5 }, 'samplingIntervalMs'],
    ['MODBUS', { host: '' }, 'host'],
    ['MODBUS', { host: 'plc', port: 70000 }, 'port'],
    ['MODBUS', { host: 'plc', unitId: 1.5 }, 'unitId'],
    ['MQTT', { qos: 3 }, 'qos'],
  ] as [string, object, string][]) {
    try {
      await insert(type, config);
      assert.unreachable(`${type} ${JSON.stringify(config)} was accepted`);
    } catch (error) {
      const e = error as { code?: string; message: string };
      assert.is(e.code, 'IOT01', e.message);
      assert.match(e.message, field);
    }
  }
  await insert('OPC_UA', { endpointUrl: 'opc.tcp://plc:4840/UA', securityMode: 'None' });
  await insert('MODBUS', { host: '10.0.0.5', port: 502, unitId: 1 });
});

test('check constraints and foreign keys guard the registry', async () => {
  const bad = [
    [`insert into iot.work_centers (tenant_id, facility_id, work_center_code, name, work_center_type) values ($1, $2, 'X', 'X', 'SPACESHIP')`, 'work_centers_type_valid'],
    [`insert into iot.work_centers (tenant_id, facility_id, work_center_code, name, work_center_type, oee_target) values ($1, $2, 'Y', 'Y', 'PRESS', 1.5)`, 'work_centers_oee_target_fraction'],
  ];
  for (const [sql, constraint] of bad) {
    try {
      await db.pool.query(sql, [plant.tenantId, plant.facilityId]);
      assert.unreachable(sql);
    } catch (error) {
      assert.match((error as Error).message, constraint);
    }
  }
  // A child can never point at another tenant's parent.
  const other = await db.pool.query<{ id: string }>(`insert into iot.tenants (tenant_code, name) values ('other', 'Other') returning id`);
  try {
    await db.pool.query(`insert into iot.work_centers (tenant_id, facility_id, work_center_code, name, work_center_type) values ($1, $2, 'Z', 'Z', 'PRESS')`,
      [other.rows[0].id, plant.facilityId]);
    assert.unreachable('cross-tenant work center accepted');
  } catch (error) {
    assert.match((error as Error).message, 'work_centers_facility_fkey');
  }
  try {
    await db.pool.query(`insert into iot.facilities (tenant_id, facility_code, name, timezone) values ($1, 'TZ', 'TZ', 'Mars/Olympus')`, [plant.tenantId]);
    assert.unreachable('bad time zone accepted');
  } catch (error) {
    assert.match((error as Error).message, 'Mars/Olympus');
  }
});

test('row-level security: an operator sees and changes only its own tenant', async () => {
  const other = await seedSmallPlant(db.pool, 'rival', 'RIVAL');
  const seen = await db.asRole('iot_operator', { tenant_id: plant.tenantId }, async (c) =>
    (await c.query('select facility_code from iot.facilities order by 1')).rows.map((r) => r.facility_code));
  assert.equal(seen, ['F1']);
  const updated = await db.asRole('iot_operator', { tenant_id: plant.tenantId }, async (c) =>
    (await c.query(`update iot.work_centers set name = 'hijacked' where id = $1`, [other.workCenterId])).rowCount);
  assert.is(updated, 0);
  const nothing = await db.asRole('iot_operator', {}, async (c) => (await c.query('select count(*)::int as n from iot.facilities')).rows[0].n);
  assert.is(nothing, 0, 'no tenant claim, no rows');
});

test('an operator cannot set tenant_id or computed columns; an analyst cannot write at all', async () => {
  await db.asRole('iot_operator', { tenant_id: plant.tenantId }, async (c) => {
    await c.query('savepoint s');
    await rejects(() => c.query(`update iot.iot_devices set tenant_id = gen_random_uuid()`), /permission denied/);
    await c.query('rollback to savepoint s');
    await c.query(`update iot.iot_devices set device_name = 'renamed' where id = $1`, [plant.deviceId]);
  });
  await db.asRole('iot_analyst', { tenant_id: plant.tenantId }, async (c) => {
    const { rows } = await c.query('select array_agg(distinct tenant_id) as tenants from iot.iot_devices');
    assert.equal(rows[0].tenants, [plant.tenantId]);
    await rejects(() => c.query(`update iot.iot_devices set device_name = 'x'`), /permission denied/);
  });
});

// The embedded default's only login is a superuser: it must see the telemetry of every tenant,
// not empty views beside full registry tables; an API request on the same login sees only its claim.
test('superusers and the database owner see every tenant; API requests on that login only their claim', async () => {
  const rival = await seedSmallPlant(db.pool, 'second', 'SECOND');
  await db.pool.query(`select iot_private.ensure_partitions('sensor_readings', now() - interval '1 minute', now())`);
  await db.pool.query(`insert into iot_private.sensor_readings (time, tenant_id, device_id, sensor_type, value, unit)
    values (now() - interval '10 seconds', $1, $2, 'TEMPERATURE', 70, '°F'), (now() - interval '10 seconds', $3, $4, 'TEMPERATURE', 71, '°F')`,
    [plant.tenantId, plant.deviceId, rival.tenantId, rival.deviceId]);
  const all = await db.pool.query(`select count(distinct tenant_id)::int as n from iot.sensor_readings`);
  assert.is(all.rows[0].n, 2, 'the superuser sees both tenants');
  const api = await db.asRole('iot_operator', { tenant_id: rival.tenantId }, async (c) =>
    (await c.query(`select array_agg(distinct tenant_id) as t from iot.sensor_readings`)).rows[0].t);
  assert.equal(api, [rival.tenantId]);
  const role = `owner_${Math.random().toString(36).slice(2, 8)}`;
  await db.pool.query(`create role ${role} login`);
  const dbName = new URL(db.url).pathname.slice(1);
  await db.pool.query(`alter database ${dbName} owner to ${role}`);
  await db.pool.query(`grant iot_analyst to ${role}`);
  try {
    const c = await db.pool.connect();
    try {
      await c.query('begin');
      await c.query(`set local session authorization ${role}`);
      const owned = await c.query('select count(distinct tenant_id)::int as n from iot.sensor_readings');
      assert.is(owned.rows[0].n, 2, 'the database owner sees every tenant');
      await c.query('rollback');
    } finally {
      c.release();
    }
  } finally {
    await db.pool.query(`alter database ${dbName} owner to current_user`);
    await db.pool.query(`drop owned by ${role}`);
    await db.pool.query(`drop role ${role}`);
  }
});

test('SQL logins take their tenants from iot_private.sql_role_tenants, not from a claim they set', async () => {
  const role = `analyst_${Math.random().toString(36).slice(2, 8)}`;
  await db.pool.query(`create role ${role} login password 'x' in role iot_analyst`);
  try {
    const c = await db.pool.connect();
    try {
      await c.query('begin');
      await c.query(`set local session authorization ${role}`);
      await c.query(`select set_config('jwt.claims.tenant_id', $1, true)`, [plant.tenantId]);
      const spoofed = await c.query('select count(*)::int as n from iot.facilities');
      assert.is(spoofed.rows[0].n, 0, 'a self-set claim must not open a tenant');
      await c.query('rollback');
      await db.pool.query(`insert into iot_private.sql_role_tenants (role_name, tenant_id) values ($1, $2)`, [role, plant.tenantId]);
      await c.query('begin');
      await c.query(`set local session authorization ${role}`);
      const mapped = await c.query('select count(*)::int as n from iot.facilities');
      assert.is(mapped.rows[0].n, 1);
      await c.query('rollback');
    } finally {
      c.release();
    }
  } finally {
    await db.pool.query(`delete from iot_private.sql_role_tenants where role_name = $1`, [role]);
    await db.pool.query(`drop role ${role}`);
  }
});

test.run();

// A database migrated by the previous release (0.1.0, before the seed's names were restored)
// upgrades in place with its data: columns and values renamed, no telemetry dropped.
// The old release's db/ and sql/ come from git; without the history the suite is skipped.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { migrate } from '../../src/lib/db/migrate';
import { extractPreviousRelease } from '../helpers/release';
import { createTestDatabase, TestDatabase } from '../helpers/db';

const release = extractPreviousRelease();
const test = suite('db: upgrade from release 0.1.0 with data');
let db: TestDatabase;
const T0 = new Date(Date.now() - 3600_000);

if ('skip' in release) {
  console.log(`[skip] db/upgrade: ${release.skip}`);
  test.skip('upgrade in place', () => undefined);
} else {
  test.before(async () => {
    db = await createTestDatabase('upgrade', { migrate: false });
    await migrate({ connectionString: db.url, root: release.dir, requestedTier: (process.env.TEST_TIMESCALE_TIER as 'auto') ?? 'auto' });
  });
  test.after(async () => {
    await db?.drop();
    release.remove();
  });

  test('the old schema, filled through its own names and values, upgrades with every row kept', async () => {
    const q = (sql: string, params: unknown[] = []) => db.pool.query(sql, params);
    const one = async (sql: string, params: unknown[] = []) => (await q(sql, params)).rows[0];
    // Release 0.1.0's names: lower-case sensor types, device `name`, events `time/message/details`,
    // severities LOW/MEDIUM/HIGH, health `overall_score`, alert `failure_mode`, model `model_name`.
    const tenant = (await one(`insert into iot.tenants (tenant_code, name) values ('old', 'Old') returning id`)).id;
    const facility = (await one(`insert into iot.facilities (tenant_id, facility_code, name) values ($1, 'OLD1', 'Old plant') returning id`, [tenant])).id;
    const wc = (await one(`insert into iot.work_centers (tenant_id, facility_id, work_center_code, name, work_center_type)
      values ($1, $2, 'PRESS-9', 'Press 9', 'PRESS') returning id`, [tenant, facility])).id;
    const device = (await one(`insert into iot.iot_devices (tenant_id, work_center_id, device_code, name)
      values ($1, $2, 'OLD-DEV', 'Old sensor') returning id`, [tenant, wc])).id;
    await q(`insert into iot.device_channels (tenant_id, device_id, sensor_type, unit) values ($1, $2, 'temperature', '°F'), ($1, $2, 'vibration', 'mm/s')`, [tenant, device]);
    await q(`select iot_private.ensure_partitions('sensor_readings', $1, now())`, [T0]);
    await q(`insert into iot_private.sensor_readings (time, tenant_id, device_id, sensor_type, value, unit, quality)
      select $1::timestamptz + i * interval '1 second', $2, $3, case when i % 2 = 0 then 'temperature' else 'vibration' end, 60 + i % 10, 'u', 'GOOD'
      from generate_series(0, 999) i`, [T0, tenant, device]);
    await q(`select iot_private.ensure_partitions('equipment_events', $1, now())`, [T0]);
    await q(`insert into iot_private.equipment_events (time, tenant_id, work_center_id, device_id, sensor_type, event_type, severity, message, details)
      values ($1, $2, $3, $4, 'temperature', 'SENSOR_OUT_OF_RANGE', 'MEDIUM', 'temperature 80 above 75', '{"value": 80}'),
             ($1, $2, $3, $4, 'vibration', 'ANOMALY_DETECTED', 'HIGH', 'vibration step', '{}'),
             ($1, $2, $3, null, null, 'HEARTBEAT_TIMEOUT', 'LOW', 'silent', '{}')`, [T0, tenant, wc, device]);
    await q(`select iot_private.ensure_partitions('equipment_health_scores', $1, now())`, [T0]);
    await q(`insert into iot_private.equipment_health_scores (time, tenant_id, work_center_id, overall_score, sensor_health_score, health_status,
        score_7day_avg, score_30day_avg, score_change_7day, trend_direction)
      values ($1, $2, $3, 42.5, 40, 'FAIR', 50, 60, -7.5, 'DEGRADING')`, [T0, tenant, wc]);
    const model = (await one(`insert into iot.predictive_maintenance_models (tenant_id, model_name, model_type)
      values ($1, 'health-trend', 'HEALTH_TREND_REGRESSION') returning id`, [tenant])).id;
    await q(`insert into iot.predictive_maintenance_alerts (tenant_id, work_center_id, model_id, alert_type, failure_mode, severity, urgency,
        failure_probability, remaining_useful_life_hours, description)
      values ($1, $2, $3, 'HEALTH_DEGRADATION', 'SENSOR_DEVIATION', 'HIGH', 'URGENT', 0.7, 48, 'health falling')`, [tenant, wc, model]);

    await migrate({ connectionString: db.url, requestedTier: (process.env.TEST_TIMESCALE_TIER as 'auto') ?? 'auto' });

    // Readings: all kept, upper-case, under the seed's names (the test's superuser sees every tenant).
    const readings = await one(`select count(*)::int as n, count(*) filter (where sensor_type = 'TEMPERATURE')::int as temps,
        count(distinct id)::int as ids, min(reading_value) as lo from iot.sensor_readings`);
    assert.equal(readings, { n: 1000, temps: 500, ids: 1000, lo: 60 });
    const latest = await one(`select iot_device_id, reading_timestamp, unit_of_measure, production_run_id, metadata
      from iot.sensor_readings where sensor_type = 'TEMPERATURE' order by reading_timestamp desc limit 1`);
    assert.is(latest.iot_device_id, device);
    assert.is(latest.reading_timestamp.getTime(), T0.getTime() + 998_000);
    assert.equal([latest.unit_of_measure, latest.production_run_id, latest.metadata], ['u', null, null]);
    const channels = (await q(`select sensor_type from iot.device_channels where device_id = $1 order by 1`, [device])).rows;
    assert.equal(channels.map((c) => c.sensor_type), ['TEMPERATURE', 'VIBRATION']);

    const events = (await q(`select event_type, severity, event_description, metadata, iot_device_id, sensor_type
      from iot.equipment_events order by event_type`)).rows;
    assert.equal(events.map((e) => [e.event_type, e.severity]),
      [['ANOMALY_DETECTED', 'ERROR'], ['HEARTBEAT_TIMEOUT', 'INFO'], ['SENSOR_OUT_OF_RANGE', 'WARNING']]);
    assert.equal([events[2].event_description, events[2].metadata, events[2].iot_device_id, events[2].sensor_type],
      ['temperature 80 above 75', { value: 80 }, device, 'TEMPERATURE']);

    const h = await one(`select id, score_timestamp, overall_health_score, health_score_7d_avg, health_score_30d_avg, health_score_change_7d,
        anomaly_detected from iot.equipment_health_scores`);
    assert.ok(h.id);
    assert.equal([Number(h.overall_health_score), Number(h.health_score_7d_avg), Number(h.health_score_30d_avg),
      Number(h.health_score_change_7d), h.anomaly_detected], [42.5, 50, 60, -7.5, false]);

    const d = await one(`select device_name, facility_id from iot.iot_devices where id = $1`, [device]);
    assert.equal(d, { device_name: 'Old sensor', facility_id: facility });

    const a = await one(`select alert_type, predicted_failure_mode, rul_hours, failure_probability, model_id
      from iot.predictive_maintenance_alerts`);
    assert.equal([a.alert_type, a.predicted_failure_mode, Number(a.rul_hours), Number(a.failure_probability), a.model_id],
      ['FAILURE_PREDICTION', 'SENSOR_DEVIATION', 48, 0.7, model]);
    const m = await one(`select model_code from iot.predictive_maintenance_models where id = $1`, [model]);
    assert.is(m.model_code, 'health-trend');
  });

  // The upgraded database must be the one a fresh install gets: no function of the old release left
  // behind under an old signature (GraphQL would expose it), no column or constraint missing.
  test('the upgraded schema equals a fresh install of this release', async () => {
    const fresh = await createTestDatabase('upgrade_fresh');
    const shape = async (pool: TestDatabase['pool']) => (await pool.query<{ item: string }>(`
      select 'function ' || p.oid::regprocedure::text as item from pg_proc p
        where p.pronamespace in ('iot'::regnamespace, 'iot_private'::regnamespace)
      union all
      select format('column %s.%s %s', c.relname, a.attname, format_type(a.atttypid, a.atttypmod))
        from pg_attribute a join pg_class c on c.oid = a.attrelid
        where c.relnamespace in ('iot'::regnamespace, 'iot_private'::regnamespace) and c.relkind in ('r', 'v', 'p', 'c', 'm')
          and a.attnum > 0 and not a.attisdropped and not c.relispartition
      union all
      select format('constraint %s.%s', c.conrelid::regclass, c.conname) from pg_constraint c
        where c.connamespace in ('iot'::regnamespace, 'iot_private'::regnamespace)
          and not exists (select 1 from pg_class t where t.oid = c.conrelid and t.relispartition)
      order by 1`)).rows.map((r) => r.item);
    try {
      const [upgraded, installed] = [await shape(db.pool), await shape(fresh.pool)];
      const extra = upgraded.filter((x) => !installed.includes(x));
      const missing = installed.filter((x) => !upgraded.includes(x));
      assert.equal({ extra, missing }, { extra: [], missing: [] });
    } finally {
      await fresh.drop();
    }
  });
}

test.run();

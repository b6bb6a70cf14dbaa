// The demo plant: one tenant, three facilities, presses, folders, cutters and binders with
// TEMPERATURE, VIBRATION, PRESSURE, SPEED and COUNT sensors (the contract's upper-case types). Used by the
// seed, the simulator and the predictive-maintenance evaluation.
import type { Pool } from 'pg';

export interface DemoChannel { sensorType: string; unit: string; base: number; noise: number }
export interface DemoDevice { deviceCode: string; deviceType: string; channels: DemoChannel[] }
export interface DemoWorkCenter { code: string; name: string; type: string; idealCycleTimeSeconds: number; devices: DemoDevice[] }
export interface DemoFacility { code: string; name: string; timezone: string; workCenters: DemoWorkCenter[] }

export const DEMO_TENANT = { code: 'demo', name: 'Demo Printing Co.' };

const kinds: Record<string, { name: string; speed: number; temp: number; vib: number; pressure: number }> = {
  PRESS: { name: 'Offset press', speed: 12000, temp: 68, vib: 1.2, pressure: 100 },
  FOLDER: { name: 'Folder', speed: 9000, temp: 66, vib: 0.9, pressure: 95 },
  CUTTER: { name: 'Guillotine cutter', speed: 600, temp: 65, vib: 1.5, pressure: 110 },
  BINDER: { name: 'Perfect binder', speed: 4000, temp: 70, vib: 1.0, pressure: 90 },
};

function workCenter(facility: string, type: string, n: number): DemoWorkCenter {
  const k = kinds[type];
  const code = `${type.slice(0, 4)}-${String(n).padStart(2, '0')}`;
  return {
    code,
    name: `${k.name} ${n}`,
    type,
    idealCycleTimeSeconds: 3600 / k.speed,
    devices: [
      {
        deviceCode: `${facility}-${code}-SENS`,
        deviceType: 'SENSOR',
        channels: [
          { sensorType: 'TEMPERATURE', unit: '°F', base: k.temp, noise: 0.6 },
          { sensorType: 'VIBRATION', unit: 'mm/s', base: k.vib, noise: 0.15 },
          { sensorType: 'PRESSURE', unit: 'PSI', base: k.pressure, noise: 2.5 },
        ],
      },
      {
        deviceCode: `${facility}-${code}-CNT`,
        deviceType: 'PRESS_COUNTER',
        channels: [
          { sensorType: 'SPEED', unit: 'sheets/h', base: k.speed, noise: k.speed * 0.02 },
          { sensorType: 'COUNT', unit: 'units', base: 0, noise: 0 },
        ],
      },
    ],
  };
}

export const DEMO_FACILITIES: DemoFacility[] = [
  { code: 'CHI', name: 'Chicago Print Works', timezone: 'America/Chicago',
    workCenters: [workCenter('CHI', 'PRESS', 1), workCenter('CHI', 'PRESS', 2), workCenter('CHI', 'FOLDER', 1), workCenter('CHI', 'CUTTER', 1)] },
  { code: 'ATL', name: 'Atlanta Bindery', timezone: 'America/New_York',
    workCenters: [workCenter('ATL', 'FOLDER', 1), workCenter('ATL', 'CUTTER', 1), workCenter('ATL', 'BINDER', 1), workCenter('ATL', 'BINDER', 2)] },
  { code: 'RTM', name: 'Rotterdam Packaging Print', timezone: 'Europe/Amsterdam',
    workCenters: [workCenter('RTM', 'PRESS', 1), workCenter('RTM', 'CUTTER', 1)] },
];

/** Registers the demo plant (idempotent). Returns the tenant id. */
export async function seedDemoPlant(pool: Pool, facilities: DemoFacility[] = DEMO_FACILITIES, tenant = DEMO_TENANT): Promise<string> {
  const client = await pool.connect();
  try {
    await client.query('begin');
    const t = await client.query<{ id: string }>(
      `insert into iot.tenants (tenant_code, name) values ($1, $2)
       on conflict (tenant_code) do update set name = excluded.name returning id`, [tenant.code, tenant.name]);
    const tenantId = t.rows[0].id;
    for (const f of facilities) {
      const fr = await client.query<{ id: string }>(
        `insert into iot.facilities (tenant_id, facility_code, name, timezone) values ($1, $2, $3, $4)
         on conflict (facility_code) do update set name = excluded.name returning id`, [tenantId, f.code, f.name, f.timezone]);
      for (const w of f.workCenters) {
        const wr = await client.query<{ id: string }>(
          `insert into iot.work_centers (tenant_id, facility_id, work_center_code, name, work_center_type, ideal_cycle_time_seconds)
           values ($1, $2, $3, $4, $5, $6)
           on conflict (facility_id, work_center_code) do update set name = excluded.name returning id`,
          [tenantId, fr.rows[0].id, w.code, w.name, w.type, w.idealCycleTimeSeconds]);
        for (const d of w.devices) {
          const dr = await client.query<{ id: string }>(
            `insert into iot.iot_devices (tenant_id, work_center_id, device_code, device_type, connection_type, heartbeat_timeout_seconds)
             values ($1, $2, $3, $4, 'MQTT', 120)
             on conflict (tenant_id, device_code) do update set device_type = excluded.device_type returning id`,
            [tenantId, wr.rows[0].id, d.deviceCode, d.deviceType]);
          for (const c of d.channels) {
            await client.query(
              `insert into iot.device_channels (tenant_id, device_id, sensor_type, unit) values ($1, $2, $3, $4)
               on conflict (device_id, sensor_type) do nothing`, [tenantId, dr.rows[0].id, c.sensorType, c.unit]);
          }
        }
      }
    }
    await client.query('commit');
    return tenantId;
  } catch (error) {
    await client.query('rollback');
    throw error;
  } finally {
    client.release();
  }
}

/**
 * A week of production history for the demo (two 8-hour shifts a day per work center, a few
 * breakdowns, and a run in progress), so OEE, utilisation and every health dimension have data
 * from the first minute. Written once: does nothing when the tenant already has production runs.
 */
export async function seedDemoHistory(pool: Pool, tenantId: string): Promise<number> {
  const { rows } = await pool.query<{ n: number }>(`
    with fresh as (
      select not exists (select 1 from iot.production_runs where tenant_id = $1) as yes
    ), wc as (
      select w.id, w.work_center_type, w.ideal_cycle_time_seconds as ct, row_number() over (order by w.work_center_code) as k
      from iot.work_centers w, fresh where w.tenant_id = $1 and fresh.yes
    ), shifts as (
      select wc.*, d, s,
             date_trunc('day', now() - make_interval(days => d)) + make_interval(hours => case s when 'A' then 6 else 14 end) as start_at,
             -- deterministic variety per work center, day and shift
             (abs(hashtext(wc.id::text || d || s)) % 1000) / 1000.0 as r
      from wc, generate_series(1, 7) d, unnest(array['A', 'B']) s
    ), runs as (
      insert into iot.production_runs (tenant_id, work_center_id, job_number, product_code, shift, status,
        planned_start, planned_end, actual_start, actual_end, planned_quantity, good_count, scrap_count, rework_count,
        ideal_cycle_time_seconds, setup_minutes)
      select $1, id, 'J' || to_char(start_at, 'MMDD') || '-' || k || s, 'BROCHURE-A4', s, 'COMPLETED',
             start_at, start_at + interval '8 hours', start_at + interval '10 minutes', start_at + interval '8 hours',
             floor(28800 / ct * 0.85)::int,
             floor(28800 / ct * (0.70 + 0.2 * r) * (0.95 + 0.04 * r))::int,
             floor(28800 / ct * (0.70 + 0.2 * r) * 0.03)::int,
             floor(28800 / ct * (0.70 + 0.2 * r) * 0.01)::int,
             ct, 15 + floor(20 * r)
      from shifts
      returning work_center_id
    ), breakdowns as (
      insert into iot.maintenance_records (tenant_id, work_center_id, maintenance_type, description, failure_mode, started_at, ended_at, performed_by)
      select $1, wc.id, 'BREAKDOWN', 'Feeder jam cleared, sensor realigned', 'FEEDER_JAM',
             date_trunc('day', now() - make_interval(days => 2 + (k % 5)::int)) + interval '9 hours',
             date_trunc('day', now() - make_interval(days => 2 + (k % 5)::int)) + interval '10 hours 30 minutes', 'demo-maintenance'
      from wc where k % 3 = 0
      returning 1
    ), active as (
      insert into iot.production_runs (tenant_id, work_center_id, job_number, product_code, shift, status, actual_start,
        planned_quantity, good_count, scrap_count, ideal_cycle_time_seconds)
      select $1, id, 'J-NOW-' || k, 'CATALOGUE-A5', 'A', 'RUNNING', now() - interval '2 hours',
             floor(28800 / ct * 0.85)::int, floor(7200 / ct * 0.8)::int, floor(7200 / ct * 0.02)::int, ct
      from wc where k % 2 = 1
      returning 1
    )
    select (select count(*) from runs)::int + (select count(*) from active)::int as n`, [tenantId]);
  return rows[0].n;
}

// One throwaway database per suite (after graphile/worker's tests): created from the server in
// TEST_DATABASE_URL, migrated, dropped at the end.
import { randomBytes } from 'node:crypto';
import { Client, Pool } from 'pg';
import { migrate } from '../../src/lib/db/migrate';
import type { Tier } from '../../src/lib/db/tier';

export interface TestDatabase {
  url: string;
  pool: Pool;
  tier: Tier;
  /** Runs `fn` in a transaction as `role` with the given JWT claims, like the API does; rolls back. */
  asRole<T>(role: string, claims: Record<string, string>, fn: (client: import('pg').PoolClient) => Promise<T>): Promise<T>;
  drop(): Promise<void>;
}

export function adminUrl(): string {
  const url = process.env.TEST_DATABASE_URL;
  if (!url) throw new Error('TEST_DATABASE_URL is not set: run the tests with `npm test`');
  return url;
}

export function urlFor(database: string): string {
  const u = new URL(adminUrl());
  u.pathname = '/' + database;
  return u.toString();
}

export async function createTestDatabase(suite: string, options: { migrate?: boolean } = {}): Promise<TestDatabase> {
  const name = `iot_test_${suite.replace(/\W/g, '_')}_${randomBytes(3).toString('hex')}`;
  const admin = new Client({ connectionString: adminUrl() });
  await admin.connect();
  await admin.query(`create database ${name}`);
  // Sessions in UTC whatever the machine's zone (an embedded server takes it from initdb's
  // environment): the suites' facilities are in UTC, and `now()::date` must be their day. Found by
  // running the tests with TZ=Europe/Amsterdam: the analytics views' suite failed every run.
  await admin.query(`alter database ${name} set timezone = 'UTC'`);
  await admin.end();
  const url = urlFor(name);
  let tier: Tier = 3;
  if (options.migrate !== false) {
    ({ tier } = await migrate({ connectionString: url, requestedTier: (process.env.TEST_TIMESCALE_TIER as 'auto') ?? 'auto' }));
  }
  const pool = new Pool({ connectionString: url, max: 8 });
  pool.on('error', () => undefined);
  return {
    url,
    pool,
    tier,
    async asRole(role, claims, fn) {
      const client = await pool.connect();
      try {
        await client.query('begin');
        for (const [k, v] of Object.entries(claims)) await client.query(`select set_config($1, $2, true)`, [`jwt.claims.${k}`, v]);
        await client.query(`set local role ${role}`);
        return await fn(client);
      } finally {
        await client.query('rollback').catch(() => undefined);
        client.release();
      }
    },
    async drop() {
      await pool.end();
      const c = new Client({ connectionString: adminUrl() });
      await c.connect();
      await c.query(`drop database if exists ${name} with (force)`);
      await c.end();
    },
  };
}

/** A small registry: one tenant, one facility, one work center, one device with channels. */
export async function seedSmallPlant(pool: Pool, code = 'acme', facility = 'F1') {
  const t = await pool.query<{ id: string }>(`insert into iot.tenants (tenant_code, name) values ($1, $1) returning id`, [code]);
  const tenantId = t.rows[0].id;
  const f = await pool.query<{ id: string }>(
    `insert into iot.facilities (tenant_id, facility_code, name) values ($1, $2, $2) returning id`, [tenantId, facility]);
  const w = await pool.query<{ id: string }>(
    `insert into iot.work_centers (tenant_id, facility_id, work_center_code, name, work_center_type)
     values ($1, $2, 'PRESS-1', 'Press 1', 'PRESS') returning id`, [tenantId, f.rows[0].id]);
  const d = await pool.query<{ id: string }>(
    `insert into iot.iot_devices (tenant_id, work_center_id, device_code, device_type) values ($1, $2, $3, 'SENSOR') returning id`,
    [tenantId, w.rows[0].id, `${facility}-DEV-1`]);
  for (const [type, unit] of [['TEMPERATURE', '°F'], ['VIBRATION', 'mm/s'], ['PRESSURE', 'PSI']]) {
    await pool.query(`insert into iot.device_channels (tenant_id, device_id, sensor_type, unit) values ($1, $2, $3, $4)`,
      [tenantId, d.rows[0].id, type, unit]);
  }
  return { tenantId, facilityId: f.rows[0].id, workCenterId: w.rows[0].id, deviceId: d.rows[0].id, deviceCode: `${facility}-DEV-1` };
}

/** Runs `fn` on a connection of the suite's database as another login (an analyst, Grafana's). */
export async function asLogin<T>(databaseUrl: string, user: string, password: string, fn: (c: Client) => Promise<T>): Promise<T> {
  const u = new URL(databaseUrl);
  u.username = user;
  u.password = password;
  const c = new Client({ connectionString: u.toString() });
  await c.connect();
  try {
    return await fn(c);
  } finally {
    await c.end();
  }
}

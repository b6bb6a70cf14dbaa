// Analyst SQL logins (sql/910_sql_logins.sql, `iot analyst-login`): a login sees only its
// tenants' rows, finds the iot names without a schema prefix, and runs the seed's check query
// verbatim. Roles are cluster-wide, so each run uses its own names and drops them afterwards.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Client } from 'pg';
import type { Reading } from '../../src/ingest/reading';
import { ReadingSink } from '../../src/ingest/sink';
import { adminUrl, createTestDatabase, seedSmallPlant, TestDatabase } from '../helpers/db';

const test = suite('analyst SQL logins');
const root = join(__dirname, '../..');
const suffix = randomBytes(3).toString('hex');
const alice = `h1_alice_${suffix}`;
const bob = `h1_bob_${suffix}`;
const password = randomBytes(12).toString('hex');
const SEED_CHECK_QUERY = `SELECT * FROM sensor_readings WHERE sensor_type = 'TEMPERATURE' ORDER BY reading_timestamp DESC LIMIT 1`;
let db: TestDatabase;
let acme: Awaited<ReturnType<typeof seedSmallPlant>>;
let globex: Awaited<ReturnType<typeof seedSmallPlant>>;

function urlAs(user: string, pass: string): string {
  const u = new URL(db.url);
  u.username = user;
  u.password = pass;
  return u.toString();
}

async function asLogin<T>(url: string, fn: (c: Client) => Promise<T>): Promise<T> {
  const c = new Client({ connectionString: url });
  await c.connect();
  try {
    return await fn(c);
  } finally {
    await c.end();
  }
}

async function sqlError(sql: string, params: unknown[]): Promise<{ code?: string; message: string }> {
  try {
    await db.pool.query(sql, params);
  } catch (error) {
    return error as { code?: string; message: string };
  }
  throw new Error(`no error from ${sql} ${JSON.stringify(params)}`);
}

test.before(async () => {
  db = await createTestDatabase('analyst_login');
  acme = await seedSmallPlant(db.pool, 'acme', 'F1');
  globex = await seedSmallPlant(db.pool, 'globex', 'G1');
  const sink = new ReadingSink(db.pool, { batchSize: 100, maxWaitMs: 5, bufferMax: 1000, writers: 1 });
  const now = Date.now();
  sink.add([acme, globex].flatMap((p, i): Reading[] => [0, 1, 2].map((k) => ({
    time: new Date(now - (3 - k) * 1000 - i * 100), tenantId: p.tenantId, deviceId: p.deviceId, sensorType: 'TEMPERATURE',
    value: 70 + k + i * 10, unit: '°F', quality: 'GOOD',
  }))));
  await sink.flush();
  await sink.close();
});

test.after(async () => {
  await db?.drop();
  const admin = new Client({ connectionString: adminUrl() });
  await admin.connect();
  for (const role of [alice, bob]) await admin.query(`drop role if exists ${role}`);
  await admin.end();
});

test('the superuser, the login a new install has, sees every tenant', async () => {
  const rows = (await db.pool.query(`select distinct tenant_id from iot.sensor_readings`)).rows.map((r) => r.tenant_id).sort();
  assert.equal(rows, [acme.tenantId, globex.tenantId].sort());
});

test('a login made by set_analyst_login sees only its tenant, with unqualified names', async () => {
  await db.pool.query(`select iot_private.set_analyst_login($1, array['acme'], $2)`, [alice, password]);
  await asLogin(urlAs(alice, password), async (c) => {
    assert.is((await c.query('show search_path')).rows[0].search_path, 'iot, public');
    const role = (await c.query(`select rolsuper, rolbypassrls, pg_has_role(current_user, 'iot_analyst', 'member') as analyst
                                   from pg_roles where rolname = current_user`)).rows[0];
    assert.equal(role, { rolsuper: false, rolbypassrls: false, analyst: true });
    assert.equal((await c.query('select facility_code from facilities')).rows, [{ facility_code: 'F1' }]);
    assert.equal((await c.query('select tenant_code from tenants')).rows, [{ tenant_code: 'acme' }]);
    const latest = await c.query(SEED_CHECK_QUERY);
    assert.is(latest.rows.length, 1, "the seed's check query, verbatim");
    assert.is(latest.rows[0].tenant_id, acme.tenantId);
    assert.is(Number(latest.rows[0].reading_value), 72);
    const tenants = (await c.query('select distinct tenant_id from sensor_readings')).rows;
    assert.equal(tenants, [{ tenant_id: acme.tenantId }], 'no other tenant in the telemetry view');
    // The raw tables stay closed, and the JWT setting an API session uses does not widen the view.
    await c.query(`select set_config('jwt.claims.tenant_id', $1, false)`, [globex.tenantId]);
    assert.equal((await c.query('select facility_code from facilities')).rows, [{ facility_code: 'F1' }]);
    await c.query('select count(*) from iot_private.sensor_readings').then(
      () => assert.unreachable('iot_private readable'), (e) => assert.is(e.code, '42501'));
  });
});

test('calling it again re-maps the login to exactly the new tenants; a null password keeps the old one', async () => {
  await db.pool.query(`select iot_private.set_analyst_login($1, array['globex'], null)`, [alice]);
  await asLogin(urlAs(alice, password), async (c) => {
    assert.equal((await c.query('select facility_code from facilities')).rows, [{ facility_code: 'G1' }]);
  });
  const mapped = await db.pool.query(`select tenant_id from iot_private.sql_role_tenants where role_name = $1`, [alice]);
  assert.equal(mapped.rows, [{ tenant_id: globex.tenantId }]);
});

test('bad calls are refused with documented codes; nobody but its owner may call it', async () => {
  const call = `select iot_private.set_analyst_login($1, $2, $3)`;
  assert.is((await sqlError(call, [alice, ['acme', 'nope'], null])).code, 'IOT04');
  assert.match((await sqlError(call, [alice, ['nope'], null])).message, 'no tenant with code nope');
  assert.is((await sqlError(call, ['postgres', ['acme'], 'x'])).code, '42939', 'a superuser cannot become a limited login');
  assert.is((await sqlError(call, ['iot_operator', ['acme'], 'x'])).code, '42939');
  assert.is((await sqlError(call, ['Robert"; drop', ['acme'], 'x'])).code, '22023');
  assert.is((await sqlError(call, [`h1_new_${suffix}`, ['acme'], null])).code, '22023', 'a new login needs a password');
  assert.is((await sqlError(call, [alice, [], null])).code, '22023');
  const callable = await db.pool.query(`select has_function_privilege(r, 'iot_private.set_analyst_login(text, text[], text)', 'execute') as ok
    from unnest(array['iot_analyst', 'iot_operator', 'iot_authenticator', 'public']) r`);
  assert.equal(callable.rows.map((r) => r.ok), [false, false, false, false]);
});

test('`iot analyst-login` prints a psql line that works, for several tenants', async () => {
  const r = await promisify(execFile)(process.execPath,
    ['-r', 'tsx/cjs', join(root, 'src/cli/main.ts'), 'analyst-login', bob, '--tenant', 'acme,globex'],
    { cwd: root, env: { PATH: process.env.PATH ?? '', DATABASE_URL: db.url, LOG_LEVEL: 'info' } });
  const lines = r.stdout.split('\n').filter(Boolean);
  assert.is(lines.length, 1, `stdout is the psql line alone: ${r.stdout}`);
  const m = /^psql "(postgresql:\/\/[^"]+)"$/.exec(lines[0]);
  assert.ok(m, lines[0]);
  assert.is(decodeURIComponent(new URL(m![1]).username), bob);
  await asLogin(m![1], async (c) => {
    const codes = (await c.query('select facility_code from facilities order by 1')).rows.map((x) => x.facility_code);
    assert.equal(codes, ['F1', 'G1']);
    assert.is((await c.query(SEED_CHECK_QUERY)).rows.length, 1);
  });
});

test.run();

// Issue 7, findings 11, 12 and 13, replayed against a running API over HTTP/WebSocket and a SQL
// login: no login, token or registration can cross a tenant. Each attack gets a clear error (or
// nothing at all) quickly, the API process lives, and the other tenant is answered within a second.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { createClient } from 'graphql-ws';
import jwt from 'jsonwebtoken';
import { Client, Notification } from 'pg';
import WebSocket from 'ws';
import { ReadingSink } from '../../src/ingest/sink';
import { ClosablePool, createPool } from '../../src/lib/db/pool';
import { signToken } from '../../src/lib/secrets';
import { ApiServer, startApi } from '../../src/server/app';
import { adminUrl, createTestDatabase, seedSmallPlant, TestDatabase } from '../helpers/db';
import { sleep, waitFor } from '../helpers/wait';

const test = suite('hardening: tenancy (notification channels, token claims, facility codes)');
const SECRET = 'hardening-tenancy-secret-0123456789abcdef';
const root = join(__dirname, '../..');
const analyst = `i7c_beta_${randomBytes(3).toString('hex')}`;
const analystPassword = randomBytes(12).toString('hex');
let db: TestDatabase;
let pool: ClosablePool;
let api: ApiServer;
let alpha: Awaited<ReturnType<typeof seedSmallPlant>>;
let beta: Awaited<ReturnType<typeof seedSmallPlant>>;
let alphaToken: string;
let betaToken: string;

test.before(async () => {
  db = await createTestDatabase('hardening_tenancy');
  alpha = await seedSmallPlant(db.pool, 'alpha', 'FA');
  beta = await seedSmallPlant(db.pool, 'beta', 'FB');
  await db.pool.query('select iot_private.set_analyst_login($1, $2, $3)', [analyst, ['beta'], analystPassword]);
  pool = createPool(db.url, 4, 'hardening-tenancy');
  api = await startApi({ pool, host: '127.0.0.1', port: 0, jwtSecret: SECRET, graphiql: false, websockets: true,
    graphqlPath: '/graphql', maxPageSize: 100 });
  alphaToken = signToken(SECRET, { role: 'iot_operator', tenantId: alpha.tenantId, subject: 'alice' });
  betaToken = signToken(SECRET, { role: 'iot_operator', tenantId: beta.tenantId, subject: 'mallory' });
  await betaAnswers(); // the schema is built on the first request
});

test.after(async () => {
  await api?.close();
  await pool?.close();
  await db?.drop();
  const admin = new Client({ connectionString: adminUrl() });
  await admin.connect();
  await admin.query(`drop role if exists ${analyst}`);
  await admin.end();
});

interface Result { status: number; ms: number; body: { data?: any; errors?: { message: string; errcode?: string }[] } }

async function gql(query: string, bearer: string | null, variables: Record<string, unknown> = {}): Promise<Result> {
  const started = Date.now();
  const res = await fetch(`${api.url}/graphql`, {
    method: 'POST', signal: AbortSignal.timeout(10_000),
    headers: { 'content-type': 'application/json', ...(bearer ? { authorization: `Bearer ${bearer}` } : {}) },
    body: JSON.stringify({ query, variables }),
  });
  return { status: res.status, ms: Date.now() - started, body: (await res.json()) as Result['body'] };
}

/** The other tenant's query through the API: its own facility only, and how long it took. */
async function betaAnswers(): Promise<number> {
  const r = await gql('{ facilities { nodes { facilityCode } } }', betaToken);
  assert.not.ok(r.body.errors, JSON.stringify(r.body.errors));
  assert.ok(r.body.data.facilities.nodes.some((f: any) => f.facilityCode === 'FB'));
  return r.ms;
}

async function alive() {
  assert.is((await fetch(`${api.url}/healthz`, { signal: AbortSignal.timeout(3000) })).status, 200, 'the API process lives');
  assert.ok((await betaAnswers()) < 1000, 'the other tenant is answered within a second');
}

function analystUrl(): string {
  const u = new URL(db.url);
  u.username = analyst;
  u.password = analystPassword;
  return u.toString();
}

/** A token signed with the API's secret (so only the claims are wrong). */
function forge(claims: Record<string, unknown>, options: jwt.SignOptions = {}): string {
  return jwt.sign(claims, SECRET, { algorithm: 'HS256', audience: 'postgraphile', ...options });
}

const metric = async (name: string) => Number(new RegExp(`^${name} (\\d+)$`, 'm').exec(await (await fetch(`${api.url}/metrics`)).text())?.[1] ?? NaN);

// Finding 11 ------------------------------------------------------------------------------------

test('finding 11: an SQL login of tenant B LISTENing on every channel it can name hears nothing of A; A\'s subscriptions still work', async () => {
  const spy = new Client({ connectionString: analystUrl() });
  await spy.connect();
  const heard: Notification[] = [];
  spy.on('notification', (n) => heard.push(n));
  const api2 = (token: string) => createClient({ url: api.url.replace('http', 'ws') + '/graphql', webSocketImpl: WebSocket,
    connectionParams: { authorization: `Bearer ${token}` } });
  const clients = [api2(alphaToken), api2(betaToken)];
  const got: { who: 'alpha' | 'beta'; data: any }[] = [];
  const stops = clients.flatMap((c, i) => ['subscription { telemetryIngested { tenantId readingCount } }',
    'subscription { equipmentEventRaised { tenantId eventDescription } }'].map((query) => c.subscribe({ query }, {
    next: (v) => got.push({ who: i === 0 ? 'alpha' : 'beta', data: v.data ?? v }),
    error: (e) => got.push({ who: i === 0 ? 'alpha' : 'beta', data: { error: String((e as Error)?.message ?? JSON.stringify(e)) } }),
    complete: () => undefined,
  })));
  try {
    // Every channel B can name or guess: the old names with A's and B's ids, bare prefixes, the registry's.
    const guesses = ['iot_events', 'iot_readings', 'iot_registry_changed'].flatMap((p) =>
      [p, `${p}:${alpha.tenantId}`, `${p}:${beta.tenantId}`, `${p}:${alpha.tenantId.toUpperCase()}`, `${p}:alpha`, `${p}:FA`]);
    for (const channel of guesses) await spy.query(`listen "${channel}"`);
    // Nor can it learn the real names.
    for (const sql of ['select * from iot_private.notify_channels', `select iot_private.notify_channel('iot_events', '${alpha.tenantId}')`]) {
      const error = await spy.query(sql).then(() => null, (e: { code?: string }) => e);
      assert.is(error?.code, '42501', `${sql} is refused`);
    }
    const seen = await spy.query(`select coalesce(query, '') as query from pg_stat_activity`);
    assert.not.ok(seen.rows.some((r) => /iot_(events|readings):[0-9a-f]{32}/.test(r.query)), 'no session shows a channel name to the analyst');
    await sleep(300); // LISTEN established in the API

    // Tenant A: an event through the API and a batch of readings through the sink.
    const rec = await gql(`mutation($w: UUID!) { recordEquipmentEvent(input: { workCenterId: $w, eventType: "MAINTENANCE_REQUIRED",
      eventDescription: "alpha's secret bearing noise", severity: "WARNING" }) { equipmentEvent { id } } }`, alphaToken, { w: alpha.workCenterId });
    assert.not.ok(rec.body.errors, JSON.stringify(rec.body.errors));
    const sink = new ReadingSink(db.pool, { batchSize: 100, maxWaitMs: 1, bufferMax: 1000 });
    sink.add(Array.from({ length: 5 }, (_, i) => ({ time: new Date(Date.now() - 10_000 - i * 1000), tenantId: alpha.tenantId,
      deviceId: alpha.deviceId, sensorType: 'PRESSURE', value: 100, unit: 'PSI', quality: 'GOOD' as const })));
    await sink.close();

    await waitFor(() => got.filter((g) => g.who === 'alpha').length >= 2, 5000, "alpha's two subscription events");
    await sleep(300);
    const alphaGot = got.filter((g) => g.who === 'alpha').map((g) => g.data);
    assert.ok(alphaGot.some((d) => d.equipmentEventRaised?.eventDescription === "alpha's secret bearing noise"), JSON.stringify(alphaGot));
    assert.ok(alphaGot.some((d) => d.telemetryIngested?.readingCount === 5), JSON.stringify(alphaGot));
    assert.equal(got.filter((g) => g.who === 'beta'), [], "tenant B's API subscriber heard nothing of A");
    const leaked = heard.filter((n) => !(n.channel === 'iot_registry_changed' && /^[a-z_]+$/.test(n.payload ?? ''))
      || (n.payload ?? '').includes(alpha.tenantId));
    assert.equal(leaked, [], `the SQL login heard: ${JSON.stringify(heard)}`);
  } finally {
    for (const s of stops) s();
    for (const c of clients) await c.dispose();
    await spy.end();
  }
  await alive();
});

// Finding 12 ------------------------------------------------------------------------------------

test('finding 12: only the API\'s own roles may be claimed; role postgres and friends get 401 IOT12 and see nothing', async () => {
  const before = await metric('iot_api_tokens_refused_total');
  const hour = { expiresIn: '1h' as const };
  for (const [claims, reason] of [
    [{ role: 'postgres', tenant_id: beta.tenantId }, /role "postgres" is not an API role \(iot_operator or iot_analyst\)/],
    [{ role: 'iot_authenticator', tenant_id: beta.tenantId }, /role "iot_authenticator" is not an API role/],
    [{ role: 'iot_anonymous', tenant_id: beta.tenantId }, /role "iot_anonymous" is not an API role/],
    [{ tenant_id: beta.tenantId }, /role null is not an API role/],
    [{ role: 'iot_operator', tenant_id: 'every tenant' }, /tenant_id "every tenant" is not a tenant id/],
    [{ role: 'iot_operator' }, /tenant_id null is not a tenant id/],
  ] as const) {
    const r = await gql('{ tenants { nodes { tenantCode } } facilities { nodes { facilityCode } } }', forge(claims, hour));
    assert.ok(r.ms < 1000, `refused within a second (${r.ms} ms)`);
    assert.is(r.status, 401, JSON.stringify(claims));
    assert.is(r.body.errors?.[0].errcode, 'IOT12', JSON.stringify(r.body));
    assert.match(r.body.errors![0].message, reason);
    assert.is(r.body.data, undefined, 'nothing was read');
  }
  assert.ok((await metric('iot_api_tokens_refused_total')) >= before + 6, 'counted on /metrics');
  // Over a WebSocket too.
  const ws = createClient({ url: api.url.replace('http', 'ws') + '/graphql', webSocketImpl: WebSocket, retryAttempts: 0,
    connectionParams: { authorization: `Bearer ${forge({ role: 'postgres', tenant_id: alpha.tenantId }, hour)}` } });
  const outcome = await new Promise<string>((resolve) => ws.subscribe({ query: 'subscription { equipmentEventRaised { eventDescription } }' },
    { next: (v) => resolve(`event ${JSON.stringify(v)}`), error: (e) => resolve(`error ${(e as any).code} ${(e as any).reason} ${JSON.stringify(e)}`), complete: () => resolve('complete') }));
  await ws.dispose();
  assert.match(outcome, /not an API role/);
  await alive();
});

test('finding 12: a token must expire, and within API_TOKEN_MAX_LIFETIME_DAYS (90); the 30-day demo token works', async () => {
  const claims = { role: 'iot_operator', tenant_id: beta.tenantId, sub: 'mallory' };
  const noExp = await gql('{ facilities { totalCount } }', forge(claims));
  assert.is(noExp.status, 401);
  assert.is(noExp.body.errors?.[0].errcode, 'IOT12');
  assert.match(noExp.body.errors![0].message, /no exp \(expiry\) claim/);
  const year = await gql('{ facilities { totalCount } }', forge(claims, { expiresIn: '365d' }));
  assert.is(year.status, 401);
  assert.match(year.body.errors?.[0].message ?? '', /lifetime \(365 days\) is longer than API_TOKEN_MAX_LIFETIME_DAYS \(90 days\)/);
  const backdated = await gql('{ facilities { totalCount } }', forge({ ...claims, iat: Math.floor(Date.now() / 1000) - 200 * 86400 }, { expiresIn: '1h' }));
  assert.is(backdated.status, 401, 'exp - iat counts, not only exp - now');
  const expired = await gql('{ facilities { totalCount } }', forge({ ...claims, exp: Math.floor(Date.now() / 1000) - 10 }));
  assert.is(expired.status, 401);
  assert.match(expired.body.errors?.[0].message ?? '', /jwt expired/);
  const forged = await gql('{ facilities { totalCount } }', signToken('another-secret-0123456789abcdef0123', { role: 'iot_operator', tenantId: beta.tenantId, subject: 'x' }));
  assert.match(forged.body.errors?.[0].message ?? '', /invalid signature/);
  const none = await gql('{ facilities { totalCount } }', jwt.sign({ ...claims, aud: 'postgraphile', exp: Math.floor(Date.now() / 1000) + 60 }, '', { algorithm: 'none' }));
  assert.is(none.status, 401, 'alg none is refused');
  const demo = await gql('{ facilities { totalCount } }', signToken(SECRET, { role: 'iot_operator', tenantId: beta.tenantId, subject: 'demo', expiresIn: '30d' }));
  assert.not.ok(demo.body.errors, JSON.stringify(demo.body.errors));
  assert.is(demo.body.data.facilities.totalCount, 1);
  await alive();
});

test('finding 12: a JWT_SECRET shorter than 32 bytes stops the process at start with exit 2, without printing it', async () => {
  const run = (secret: string) => promisify(execFile)(process.execPath, ['-r', 'tsx/cjs', join(root, 'src/cli/main.ts'), 'config'], {
    cwd: root, env: { PATH: process.env.PATH, JWT_SECRET: secret },
  }).then((r) => ({ code: 0, ...r }), (e) => ({ code: e.code as number, stdout: e.stdout as string, stderr: e.stderr as string }));
  const short = await run('changeme-please');
  assert.is(short.code, 2, short.stderr);
  assert.match(short.stderr, /configuration error: JWT_SECRET="\(15 bytes, not shown\)" is invalid: expected at least 32 bytes/);
  assert.not.match(short.stderr + short.stdout, 'changeme-please');
  const long = await run(randomBytes(32).toString('hex'));
  assert.is(long.code, 0, long.stderr);
});

// Finding 13 ------------------------------------------------------------------------------------

test('finding 13: a taken facility code gets the same IOT10 answer whoever holds it, never 23505', async () => {
  const create = (code: string, token: string) =>
    gql(`mutation($c: String!) { createFacility(input: { facility: { facilityCode: $c, name: "x" } }) { facility { id } } }`, token, { c: code });
  const othersCode = await create('FA', betaToken);   // alpha's
  const ownCode = await create('FB', betaToken);      // beta's own
  for (const [r, code] of [[othersCode, 'FA'], [ownCode, 'FB']] as const) {
    assert.is(r.body.errors?.[0].errcode, 'IOT10', JSON.stringify(r.body));
    assert.is(r.body.errors![0].message, `facility code ${code} is not available`);
    assert.not.match(JSON.stringify(r.body), /23505|facilities_facility_code_key|alpha|already exists/);
  }
  const { rows: [fb] } = await db.pool.query(`select id from iot.facilities where facility_code = 'FB'`);
  const rename = await gql(`mutation($id: UUID!) { updateFacility(input: { id: $id, patch: { facilityCode: "FA" } }) { facility { id } } }`, betaToken, { id: fb.id });
  assert.is(rename.body.errors?.[0].errcode, 'IOT10', JSON.stringify(rename.body));
  // Claimed at the same moment by both tenants: one gets it, the other IOT10 (not the constraint's 23505).
  for (let i = 0; i < 5; i++) {
    const code = `RACE-${i}`;
    const both = await Promise.all([create(code, alphaToken), create(code, betaToken)]);
    const codes = both.map((r) => r.body.errors?.[0].errcode ?? 'ok').sort();
    assert.equal(codes, ['IOT10', 'ok'], JSON.stringify(both.map((r) => r.body)));
  }
  await alive();
});

test.run();

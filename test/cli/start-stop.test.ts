// `iot start` as a new user runs it: the real command (embedded PostgreSQL, in-process broker, API,
// worker, ingest, demo) in its own process group, stopped the way a terminal's Ctrl-C stops it
// (SIGINT to the whole foreground group), started again on the same data folder, and used beside
// a running server (`iot token`, the banner's psql line).
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { ChildProcess, execFile, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import jwt from 'jsonwebtoken';
import { Client } from 'pg';

const test = suite('iot start: Ctrl-C, restart, commands beside it');
const root = join(__dirname, '../..');
const STOP_WITHIN_MS = 8_000;

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => resolve(port));
    });
  });
}

interface Started {
  child: ChildProcess;
  out: { stdout: string; stderr: string };
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

let dataDir = '';
let env: Record<string, string> = {};
let current: Started | undefined;

function spawnStart(extra: Record<string, string> = {}): Started {
  const child = spawn(process.execPath, ['-r', 'tsx/cjs', join(root, 'src/cli/main.ts'), 'start'], {
    cwd: root, env: { ...env, ...extra }, stdio: ['ignore', 'pipe', 'pipe'],
    detached: true, // leads its own process group, as a shell's foreground job does
  });
  const out = { stdout: '', stderr: '' };
  child.stdout!.setEncoding('utf8').on('data', (d: string) => (out.stdout += d));
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (out.stderr += d));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) => child.once('exit', (code, signal) => r({ code, signal })));
  current = { child, out, exited };
  return current;
}

async function untilReady(s: Started, ms = 60_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!/\[iot\] ready /.test(s.out.stdout)) {
    if (s.child.exitCode !== null) throw new Error(`iot start exited ${s.child.exitCode} before ready:\n${s.out.stderr}`);
    if (Date.now() > deadline) throw new Error(`iot start not ready within ${ms} ms:\n${s.out.stdout}\n${s.out.stderr}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  const health = await fetch(`http://127.0.0.1:${env.PORT}/healthz`);
  assert.is(health.status, 200, '/healthz once ready');
}

/** Ctrl-C: SIGINT to every process in the foreground group. Returns how it ended and how long it took. */
async function ctrlC(s: Started) {
  const stderrBefore = s.out.stderr.length;
  const started = Date.now();
  process.kill(-s.child.pid!, 'SIGINT');
  const timeout = new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), STOP_WITHIN_MS + 12_000).unref());
  const result = await Promise.race([s.exited, timeout]);
  const ms = Date.now() - started;
  if (result === 'timeout') throw new Error(`still running ${ms} ms after Ctrl-C:\n${s.out.stdout.slice(-3000)}\n${s.out.stderr}`);
  current = undefined;
  return { ...result, ms, stderrDuringStop: s.out.stderr.slice(stderrBefore) };
}

function assertCleanStop(s: Started, r: Awaited<ReturnType<typeof ctrlC>>) {
  const context = `\n--- stderr\n${s.out.stderr.slice(-4000)}\n--- stdout (end)\n${s.out.stdout.slice(-2500)}`;
  assert.ok(r.ms < STOP_WITHIN_MS, `stopped after ${r.ms} ms, expected under ${STOP_WITHIN_MS}${context}`);
  assert.equal({ code: r.code, signal: r.signal }, { code: 0, signal: null }, `exit status${context}`);
  assert.not.match(s.out.stderr, /^\s+at /m, `no stack trace${context}`);
  assert.not.match(s.out.stderr + s.out.stdout, /Unhandled|uncaught/i, `no unhandled error${context}`);
  // Components stop while the database is still up: nothing is cut off, nothing retries.
  assert.is(r.stderrDuringStop, '', `no warning or error while stopping${context}`);
  const afterSignal = s.out.stdout.slice(s.out.stdout.indexOf('shutting down')).trim().split('\n');
  assert.match(afterSignal.at(-2) ?? '', '[embedded-pg] embedded PostgreSQL stopped', `PostgreSQL stopped last${context}`);
  assert.match(afterSignal.at(-1) ?? '', '[iot] stopped');
}

const superuser = () => new Client({ connectionString: `postgres://postgres:postgres@127.0.0.1:${env.EMBEDDED_PG_PORT}/iot` });

test.before(async () => {
  dataDir = mkdtempSync(join(tmpdir(), 'iot-start-test-'));
  env = {
    PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? tmpdir(), LOG_LEVEL: 'info',
    DATA_DIR: dataDir,
    PORT: String(await freePort()), MQTT_EMBEDDED_PORT: String(await freePort()), EMBEDDED_PG_PORT: String(await freePort()),
  };
});

test.after(async () => {
  if (current?.child.pid && current.child.exitCode === null) {
    try {
      process.kill(-current.child.pid, 'SIGKILL');
    } catch {
      // gone
    }
  }
  // The server runs in its own process group: stop it if a failed test left it.
  const pidFile = join(dataDir, 'postgres', 'postmaster.pid');
  if (existsSync(pidFile)) {
    try {
      process.kill(Number(readFileSync(pidFile, 'utf8').split('\n')[0]), 'SIGQUIT');
    } catch {
      // gone
    }
    await new Promise((r) => setTimeout(r, 500));
  }
  rmSync(dataDir, { recursive: true, force: true });
});

test('first start on a fresh data folder; Ctrl-C stops it cleanly and flushes the ingest buffer', async () => {
  // Batches wait up to a minute: whatever the demo publishes stays in the buffer until shutdown.
  const s = spawnStart({ INGEST_BATCH_MAX_WAIT_MS: '60000', INGEST_BATCH_SIZE: '1000000', SIM_INTERVAL_MS: '200' });
  await untilReady(s);
  const db = superuser();
  await db.connect();
  const storedBefore = Number((await db.query('select count(*) from iot_private.sensor_readings')).rows[0].count);
  await db.end();
  await new Promise((r) => setTimeout(r, 2500));
  const r = await ctrlC(s);
  assertCleanStop(s, r);
  assert.is(storedBefore, 0, 'nothing written before the shutdown (the buffer holds it)');
  assert.ok(existsSync(join(dataDir, 'postgres', 'PG_VERSION')));
  assert.not.ok(existsSync(join(dataDir, 'postgres', 'postmaster.pid')), 'the server is gone with the app');
});

test('second start on the same folder: the buffered readings were stored; `iot token` works beside it', async () => {
  const s = spawnStart();
  await untilReady(s);
  const db = superuser();
  await db.connect();
  try {
    const stored = Number((await db.query('select count(*) from iot_private.sensor_readings')).rows[0].count);
    assert.ok(stored > 0, `readings buffered at the first Ctrl-C were flushed (${stored} stored)`);
    const demo = (await db.query(`select id from iot.tenants where tenant_code = 'demo'`)).rows[0].id;

    const token = await promisify(execFile)(process.execPath, ['-r', 'tsx/cjs', join(root, 'src/cli/main.ts'), 'token', '--tenant', 'demo'],
      { cwd: root, env }).catch((e) => e as { stdout: string; stderr: string; code: number });
    assert.is((token as { code?: number }).code ?? 0, 0, `iot token exit status; stderr: ${token.stderr}`);
    const lines = token.stdout.split('\n').filter(Boolean);
    assert.is(lines.length, 1, `stdout is the token alone: ${JSON.stringify(token.stdout)}`);
    const claims = jwt.verify(lines[0], readFileSync(join(dataDir, 'jwt-secret'), 'utf8').trim(), { audience: 'postgraphile' }) as Record<string, string>;
    assert.is(claims.tenant_id, demo);
    assert.is(claims.role, 'iot_operator');
  } finally {
    await db.end();
  }
});

test("the banner's psql line logs in as an analyst of the demo tenant; the seed's check query runs verbatim", async () => {
  const s = current!;
  const m = /psql "(postgresql:\/\/[^"]+)"/.exec(s.out.stdout);
  assert.ok(m, `a psql line in the banner:\n${s.out.stdout.slice(0, 3000)}`);
  const url = new URL(m![1]);
  assert.is(url.port, env.EMBEDDED_PG_PORT);
  assert.is.not(url.username, 'postgres', 'not the superuser');
  const analyst = new Client({ connectionString: m![1] });
  await analyst.connect();
  try {
    const who = (await analyst.query(`select rolsuper, rolbypassrls from pg_roles where rolname = current_user`)).rows[0];
    assert.equal(who, { rolsuper: false, rolbypassrls: false });
    const tenants = (await analyst.query(`select distinct t.tenant_code from facilities f join tenants t on t.id = f.tenant_id`)).rows;
    assert.equal(tenants, [{ tenant_code: 'demo' }], 'unqualified names; only the demo tenant');
    const check = await analyst.query(`SELECT * FROM sensor_readings WHERE sensor_type = 'TEMPERATURE' ORDER BY reading_timestamp DESC LIMIT 1`);
    assert.is(check.rows.length, 1, "the seed's check query returns the latest temperature");
  } finally {
    await analyst.end();
  }
  // The password is kept: the same line works after a restart (checked by the next start's banner).
  assert.ok(existsSync(join(dataDir, 'analyst-password')));
});

test('Ctrl-C stops the second start cleanly too', async () => {
  const s = current!;
  const banner = /psql "[^"]+"/.exec(s.out.stdout)?.[0];
  const r = await ctrlC(s);
  assertCleanStop(s, r);
  // Start-up interrupted: Ctrl-C as soon as the command says anything (starting the server,
  // migrating, seeding). Earlier, while Node loads its modules, nothing has started: 130 then.
  const early = spawnStart();
  for (const deadline = Date.now() + 30_000; !early.out.stdout && Date.now() < deadline;) await new Promise((r) => setTimeout(r, 20));
  const e = await ctrlC(early);
  assert.ok(e.ms < STOP_WITHIN_MS, `stopped after ${e.ms} ms`);
  assert.equal({ code: e.code, signal: e.signal }, { code: 0, signal: null }, `exit status\n${early.out.stderr}`);
  assert.not.match(early.out.stderr, /^\s+at /m, `no stack trace\n${early.out.stderr}`);
  // And it starts again after that, with the same analyst line.
  const again = spawnStart();
  await untilReady(again);
  assert.is(/psql "[^"]+"/.exec(again.out.stdout)?.[0], banner, 'the analyst password is kept across restarts');
  assertCleanStop(again, await ctrlC(again));
});

test.run();

// Shared set-up for benchmarks: a database (BENCH_DATABASE_URL or embedded PostgreSQL) and a
// broker (BENCH_MQTT_URL or an in-process aedes in a child process, so it does not share the
// ingestor's thread).
import { fork, ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { Session } from 'node:inspector';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { Client, Pool } from 'pg';
import { from as copyFrom } from 'pg-copy-streams';
import { migrate } from '../src/lib/db/migrate';
import { freePort } from '../src/lib/embedded/ports';
import { startEmbeddedPostgres } from '../src/lib/embedded/postgres';

const COMMON_HELP = `
Common variables:
  BENCH_DATABASE_URL       superuser URL of the server to measure (default: an embedded PostgreSQL,
                           started on a free port in a throwaway folder and removed afterwards)
  BENCH_EMBEDDED_PG_PORT   port for that embedded server (default: a free one)
  BENCH_MQTT_URL           broker to publish through (default: an in-process aedes in a child
                           process, on a free port)`;

/**
 * `--help` / `-h` prints `usage` and the common variables, then exits; any other argument is an
 * error (benchmarks take their settings from the environment).
 */
export function handleArguments(usage: string): void {
  let help = false;
  try {
    help = !!parseArgs({ options: { help: { type: 'boolean', short: 'h' } }, strict: true }).values.help;
  } catch (error) {
    process.stderr.write(`${(error as Error).message}\n\n${usage.trim()}\n${COMMON_HELP}\n`);
    process.exit(2);
  }
  if (help) {
    process.stdout.write(`${usage.trim()}\n${COMMON_HELP}\n`);
    process.exit(0);
  }
}

export async function benchDatabase(label: string) {
  let admin = process.env.BENCH_DATABASE_URL;
  let stopEmbedded: (() => Promise<void>) | undefined;
  if (!admin) {
    const dataDir = resolve(`.data/bench-postgres-${process.pid}`);
    const port = process.env.BENCH_EMBEDDED_PG_PORT ? Number(process.env.BENCH_EMBEDDED_PG_PORT) : await freePort();
    const pg = await startEmbeddedPostgres({ dataDir, port });
    admin = pg.connectionString('postgres');
    stopEmbedded = async () => {
      await pg.stop();
      rmSync(dataDir, { recursive: true, force: true });
    };
  }
  const name = `iot_bench_${label}_${randomBytes(3).toString('hex')}`;
  const c = new Client({ connectionString: admin });
  await c.connect();
  await c.query(`create database ${name}`);
  const version = (await c.query('show server_version')).rows[0].server_version;
  await c.end();
  const u = new URL(admin);
  u.pathname = '/' + name;
  const url = u.toString();
  const { tier } = await migrate({ connectionString: url });
  return {
    url, tier, version,
    async drop() {
      const d = new Client({ connectionString: admin });
      await d.connect();
      await d.query(`drop database if exists ${name} with (force)`);
      await d.end();
      await stopEmbedded?.();
    },
  };
}

export async function benchBroker(): Promise<{ url: string; kind: string; stop(): Promise<void> }> {
  if (process.env.BENCH_MQTT_URL) return { url: process.env.BENCH_MQTT_URL, kind: 'external', stop: async () => undefined };
  const child: ChildProcess = fork(join(__dirname, 'broker-process.js'), [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  child.on('exit', (code, signal) => { if (code !== 0 && signal !== 'SIGTERM') console.error(`benchmark broker exited: code ${code} signal ${signal}`); });
  const url = await new Promise<string>((res, rej) => {
    child.once('message', (m) => res(String(m)));
    child.once('exit', (code) => rej(new Error(`broker process exited ${code}`)));
  });
  return { url, kind: 'aedes (child process)', stop: async () => void child.kill('SIGTERM') };
}

export const fmt = (n: number) => Math.round(n).toLocaleString('en-US');

export interface BenchChannel { topic: string; deviceId: string }
export interface BenchChannelIds { tenantId: string; deviceId: string; sensorType: string }

/** Tenant "bench", facility B1, 10 work centers of 10 devices with 3 channels each (300 channels). */
export async function seedBenchPlant(pool: Pool) {
  const t = (await pool.query(`insert into iot.tenants (tenant_code, name) values ('bench', 'Bench') returning id`)).rows[0].id;
  const f = (await pool.query(`insert into iot.facilities (tenant_id, facility_code, name) values ($1, 'B1', 'Bench') returning id`, [t])).rows[0].id;
  const channels: BenchChannel[] = [];
  const ids: BenchChannelIds[] = [];
  const workCenters: string[] = [];
  const devices: { id: string; code: string }[] = [];
  for (let w = 0; w < 10; w++) {
    const wc = (await pool.query(`insert into iot.work_centers (tenant_id, facility_id, work_center_code, name, work_center_type) values ($1, $2, $3, $3, 'PRESS') returning id`, [t, f, `WC${w}`])).rows[0].id;
    workCenters.push(wc);
    for (let d = 0; d < 10; d++) {
      const code = `B1-WC${w}-D${d}`;
      const dev = (await pool.query(`insert into iot.iot_devices (tenant_id, work_center_id, device_code) values ($1, $2, $3) returning id`, [t, wc, code])).rows[0].id;
      devices.push({ id: dev, code });
      for (const [s, u] of [['TEMPERATURE', '°F'], ['VIBRATION', 'mm/s'], ['PRESSURE', 'PSI']]) {
        await pool.query(`insert into iot.device_channels (tenant_id, device_id, sensor_type, unit) values ($1, $2, $3, $4)`, [t, dev, s, u]);
        channels.push({ topic: `facility/B1/workcenter/WC${w}/sensor/${s}`, deviceId: code });
        ids.push({ tenantId: t, deviceId: dev, sensorType: s });
      }
    }
  }
  return { tenantId: t as string, facilityId: f as string, workCenters, devices, channels, ids };
}

/**
 * The raw COPY ceiling: `n` readings of these channels (round robin, one round every `stepMs` from
 * `t0`) straight into sensor_readings with its indexes, in one COPY stream. Rows per second.
 */
export async function copyCeiling(pool: Pool, channels: BenchChannelIds[], n: number,
  t0 = Date.parse('2025-06-01T00:00:00Z'), stepMs = 1000): Promise<number> {
  const client = await pool.connect();
  const t1 = t0 + Math.ceil(n / channels.length) * stepMs + stepMs;
  await client.query(`select iot_private.ensure_partitions('sensor_readings', $1, $2)`, [new Date(t0), new Date(t1)]);
  const started = process.hrtime.bigint();
  await new Promise<void>((resolve, reject) => {
    const stream = client.query(copyFrom('copy iot_private.sensor_readings (time, tenant_id, device_id, sensor_type, value, unit, quality) from stdin'));
    stream.on('error', reject).on('finish', () => resolve());
    let i = 0;
    const write = () => {
      let ok = true;
      while (i < n && ok) {
        let chunk = '';
        for (let k = 0; k < 1000 && i < n; k++, i++) {
          const c = channels[i % channels.length];
          chunk += `${new Date(t0 + Math.floor(i / channels.length) * stepMs).toISOString()}\t${c.tenantId}\t${c.deviceId}\t${c.sensorType}\t${i % 100}\tu\tGOOD\n`;
        }
        ok = stream.write(chunk);
      }
      if (i < n) stream.once('drain', write);
      else stream.end();
    };
    write();
  });
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  client.release();
  return n / seconds;
}

/**
 * BENCH_CPU_PROF=<folder>: a V8 CPU profile of this process while `work` runs, written as
 * <folder>/<name>.cpuprofile (open it in Chrome DevTools or speedscope). Without it, just `work`.
 */
export async function profiled<T>(name: string, work: () => Promise<T>): Promise<T> {
  const dir = process.env.BENCH_CPU_PROF;
  if (!dir) return work();
  const session = new Session();
  session.connect();
  const post = (method: string) => new Promise<unknown>((resolve, reject) =>
    session.post(method, (error, result) => (error ? reject(error) : resolve(result))));
  await post('Profiler.enable');
  await post('Profiler.start');
  try {
    return await work();
  } finally {
    const { profile } = await post('Profiler.stop') as { profile: unknown };
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, `${name}.cpuprofile`), JSON.stringify(profile));
    session.disconnect();
  }
}

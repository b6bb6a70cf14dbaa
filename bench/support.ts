// Shared set-up for benchmarks: a database (BENCH_DATABASE_URL or embedded PostgreSQL) and a
// broker (BENCH_MQTT_URL or an in-process aedes in a child process, so it does not share the
// ingestor's thread).
import { fork, ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { join, resolve } from 'node:path';
import { Client } from 'pg';
import { migrate } from '../src/lib/db/migrate';
import { startEmbeddedPostgres } from '../src/lib/embedded/postgres';

export async function benchDatabase(label: string) {
  let admin = process.env.BENCH_DATABASE_URL;
  let stopEmbedded: (() => Promise<void>) | undefined;
  if (!admin) {
    const pg = await startEmbeddedPostgres({ dataDir: resolve('.data/bench-postgres'), port: Number(process.env.BENCH_EMBEDDED_PG_PORT ?? 5457) });
    admin = pg.connectionString('postgres');
    stopEmbedded = () => pg.stop();
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

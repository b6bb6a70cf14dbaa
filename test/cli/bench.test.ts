// Benchmarks: `--help` prints help and starts nothing; the embedded server they start takes a free
// port (never a fixed one that another server on the machine may hold) and a throwaway folder.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createServer, Server } from 'node:net';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Client } from 'pg';
import { benchDatabase } from '../../bench/support';

const test = suite('benchmarks: help and ports');
const root = join(__dirname, '../..');

function bench(file: string, args: string[]) {
  return promisify(execFile)(process.execPath, ['-r', 'tsx/cjs', join(root, 'bench', file), ...args], {
    cwd: root, timeout: 30_000,
    // No BENCH_DATABASE_URL: a run would start an embedded server and print its log lines.
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', LOG_LEVEL: 'info' },
  }).then((r) => ({ code: 0, ...r }), (e) => ({ code: e.code as number, stdout: e.stdout as string, stderr: e.stderr as string }));
}

for (const [file, script] of [['ingest.ts', 'bench:ingest'], ['health.ts', 'bench:health'], ['realtime.ts', 'bench:realtime'], ['query.ts', 'bench:query'], ['batch-cost.ts', 'bench:batch'], ['run.ts', 'bench'],
  ['sparkplug.ts', 'bench:sparkplug'], ['opcua.ts', 'bench:opcua'], ['modbus.ts', 'bench:modbus'], ['rest.ts', 'bench:rest']]) {
  test(`npm run ${script} -- --help prints help and runs nothing`, async () => {
    const r = await bench(file, ['--help']);
    assert.is(r.code, 0, r.stderr);
    assert.match(r.stdout, `npm run ${script}`);
    assert.match(r.stdout, 'BENCH_DATABASE_URL');
    assert.not.match(r.stdout + r.stderr, /\[embedded-pg\]|benchmark \(/, 'no server started, no figures');
  });
}

test('an unknown argument is refused with the help', async () => {
  const r = await bench('ingest.ts', ['--readings=5']);
  assert.is(r.code, 2);
  assert.match(r.stderr, "Unknown option '--readings'");
  assert.match(r.stderr, 'BENCH_READINGS');
});

test('the embedded benchmark server takes a free port, even with 5457 (the old fixed one) taken', async () => {
  const squatter: Server = createServer();
  const squatted = await new Promise<boolean>((r) => squatter.once('error', () => r(false)).listen(5457, '127.0.0.1', () => r(true)));
  const saved = process.env.BENCH_DATABASE_URL;
  delete process.env.BENCH_DATABASE_URL;
  try {
    const db = await benchDatabase('porttest');
    const port = Number(new URL(db.url).port);
    assert.is.not(port, 5457);
    const c = new Client({ connectionString: db.url });
    await c.connect();
    assert.is((await c.query('select 1 as one')).rows[0].one, 1);
    await c.end();
    await db.drop();
    assert.not.ok(existsSync(join(process.cwd(), `.data/bench-postgres-${process.pid}`)), 'its folder is removed');
  } finally {
    if (saved !== undefined) process.env.BENCH_DATABASE_URL = saved;
    if (squatted) await new Promise((r) => squatter.close(r));
  }
});

test.run();

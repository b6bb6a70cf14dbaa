// `npm test`: runs every uvu suite (test/**/*.test.ts) against
//   - TEST_DATABASE_URL (a superuser URL; each suite makes and drops its own database), or else an
//     embedded PostgreSQL started here in .data/test-postgres (tier 3);
//   - TEST_MQTT_URL (e.g. mosquitto), or else an in-process broker per suite.
// Ends with a line "N passed, N failed" (and skipped).
import { spawn } from 'node:child_process';
import { resolve } from 'node:path';
import { createRequire } from 'node:module';
import { createServer } from 'node:net';
import { rmSync } from 'node:fs';

const require = createRequire(import.meta.url);
const root = resolve(import.meta.dirname, '..');
const env = { LOG_LEVEL: 'warn', ...process.env };
let embedded;

let dataDir;
if (!env.TEST_DATABASE_URL) {
  require('tsx/cjs');
  const { startEmbeddedPostgres } = require('../src/lib/embedded/postgres.ts');
  // A fresh server per run (initdb takes about a second), on a free port, so runs never collide.
  const port = env.TEST_EMBEDDED_PG_PORT ? Number(env.TEST_EMBEDDED_PG_PORT) : await freePort();
  dataDir = resolve(root, `.data/test-postgres-${process.pid}`);
  embedded = await startEmbeddedPostgres({ dataDir, port, fast: true });
  env.TEST_DATABASE_URL = embedded.connectionString('postgres');
}

function freePort() {
  return new Promise((res, rej) => {
    const srv = createServer();
    srv.once('error', rej);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => res(port));
    });
  });
}
const where = env.TEST_DATABASE_URL.replace(/:[^:@/]*@/, ':***@');
console.log(`[test] database ${where}${embedded ? ' (embedded)' : ''}; broker ${env.TEST_MQTT_URL ?? 'in-process aedes per suite'}`);

const pattern = process.argv[2] ? `${process.argv[2]}.*\\.test\\.ts$` : '\\.test\\.ts$';
const args = ['-r', 'tsx/cjs', 'test', pattern];
const child = spawn(resolve(root, 'node_modules/.bin/uvu'), args, { cwd: root, env, stdio: ['ignore', 'pipe', 'inherit'] });
let out = '';
child.stdout.on('data', (d) => {
  out += d;
  process.stdout.write(d);
});
const code = await new Promise((r) => child.on('close', r));
if (embedded) {
  await embedded.stop();
  rmSync(dataDir, { recursive: true, force: true });
}
const total = Number(/Total:\s+(\d+)/.exec(out)?.[1] ?? 0);
const passed = Number(/Passed:\s+(\d+)/.exec(out)?.[1] ?? 0);
const skipped = Number(/Skipped:\s+(\d+)/.exec(out)?.[1] ?? 0);
console.log(`${passed} passed, ${total - passed - skipped} failed, ${skipped} skipped`);
process.exit(code === 0 && total > 0 ? 0 : 1);

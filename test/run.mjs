// `npm test`: runs every uvu suite (test/**/*.test.ts) against
//   - TEST_DATABASE_URL (a superuser URL; each suite makes and drops its own database), or else an
//     embedded PostgreSQL started here in .data/test-postgres-<pid> (tier 3);
//   - TEST_MQTT_URL (e.g. mosquitto), or else an in-process broker per suite.
// `node test/run.mjs <pattern>` runs the suites whose path under test/ matches the regex.
// Ends with a line "N passed, N failed, N skipped", after the reasons skipped suites printed
// (lines "[name] skipped: why").
import { spawn } from 'node:child_process';
import { resolve } from 'node:path';
import { createRequire } from 'node:module';
import { createServer } from 'node:net';
import { rmSync } from 'node:fs';

const require = createRequire(import.meta.url);
const root = resolve(import.meta.dirname, '..');
process.env.LOG_LEVEL ??= 'warn'; // also for the embedded server's own log lines here
const env = { ...process.env };
let embedded;
let dataDir;
let child;

// The embedded server runs in its own process group, so a Ctrl-C here does not reach it: stop it
// (once, whoever asks first) and remove its folder.
let cleaning;
function cleanUp() {
  cleaning ??= (async () => {
    if (!embedded) return;
    await embedded.stop();
    rmSync(dataDir, { recursive: true, force: true });
  })();
  return cleaning;
}
let interrupted = false;
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(signal, () => {
    interrupted = true;
    child?.kill(signal);
    void cleanUp().finally(() => process.exit(130));
  });
}

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
// The tier the suites' databases will get, known before any suite registers its tests, so that a
// test meant for another tier registers as skipped (test/helpers/tier.ts), never as passed.
require('tsx/cjs');
{
  const { Client } = require('pg');
  const { detectTier } = require('../src/lib/db/tier.ts');
  const probe = new Client({ connectionString: env.TEST_DATABASE_URL });
  await probe.connect();
  const { tier, reason } = await detectTier(probe, env.TEST_TIMESCALE_TIER || 'auto');
  await probe.end();
  env.TEST_SERVER_TIER = String(tier);
  console.log(`[test] storage tier ${tier}: ${reason}`);
}
const where = env.TEST_DATABASE_URL.replace(/:[^:@/]*@/, ':***@');
console.log(`[test] database ${where}${embedded ? ' (embedded)' : ''}; broker ${env.TEST_MQTT_URL ?? 'in-process aedes per suite'}`);

const pattern = process.argv[2] ? `${process.argv[2]}.*\\.test\\.ts$` : '\\.test\\.ts$';
const args = ['-r', 'tsx/cjs', 'test', pattern];
child = spawn(resolve(root, 'node_modules/.bin/uvu'), args, { cwd: root, env, stdio: ['ignore', 'pipe', 'inherit'] });
let out = '';
child.stdout.on('data', (d) => {
  out += d;
  process.stdout.write(d);
});
const code = await new Promise((r) => child.on('close', r));
await cleanUp();
if (interrupted) process.exit(130);

const summary = summarise(out);
for (const reason of summary.skipReasons) console.log(`[test] ${reason}`);
for (const name of summary.failures) console.log(`[test] FAILED: ${name}`);
console.log(`${summary.passed} passed, ${summary.failed} failed, ${summary.skipped} skipped`);
process.exit(code === 0 && summary.failed === 0 && summary.passed + summary.skipped > 0 ? 0 : 1);

/**
 * uvu's closing block: "Total" counts the tests that ran (skipped ones are not among them),
 * "Passed" those that passed, "Skipped" those declared with test.skip.
 */
function summarise(text) {
  const plain = text.replace(/\x1b\[[0-9;]*m/g, '');
  // The last block: a failing test's message may quote another run's output.
  const count = (label) => Number([...plain.matchAll(new RegExp(`^  ${label}:\\s+(\\d+)$`, 'gm'))].at(-1)?.[1] ?? 0);
  const total = count('Total');
  const passed = count('Passed');
  return {
    passed,
    failed: total - passed,
    skipped: count('Skipped'),
    // uvu's failure headings: "  FAIL  <suite>  \"<test>\"", repeated at the end so a log's tail names them.
    failures: [...new Set([...plain.matchAll(/^ {1,4}FAIL {1,4}(\S.*)$/gm)].map((m) => m[1].trim()))],
    // Suites print "  [name] skipped: why" (more indented lines are quotes inside failure messages).
    skipReasons: [...new Set([...plain.matchAll(/^ {0,2}\[[\w -]+\] skipped: .*$/gm)].map((m) => m[0].trim()))],
  };
}

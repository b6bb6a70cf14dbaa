#!/usr/bin/env node
// `iot` command line: start | migrate | worker | ingest mqtt | simulate | token | analyst-login | config.
import { Command } from 'commander';
import { join } from 'node:path';
import { Config, ConfigError, configMarkdown, configNotices, loadConfig } from '../lib/config';
import { logger, logToStderr, setLogLevel } from '../lib/log';
import { demoAnalystPassword, jwtSecret, randomPassword, signToken } from '../lib/secrets';
import { startWorker } from '../lib/worker';
import { decode as decodeJwt } from 'jsonwebtoken';
import { apiLimitsFromConfig, startApi } from '../server/app';
import { DEMO_TENANT, seedDemoHistory, seedDemoPlant } from '../sim/demo-plant';
import { startMqttSimulator } from '../sim/mqtt-publisher';
import { startDemoProtocols } from '../sim/demo-protocols';
import {
  Lifecycle, StartInterrupted, createPool, migrateWithConfig, resolveBroker, resolveDatabase, startIngestBase, startModbusIngest, startMqttIngest,
  startOpcuaIngest, startSparkplugIngest, restIngestForApi, startRestIngest,
} from './runtime';
import { createDeviceKey, listDeviceKeys, revokeDeviceKey } from '../ingest/rest/device-keys';
import { exportCommand, importCommand, ExportCommandOptions } from '../archive/commands';

const log = logger('iot');

function config(): Config {
  try {
    const c = loadConfig();
    setLogLevel(c.LOG_LEVEL);
    for (const n of configNotices(c)) log[n.level](n.message, n.fields);
    return c;
  } catch (error) {
    if (error instanceof ConfigError) {
      process.stderr.write(`iot: configuration error: ${error.message}\n`);
      process.exit(2);
    }
    throw error;
  }
}

const SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;

/**
 * Runs until SIGINT/SIGTERM/SIGHUP, then stops everything in reverse order: the embedded
 * PostgreSQL (started first, in its own process group so a terminal's Ctrl-C does not reach it)
 * is stopped last, after the ingest buffer is flushed. A signal during start-up lets the step
 * under way finish (Lifecycle.add then ends the start-up), so the same order holds.
 */
async function runUntilSignal(life: Lifecycle, body: () => Promise<void>): Promise<void> {
  let started: Promise<unknown> = Promise.resolve();
  const stop = async (signal: string) => {
    if (life.isStopping) {
      log.warn('second signal: exiting without finishing the shutdown', { signal });
      process.exit(1);
    }
    log.info('shutting down', { signal });
    life.requestStop();
    // A component waiting on a dead peer must not keep the process alive forever.
    setTimeout(() => {
      log.error('shutdown took longer than 20 s; exiting anyway');
      process.exit(1);
    }, 20_000).unref();
    await Promise.race([started, new Promise((r) => setTimeout(r, 10_000))]);
    await life.stopAll();
    log.info('stopped');
    process.exit(0);
  };
  for (const signal of SIGNALS) process.on(signal, () => void stop(signal));
  started = body().then(() => 'ready' as const, (error: unknown) => error);
  const outcome = await started;
  if (outcome === 'ready' || life.isStopping) {
    if (outcome !== 'ready' && !(outcome instanceof StartInterrupted)) log.debug('start-up step ended by the shutdown', { error: outcome });
    return;
  }
  log.error('start-up failed', { error: outcome });
  await life.stopAll();
  process.exit(1);
}

/** A command that does its work and ends; a signal stops what it started (the embedded server) first. */
async function runOnce(body: (life: Lifecycle) => Promise<void>): Promise<void> {
  const life = new Lifecycle();
  const onSignal = (signal: NodeJS.Signals) => {
    log.info('interrupted', { signal });
    void life.stopAll().finally(() => process.exit(130));
  };
  for (const signal of SIGNALS) process.once(signal, onSignal);
  try {
    await body(life);
  } finally {
    await life.stopAll();
    for (const signal of SIGNALS) process.removeListener(signal, onSignal);
  }
}

/** The psql line for a SQL login on the database at `url`. */
function psqlLine(url: string, user: string, password: string): string {
  const u = new URL(url);
  u.username = user;
  u.password = password;
  u.protocol = 'postgresql:';
  return `psql "${u.toString()}"`;
}

const DEMO_ANALYST = 'demo_analyst';

const program = new Command('iot')
  .description('Plant telemetry backend. Configuration comes from environment variables; see `iot config`.')
  .showHelpAfterError();

program.command('start')
  .description('Run everything: database (embedded unless DATABASE_URL), migrations, API, worker, MQTT broker (in-process unless MQTT_BROKER_URL), the ingestors (MQTT JSON, Sparkplug B, OPC UA, Modbus TCP) and, by default with the embedded database, the demo plant.')
  .action(async () => {
    const c = config();
    const life = new Lifecycle();
    await runUntilSignal(life, async () => {
      const db = await resolveDatabase(c, life);
      life.checkpoint();
      const { tier } = await migrateWithConfig(db.url, c);
      const pool = createPool(db.url, life, 20, 'iot-start');
      const secret = jwtSecret(c.JWT_SECRET, c.DATA_DIR);
      const demo = c.DEMO === 'true' || (c.DEMO === 'auto' && db.embedded && !c.MQTT_BROKER_URL);
      let tenantId: string | undefined;
      let analystPsql: string | undefined;
      if (demo) {
        life.checkpoint();
        tenantId = await seedDemoPlant(pool);
        const runs = await seedDemoHistory(pool, tenantId);
        if (runs) log.info('demo plant: a week of production history written', { productionRuns: runs });
        const password = demoAnalystPassword(c.DATA_DIR);
        try {
          await pool.query('select iot_private.set_analyst_login($1, $2, $3)', [DEMO_ANALYST, [DEMO_TENANT.code], password]);
          analystPsql = psqlLine(db.url, DEMO_ANALYST, password);
        } catch (error) {
          // DATABASE_URL's login may not create roles: the demo runs without the analyst login then.
          log.warn('demo analyst login not created', { login: DEMO_ANALYST, error });
        }
      }
      const brokerUrl = await resolveBroker(c, life);
      // Three work centers move to OPC UA, Modbus TCP and Sparkplug B (DEMO_PROTOCOLS=all); the rest publish MQTT JSON.
      // Started before the ingestors, so those stop first at shutdown (no "device lost" events for the demo's own stop).
      const others = demo && c.DEMO_PROTOCOLS === 'all' ? await startDemoProtocols(pool, tenantId!, brokerUrl, c.SIM_INTERVAL_MS) : undefined;
      if (others) life.add('demo protocol simulators', () => others.stop());
      const worker = await startWorker(db.url, c.WORKER_CONCURRENCY, c.TELEMETRY_RETENTION_DAYS, Number(c.HEALTH_SCORE_INTERVAL_MINUTES));
      life.add('worker', () => worker.stop());
      const base = await startIngestBase(c, pool, life);
      await startMqttIngest(c, pool, brokerUrl, life, base);
      await startOpcuaIngest(c, pool, life, base);
      await startModbusIngest(c, pool, life, base);
      await startSparkplugIngest(c, pool, brokerUrl, life, base);
      // Score once a minute after start rather than waiting for the next interval boundary.
      await worker.addJob('health__calculate_scores', { now: true },
        { runAt: new Date(Date.now() + 60_000), jobKey: 'health:startup' });
      const api = await startApi({
        pool, host: c.HOST, port: c.PORT, jwtSecret: secret, graphiql: c.GRAPHIQL_ENABLED,
        websockets: c.GRAPHQL_WS_ENABLED, graphqlPath: c.GRAPHQL_WS_PATH, maxPageSize: c.API_MAX_PAGE_SIZE,
        ...apiLimitsFromConfig(c), component: 'all', restIngest: restIngestForApi(c, pool, base),
      });
      life.add('API', () => api.close());
      if (demo) {
        await others?.startPublishers();
        const sim = await startMqttSimulator(brokerUrl, c.SIM_INTERVAL_MS, { username: c.MQTT_USERNAME, password: c.MQTT_PASSWORD },
          others?.mqttFacilities);
        life.add('simulator', () => sim.stop());
        const token = signToken(secret, { role: 'iot_operator', tenantId: tenantId!, subject: 'demo-operator', expiresIn: '30d' });
        process.stdout.write([
          '',
          `  Plant telemetry is running (storage tier ${tier}).`,
          `  GraphiQL:  ${api.url}/graphiql`,
          `  GraphQL:   ${api.url}${c.GRAPHQL_WS_PATH}   MQTT: ${brokerUrl}`,
          `  Demo token (tenant "${DEMO_TENANT.code}", role iot_operator, 30 days). In GraphiQL add the header`,
          `    Authorization: Bearer ${token}`,
          ...(analystPsql ? [`  SQL as an analyst of tenant "${DEMO_TENANT.code}" (schema iot, no prefix needed):`, `    ${analystPsql}`] : []),
          '  Stop with Ctrl-C.',
          '',
        ].join('\n') + '\n');
      }
      log.info('ready', { tier, api: api.url, broker: brokerUrl, demo });
    });
  });

program.command('migrate')
  .description('Apply database migrations and re-apply the SQL logic (sql/), then exit.')
  .action(async () => {
    const c = config();
    await runOnce(async (life) => {
      const db = await resolveDatabase(c, life, { joinRunning: true });
      const result = await migrateWithConfig(db.url, c);
      log.info('migrated', { tier: result.tier, applied: result.applied.length });
    });
  });

program.command('worker')
  .description('Run the scheduled jobs (rollups, partitions, heartbeat watchdog, retention) with graphile-worker.')
  .action(async () => {
    const c = config();
    const life = new Lifecycle();
    await runUntilSignal(life, async () => {
      const db = await resolveDatabase(c, life);
      const worker = await startWorker(db.url, c.WORKER_CONCURRENCY, c.TELEMETRY_RETENTION_DAYS, Number(c.HEALTH_SCORE_INTERVAL_MINUTES));
      life.add('worker', () => worker.stop());
    });
  });

const ingest = program.command('ingest').description('Run an ingestor.');
ingest.command('mqtt')
  .description('Subscribe to MQTT_BROKER_URL (or an in-process broker) and store readings.')
  .action(async () => {
    const c = config();
    const life = new Lifecycle();
    await runUntilSignal(life, async () => {
      const db = await resolveDatabase(c, life);
      const pool = createPool(db.url, life, 6, 'iot-ingest-mqtt');
      const brokerUrl = await resolveBroker(c, life);
      await startMqttIngest(c, pool, brokerUrl, life, await startIngestBase(c, pool, life));
    });
  });
ingest.command('opcua')
  .description('Read every OPC_UA device of the registry (monitored items per channel), plus OPCUA_ENDPOINT_URL/OPCUA_NODE_IDS if set.')
  .action(async () => {
    const c = config();
    const life = new Lifecycle();
    await runUntilSignal(life, async () => {
      const db = await resolveDatabase(c, life);
      const pool = createPool(db.url, life, 6, 'iot-ingest-opcua');
      await startOpcuaIngest(c, pool, life, await startIngestBase(c, pool, life), { wait: false });
    });
  });
ingest.command('modbus')
  .description('Poll every MODBUS device of the registry over Modbus TCP.')
  .action(async () => {
    const c = config();
    const life = new Lifecycle();
    await runUntilSignal(life, async () => {
      const db = await resolveDatabase(c, life);
      const pool = createPool(db.url, life, 6, 'iot-ingest-modbus');
      await startModbusIngest(c, pool, life, await startIngestBase(c, pool, life));
    });
  });

ingest.command('sparkplug')
  .description('Subscribe to spBv1.0/# on SPARKPLUG_BROKER_URL (or MQTT_BROKER_URL) and store Sparkplug B metrics of registered devices.')
  .action(async () => {
    const c = config();
    const life = new Lifecycle();
    await runUntilSignal(life, async () => {
      const db = await resolveDatabase(c, life);
      const pool = createPool(db.url, life, 6, 'iot-ingest-sparkplug');
      const brokerUrl = c.SPARKPLUG_BROKER_URL ?? await resolveBroker(c, life);
      await startSparkplugIngest(c, pool, brokerUrl, life, await startIngestBase(c, pool, life));
    });
  });

ingest.command('rest')
  .description('Serve POST /ingest/readings on REST_INGEST_HOST:REST_INGEST_PORT for REST_API devices (JSON or CSV, one API key per device).')
  .action(async () => {
    const c = config();
    const life = new Lifecycle();
    await runUntilSignal(life, async () => {
      const db = await resolveDatabase(c, life);
      const pool = createPool(db.url, life, 6, 'iot-ingest-rest');
      await startRestIngest(c, pool, life, await startIngestBase(c, pool, life));
    });
  });

const deviceKey = program.command('device-key').description('API keys of REST_API devices (shown once; only a salted hash is stored).');
deviceKey.command('create <device>')
  .description('Make a key for a REST_API device (its code or id); prints the key alone on stdout.')
  .option('--label <text>', 'what the key is for (e.g. the gateway\'s name)')
  .action(async (device: string, opts: { label?: string }) => {
    const c = config();
    await runOnce(async (life) => {
      const db = await resolveDatabase(c, life, { joinRunning: true });
      const pool = createPool(db.url, life, 1, 'iot-device-key');
      process.stdout.write(`${(await createDeviceKey(pool, device, opts.label)).apiKey}\n`);
    });
  });
deviceKey.command('list [device]')
  .description('List keys (id, device, label, created, revoked), of one device or all.')
  .action(async (device: string | undefined) => {
    const c = config();
    await runOnce(async (life) => {
      const db = await resolveDatabase(c, life, { joinRunning: true });
      const pool = createPool(db.url, life, 1, 'iot-device-key');
      for (const k of await listDeviceKeys(pool, device)) {
        process.stdout.write(`${k.key_id}\t${k.device_code}\t${k.label ?? ''}\t${k.created_at.toISOString()}\t${k.revoked_at ? `revoked ${k.revoked_at.toISOString()}` : 'active'}\n`);
      }
    });
  });
deviceKey.command('revoke <keyId>')
  .description('Revoke a key (refused within REST_INGEST_KEY_CACHE_MS).')
  .action(async (keyId: string) => {
    const c = config();
    await runOnce(async (life) => {
      const db = await resolveDatabase(c, life, { joinRunning: true });
      const pool = createPool(db.url, life, 1, 'iot-device-key');
      if (!(await revokeDeviceKey(pool, keyId))) {
        process.stderr.write(`no active key ${keyId}\n`);
        process.exitCode = 2;
      }
    });
  });

program.command('import <source>')
  .description('Load historical readings through the ingest sink: a CSV in the MQTT payload\'s columns, or files written by `iot export` (CSV, Parquet), a folder of them, or s3://bucket/prefix. Prints rows stored, duplicates, and refused rows with lines and reasons.')
  .option('--tenant <code>', 'every row belongs to this tenant (needed when a device code exists in several tenants)')
  .option('--dry-run', 'check every row against the registry, write nothing')
  .option('--strict', 'exit 1 if any row was refused')
  .action(async (source: string, opts: { tenant?: string; dryRun?: boolean; strict?: boolean }) => {
    logToStderr(); // stdout is the summary
    const c = config();
    await runOnce(async (life) => {
      const db = await resolveDatabase(c, life, { joinRunning: true });
      const pool = createPool(db.url, life, 5, 'iot-import');
      process.exitCode = await importCommand(pool, source, opts, {
        batchSize: c.INGEST_BATCH_SIZE, bufferMax: c.INGEST_BUFFER_MAX, maxFutureMs: c.INGEST_MAX_FUTURE_SECONDS * 1000, env: process.env });
    });
  });
program.command('export')
  .description('Write the readings of [--from, --to) as one file per tenant and UTC day (<tenant>/<yyyy>/<mm>/<dd>.parquet|.csv) to a folder or an S3-compatible bucket (S3_* settings).')
  .requiredOption('--from <iso>', 'start, inclusive (e.g. 2026-01-01)')
  .requiredOption('--to <iso>', 'end, exclusive (e.g. 2026-02-01)')
  .option('--tenant <code>', 'one tenant (default: all)')
  .option('--format <format>', 'parquet or csv', 'parquet')
  .option('--to-dir <path>', 'a folder')
  .option('--to-url <url>', 's3://bucket/prefix')
  .option('--facility <code>', 'one facility').option('--device <code>', 'one device').option('--sensor <type>', 'one sensor type')
  .action(async (opts: ExportCommandOptions) => {
    logToStderr();
    const c = config();
    await runOnce(async (life) => {
      const db = await resolveDatabase(c, life, { joinRunning: true });
      const pool = createPool(db.url, life, 2, 'iot-export');
      process.exitCode = await exportCommand(pool, opts, { env: process.env });
    });
  });

const opcua = program.command('opcua').description('The OPC UA ingestor\'s certificates (DATA_DIR/opcua-pki).');
opcua.command('trust <certificate-file>')
  .description('Trust an OPC UA server certificate (DER or PEM), e.g. one listed by `iot opcua rejected`.')
  .action(async (file: string) => {
    const c = config();
    const { openPki, trustCertificate } = await import('../ingest/opcua/pki.js');
    await trustCertificate(await openPki(join(c.DATA_DIR, 'opcua-pki')), file);
    process.stdout.write(`trusted ${file}\n`);
  });
opcua.command('rejected')
  .description('List server certificates the ingestor refused (waiting for `iot opcua trust`).')
  .action(async () => {
    const c = config();
    const { openPki, rejectedCertificates } = await import('../ingest/opcua/pki.js');
    for (const f of rejectedCertificates(await openPki(join(c.DATA_DIR, 'opcua-pki')))) process.stdout.write(`${f}\n`);
  });

program.command('simulate')
  .description('Publish the demo plant to MQTT_BROKER_URL (default mqtt://127.0.0.1:1883) every SIM_INTERVAL_MS.')
  .option('--seed', 'also register the demo plant in the database (DATABASE_URL or embedded)')
  .action(async (opts: { seed?: boolean }) => {
    const c = config();
    const life = new Lifecycle();
    await runUntilSignal(life, async () => {
      if (opts.seed) {
        const db = await resolveDatabase(c, life);
        await migrateWithConfig(db.url, c);
        const pool = createPool(db.url, life, 2, 'iot-simulate-seed');
        await seedDemoPlant(pool);
      }
      const sim = await startMqttSimulator(c.MQTT_BROKER_URL ?? `mqtt://127.0.0.1:${c.MQTT_EMBEDDED_PORT}`, c.SIM_INTERVAL_MS,
        { username: c.MQTT_USERNAME, password: c.MQTT_PASSWORD });
      life.add('simulator', () => sim.stop());
    });
  });

program.command('token')
  .description('Print an API token (JWT) for a tenant.')
  .requiredOption('--tenant <code>', 'tenant code, e.g. demo')
  .option('--role <role>', 'iot_operator or iot_analyst', 'iot_operator')
  .option('--subject <name>', 'who the token is for (recorded on acknowledgements)', 'cli')
  .option('--expires <span>', 'lifetime, e.g. 12h or 30d', '12h')
  .action(async (opts: { tenant: string; role: string; subject: string; expires: string }) => {
    logToStderr(); // stdout is the token alone
    const c = config();
    const role = opts.role;
    if (role !== 'iot_operator' && role !== 'iot_analyst') {
      process.stderr.write(`iot token: --role ${JSON.stringify(role)} is invalid: expected iot_operator or iot_analyst\n`);
      process.exit(2);
    }
    await runOnce(async (life) => {
      const db = await resolveDatabase(c, life, { joinRunning: true }); // beside a running `iot start` too
      const pool = createPool(db.url, life, 1, 'iot-token');
      const { rows } = await pool.query<{ id: string }>('select id from iot.tenants where tenant_code = $1', [opts.tenant]);
      if (!rows.length) {
        process.stderr.write(`iot token: no tenant with code ${JSON.stringify(opts.tenant)}\n`);
        process.exitCode = 2;
        return;
      }
      const token = signToken(jwtSecret(c.JWT_SECRET, c.DATA_DIR), {
        role, tenantId: rows[0].id, subject: opts.subject, expiresIn: opts.expires });
      // The API refuses tokens that live longer than API_TOKEN_MAX_LIFETIME_DAYS: do not print one.
      const claims = decodeJwt(token) as { exp: number; iat: number };
      if (claims.exp - claims.iat > c.API_TOKEN_MAX_LIFETIME_DAYS * 86400) {
        process.stderr.write(`iot token: --expires ${JSON.stringify(opts.expires)} is longer than API_TOKEN_MAX_LIFETIME_DAYS (${c.API_TOKEN_MAX_LIFETIME_DAYS} days); the API would refuse the token\n`);
        process.exitCode = 2;
        return;
      }
      process.stdout.write(token + '\n');
    });
  });

program.command('analyst-login')
  .description('Create or update a SQL login for an analyst: member of iot_analyst, sees only the given tenants, finds the iot names without a schema prefix. Prints a psql line.')
  .argument('<name>', 'login name (lower-case letters, digits, _)')
  .requiredOption('--tenant <codes>', 'tenant code(s) the login sees, comma-separated (replaces its earlier ones)')
  .option('--password <password>', 'password to set (default: a new random one, printed in the psql line)')
  .action(async (name: string, opts: { tenant: string; password?: string }) => {
    logToStderr(); // stdout is the psql line alone
    const c = config();
    await runOnce(async (life) => {
      const db = await resolveDatabase(c, life, { joinRunning: true });
      const pool = createPool(db.url, life, 1, 'iot-analyst-login');
      const { rows: [fn] } = await pool.query(`select to_regprocedure('iot_private.set_analyst_login(text, text[], text)') as oid`);
      if (!fn.oid) await migrateWithConfig(db.url, c); // a database never migrated yet
      const password = opts.password ?? randomPassword();
      const tenants = opts.tenant.split(',').map((t) => t.trim()).filter(Boolean);
      try {
        await pool.query('select iot_private.set_analyst_login($1, $2, $3)', [name, tenants, password]);
      } catch (error) {
        process.stderr.write(`iot analyst-login: ${(error as Error).message}\n`);
        process.exitCode = 2;
        return;
      }
      process.stdout.write(psqlLine(db.url, name, password) + '\n');
    });
  });

program.command('config')
  .description('Check the configuration from the environment and print it (secrets hidden).')
  .option('--markdown', 'print the table of every variable for the README')
  .action((opts: { markdown?: boolean }) => {
    if (opts.markdown) {
      process.stdout.write(configMarkdown() + '\n');
      return;
    }
    logToStderr();
    const c = config();
    for (const [k, v] of Object.entries(c)) {
      process.stdout.write(`${k}=${v === undefined ? '' : /PASSWORD|SECRET/.test(k) ? '***' : hidePassword(String(v))}\n`);
    }
  });

/** A URL's password replaced by ***; anything else as it is. */
function hidePassword(value: string): string {
  try {
    const u = new URL(value);
    if (!u.password) return value;
    u.password = '***';
    return u.toString();
  } catch {
    return value;
  }
}

program.parseAsync(process.argv).catch((error) => {
  log.error('failed', { error });
  process.exit(1);
});

#!/usr/bin/env node
// `iot` command line: start | migrate | worker | ingest mqtt | simulate | token | config.
import { Command } from 'commander';
import { Pool } from 'pg';
import { Config, ConfigError, configMarkdown, loadConfig } from '../lib/config';
import { logger, setLogLevel } from '../lib/log';
import { jwtSecret, signToken } from '../lib/secrets';
import { startWorker } from '../lib/worker';
import { startApi } from '../server/app';
import { DEMO_TENANT, seedDemoHistory, seedDemoPlant } from '../sim/demo-plant';
import { startMqttSimulator } from '../sim/mqtt-publisher';
import { Lifecycle, createPool, migrateWithConfig, resolveBroker, resolveDatabase, startMqttIngest } from './runtime';

const log = logger('iot');

function config(): Config {
  try {
    const c = loadConfig();
    setLogLevel(c.LOG_LEVEL);
    return c;
  } catch (error) {
    if (error instanceof ConfigError) {
      process.stderr.write(`iot: configuration error: ${error.message}\n`);
      process.exit(2);
    }
    throw error;
  }
}

/** Runs until SIGINT/SIGTERM, then stops everything in reverse order. */
async function runUntilSignal(life: Lifecycle, body: () => Promise<void>): Promise<void> {
  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) {
      log.warn('second signal: exiting without finishing the shutdown', { signal });
      process.exit(1);
    }
    stopping = true;
    log.info('shutting down', { signal });
    // A component waiting on a dead peer must not keep the process alive forever.
    setTimeout(() => {
      log.error('shutdown took longer than 20 s; exiting anyway');
      process.exit(1);
    }, 20_000).unref();
    await life.stopAll();
    process.exit(0);
  };
  process.on('SIGINT', () => void stop('SIGINT'));
  process.on('SIGTERM', () => void stop('SIGTERM'));
  try {
    await body();
  } catch (error) {
    log.error('start-up failed', { error });
    await life.stopAll();
    process.exit(1);
  }
}

const program = new Command('iot')
  .description('Plant telemetry backend. Configuration comes from environment variables; see `iot config`.')
  .showHelpAfterError();

program.command('start')
  .description('Run everything: database (embedded unless DATABASE_URL), migrations, API, worker, MQTT broker (in-process unless MQTT_BROKER_URL), MQTT ingestor and, by default with the embedded database, the demo plant.')
  .action(async () => {
    const c = config();
    const life = new Lifecycle();
    await runUntilSignal(life, async () => {
      const db = await resolveDatabase(c, life);
      const { tier } = await migrateWithConfig(db.url, c);
      const pool = createPool(db.url, life, 20, 'iot-start');
      const secret = jwtSecret(c.JWT_SECRET, c.DATA_DIR);
      const demo = c.DEMO === 'true' || (c.DEMO === 'auto' && db.embedded && !c.MQTT_BROKER_URL);
      let tenantId: string | undefined;
      if (demo) {
        tenantId = await seedDemoPlant(pool);
        const runs = await seedDemoHistory(pool, tenantId);
        if (runs) log.info('demo plant: a week of production history written', { productionRuns: runs });
      }
      const brokerUrl = await resolveBroker(c, life);
      const worker = await startWorker(db.url, c.WORKER_CONCURRENCY, c.TELEMETRY_RETENTION_DAYS, Number(c.HEALTH_SCORE_INTERVAL_MINUTES));
      life.add('worker', () => worker.stop());
      await startMqttIngest(c, pool, brokerUrl, life);
      // Score once a minute after start rather than waiting for the next interval boundary.
      await worker.addJob('health__calculate_scores', { now: true },
        { runAt: new Date(Date.now() + 60_000), jobKey: 'health:startup' });
      const api = await startApi({
        pool, host: c.HOST, port: c.PORT, jwtSecret: secret, graphiql: c.GRAPHIQL_ENABLED,
        websockets: c.GRAPHQL_WS_ENABLED, graphqlPath: c.GRAPHQL_WS_PATH, maxPageSize: c.API_MAX_PAGE_SIZE,
      });
      life.add('API', () => api.close());
      if (demo) {
        const sim = await startMqttSimulator(brokerUrl, c.SIM_INTERVAL_MS, { username: c.MQTT_USERNAME, password: c.MQTT_PASSWORD });
        life.add('simulator', () => sim.stop());
        const token = signToken(secret, { role: 'iot_operator', tenantId: tenantId!, subject: 'demo-operator', expiresIn: '30d' });
        process.stdout.write([
          '',
          `  Plant telemetry is running (storage tier ${tier}).`,
          `  GraphiQL:  ${api.url}/graphiql`,
          `  GraphQL:   ${api.url}${c.GRAPHQL_WS_PATH}   MQTT: ${brokerUrl}`,
          `  Demo token (tenant "${DEMO_TENANT.code}", role iot_operator, 30 days). In GraphiQL add the header`,
          `    Authorization: Bearer ${token}`,
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
    const life = new Lifecycle();
    try {
      const db = await resolveDatabase(c, life);
      const result = await migrateWithConfig(db.url, c);
      log.info('migrated', { tier: result.tier, applied: result.applied.length });
    } finally {
      await life.stopAll();
    }
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
      await startMqttIngest(c, pool, brokerUrl, life);
    });
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
        const pool = new Pool({ connectionString: db.url, max: 2 });
        await seedDemoPlant(pool);
        await pool.end();
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
    const c = config();
    if (opts.role !== 'iot_operator' && opts.role !== 'iot_analyst') {
      process.stderr.write(`iot token: --role ${JSON.stringify(opts.role)} is invalid: expected iot_operator or iot_analyst\n`);
      process.exit(2);
    }
    const life = new Lifecycle();
    try {
      const db = await resolveDatabase(c, life);
      const pool = createPool(db.url, life, 1, 'iot-token');
      const { rows } = await pool.query<{ id: string }>('select id from iot.tenants where tenant_code = $1', [opts.tenant]);
      if (!rows.length) {
        process.stderr.write(`iot token: no tenant with code ${JSON.stringify(opts.tenant)}\n`);
        process.exitCode = 2;
        return;
      }
      process.stdout.write(signToken(jwtSecret(c.JWT_SECRET, c.DATA_DIR), {
        role: opts.role, tenantId: rows[0].id, subject: opts.subject, expiresIn: opts.expires }) + '\n');
    } finally {
      await life.stopAll();
    }
  });

program.command('config')
  .description('Check the configuration from the environment and print it (secrets hidden).')
  .option('--markdown', 'print the table of every variable for the README')
  .action((opts: { markdown?: boolean }) => {
    if (opts.markdown) {
      process.stdout.write(configMarkdown() + '\n');
      return;
    }
    const c = config();
    for (const [k, v] of Object.entries(c)) {
      const secret = /PASSWORD|SECRET/.test(k) || (k === 'DATABASE_URL' && v);
      process.stdout.write(`${k}=${v === undefined ? '' : secret ? '***' : v}\n`);
    }
  });

program.parseAsync(process.argv).catch((error) => {
  log.error('failed', { error });
  process.exit(1);
});

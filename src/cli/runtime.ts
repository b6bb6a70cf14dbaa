// Building blocks shared by the CLI commands: resolve the database (embedded or given), migrate,
// and start/stop each component, in an order that can be undone on shutdown.
import { join } from 'node:path';
import { Pool } from 'pg';
import { Config } from '../lib/config';
import { migrate } from '../lib/db/migrate';
import { createPool as createClosablePool } from '../lib/db/pool';
import { startEmbeddedBroker } from '../lib/embedded/broker';
import { startEmbeddedPostgres } from '../lib/embedded/postgres';
import { logger } from '../lib/log';
import { MqttIngestor, registerMqttMetrics } from '../ingest/mqtt';
import { RegistryCache } from '../ingest/registry';
import { ReadingSink, registerSinkMetrics } from '../ingest/sink';
import { ModbusPoller } from '../ingest/modbus/poller';
import { registerModbusMetrics } from '../ingest/modbus/metrics';
import { registerSparkplugMetrics, SparkplugIngestor } from '../ingest/sparkplug/ingestor';
import { RestIngestLimits, restIngestRouter } from '../ingest/rest/router';
import { RestIngestServer } from '../ingest/rest/server';

const log = logger('runtime');
/** How long the sink keeps trying to write at shutdown before it spills the rest. */
const SINK_FLUSH_DEADLINE_MS = 8000;

/** Thrown by Lifecycle.add once a stop was requested: the start-up sequence ends at that step. */
export class StartInterrupted extends Error {
  constructor() {
    super('start-up interrupted by a stop request');
  }
}

/**
 * Things to undo on shutdown, last started first stopped. A stop requested during start-up lets
 * the step under way finish: the next add() registers its component and throws StartInterrupted,
 * so everything started is stopped in order, the database last.
 */
export class Lifecycle {
  private stops: { name: string; stop: () => Promise<unknown> }[] = [];
  private stopRequested = false;
  private drained = false;
  private draining: Promise<void> | undefined;

  get isStopping(): boolean {
    return this.stopRequested;
  }

  requestStop(): void {
    this.stopRequested = true;
  }

  /** Before a long start-up step: ends the start-up here if a stop was requested. */
  checkpoint(): void {
    if (this.stopRequested) throw new StartInterrupted();
  }

  add(name: string, stop: () => Promise<unknown>): void {
    this.stops.push({ name, stop });
    if (!this.stopRequested) return;
    if (this.drained) void this.stopAll(); // a straggler after the shutdown pass
    throw new StartInterrupted();
  }

  /** Stops everything added so far (and anything added meanwhile); callers share one pass. */
  stopAll(): Promise<void> {
    this.stopRequested = true;
    this.draining ??= (async () => {
      for (let next = this.stops.pop(); next; next = this.stops.pop()) {
        try {
          await next.stop();
          log.debug('stopped', { component: next.name });
        } catch (error) {
          log.warn('error while stopping', { component: next.name, error });
        }
      }
    })().finally(() => {
      this.draining = undefined;
      this.drained = true;
    });
    return this.draining;
  }
}

/**
 * DATABASE_URL, or the embedded server in DATA_DIR. With `joinRunning`, a server that a running
 * `iot start` owns is used as it is (for short commands beside it) instead of refusing.
 */
export async function resolveDatabase(config: Config, life: Lifecycle, options: { joinRunning?: boolean } = {}):
  Promise<{ url: string; embedded: boolean; port?: number }> {
  if (config.DATABASE_URL) return { url: config.DATABASE_URL, embedded: false };
  life.checkpoint();
  const pg = await startEmbeddedPostgres({
    dataDir: join(config.DATA_DIR, 'postgres'), port: config.EMBEDDED_PG_PORT, joinRunning: options.joinRunning,
  });
  life.add('embedded PostgreSQL', () => pg.stop());
  await pg.createDatabase('iot');
  return { url: pg.connectionString('iot'), embedded: true, port: pg.port };
}

export function migrateWithConfig(url: string, config: Config) {
  return migrate({
    connectionString: url,
    requestedTier: config.TIMESCALE_TIER,
    sensorDefaults: {
      temperatureMin: config.SENSOR_TEMPERATURE_MIN,
      temperatureMax: config.SENSOR_TEMPERATURE_MAX,
      vibrationMax: config.SENSOR_VIBRATION_MAX,
      pressureMin: config.SENSOR_PRESSURE_MIN,
      pressureMax: config.SENSOR_PRESSURE_MAX,
    },
    liveReadingIntervalMs: config.LIVE_READING_INTERVAL_MS,
    settings: {
      rollup_1m_retention_days: String(config.ROLLUP_1M_RETENTION_DAYS), rollup_1h_retention_days: String(config.ROLLUP_1H_RETENTION_DAYS),
      rollup_1d_retention_days: String(config.ROLLUP_1D_RETENTION_DAYS), telemetry_compress_after: `${config.TELEMETRY_COMPRESS_AFTER_DAYS} days`,
    },
  });
}

export function createPool(url: string, life: Lifecycle, max = 10, name = 'iot'): Pool {
  const pool = createClosablePool(url, max, name);
  life.add(`pool ${name}`, () => pool.close());
  return pool;
}

export async function resolveBroker(config: Config, life: Lifecycle): Promise<string> {
  if (config.MQTT_BROKER_URL) return config.MQTT_BROKER_URL;
  const broker = await startEmbeddedBroker(config.MQTT_EMBEDDED_PORT);
  life.add('in-process MQTT broker', () => broker.stop());
  return broker.url;
}

/** What every ingestor of a process shares: one registry cache and one reading sink. */
export interface IngestBase { registry: RegistryCache; sink: ReadingSink }

/**
 * The registry cache and the sink, started once per process; the ingestors started after it are
 * stopped before it (Lifecycle stops the last started first), so the sink writes what they handed over.
 */
export async function startIngestBase(config: Config, pool: Pool, life: Lifecycle): Promise<IngestBase> {
  const registry = new RegistryCache(pool);
  await registry.start();
  life.add('registry cache', () => registry.stop());
  const sink = new ReadingSink(pool, {
    batchSize: config.INGEST_BATCH_SIZE, maxWaitMs: config.INGEST_BATCH_MAX_WAIT_MS, bufferMax: config.INGEST_BUFFER_MAX,
    maxAgeMs: config.INGEST_MAX_AGE_DAYS * 86_400_000, maxFutureMs: config.INGEST_MAX_FUTURE_SECONDS * 1000,
    transactionTimeoutMs: config.INGEST_TRANSACTION_TIMEOUT_MS,
    deadLetters: {
      maxTopicBytes: config.INGEST_DEAD_LETTER_MAX_TOPIC_BYTES, maxPayloadBytes: config.INGEST_DEAD_LETTER_MAX_PAYLOAD_BYTES,
      ratePerSource: config.INGEST_DEAD_LETTER_RATE, burstPerSource: config.INGEST_DEAD_LETTER_BURST, rateTotal: config.INGEST_DEAD_LETTER_RATE_TOTAL,
    },
    spillDir: join(config.DATA_DIR, 'ingest-spill'), spillMaxBytes: config.INGEST_SPILL_MAX_MB * 1024 * 1024,
  });
  // Shutdown: the process exits 20 s after the signal whatever happens (src/cli/main.ts), and the
  // ingestors stop first (MQTT up to 5 s). What the sink cannot write within SINK_FLUSH_DEADLINE_MS
  // goes to a spill file in DATA_DIR/ingest-spill, stored by the next start.
  life.add('reading sink', () => sink.close({ deadlineMs: SINK_FLUSH_DEADLINE_MS }));
  // What an earlier run spilled (the database was down when it stopped): stored in the background.
  void sink.replaySpills();
  const unregisterSink = registerSinkMetrics(sink);
  life.add('sink metrics', async () => unregisterSink());
  return { registry, sink };
}

export async function startMqttIngest(config: Config, pool: Pool, brokerUrl: string, life: Lifecycle, { registry, sink }: IngestBase) {
  const ingestor = new MqttIngestor({
    brokerUrl, topics: config.MQTT_TOPICS.split(',').map((t) => t.trim()).filter(Boolean), qos: config.MQTT_QOS as 0 | 1 | 2,
    clientId: config.MQTT_CLIENT_ID, username: config.MQTT_USERNAME, password: config.MQTT_PASSWORD,
    sharedGroup: config.MQTT_SHARED_GROUP, maxFutureSeconds: config.INGEST_MAX_FUTURE_SECONDS,
    maxAgeDays: config.INGEST_MAX_AGE_DAYS, maxMessageBytes: config.INGEST_MAX_MESSAGE_BYTES,
    maxReadingsPerMessage: config.INGEST_MAX_READINGS_PER_MESSAGE,
    brokerAlerts: { pool },
  }, registry, sink);
  await ingestor.start();
  life.add('MQTT ingestor', () => ingestor.stop());
  const unregister = registerMqttMetrics(ingestor);
  life.add('MQTT metrics', async () => unregister());
  return ingestor;
}

/**
 * OPC UA: every OPC_UA device of the registry. node-opcua is loaded only when there is something
 * to read (it prints a notice on stdout when loaded, which would spoil the output of commands such
 * as `iot token`): at once with OPCUA_ENDPOINT_URL/OPCUA_NODE_IDS or OPC_UA devices, else as soon
 * as the registry holds the first OPC_UA device (devices added later are then picked up live).
 */
export async function startOpcuaIngest(config: Config, pool: Pool, life: Lifecycle, base: IngestBase, options: { wait?: boolean } = {}) {
  const quick = config.OPCUA_ENDPOINT_URL && config.OPCUA_NODE_IDS;
  if (!quick && !base.registry.channelsByConnection('OPC_UA').length && options.wait !== false) {
    let starting: Promise<unknown> | undefined;
    const stopWatching = base.registry.onReload(() => {
      if (starting || !base.registry.channelsByConnection('OPC_UA').length) return;
      log.info('first OPC_UA device registered: starting the OPC UA ingestor');
      starting = startOpcuaNow(config, pool, life, base).catch((error) => log.error('OPC UA ingestor did not start', { error }));
    });
    life.add('OPC UA watch', async () => stopWatching());
    return undefined;
  }
  return startOpcuaNow(config, pool, life, base);
}

async function startOpcuaNow(config: Config, pool: Pool, life: Lifecycle, { registry, sink }: IngestBase) {
  const { OpcuaIngestor, registerOpcuaMetrics } = await import('../ingest/opcua/ingestor.js');
  if (config.OPCUA_ENDPOINT_URL && config.OPCUA_NODE_IDS) {
    const { applyQuickOpcuaSetup, QUICK_DEVICE_CODE } = await import('../ingest/opcua/quick-setup.js');
    const made = await applyQuickOpcuaSetup(pool, config.OPCUA_ENDPOINT_URL, config.OPCUA_NODE_IDS, config.OPCUA_WORK_CENTER);
    if (typeof made === 'object') log.warn('OPCUA_ENDPOINT_URL/OPCUA_NODE_IDS: no quick OPC UA device made', { problem: made.problem });
    else log.info('quick OPC UA device ready', { device: QUICK_DEVICE_CODE, endpoint: config.OPCUA_ENDPOINT_URL, nodes: config.OPCUA_NODE_IDS.length });
    await registry.reload();
  }
  const ingestor = new OpcuaIngestor({
    pkiDir: join(config.DATA_DIR, 'opcua-pki'), acceptUnknownCertificates: config.OPCUA_ACCEPT_UNKNOWN_CERTIFICATES,
    reconnectMaxMs: config.OPCUA_RECONNECT_MAX_MS,
  }, registry, sink, pool);
  await ingestor.start();
  life.add('OPC UA ingestor', () => ingestor.stop());
  const unregister = registerOpcuaMetrics(ingestor);
  life.add('OPC UA metrics', async () => unregister());
  return ingestor;
}

/** Modbus TCP: polls every MODBUS device of the registry on its own timer. */
export async function startModbusIngest(config: Config, pool: Pool, life: Lifecycle, { registry, sink }: IngestBase) {
  const poller = new ModbusPoller(pool, registry, sink, {
    pollIntervalMs: config.MODBUS_POLL_INTERVAL_MS, timeoutMs: config.MODBUS_TIMEOUT_MS, faultThreshold: config.MODBUS_FAULT_THRESHOLD,
  });
  await poller.start();
  life.add('Modbus poller', () => poller.stop());
  const unregister = registerModbusMetrics(poller);
  life.add('Modbus metrics', async () => unregister());
  return poller;
}

/** Sparkplug B (spBv1.0/#): births, data and deaths of edge nodes mapped to registry devices. */
export async function startSparkplugIngest(config: Config, pool: Pool, brokerUrl: string, life: Lifecycle, { registry, sink }: IngestBase) {
  const ingestor = new SparkplugIngestor({
    brokerUrl: config.SPARKPLUG_BROKER_URL ?? brokerUrl, clientId: config.SPARKPLUG_CLIENT_ID,
    username: config.MQTT_USERNAME, password: config.MQTT_PASSWORD, stateDir: join(config.DATA_DIR, 'sparkplug'),
    rebirthIntervalMs: config.SPARKPLUG_REBIRTH_INTERVAL_MS, reorderTimeoutMs: config.SPARKPLUG_REORDER_TIMEOUT_MS,
    hostId: config.SPARKPLUG_HOST_ID,
  }, registry, sink, pool);
  await ingestor.start();
  life.add('Sparkplug ingestor', () => ingestor.stop());
  const unregister = registerSparkplugMetrics(ingestor);
  life.add('Sparkplug metrics', async () => unregister());
  return ingestor;
}

/** The REST ingest limits from the configuration (the same message limits as MQTT). */
export function restIngestLimits(config: Config): Partial<RestIngestLimits> {
  return {
    maxFutureMs: config.INGEST_MAX_FUTURE_SECONDS * 1000, maxAgeMs: config.INGEST_MAX_AGE_DAYS * 86_400_000,
    maxMessageBytes: config.INGEST_MAX_MESSAGE_BYTES, maxReadingsPerMessage: config.INGEST_MAX_READINGS_PER_MESSAGE,
    keyCacheMs: config.REST_INGEST_KEY_CACHE_MS, commitTimeoutMs: config.REST_INGEST_COMMIT_TIMEOUT_MS,
    requestsPerSecondPerKey: config.REST_INGEST_RATE_PER_KEY,
  };
}

/** REST ingest mounted on the API (`iot start`): POST /ingest/readings on the API's port. */
export function restIngestForApi(config: Config, pool: Pool, { registry, sink }: IngestBase) {
  return restIngestRouter({ sink, registry, pool, limits: restIngestLimits(config) });
}

/** REST ingest on its own port (`iot ingest rest`). */
export async function startRestIngest(config: Config, pool: Pool, life: Lifecycle, { registry, sink }: IngestBase) {
  const server = new RestIngestServer({ port: config.REST_INGEST_PORT, host: config.REST_INGEST_HOST, limits: restIngestLimits(config) },
    registry, sink, pool);
  await server.start();
  life.add('REST ingest', () => server.stop());
  log.info('REST ingest listening', { url: `${server.url}/ingest/readings` });
  return server;
}

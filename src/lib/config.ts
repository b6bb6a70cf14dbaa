// Configuration from environment variables, validated once at start. A bad value stops the
// process with exit status 2 and one line naming the variable, the value and what is expected.
// `iot config --markdown` prints the README table from these definitions.

export class ConfigError extends Error {
  constructor(readonly variable: string, readonly value: string, readonly expected: string) {
    super(`${variable}=${JSON.stringify(value)} is invalid: expected ${expected}`);
  }
}

interface Spec<T> {
  description: string;
  default: string | undefined;
  expected: string;
  parse: (raw: string) => T | undefined;
}

const int = (min: number, max: number): Pick<Spec<number>, 'expected' | 'parse'> => ({
  expected: `an integer from ${min} to ${max}`,
  parse: (raw) => (/^-?\d+$/.test(raw) && +raw >= min && +raw <= max ? +raw : undefined),
});
const num = (): Pick<Spec<number>, 'expected' | 'parse'> => ({
  expected: 'a number',
  parse: (raw) => (raw.trim() !== '' && Number.isFinite(+raw) ? +raw : undefined),
});
const bool = (): Pick<Spec<boolean>, 'expected' | 'parse'> => ({
  expected: 'true or false',
  parse: (raw) => (/^(true|1|yes|on)$/i.test(raw) ? true : /^(false|0|no|off)$/i.test(raw) ? false : undefined),
});
const oneOf = <T extends string>(...values: T[]): Pick<Spec<T>, 'expected' | 'parse'> => ({
  expected: `one of ${values.join(', ')}`,
  parse: (raw) => (values.includes(raw as T) ? (raw as T) : undefined),
});
const url = (...protocols: string[]): Pick<Spec<string>, 'expected' | 'parse'> => ({
  expected: `a URL starting ${protocols.map((p) => p + '//').join(' or ')}`,
  parse: (raw) => {
    try {
      return protocols.includes(new URL(raw).protocol) ? raw : undefined;
    } catch {
      return undefined;
    }
  },
});
// OPC UA NodeId in its string form (OPC 10000-6, 5.3.1.10): an optional namespace (ns=<index> or
// nsu=<uri>), then i=<number>, s=<string>, g=<guid> or b=<base64>.
const NODE_ID = /^(?:(?:ns=\d+|nsu=[^;]+);)?(?:i=\d+|s=.+|g=[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|b=[A-Za-z0-9+/]+={0,2})$/i;
const nodeIds = (): Pick<Spec<string[]>, 'expected' | 'parse'> => ({
  expected: 'comma-separated OPC UA NodeIds such as ns=2;s=Press1.Temperature,ns=2;i=1001',
  parse: (raw) => {
    const ids = raw.split(',').map((id) => id.trim()).filter(Boolean);
    return ids.length && ids.every((id) => NODE_ID.test(id)) ? ids : undefined;
  },
});
const text = (): Pick<Spec<string>, 'expected' | 'parse'> => ({ expected: 'text', parse: (raw) => raw });
// Browser origins: '*' or a comma-separated list of scheme://host[:port] (no path).
const originList = (): Pick<Spec<string[]>, 'expected' | 'parse'> => ({
  expected: '* or comma-separated origins such as https://dash.plant.example,http://localhost:3000',
  parse: (raw) => {
    const list = raw.split(',').map((o) => o.trim()).filter(Boolean);
    if (list.length === 1 && list[0] === '*') return list;
    return list.every((o) => /^https?:\/\/[^/\s]+$/i.test(o)) ? list.map((o) => o.toLowerCase()) : undefined;
  },
});
const path = (): Pick<Spec<string>, 'expected' | 'parse'> => ({
  expected: 'a URL path starting with /',
  parse: (raw) => (/^\/[\w\-./]*$/.test(raw) ? raw : undefined),
});

export const specs = {
  DATABASE_URL: { ...url('postgres:', 'postgresql:'), default: undefined,
    description: 'PostgreSQL/TimescaleDB to use. Unset: start embedded PostgreSQL in DATA_DIR (and run the demo plant).' },
  DATA_DIR: { ...text(), default: '.data',
    description: 'Folder for embedded PostgreSQL data, the generated JWT secret, the demo analyst\'s password and other local state (kept between runs).' },
  EMBEDDED_PG_PORT: { ...int(1, 65535), default: '5455', description: 'Port of the embedded PostgreSQL (loopback only).' },
  TIMESCALE_TIER: { ...oneOf('auto', '1', '2', '3'), default: 'auto',
    description: 'Storage tier at first migrate: auto detects; 1 TimescaleDB community, 2 TimescaleDB Apache, 3 plain PostgreSQL.' },
  HOST: { ...text(), default: '127.0.0.1', description: 'Address the API listens on (0.0.0.0 for every interface).' },
  PORT: { ...int(1, 65535), default: '5000', description: 'Port of the API (GraphQL at /graphql, GraphiQL at /graphiql).' },
  GRAPHIQL_ENABLED: { ...bool(), default: 'true', description: 'Serve the GraphiQL explorer.' },
  GRAPHQL_WS_ENABLED: { ...bool(), default: 'true', description: 'Accept GraphQL subscriptions over WebSocket (graphql-ws protocol).' },
  GRAPHQL_WS_PATH: { ...path(), default: '/graphql', description: 'WebSocket path for subscriptions.' },
  REDIS_PUBSUB_URL: { ...url('redis:', 'rediss:'), default: undefined,
    description: 'Accepted for deployments of the earlier system and not used: subscriptions here run on PostgreSQL LISTEN/NOTIFY, so no Redis is needed (a line at start says so).' },
  // API limits and tokens (issue 7, findings 9, 10, 12). A short JWT_SECRET is refused without
  // printing it: the error names its length only.
  JWT_SECRET: { expected: 'at least 32 bytes (e.g. `openssl rand -hex 32`)', default: undefined,
    parse: (raw: string) => {
      const bytes = Buffer.byteLength(raw, 'utf8');
      if (bytes < 32) throw new ConfigError('JWT_SECRET', `(${bytes} bytes, not shown)`, 'at least 32 bytes (e.g. `openssl rand -hex 32`)');
      return raw;
    },
    description: 'Secret that signs API tokens (HS256), at least 32 bytes. Unset: generated once (64 hex characters) and kept in DATA_DIR/jwt-secret.' },
  API_MAX_PAGE_SIZE: { ...int(1, 100000), default: '1000',
    description: 'Largest `first`/`last` any connection accepts; a connection asked for without either returns at most this many rows. Telemetry connections must give first or last.' },
  API_MAX_QUERY_DEPTH: { ...int(2, 100), default: '12', description: 'Deepest nesting of fields a GraphQL operation may have (introspection not counted); deeper is refused with IOT11 before any SQL runs.' },
  API_MAX_QUERY_COST: { ...int(1, 1000000000000), default: '2000000',
    description: 'Most rows a GraphQL operation could return (nested connections multiply their first/last, API_MAX_PAGE_SIZE when not given); above it the operation is refused with IOT11.' },
  API_STATEMENT_TIMEOUT_MS: { ...int(100, 3600000), default: '15000', description: 'statement_timeout of every API transaction: a longer query is stopped with 57014.' },
  API_TOKEN_MAX_LIFETIME_DAYS: { ...int(1, 3650), default: '90', description: 'Longest lifetime (exp - iat) of an API token the API accepts; tokens without exp are refused.' },
  API_HEALTH_TIMEOUT_MS: { ...int(100, 60000), default: '2000', description: 'Longest `/healthz` waits for the database (on connections of its own) before answering 503.' },
  MQTT_BROKER_URL: { ...url('mqtt:', 'mqtts:', 'tcp:', 'ssl:', 'ws:', 'wss:'), default: undefined,
    description: 'MQTT broker to ingest from. Unset: start an in-process broker on MQTT_EMBEDDED_PORT.' },
  MQTT_EMBEDDED_PORT: { ...int(1, 65535), default: '1883', description: 'Port of the in-process broker when MQTT_BROKER_URL is unset.' },
  MQTT_USERNAME: { ...text(), default: undefined, description: 'MQTT user name.' },
  MQTT_PASSWORD: { ...text(), default: undefined, description: 'MQTT password.' },
  MQTT_TOPICS: { ...text(), default: 'facility/#',
    description: 'Comma-separated topic filters to subscribe to. The default also receives topics outside the contract (a level too many or too few), which become dead letters saying so; a filter without `#` never sees them.' },
  MQTT_CLIENT_ID: { ...text(), default: undefined,
    description: 'Client id of the ingestor (persistent session). Default `iot-ingest-<hostname>`.' },
  MQTT_SHARED_GROUP: { ...text(), default: undefined,
    description: 'Subscribe as `$share/<group>/<topic>` so several ingestors split the load (MQTT 5 brokers).' },
  MQTT_QOS: { ...int(0, 2), default: '1', description: 'QoS of the ingest subscription.' },
  SPARKPLUG_BROKER_URL: { ...url('mqtt:', 'mqtts:', 'tcp:', 'ssl:', 'ws:', 'wss:'), default: undefined,
    description: 'Broker of the Sparkplug B ingestor (spBv1.0/#); unset: MQTT_BROKER_URL (or the in-process broker). Uses MQTT_USERNAME/MQTT_PASSWORD.' },
  SPARKPLUG_CLIENT_ID: { ...text(), default: undefined, description: 'MQTT client id of the Sparkplug ingestor (keep it stable: the broker queues QoS 1 messages by it); unset: iot-sparkplug-<hostname>.' },
  SPARKPLUG_HOST_ID: { ...text(), default: undefined, description: 'Publish spBv1.0/STATE/<id> as a Sparkplug 3.0 primary host application; unset: no STATE messages.' },
  SPARKPLUG_REBIRTH_INTERVAL_MS: { ...int(100, 3600000), default: '10000', description: 'At most one rebirth request (NCMD Node Control/Rebirth) per edge node this often.' },
  SPARKPLUG_REORDER_TIMEOUT_MS: { ...int(0, 600000), default: '2000', description: 'How long a missing Sparkplug sequence number may be late before it counts as a gap (and a rebirth is requested).' },
  OPCUA_ENDPOINT_URL: { ...url('opc.tcp:'), default: undefined,
    description: 'One OPC UA server, configured quickly (with OPCUA_NODE_IDS): at start they become the device `opcua-quick` (security None, anonymous) on OPCUA_WORK_CENTER. Devices registered with connection_type OPC_UA need neither.' },
  OPCUA_NODE_IDS: { ...nodeIds(), default: undefined,
    description: 'Comma-separated NodeIds to read from OPCUA_ENDPOINT_URL, e.g. `ns=2;s=Press1.Temperature` (string identifiers cannot contain a comma; the sensor type is taken from the identifier\'s last word).' },
  OPCUA_WORK_CENTER: { ...text(), default: undefined,
    description: 'FACILITY/WORKCENTER codes of the work center the quick OPC UA device belongs to; may be left out when the plant has one work center.' },
  OPCUA_ACCEPT_UNKNOWN_CERTIFICATES: { ...bool(), default: 'false',
    description: 'Trust any OPC UA server certificate on first sight (laboratories only). Otherwise an unknown certificate lands in DATA_DIR/opcua-pki/rejected and `iot opcua trust <file>` trusts it.' },
  OPCUA_RECONNECT_MAX_MS: { ...int(1000, 3600000), default: '30000', description: 'Longest wait between reconnect attempts to an OPC UA server (the first is after 0.5 s, doubling).' },
  MODBUS_POLL_INTERVAL_MS: { ...int(10, 3600000), default: '1000', description: 'Poll interval of Modbus TCP devices whose connection_config has no pollIntervalMs.' },
  MODBUS_TIMEOUT_MS: { ...int(50, 600000), default: '1000', description: 'Connect and per-request timeout of Modbus TCP polls.' },
  MODBUS_FAULT_THRESHOLD: { ...int(1, 1000), default: '3', description: 'Failed Modbus polls in a row before an equipment event is raised (one per outage, one on recovery).' },
  REST_INGEST_PORT: { ...int(1, 65535), default: '8081', description: 'Port of `iot ingest rest` (POST /ingest/readings). `iot start` serves the same endpoint on the API\'s port instead.' },
  REST_INGEST_HOST: { ...text(), default: '127.0.0.1', description: 'Address `iot ingest rest` listens on (0.0.0.0 for every interface).' },
  REST_INGEST_KEY_CACHE_MS: { ...int(0, 3600000), default: '5000', description: 'How long a device API key lookup is trusted: a revoked key is refused within this time.' },
  REST_INGEST_COMMIT_TIMEOUT_MS: { ...int(100, 600000), default: '30000', description: 'Longest a REST ingest request waits for its readings to be committed before it is answered 503 (Retry-After).' },
  REST_INGEST_RATE_PER_KEY: { ...int(0, 100000), default: '0', description: 'Requests per second one device key may make (after a burst of 100); 0: no limit.' },
  INGEST_BATCH_SIZE: { ...int(1, 1000000), default: '5000', description: 'Readings per COPY batch at most.' },
  INGEST_BATCH_MAX_WAIT_MS: { ...int(1, 60000), default: '200', description: 'A free writer starts a batch at once with what is buffered; while a writer is busy, a further writer starts only for a full batch or once the oldest waiting reading has waited this long.' },
  INGEST_BUFFER_MAX: { ...int(1, 10000000), default: '100000',
    description: 'Readings held in memory while the database is slow or down; above it the ingestor stops reading from the broker.' },
  INGEST_MAX_FUTURE_SECONDS: { ...int(0, 86400), default: '300', description: 'Readings stamped further in the future than this are dead-lettered.' },
  INGEST_MAX_AGE_DAYS: { ...int(0, 36500), default: '0',
    description: 'Readings stamped more than this many days before arrival are dead-lettered (0: no age limit). Readings before 2000-01-01 are dead-lettered in any case.' },
  INGEST_MAX_MESSAGE_BYTES: { ...int(1024, 268435455), default: '262144',
    description: 'Largest MQTT payload (bytes) that is parsed; a larger message is one dead letter with its size, refused before it is decoded.' },
  INGEST_MAX_READINGS_PER_MESSAGE: { ...int(1, 100000), default: '1000',
    description: 'Most readings one MQTT message (a JSON array) may hold; a message with more is one dead letter, none of it stored.' },
  SENSOR_TEMPERATURE_MIN: { ...num(), default: '60', description: 'Default lower normal temperature (°F) for channels without their own range.' },
  SENSOR_TEMPERATURE_MAX: { ...num(), default: '75', description: 'Default upper normal temperature (°F).' },
  SENSOR_VIBRATION_MAX: { ...num(), default: '2.5', description: 'Default upper normal vibration (RMS).' },
  SENSOR_PRESSURE_MIN: { ...num(), default: '80', description: 'Default lower normal pressure (PSI).' },
  SENSOR_PRESSURE_MAX: { ...num(), default: '120', description: 'Default upper normal pressure (PSI).' },
  WORKER_CONCURRENCY: { ...int(1, 64), default: '2', description: 'Jobs the worker runs at once.' },
  HEALTH_SCORE_INTERVAL_MINUTES: { ...oneOf('5', '10', '15', '20', '30'), default: '15',
    description: 'How often the worker scores every work center and raises predictive-maintenance alerts.' },
  TELEMETRY_RETENTION_DAYS: { ...int(0, 36500), default: '90', description: 'Drop raw readings older than this many days (whole chunks/partitions, daily at 03:15 UTC; 0 keeps them forever). Rollups are kept by their own settings below and never emptied by it.' },
  ROLLUP_1M_RETENTION_DAYS: { ...int(0, 36500), default: '365', description: 'Drop 1-minute rollups older than this many days (0 keeps them). Applied at migrate.' },
  ROLLUP_1H_RETENTION_DAYS: { ...int(0, 36500), default: '0', description: 'Drop 1-hour rollups older than this many days (0 keeps them). Applied at migrate.' },
  ROLLUP_1D_RETENTION_DAYS: { ...int(0, 36500), default: '0', description: 'Drop daily rollups older than this many days (0 keeps them). Applied at migrate.' },
  TELEMETRY_COMPRESS_AFTER_DAYS: { ...int(0, 36500), default: '7', description: 'Tier 1: compress raw chunks older than this many days (segmented by device and sensor type, hourly job telemetry__compress). Applied at migrate.' },
  INGEST_TRANSACTION_TIMEOUT_MS: { ...int(1000, 600000), default: '30000',
    description: 'Longest one ingest batch transaction may take (statement timeout; locks are waited for a third of it); a transaction that outlives it by as much again (5 s at most) has its connection cut and is retried.' },
  INGEST_DEAD_LETTER_MAX_TOPIC_BYTES: { ...int(64, 65536), default: '512',
    description: 'Bytes of a dead letter\'s topic that are stored; its full size and SHA-256 are kept beside it.' },
  INGEST_DEAD_LETTER_MAX_PAYLOAD_BYTES: { ...int(256, 262144), default: '4096',
    description: 'Bytes of a dead letter\'s payload that are stored (a base64 copy too, when the text had to be escaped); its full size and SHA-256 are kept beside it.' },
  INGEST_DEAD_LETTER_RATE: { ...int(1, 100000), default: '2',
    description: 'Dead letters a second one source (facility, topic prefix, device) may write one by one, after a burst of INGEST_DEAD_LETTER_BURST; beyond it they are counted into one summary row per source and minute.' },
  INGEST_DEAD_LETTER_BURST: { ...int(1, 1000000), default: '60', description: 'Dead letters one source may write at once before INGEST_DEAD_LETTER_RATE applies.' },
  INGEST_DEAD_LETTER_RATE_TOTAL: { ...int(1, 1000000), default: '10',
    description: 'Dead letters a second all sources together may write one by one (burst: 30 s of it); beyond it, summary rows as for one source.' },
  INGEST_DEAD_LETTER_RETENTION_DAYS: { ...int(0, 36500), default: '30', description: 'Delete dead letters older than this many days (hourly job dead_letters__prune; 0 keeps them forever).' },
  INGEST_SPILL_MAX_MB: { ...int(1, 65536), default: '256',
    description: 'Largest file (MiB) the ingestor writes in DATA_DIR/ingest-spill at shutdown with what the database could not take; the next start stores it.' },
  ARCHIVE_URL: { ...text(), default: undefined,
    description: 'Folder or s3://bucket/prefix: the nightly job telemetry__archive (02:45 UTC) exports each raw day (one file per tenant and day) before retention drops it, and retention waits for it. Unset: no archive.' },
  ARCHIVE_FORMAT: { ...oneOf('parquet', 'csv'), default: 'parquet', description: 'Format of the archive files (and the default of `iot export`).' },
  S3_ENDPOINT: { ...url('http:', 'https:'), default: undefined, description: 'S3-compatible endpoint for s3:// archive URLs (MinIO, Ceph...); unset: AWS.' },
  S3_REGION: { ...text(), default: 'us-east-1', description: 'Region of the S3 bucket.' },
  S3_ACCESS_KEY_ID: { ...text(), default: undefined, description: 'S3 access key; unset: the AWS SDK\'s own credential lookup.' },
  S3_SECRET_ACCESS_KEY: { ...text(), default: undefined, description: 'S3 secret key.' },
  S3_FORCE_PATH_STYLE: { ...bool(), default: undefined, description: 'Path-style S3 URLs (bucket in the path); default true when S3_ENDPOINT is set.' },
  DEMO: { ...oneOf('auto', 'true', 'false'), default: 'auto',
    description: 'Run the demo plant (seed registry + simulator). auto: only with embedded PostgreSQL.' },
  DEMO_PROTOCOLS: { ...oneOf('all', 'mqtt'), default: 'all',
    description: 'all: the demo plant also speaks OPC UA (RTM PRES-01), Modbus TCP (RTM CUTT-01) and Sparkplug B (ATL BIND-02), each from a simulator on loopback; mqtt: every work center publishes MQTT JSON.' },
  SIM_INTERVAL_MS: { ...int(10, 3600000), default: '1000', description: 'How often each simulated sensor publishes.' },
  LOG_LEVEL: { ...oneOf('debug', 'info', 'warn', 'error'), default: 'info', description: 'Least important log level printed.' },
  // Real time (issue 8): WebSocket and SSE subscribers
  WS_ALLOWED_ORIGINS: { ...originList(), default: '',
    description: 'Browser origins allowed to open a WebSocket or SSE stream, comma-separated (https://dash.plant.example), or * for any. Empty: only the API\'s own origin; clients that send no Origin (services, scripts) are always allowed.' },
  WS_MAX_SOCKETS_PER_IP: { ...int(1, 1000000), default: '200', description: 'Open WebSocket/SSE connections one client address may hold; one more is refused (HTTP 429).' },
  WS_MAX_SOCKETS_PER_USER: { ...int(1, 1000000), default: '50', description: 'Open WebSocket/SSE connections one token subject (sub, else role+tenant) may hold; one more is closed with 4429.' },
  WS_MAX_SUBSCRIPTIONS_PER_SOCKET: { ...int(1, 10000), default: '50', description: 'Subscriptions one WebSocket may run at once; one more is answered with a GraphQL error.' },
  WS_KEEPALIVE_MS: { ...int(1000, 600000), default: '15000', description: 'Interval of WebSocket pings; a client that misses two is disconnected.' },
  WS_IDLE_TIMEOUT_MS: { ...int(1000, 86400000), default: '300000', description: 'A WebSocket without any subscription for this long is closed (4408).' },
  WS_CONNECTION_INIT_TIMEOUT_MS: { ...int(100, 600000), default: '10000', description: 'Time a new WebSocket has to send connection_init with its token (4408 after).' },
  LIVE_READING_INTERVAL_MS: { ...int(100, 3600000), default: '1000',
    description: 'sensorReadingUpdated fires at most once per device per interval (the latest value of each sensor and a count), so NOTIFY is not flooded at high ingest rates. Applied at migrate.' },
  // Alert routing (issue 8): rules are rows of iot.alert_routing_rules; these say how to reach the outside
  SMTP_URL: { ...url('smtp:', 'smtps:'), default: undefined,
    description: 'SMTP server for alert e-mail, e.g. smtp://user:pass@mail.plant.example:587 (smtps: for implicit TLS). Unset: e-mail deliveries wait, counted, until it is set.' },
  ALERT_EMAIL_FROM: { ...text(), default: 'plant-telemetry@localhost', description: 'From address of alert e-mail.' },
  ALERT_SMS_WEBHOOK_URL: { ...url('http:', 'https:'), default: undefined,
    description: 'HTTP endpoint of the SMS gateway: each SMS is a JSON POST {to, text, alertId}. Unset: SMS deliveries wait, counted, until it is set.' },
  ALERT_WEBHOOK_TIMEOUT_MS: { ...int(100, 120000), default: '10000', description: 'Longest an alert webhook or SMS gateway call may take before it counts as failed and is retried.' },
  ALERT_DELIVERY_MAX_ATTEMPTS: { ...int(1, 100), default: '10', description: 'Attempts per alert delivery (exponential backoff between them) before it is marked FAILED.' },
  // Monitoring (issue 8)
  PERF_LOG_FLUSH_MS: { ...int(100, 3600000), default: '10000', description: 'The performance logs (api_performance_log, query_performance_log, system_resource_metrics) are written every this many ms or every PERF_LOG_FLUSH_ROWS rows.' },
  PERF_LOG_FLUSH_ROWS: { ...int(1, 100000), default: '100', description: 'Rows buffered before the performance logs are written.' },
  API_SLOW_QUERY_MS: { ...int(0, 3600000), default: '500', description: 'GraphQL operations slower than this are also written to query_performance_log.' },
} satisfies Record<string, Spec<unknown>>;

type Specs = typeof specs;
export type Config = {
  [K in keyof Specs]: Specs[K]['default'] extends string
    ? NonNullable<ReturnType<Specs[K]['parse']>>
    : ReturnType<Specs[K]['parse']> | undefined;
};

export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const out: Record<string, unknown> = {};
  for (const [name, spec] of Object.entries(specs) as [string, Spec<unknown>][]) {
    const given = env[name];
    const raw = given === undefined || given === '' ? spec.default : given;
    if (raw === undefined) {
      out[name] = undefined;
      continue;
    }
    const value = spec.parse(raw);
    if (value === undefined) throw new ConfigError(name, raw, spec.expected);
    out[name] = value;
  }
  const config = out as Config;
  if (config.SENSOR_TEMPERATURE_MIN >= config.SENSOR_TEMPERATURE_MAX) {
    throw new ConfigError('SENSOR_TEMPERATURE_MIN', String(config.SENSOR_TEMPERATURE_MIN), `a number below SENSOR_TEMPERATURE_MAX (${config.SENSOR_TEMPERATURE_MAX})`);
  }
  if (config.SENSOR_PRESSURE_MIN >= config.SENSOR_PRESSURE_MAX) {
    throw new ConfigError('SENSOR_PRESSURE_MIN', String(config.SENSOR_PRESSURE_MIN), `a number below SENSOR_PRESSURE_MAX (${config.SENSOR_PRESSURE_MAX})`);
  }
  if (config.SENSOR_VIBRATION_MAX <= 0) {
    throw new ConfigError('SENSOR_VIBRATION_MAX', String(config.SENSOR_VIBRATION_MAX), 'a number above 0');
  }
  return config;
}

export interface ConfigNotice {
  level: 'info' | 'warn';
  message: string;
  fields: Record<string, unknown>;
}

/** What a process should say at start about variables that are set but do nothing (yet). */
export function configNotices(config: Config): ConfigNotice[] {
  const notices: ConfigNotice[] = [];
  if (config.REDIS_PUBSUB_URL) {
    notices.push({ level: 'info', message: 'REDIS_PUBSUB_URL is set but not needed: GraphQL subscriptions use PostgreSQL LISTEN/NOTIFY here, no Redis is used', fields: {} });
  }
  if (config.OPCUA_NODE_IDS && !config.OPCUA_ENDPOINT_URL) {
    notices.push({ level: 'warn', message: 'OPCUA_NODE_IDS is set without OPCUA_ENDPOINT_URL: no quick OPC UA device is made', fields: {} });
  }
  return notices;
}

export function configMarkdown(): string {
  const rows = Object.entries(specs).map(
    ([name, s]) => `| \`${name}\` | ${s.default === undefined ? '(unset)' : `\`${s.default}\``} | ${s.description.replace(/\|/g, '\\|')} |`,
  );
  return ['| variable | default | meaning |', '|---|---|---|', ...rows].join('\n');
}

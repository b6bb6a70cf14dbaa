// MQTT ingestor: subscribes with a persistent session, parses each message against the contract,
// hands readings and dead letters to the sink. Back-pressure: while the sink's buffer is full the
// message callback is held, so mqtt.js reads nothing more and the broker keeps the session queue.
// One message is handled at a time, and it is at most maxReadingsPerMessage readings, so the sink
// holds at most INGEST_BUFFER_MAX + INGEST_MAX_READINGS_PER_MESSAGE readings.
import mqtt, { IClientOptions, MqttClient } from 'mqtt';
import { hostname } from 'node:os';
import type { Pool } from 'pg';
import { BrokerWatch, watchBrokerConnection } from '../alerts/broker-watch';
import { logger } from '../lib/log';
import { addSource, counter, pulled } from '../lib/metrics';
import { DEFAULT_LIMITS, IngestLimits, parseMqttMessage } from './mqtt-payload';
import type { RegistryCache } from './registry';
import type { ReadingSink } from './sink';

const log = logger('ingest-mqtt');

export interface MqttIngestOptions {
  brokerUrl: string;
  topics: string[];
  qos: 0 | 1 | 2;
  clientId?: string;
  username?: string;
  password?: string;
  sharedGroup?: string;
  maxFutureSeconds: number;
  /** INGEST_MAX_AGE_DAYS (default 0: no age limit, only the year-2000 floor). */
  maxAgeDays?: number;
  /** INGEST_MAX_MESSAGE_BYTES (default 262144). */
  maxMessageBytes?: number;
  /** INGEST_MAX_READINGS_PER_MESSAGE (default 1000). */
  maxReadingsPerMessage?: number;
  /** Raise the seed's HIGH system alert MQTT_BROKER_CONNECTION_LOST after `graceMs` (default 30 s) without the broker. */
  brokerAlerts?: { pool: Pool; graceMs?: number };
}

export interface MqttIngestStats {
  messages: number;
  connected: boolean;
  paused: boolean;
}

export class MqttIngestor {
  private client: MqttClient | undefined;
  private brokerWatch: BrokerWatch | undefined;
  private inFlight = 0;
  private acksCorked = false;
  private pauses = 0;
  private lastPauseLog = 0;
  private readonly limits: IngestLimits;
  readonly stats: MqttIngestStats = { messages: 0, connected: false, paused: false };

  constructor(
    private readonly options: MqttIngestOptions,
    private readonly registry: RegistryCache,
    private readonly sink: ReadingSink,
  ) {
    this.limits = {
      maxFutureMs: options.maxFutureSeconds * 1000,
      maxAgeMs: options.maxAgeDays === undefined ? DEFAULT_LIMITS.maxAgeMs : options.maxAgeDays * 86_400_000,
      maxMessageBytes: options.maxMessageBytes ?? DEFAULT_LIMITS.maxMessageBytes,
      maxReadingsPerMessage: options.maxReadingsPerMessage ?? DEFAULT_LIMITS.maxReadingsPerMessage,
    };
  }

  async start(): Promise<void> {
    const o = this.options;
    if (!o.topics.some((t) => t.endsWith('#'))) {
      log.info('no topic filter ends in #: messages on topics with a level too many or too few are not received, ' +
        'so not dead-lettered either (MQTT_TOPICS=facility/# receives them)', { filters: o.topics.join(',') });
    }
    const clientOptions: IClientOptions = {
      clientId: o.clientId ?? `iot-ingest-${hostname()}`,
      clean: false, // persistent session: the broker queues QoS 1 messages while we are away
      username: o.username,
      password: o.password,
      reconnectPeriod: 1000,
      connectTimeout: 10_000,
      protocolVersion: o.sharedGroup ? 5 : 4,
      ...(o.sharedGroup ? { properties: { sessionExpiryInterval: 0xffffffff } } : {}),
    };
    const client = mqtt.connect(o.brokerUrl, clientOptions);
    this.client = client;
    if (o.brokerAlerts) {
      this.brokerWatch = watchBrokerConnection(client, o.brokerAlerts.pool, { brokerUrl: redact(o.brokerUrl), graceMs: o.brokerAlerts.graceMs });
    }
    client.handleMessage = (packet, done) => {
      this.batchAcks(client);
      this.stats.messages++;
      mqttMessages.inc();
      this.inFlight++;
      const payload = Buffer.isBuffer(packet.payload) ? packet.payload : Buffer.from(packet.payload);
      this.handle(packet.topic, payload).finally(() => this.inFlight--).then(
        () => done(),
        (error) => {
          // Never crash on one message; keep it as a dead letter instead.
          log.error('message handling failed', { topic: packet.topic, error });
          this.sink.reject([{ source: 'MQTT', topic: packet.topic, payload: payload.subarray(0, 4096).toString('utf8'), rawPayload: payload,
            reason: `ingestor error: ${(error as Error).message}` }]);
          done();
        },
      );
    };
    client.on('connect', (ack) => {
      this.stats.connected = true;
      log.info('connected to broker', { url: redact(o.brokerUrl), sessionPresent: ack.sessionPresent });
      const filters = o.topics.map((t) => (o.sharedGroup ? `$share/${o.sharedGroup}/${t}` : t));
      client.subscribe(filters, { qos: o.qos }, (error, granted) => {
        if (error) log.error('subscribe failed', { error, filters: filters.join(',') });
        else log.info('subscribed', { filters: (granted ?? []).map((g) => `${g.topic}@qos${g.qos}`).join(',') });
      });
    });
    client.on('close', () => {
      if (this.stats.connected && this.client) log.warn('broker connection closed; reconnecting');
      this.stats.connected = false;
    });
    client.on('error', (error) => log.error('broker error', { error }));
    await new Promise<void>((resolve) => {
      if (client.connected) return resolve();
      const ready = () => resolve();
      client.once('connect', ready);
      // Do not block start-up forever when the broker is down: mqtt.js keeps reconnecting.
      const timer = setTimeout(() => {
        client.removeListener('connect', ready);
        if (!client.connected && this.client) log.warn('broker not reachable yet; still trying', { url: redact(o.brokerUrl) });
        resolve();
      }, 5000);
      timer.unref();
      client.once('connect', () => clearTimeout(timer));
    });
  }

  /**
   * The PUBACKs of the messages that arrived together leave together: the socket is corked until
   * the next turn of the event loop, so they go out in one write, not one system call each (which
   * cost more than parsing a one-reading message).
   */
  private batchAcks(client: MqttClient): void {
    const stream = client.stream;
    if (this.acksCorked || typeof stream?.cork !== 'function') return;
    this.acksCorked = true;
    stream.cork();
    setImmediate(() => {
      this.acksCorked = false;
      stream.uncork();
    });
  }

  private async handle(topic: string, payload: Buffer): Promise<void> {
    const ctx = { ...this.limits, registry: this.registry, receivedAt: new Date() };
    let result = parseMqttMessage(topic, payload, ctx);
    if (result.missed && (await this.registry.reloadAfterMiss())) {
      result = parseMqttMessage(topic, payload, ctx);
    }
    this.sink.reject(result.deadLetters);
    if (result.readings.length && !this.sink.add(result.readings)) {
      // Under sustained load this happens many times a second: say so at most every 10 s.
      this.pauses++;
      const now = Date.now();
      if (now - this.lastPauseLog > 10_000) {
        log.warn('buffer full; pausing broker reads until the database catches up',
          { buffered: this.sink.buffered, pausesSinceLastLog: this.pauses, databaseUp: this.sink.stats.databaseUp });
        this.lastPauseLog = now;
        this.pauses = 0;
      }
      this.stats.paused = true;
      await this.sink.wait();
      this.stats.paused = false;
    }
  }

  async stop(): Promise<void> {
    const client = this.client;
    this.client = undefined;
    this.brokerWatch?.stop();
    this.brokerWatch = undefined;
    if (!client) return;
    // Let messages being handled finish (and be acknowledged) before the connection closes.
    const deadline = Date.now() + 5000;
    while (this.inFlight > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    await client.endAsync();
  }
}

// Metrics (src/lib/metrics.ts). Messages/s is PromQL's job: rate(iot_mqtt_messages_total[1m]).
const mqttMessages = counter({ name: 'iot_mqtt_messages_total', help: 'MQTT messages received from the broker by the ingestors of this process.' });
const ingestorMetrics = [
  pulled<MqttIngestor>('counter', { name: 'iot_ingest_mqtt_messages_total', help: 'MQTT messages received' }, (i) => i.stats.messages),
  pulled<MqttIngestor>('gauge', { name: 'iot_ingest_mqtt_connected', help: '1 while connected to the broker' }, (i) => (i.stats.connected ? 1 : 0)),
  pulled<MqttIngestor>('gauge', { name: 'iot_ingest_paused', help: '1 while broker reads are paused for a full buffer' }, (i) => (i.stats.paused ? 1 : 0)),
];

/** Shows this ingestor's connection and pause state on /metrics; returns the removal. */
export function registerMqttMetrics(ingestor: MqttIngestor): () => void {
  return addSource(ingestorMetrics, ingestor);
}

export function redact(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return url;
  }
}

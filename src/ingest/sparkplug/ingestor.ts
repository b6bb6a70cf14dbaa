// Sparkplug B ingestor: its own MQTT client with a persistent session subscribes spBv1.0/# at QoS 1
// (births and data arrive at the QoS the edge nodes publish with, 0 in the Sparkplug spec; DEATHs at
// 1), one message at a time in arrival order (sequence numbers are per edge node and in order).
// BIRTHs register metrics and aliases (node-state.ts, kept on disk by births-file.ts) and their
// values are readings; DATA are readings; DEATHs mark the devices offline and raise one equipment
// event each; an unreadable DATA message or a sequence gap asks the edge node for a rebirth.
// Back-pressure as in the MQTT ingestor: while the sink is full the message callback is held.
// Not for shared subscriptions: one edge node's messages must reach one ingestor, in order.
import mqtt, { IClientOptions, MqttClient } from 'mqtt';
import { hostname } from 'node:os';
import type { Pool } from 'pg';
import { logger } from '../../lib/log';
import { addSource, pulled } from '../../lib/metrics';
import { redact } from '../mqtt';
import type { DeadLetter } from '../reading';
import type { RegistryCache } from '../registry';
import type { ReadingSink } from '../sink';
import { BirthsFile } from './births-file';
import { MappedDevice, SparkplugDirectory } from './directory';
import { SparkplugEvents } from './equipment-events';
import { BirthCertificate, EdgeNodeState, EdgeNodeStates } from './node-state';
import { bdSeqOf, decodeSparkplugPayload, SparkplugPayload } from './payload';
import { metricsToReadings } from './readings';
import { RebirthRequester } from './rebirth';
import { describe, NAMESPACE, parseSparkplugTopic, SparkplugTopic } from './topic';

const log = logger('ingest-sparkplug');

export interface SparkplugIngestOptions {
  brokerUrl: string;
  /** Keep it stable: the broker keeps the persistent session (and queues QoS 1 messages) by client id. */
  clientId?: string;
  username?: string;
  password?: string;
  /** Subscription QoS (default 1). */
  qos?: 0 | 1;
  /** Where birth certificates are kept across restarts (DATA_DIR/sparkplug); none: in memory only. */
  stateDir?: string;
  /** At most one rebirth request per edge node this often (SPARKPLUG_REBIRTH_INTERVAL_MS, default 10 s). */
  rebirthIntervalMs?: number;
  /**
   * How long a missing sequence number may be late before it is a gap (SPARKPLUG_REORDER_TIMEOUT_MS,
   * default 2 s; Sparkplug's "reorder timeout"): a broker resuming a session may deliver queued
   * messages after live ones.
   */
  reorderTimeoutMs?: number;
  /** Publish spBv1.0/STATE/<hostId> as a Sparkplug primary host application (SPARKPLUG_HOST_ID; default none). */
  hostId?: string;
}

export interface SparkplugStats {
  messages: number;
  births: number;
  deaths: number;
  /** NDEATHs whose bdSeq is not the current session's (an older session's will, delivered late). */
  staleDeaths: number;
  readings: number;
  nullMetrics: number;
  unknownAliases: number;
  seqGaps: number;
  /** Messages whose seq was already passed (redeliveries, or later than the reorder timeout). */
  lateMessages: number;
  deadLetters: number;
  /** STATE, NCMD and DCMD messages (ours included): nothing to store. */
  ignored: number;
  connected: boolean;
  paused: boolean;
}

type Message = SparkplugTopic & { topic: string; raw: Buffer; payload: SparkplugPayload };

export class SparkplugIngestor {
  private client: MqttClient | undefined;
  private states = new EdgeNodeStates();
  private births: BirthsFile | undefined;
  private readonly directory: SparkplugDirectory;
  private readonly events: SparkplugEvents;
  private rebirths: RebirthRequester;
  private inFlight = 0;
  private gapTimer: NodeJS.Timeout | undefined;
  private hostState: { topic: string; timestamp: number } | undefined;
  private lastPauseLog = 0;
  readonly stats: SparkplugStats = {
    messages: 0, births: 0, deaths: 0, staleDeaths: 0, readings: 0, nullMetrics: 0, unknownAliases: 0, seqGaps: 0, lateMessages: 0,
    deadLetters: 0, ignored: 0, connected: false, paused: false,
  };

  constructor(private readonly options: SparkplugIngestOptions, private readonly registry: RegistryCache,
              private readonly sink: ReadingSink, pool: Pool) {
    this.directory = new SparkplugDirectory(registry);
    this.events = new SparkplugEvents(pool);
    this.rebirths = new RebirthRequester((topic, payload) => this.publish(topic, payload), options.rebirthIntervalMs ?? 10_000);
  }

  get rebirthRequests(): number {
    return this.rebirths.sent;
  }

  /** Registry devices mapped to Sparkplug edge nodes or devices. */
  get devices(): number {
    return this.directory.devices;
  }

  async start(): Promise<void> {
    const o = this.options;
    if (o.stateDir) {
      this.births = new BirthsFile(o.stateDir, () => this.states);
      this.states = this.births.load();
    }
    const reorderMs = o.reorderTimeoutMs ?? 2000;
    this.gapTimer = setInterval(() => {
      for (const state of this.states.all()) this.checkGap(state, reorderMs);
    }, Math.max(50, Math.min(1000, reorderMs / 2)));
    this.gapTimer.unref();
    const stateTopic = o.hostId ? `${NAMESPACE}/STATE/${o.hostId}` : undefined;
    const stateTimestamp = Date.now();
    if (stateTopic) this.hostState = { topic: stateTopic, timestamp: stateTimestamp };
    const clientOptions: IClientOptions = {
      clientId: o.clientId ?? `iot-sparkplug-${hostname()}`,
      clean: false, // persistent session: the broker queues QoS 1 messages while we are away
      username: o.username,
      password: o.password,
      reconnectPeriod: 1000,
      connectTimeout: 10_000,
      ...(stateTopic ? { will: { topic: stateTopic, payload: Buffer.from(JSON.stringify({ online: false, timestamp: stateTimestamp })), qos: 1, retain: true } } : {}),
    };
    const client = mqtt.connect(o.brokerUrl, clientOptions);
    this.client = client;
    client.handleMessage = (packet, done) => {
      this.stats.messages++;
      this.inFlight++;
      const payload = Buffer.isBuffer(packet.payload) ? packet.payload : Buffer.from(packet.payload);
      this.handle(packet.topic, payload).finally(() => this.inFlight--).then(
        () => done(),
        (error) => {
          log.error('Sparkplug message handling failed; kept as a dead letter', { topic: packet.topic, error });
          this.reject({ topic: packet.topic, raw: payload }, `ingestor error: ${(error as Error).message}`, 'ingestor');
          done();
        },
      );
    };
    client.on('connect', (ack) => {
      this.stats.connected = true;
      log.info('connected to broker for Sparkplug B', { url: redact(o.brokerUrl), sessionPresent: ack.sessionPresent });
      client.subscribe(`${NAMESPACE}/#`, { qos: o.qos ?? 1 }, (error) => {
        if (error) log.error('Sparkplug subscribe failed', { error });
        else if (stateTopic) {
          client.publish(stateTopic, JSON.stringify({ online: true, timestamp: stateTimestamp }), { qos: 1, retain: true });
        }
      });
    });
    client.on('close', () => {
      if (this.stats.connected && this.client) log.warn('broker connection closed; reconnecting (Sparkplug)');
      this.stats.connected = false;
    });
    client.on('error', (error) => log.error('broker error (Sparkplug)', { error }));
    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        if (!client.connected && this.client) log.warn('broker not reachable yet; still trying (Sparkplug)', { url: redact(o.brokerUrl) });
        resolve();
      }, 5000);
      timer.unref();
      client.once('connect', () => {
        clearTimeout(timer);
        resolve();
      });
    });
  }

  private publish(topic: string, payload: Uint8Array): void {
    this.client?.publish(topic, Buffer.from(payload), { qos: 0 });
  }

  private reject(m: { topic: string; raw: Buffer; groupId?: string; edgeNodeId?: string }, reason: string, reasonClass: string, tenantId?: string): void {
    this.stats.deadLetters++;
    const letter: DeadLetter = {
      source: 'MQTT', topic: m.topic, rawPayload: m.raw, reason, reasonClass, tenantId,
      sourceKey: m.groupId ? `sparkplug/${m.groupId}/${m.edgeNodeId}` : 'sparkplug',
    };
    this.sink.reject([letter]);
  }

  private async handle(topic: string, raw: Buffer): Promise<void> {
    const t = parseSparkplugTopic(topic);
    if ('problem' in t) return this.reject({ topic, raw }, t.problem, 'topic');
    if (t.messageType === 'STATE' || t.messageType === 'NCMD' || t.messageType === 'DCMD') {
      this.stats.ignored++;
      return;
    }
    const payload = decodeSparkplugPayload(raw);
    if ('problem' in payload) return this.reject({ topic, raw, ...t }, `${describe(t)} ${t.messageType}: ${payload.problem}`, 'payload');
    const m: Message = { ...t, topic, raw, payload };
    const state = this.states.get(t.groupId, t.edgeNodeId);
    if (t.messageType === 'NDEATH') return this.nodeDeath(m, state);
    if (t.messageType === 'NBIRTH') return this.nodeBirth(m, state);
    this.checkSeq(m, state);
    if (t.messageType === 'DBIRTH') return this.deviceBirth(m, state);
    if (t.messageType === 'DDEATH') return this.deviceDeath(m, state);
    // NDATA, DDATA
    const certificate = t.deviceId === undefined ? state.node : state.devices.get(t.deviceId);
    if (!certificate || !state.online) {
      const why = !state.online && state.node ? 'its edge node is offline (NDEATH seen, no NBIRTH since)'
        : `no ${t.deviceId === undefined ? 'NBIRTH' : 'DBIRTH'} has been seen for it`;
      const asked = this.rebirths.request(t.groupId, t.edgeNodeId);
      this.reject(m, `${describe(t)} ${t.messageType}: ${why}, so its metrics cannot be read${asked ? '; rebirth requested' : ''}`, 'birth');
      return;
    }
    await this.deliver(m, certificate, false);
  }

  private checkSeq(m: Message, state: EdgeNodeState): void {
    const check = state.checkSeq(m.payload.seq);
    if (check === 'late') this.stats.lateMessages++;
    if (check === 'ahead') this.checkGap(state, this.options.reorderTimeoutMs ?? 2000);
  }

  /** A missing sequence number that did not come within the reorder timeout: counted, logged, and a rebirth asked for. */
  private checkGap(state: EdgeNodeState, reorderMs: number): void {
    const gap = state.overdueGap(Date.now(), reorderMs);
    if (!gap) return;
    this.stats.seqGaps++;
    const asked = this.rebirths.request(state.groupId, state.edgeNodeId);
    log.warn('Sparkplug sequence gap: messages from this edge node were lost', {
      edgeNode: describe(state), missingFrom: gap.expected, receivedSince: gap.received.join(','), reorderTimeoutMs: reorderMs, rebirthRequested: asked,
    });
  }

  private async nodeBirth(m: Message, state: EdgeNodeState): Promise<void> {
    this.stats.births++;
    state.nodeBirth(BirthCertificate.fromMetrics(m.payload.metrics), bdSeqOf(m.payload), m.payload.seq);
    this.births?.changed();
    await this.deliver(m, state.node!, true);
  }

  private async deviceBirth(m: Message, state: EdgeNodeState): Promise<void> {
    this.stats.births++;
    const certificate = BirthCertificate.fromMetrics(m.payload.metrics);
    state.devices.set(m.deviceId!, certificate);
    this.births?.changed();
    await this.deliver(m, certificate, true);
  }

  /** A birth's or data message's metrics to the sink, for the registry device it is from. */
  private async deliver(m: Message, certificate: BirthCertificate, birth: boolean): Promise<void> {
    const measured = m.payload.metrics.filter((x) => !(x.name !== undefined && /^(bdSeq$|Node Control\/|Device Control\/)/.test(x.name)));
    if (measured.length === 0 && !birth) return;
    let device = this.directory.device(m.groupId, m.edgeNodeId, m.deviceId);
    if (!device && measured.length === 0) return; // a birth of control metrics only, for no registry device
    if (!device && (await this.registry.reloadAfterMiss())) device = this.directory.device(m.groupId, m.edgeNodeId, m.deviceId);
    if (!device) {
      const key = JSON.stringify({ groupId: m.groupId, edgeNodeId: m.edgeNodeId, ...(m.deviceId === undefined ? {} : { deviceId: m.deviceId }) });
      this.reject(m, `${describe(m)} ${m.messageType}: unknown device: no active MQTT device with channels has connection_config.sparkplug ${key}`, 'registry');
      return;
    }
    const state = this.states.get(m.groupId, m.edgeNodeId);
    if (birth && state.offline.delete(device.deviceId)) {
      this.births?.changed();
      await this.events.record(device, 'SPARKPLUG_ONLINE', `Sparkplug ${describe(m)} (device ${device.deviceCode}) is online again (${m.messageType})`);
    }
    if (measured.length === 0) return;
    const outcome = metricsToReadings(measured, certificate, device, m.payload.timestamp, Date.now(), this.registry);
    this.stats.nullMetrics += outcome.nulls;
    if (outcome.unknownAliases.length) {
      this.stats.unknownAliases += outcome.unknownAliases.length;
      const asked = this.rebirths.request(m.groupId, m.edgeNodeId);
      this.reject(m, `${describe(m)} ${m.messageType}: metric alias${outcome.unknownAliases.length > 1 ? 'es' : ''} ` +
        `${outcome.unknownAliases.join(', ')} not in its birth certificate${asked ? '; rebirth requested' : ''}`, 'alias', device.tenantId);
    }
    const unmapped = birth ? outcome.unmapped : outcome.unmapped.filter((name) => !certificate.byName.has(name));
    if (unmapped.length) {
      this.reject(m, `${describe(m)} ${m.messageType}: device ${device.deviceCode} has no active channel with protocol_address ` +
        `${unmapped.map((n) => JSON.stringify(n)).join(', ')} (unknown metric${unmapped.length > 1 ? 's' : ''})`, 'registry', device.tenantId);
    }
    if (outcome.refused.length) {
      this.reject(m, `${describe(m)} ${m.messageType}: ${outcome.refused.join('; ')}`, 'value', device.tenantId);
    }
    if (!outcome.readings.length) return;
    this.stats.readings += outcome.readings.length;
    if (!this.sink.add(outcome.readings)) {
      const now = Date.now();
      if (now - this.lastPauseLog > 10_000) {
        log.warn('buffer full; pausing Sparkplug reads until the database catches up', { buffered: this.sink.buffered });
        this.lastPauseLog = now;
      }
      this.stats.paused = true;
      await this.sink.wait();
      this.stats.paused = false;
    }
  }

  private async nodeDeath(m: Message, state: EdgeNodeState): Promise<void> {
    const bdSeq = bdSeqOf(m.payload);
    if (state.bdSeq !== undefined && bdSeq !== undefined && bdSeq !== state.bdSeq) {
      this.stats.staleDeaths++;
      log.info('NDEATH of an earlier session ignored (its bdSeq is not the current birth\'s)', { edgeNode: describe(m), bdSeq, current: state.bdSeq });
      return;
    }
    this.stats.deaths++;
    state.nodeDeath();
    log.warn('Sparkplug edge node died (NDEATH): its devices are offline until it is born again', { edgeNode: describe(m), bdSeq });
    for (const device of this.directory.devicesOfNode(m.groupId, m.edgeNodeId)) await this.markOffline(m, state, device, 'SPARKPLUG_NDEATH');
    this.births?.changed();
  }

  private async deviceDeath(m: Message, state: EdgeNodeState): Promise<void> {
    this.stats.deaths++;
    state.devices.delete(m.deviceId!);
    const device = this.directory.device(m.groupId, m.edgeNodeId, m.deviceId);
    log.warn('Sparkplug device died (DDEATH): offline until its next DBIRTH', { device: describe(m) });
    if (device) await this.markOffline(m, state, device, 'SPARKPLUG_DDEATH');
    this.births?.changed();
  }

  private async markOffline(m: Message, state: EdgeNodeState, device: MappedDevice, code: 'SPARKPLUG_NDEATH' | 'SPARKPLUG_DDEATH'): Promise<void> {
    if (state.offline.has(device.deviceId)) return; // one event per outage
    state.offline.add(device.deviceId);
    const what = code === 'SPARKPLUG_NDEATH'
      ? `edge node ${m.groupId}/${m.edgeNodeId} went offline (NDEATH: its MQTT session ended, the broker published its will)`
      : `device ${m.groupId}/${m.edgeNodeId}/${m.deviceId} went offline (DDEATH from its edge node)`;
    await this.events.record(device, code, `Sparkplug ${what}; device ${device.deviceCode} sends no readings until it is born again`,
      { messageType: m.messageType });
  }

  /** Ends the subscription once the message being handled is in the sink (close the sink after this); saves the births. */
  async stop(): Promise<void> {
    const client = this.client;
    this.client = undefined;
    if (this.gapTimer) clearInterval(this.gapTimer);
    if (client) {
      const deadline = Date.now() + 5000;
      while (this.inFlight > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      // A clean disconnect sends no will: say offline ourselves (Sparkplug 3.0 primary host STATE).
      if (this.hostState && client.connected) {
        await client.publishAsync(this.hostState.topic, JSON.stringify({ online: false, timestamp: this.hostState.timestamp }), { qos: 1, retain: true })
          .catch(() => undefined);
      }
      await client.endAsync();
    }
    this.births?.save();
  }
}

const ingestorMetrics = [
  pulled<SparkplugIngestor>('counter', { name: 'iot_ingest_sparkplug_messages_total', help: 'Sparkplug B messages received' }, (i) => i.stats.messages),
  pulled<SparkplugIngestor>('counter', { name: 'iot_ingest_sparkplug_seq_gaps_total', help: 'Sparkplug sequence gaps seen (messages lost or reordered)' }, (i) => i.stats.seqGaps),
  pulled<SparkplugIngestor>('counter', { name: 'iot_ingest_sparkplug_rebirth_requests_total', help: 'Rebirth requests (NCMD Node Control/Rebirth) sent to edge nodes' }, (i) => i.rebirthRequests),
  pulled<SparkplugIngestor>('counter', { name: 'iot_ingest_sparkplug_deaths_total', help: 'NDEATH and DDEATH messages handled' }, (i) => i.stats.deaths),
  pulled<SparkplugIngestor>('gauge', { name: 'iot_ingest_sparkplug_connected', help: '1 while the Sparkplug ingestor is connected to the broker' }, (i) => (i.stats.connected ? 1 : 0)),
];

/** Shows this ingestor's figures on /metrics; returns the removal. */
export function registerSparkplugMetrics(ingestor: SparkplugIngestor): () => void {
  return addSource(ingestorMetrics, ingestor);
}

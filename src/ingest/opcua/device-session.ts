// One OPC UA device: a client, a session and one subscription with a monitored item per channel
// (the channel's NodeId in protocol_address). It reconnects on its own: when the connection, the
// session or the subscription is lost it tears everything down and builds it again with backoff
// (0.5 s doubling to OPCUA_RECONNECT_MAX_MS). A re-created subscription sends each item's current
// value first; when the server has not changed it meanwhile, that is the same (device, sensor,
// source time) as a reading already stored, and the database skips it: no duplicates.
// Registry changes arrive as update(): channels are added, removed or re-addressed on the live
// subscription; a changed endpoint, security or identity makes a new session.
import {
  AttributeIds, ClientMonitoredItem, ClientSession, ClientSubscription, DataChangeFilter, DataChangeTrigger, DataValue, DeadbandType,
  MonitoringMode, OPCUAClient, TimestampsToReturn, UserIdentityInfo, UserTokenType,
} from 'node-opcua-client';
import { resolveNodeId } from 'node-opcua-client';
import { logger } from '../../lib/log';
import type { ChannelInfo } from '../registry';
import type { Reading } from '../reading';
import type { ReadingSink } from '../sink';
import { isReading, readingFromDataValue } from './data-value';
import { itemKey, messageSecurityMode, OpcuaDeviceConfig, securityPolicy, sessionKey } from './device-config';
import type { DeviceRef, EquipmentEvents, OpcuaEventCode } from './equipment-events';
import type { Gate } from './gate';
import { APPLICATION_NAME, applicationUri, OpcuaPki } from './pki';

const log = logger('ingest-opcua');

export interface SessionDeps {
  pki: OpcuaPki;
  sink: ReadingSink;
  events: EquipmentEvents;
  reconnectMinMs: number;
  reconnectMaxMs: number;
  /** Environment the passwords are read from (process.env). */
  env: NodeJS.ProcessEnv;
  counters: OpcuaCounters;
  /** Connection set-ups (secure channel, session, subscription, items) run a few at a time: 200 devices at start are a storm otherwise. */
  connectGate: Gate;
}

export interface OpcuaCounters {
  notifications: number;
  readings: number;
  deadLetters: number;
  reconnects: number;
}

interface Item {
  channel: ChannelInfo;
  nodeId: string;
  monitored?: ClientMonitoredItem;
  /** Taken off by a registry change: what it still sends is for a channel no longer read. */
  removed?: boolean;
}

/** Which equipment event a failure to connect is. */
export function classify(error: unknown): OpcuaEventCode {
  const text = `${(error as Error)?.message ?? error}`;
  if (/BadUserAccessDenied|BadIdentityToken|password|BadUser/i.test(text)) return 'OPCUA_AUTH_FAILED';
  if (/BadCertificate|BadSecurityChecksFailed|certificate/i.test(text)) return 'OPCUA_CERTIFICATE_UNTRUSTED';
  return 'OPCUA_CONNECTION_FAILED';
}

const withTimeout = <T>(p: Promise<T>, ms: number, what: string): Promise<T> =>
  new Promise<T>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms);
    p.then((v) => (clearTimeout(t), resolve(v)), (e) => (clearTimeout(t), reject(e)));
  });

export class DeviceSession {
  private desired = new Map<string, ChannelInfo>(); // sensor type -> channel
  private items = new Map<string, Item>();          // on the current subscription
  private client: OPCUAClient | undefined;
  private session: ClientSession | undefined;
  private subscription: ClientSubscription | undefined;
  private itemsFor = '';
  private loop: Promise<void> | undefined;
  private stopped = false;
  private lose: ((why: string) => void) | undefined;
  private wakeSleep: (() => void) | undefined;
  private restart = false;
  private outage: OpcuaEventCode | undefined;
  private reported = new Set<string>();
  private ops: Promise<void> = Promise.resolve();
  private pending: Reading[] = [];
  private flushScheduled = false;
  private paused = false;
  private lastPublish = 0;
  private watchdog: NodeJS.Timeout | undefined;
  private lastLogged = { code: '', at: 0 };
  connected = false;

  constructor(readonly device: DeviceRef, private config: OpcuaDeviceConfig | string, channels: ChannelInfo[], private readonly deps: SessionDeps) {
    for (const c of channels) this.desired.set(c.sensorType.toUpperCase(), c);
  }

  start(): void {
    this.loop ??= this.run();
  }

  /** A registry change: new settings and channels (applied on the live subscription when possible). */
  update(config: OpcuaDeviceConfig | string, channels: ChannelInfo[]): void {
    const before = this.config;
    this.config = config;
    this.desired = new Map(channels.map((c) => [c.sensorType.toUpperCase(), c]));
    const key = (c: OpcuaDeviceConfig | string) => (typeof c === 'string' ? `bad:${c}` : sessionKey(c));
    if (key(before) !== key(config)) {
      log.info('OPC UA device settings changed; opening a new session', { device: this.device.deviceCode });
      this.restart = true;
      this.lose?.('settings changed');
      this.wakeSleep?.();
      return;
    }
    this.serial(() => this.syncItems());
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.lose?.('stopping');
    this.wakeSleep?.();
    await this.loop;
  }

  private serial(fn: () => Promise<void>): Promise<void> {
    this.ops = this.ops.then(fn).catch((error) => log.warn('OPC UA monitored item change failed', { device: this.device.deviceCode, error }));
    return this.ops;
  }

  private async run(): Promise<void> {
    let delay = this.deps.reconnectMinMs;
    while (!this.stopped) {
      const config = this.config;
      if (typeof config === 'string') {
        await this.raise('OPCUA_CONFIG_INVALID', `OPC UA device ${this.device.deviceCode} is not read: ${config}`, {});
        await this.sleep(3_600_000); // until the registry changes it
        continue;
      }
      let connectedThisTime = false;
      try {
        const lost = new Promise<string>((resolve) => (this.lose = resolve));
        await this.deps.connectGate.run(() => (this.stopped ? Promise.resolve() : this.connect(config)));
        if (this.stopped) continue;
        connectedThisTime = true;
        this.lastLogged = { code: '', at: 0 };
        delay = this.deps.reconnectMinMs;
        this.connected = true;
        log.info('OPC UA device connected', { device: this.device.deviceCode, endpoint: config.endpointUrl,
          security: `${config.securityMode}/${config.securityPolicy}`, items: this.items.size });
        if (this.outage) {
          this.outage = undefined;
          await this.deps.events.record(this.device, 'OPCUA_CONNECTION_RESTORED',
            `OPC UA device ${this.device.deviceCode} is read again from ${config.endpointUrl}`, { endpointUrl: config.endpointUrl });
        }
        const why = await lost;
        if (!this.stopped && !this.restart) {
          this.deps.counters.reconnects++;
          log.warn('OPC UA connection lost; reconnecting', { device: this.device.deviceCode, endpoint: config.endpointUrl, cause: why });
          await this.raise('OPCUA_CONNECTION_LOST',
            `OPC UA device ${this.device.deviceCode}: connection to ${config.endpointUrl} lost (${why}); reconnecting`, { endpointUrl: config.endpointUrl, cause: why });
        }
      } catch (error) {
        if (!this.stopped && !this.restart) {
          const code = classify(error);
          const cause = (error as Error).message?.split('\n')[0] ?? String(error);
          const hint = code === 'OPCUA_AUTH_FAILED' ? ' (check connection_config.username and the password variable connection_config.passwordEnv)'
            : code === 'OPCUA_CERTIFICATE_UNTRUSTED' ? ` (trust the server certificate in ${this.deps.pki.dir}/trusted, and ours on the server)` : '';
          // Said once per cause, then once a minute while it lasts (a 3 a.m. log is not a retry counter).
          const now = Date.now();
          if (code !== this.lastLogged.code || now - this.lastLogged.at > 60_000) {
            log.error(`OPC UA device cannot be read: ${cause}${hint}`, { device: this.device.deviceCode, endpoint: config.endpointUrl, code, retryInMs: delay });
            this.lastLogged = { code, at: now };
          }
          await this.raise(code, `OPC UA device ${this.device.deviceCode}: ${config.endpointUrl}: ${cause}${hint}`,
            { endpointUrl: config.endpointUrl, cause });
        }
      } finally {
        this.connected = false;
        this.lose = undefined;
        await this.teardown();
      }
      if (this.stopped) break;
      if (this.restart) {
        this.restart = false;
        continue;
      }
      await this.sleep(connectedThisTime ? this.deps.reconnectMinMs : delay);
      if (!connectedThisTime) delay = Math.min(delay * 2, this.deps.reconnectMaxMs);
    }
  }

  /** One event per outage: a new one only when the cause changes. */
  private async raise(code: OpcuaEventCode, description: string, metadata: Record<string, unknown>): Promise<void> {
    if (this.outage === code) return;
    if (this.outage === 'OPCUA_CONNECTION_LOST' && code === 'OPCUA_CONNECTION_FAILED') return; // still the same outage
    this.outage = code;
    await this.deps.events.record(this.device, code, description, metadata);
  }

  private sleep(ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const t = setTimeout(done, ms);
      function done() {
        clearTimeout(t);
        resolve();
      }
      this.wakeSleep = done;
    }).finally(() => (this.wakeSleep = undefined)) as Promise<void>;
  }

  private identity(config: OpcuaDeviceConfig): UserIdentityInfo {
    if (!config.username) return { type: UserTokenType.Anonymous };
    const password = this.deps.env[config.passwordEnv!];
    if (password === undefined) throw new Error(`the password variable ${config.passwordEnv} is not set in the ingestor's environment`);
    return { type: UserTokenType.UserName, userName: config.username, password };
  }

  private async connect(config: OpcuaDeviceConfig): Promise<void> {
    const identity = this.identity(config);
    const client = OPCUAClient.create({
      applicationName: APPLICATION_NAME, applicationUri: applicationUri(),
      clientCertificateManager: this.deps.pki.manager, certificateFile: this.deps.pki.certificateFile, privateKeyFile: this.deps.pki.privateKeyFile,
      securityMode: messageSecurityMode(config.securityMode), securityPolicy: securityPolicy(config.securityPolicy),
      endpointMustExist: false,
      // Reconnection is ours (run()): node-opcua tries once, then reports the loss.
      connectionStrategy: { maxRetry: 0, initialDelay: 100, maxDelay: 200 },
      keepSessionAlive: true, requestedSessionTimeout: 60_000,
    });
    this.client = client;
    const lost = (why: string) => () => this.lose?.(why);
    client.on('connection_lost', lost('connection lost'));
    client.on('close', (err?: Error | null) => this.lose?.(err ? err.message : 'connection closed'));
    await withTimeout(client.connect(config.endpointUrl), 20_000, 'connect');
    const session = await withTimeout(client.createSession(identity), 20_000, 'create session');
    this.session = session;
    session.on('keepalive_failure', lost('session keep-alive failed'));
    session.on('session_closed', lost('session closed by the server'));
    const subscription = await withTimeout(session.createSubscription2({
      requestedPublishingInterval: config.publishingIntervalMs, requestedMaxKeepAliveCount: 10, requestedLifetimeCount: 60,
      maxNotificationsPerPublish: 0, publishingEnabled: true, priority: 10,
    }), 20_000, 'create subscription');
    this.subscription = subscription;
    this.lastPublish = Date.now();
    const alive = () => (this.lastPublish = Date.now());
    subscription.on('keepalive', alive);
    subscription.on('received_notifications', alive);
    subscription.on('terminated', lost('subscription terminated'));
    subscription.on('internal_error', (error: Error) => this.lose?.(`subscription error: ${error.message}`));
    // A server that stops answering without closing the connection: no publish response, not even a keep-alive.
    const silentMs = Math.max(10_000, config.publishingIntervalMs * 10 * 3);
    this.watchdog = setInterval(() => {
      if (Date.now() - this.lastPublish > silentMs) this.lose?.(`no publish response for ${silentMs} ms`);
    }, 2000);
    this.watchdog.unref();
    this.items.clear();
    await this.serial(() => this.syncItems());
  }

  /** Brings the subscription's monitored items to the registry's channels. */
  private async syncItems(): Promise<void> {
    const subscription = this.subscription;
    const config = this.config;
    if (!subscription || typeof config === 'string') return;
    const key = itemKey(config);
    const recreate = key !== this.itemsFor;
    this.itemsFor = key;
    for (const [sensor, item] of [...this.items]) {
      const want = this.desired.get(sensor);
      if (!recreate && want && want.protocolAddress?.trim() === item.nodeId) {
        item.channel = want; // scale, offset or unit changes apply to the next value
        continue;
      }
      this.items.delete(sensor);
      item.removed = true;
      await item.monitored?.terminate().catch(() => undefined);
    }
    const adds: Promise<void>[] = [];
    for (const [sensor, channel] of this.desired) if (!this.items.has(sensor)) adds.push(this.addItem(subscription, config, sensor, channel));
    await Promise.all(adds);
  }

  private async addItem(subscription: ClientSubscription, config: OpcuaDeviceConfig, sensor: string, channel: ChannelInfo): Promise<void> {
    const nodeId = channel.protocolAddress?.trim() ?? '';
    const refuse = (why: string) => {
      const k = `${sensor}|${nodeId}|${why}`;
      if (this.reported.has(k)) return;
      this.reported.add(k);
      log.warn('OPC UA channel not read', { device: this.device.deviceCode, sensorType: sensor, nodeId, cause: why });
      void this.deps.events.record(this.device, 'OPCUA_MONITORED_ITEM_REFUSED',
        `OPC UA device ${this.device.deviceCode} channel ${sensor} (${nodeId || 'no protocol_address'}) is not read: ${why}`, { nodeId, sensorType: sensor, cause: why });
    };
    try {
      resolveNodeId(nodeId);
    } catch {
      return refuse(nodeId ? 'protocol_address is not an OPC UA NodeId such as ns=2;s=Press1.Temperature' : 'the channel has no protocol_address (its NodeId)');
    }
    const item: Item = { channel, nodeId };
    this.items.set(sensor, item);
    const deadband = config.deadband;
    const filter = new DataChangeFilter({
      // Without a deadband every new source timestamp counts (a steady value still shows the device is alive).
      trigger: deadband.type === 'None' ? DataChangeTrigger.StatusValueTimestamp : DataChangeTrigger.StatusValue,
      deadbandType: DeadbandType[deadband.type], deadbandValue: deadband.value,
    });
    try {
      const monitored = await subscription.monitor({ nodeId, attributeId: AttributeIds.Value },
        { samplingInterval: config.samplingIntervalMs, queueSize: config.queueSize, discardOldest: true, filter },
        TimestampsToReturn.Both, MonitoringMode.Reporting);
      if (item.removed || this.subscription !== subscription) {
        await monitored.terminate().catch(() => undefined); // removed or replaced meanwhile
        return;
      }
      item.monitored = monitored;
      monitored.on('changed', (dv: DataValue) => this.onValue(item, dv));
      monitored.on('err', (message: string) => refuse(String(message)));
    } catch (error) {
      item.removed = true;
      if (this.items.get(sensor) === item) this.items.delete(sensor);
      if (this.subscription === subscription) refuse((error as Error).message.split('\n')[0]);
    }
  }

  private onValue(item: Item, dv: DataValue): void {
    if (item.removed) return; // a removed channel's last notification
    this.deps.counters.notifications++;
    const r = readingFromDataValue(dv, item.channel, new Date());
    if (!isReading(r)) {
      this.deps.counters.deadLetters++;
      this.deps.sink.reject([r]);
      return;
    }
    this.pending.push(r);
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      setImmediate(() => this.flush()); // one sink.add per publish response, not per value
    }
  }

  private flush(): void {
    this.flushScheduled = false;
    const batch = this.pending;
    if (!batch.length) return;
    this.pending = [];
    this.deps.counters.readings += batch.length;
    if (this.deps.sink.add(batch) || this.paused) return;
    // The sink's buffer is full: ask the server to hold notifications (in the items' queues) until it drains.
    const subscription = this.subscription;
    if (!subscription) return;
    this.paused = true;
    log.warn('sink buffer full; pausing OPC UA publishing until the database catches up', { device: this.device.deviceCode, buffered: this.deps.sink.buffered });
    void subscription.setPublishingMode(false).catch(() => undefined)
      .then(() => this.deps.sink.wait())
      .then(() => (this.subscription === subscription ? subscription.setPublishingMode(true) : undefined))
      .catch(() => undefined)
      .finally(() => (this.paused = false));
  }

  /** Subscription first (the server stops sending), then what arrived goes to the sink, then the session and connection. */
  private async teardown(): Promise<void> {
    if (this.watchdog) clearInterval(this.watchdog);
    this.watchdog = undefined;
    const { client, session, subscription } = this;
    this.subscription = undefined;
    this.session = undefined;
    this.client = undefined;
    this.itemsFor = '';
    await this.ops;
    this.items.clear();
    if (subscription) await withTimeout(subscription.terminate(), 3000, 'terminate subscription').catch(() => undefined);
    this.flush();
    if (session) await withTimeout(session.close(), 3000, 'close session').catch(() => undefined);
    if (client) {
      client.removeAllListeners('close');
      client.removeAllListeners('connection_lost');
      await withTimeout(client.disconnect(), 3000, 'disconnect').catch(() => undefined);
    }
  }
}

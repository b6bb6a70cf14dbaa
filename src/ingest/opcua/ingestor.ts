// OPC UA ingestor: one DeviceSession per active device whose connection_type is OPC_UA, with a
// monitored item per active channel. Registry changes apply without a restart: on every registry
// reload the devices are diffed (added: a new session; disabled or gone: its session closed;
// settings or channels changed: the session updates its items or reconnects). Start and stop like
// the MQTT ingestor; stop() ends every subscription and hands what arrived to the sink, which the
// caller closes after it (so every value the servers handed over is stored).
import type { Pool } from 'pg';
import { logger } from '../../lib/log';
import { addSource, pulled } from '../../lib/metrics';
import type { ChannelInfo, RegistryCache } from '../registry';
import type { ReadingSink } from '../sink';
import { parseDeviceConfig } from './device-config';
import { DeviceSession, OpcuaCounters } from './device-session';
import { Gate } from './gate';
import { EquipmentEvents } from './equipment-events';
import { openPki, OpcuaPki } from './pki';

const log = logger('ingest-opcua');

export interface OpcuaIngestOptions {
  /** DATA_DIR/opcua-pki */
  pkiDir: string;
  /** OPCUA_ACCEPT_UNKNOWN_CERTIFICATES (default false). */
  acceptUnknownCertificates?: boolean;
  /** First retry after a failure (default 500 ms), doubling up to reconnectMaxMs (OPCUA_RECONNECT_MAX_MS, default 30 s). */
  reconnectMinMs?: number;
  reconnectMaxMs?: number;
  /** Devices connecting at the same time (default 8). */
  connectConcurrency?: number;
  env?: NodeJS.ProcessEnv;
}

export class OpcuaIngestor {
  private sessions = new Map<string, DeviceSession>();
  private pki: OpcuaPki | undefined;
  private unlisten: (() => void) | undefined;
  private applying: Promise<void> = Promise.resolve();
  private stopped = false;
  private readonly connectGate: Gate;
  readonly counters: OpcuaCounters = { notifications: 0, readings: 0, deadLetters: 0, reconnects: 0 };

  constructor(private readonly options: OpcuaIngestOptions, private readonly registry: RegistryCache,
              private readonly sink: ReadingSink, private readonly pool: Pool) {
    this.connectGate = new Gate(options.connectConcurrency ?? 8);
  }

  get devices(): number {
    return this.sessions.size;
  }

  get connectedDevices(): number {
    let n = 0;
    for (const s of this.sessions.values()) if (s.connected) n++;
    return n;
  }

  /** The PKI (made on first use), e.g. for a trust step. */
  async openPki(): Promise<OpcuaPki> {
    this.pki ??= await openPki(this.options.pkiDir, this.options.acceptUnknownCertificates);
    return this.pki;
  }

  async start(): Promise<void> {
    await this.openPki();
    this.unlisten = this.registry.onReload(() => void this.apply());
    await this.apply();
    log.info('OPC UA ingestor started', { devices: this.sessions.size, pki: this.pki!.dir });
  }

  /** Diffs the registry's OPC_UA devices against the running sessions. */
  apply(): Promise<void> {
    this.applying = this.applying.then(() => this.applyNow()).catch((error) => log.error('applying registry changes failed', { error }));
    return this.applying;
  }

  private async applyNow(): Promise<void> {
    if (this.stopped) return;
    const byDevice = new Map<string, ChannelInfo[]>();
    for (const c of this.registry.channelsByConnection('OPC_UA')) {
      const list = byDevice.get(c.deviceId) ?? [];
      list.push(c);
      byDevice.set(c.deviceId, list);
    }
    const gone = [...this.sessions].filter(([id]) => !byDevice.has(id));
    for (const [id, session] of gone) {
      this.sessions.delete(id);
      log.info('OPC UA device no longer active in the registry; closing its session', { device: session.device.deviceCode });
    }
    await Promise.all(gone.map(([, s]) => s.stop()));
    for (const [deviceId, channels] of byDevice) {
      const first = channels[0];
      const config = parseDeviceConfig(first.connectionConfig);
      const existing = this.sessions.get(deviceId);
      if (existing) {
        existing.update(config, channels);
        continue;
      }
      const session = new DeviceSession({ deviceId, deviceCode: first.deviceCode, workCenterId: first.workCenterId }, config, channels, {
        pki: this.pki!, sink: this.sink, events: new EquipmentEvents(this.pool),
        reconnectMinMs: this.options.reconnectMinMs ?? 500, reconnectMaxMs: this.options.reconnectMaxMs ?? 30_000,
        env: this.options.env ?? process.env, counters: this.counters, connectGate: this.connectGate,
      });
      this.sessions.set(deviceId, session);
      session.start();
    }
  }

  /** Ends every subscription and session; values received until then are in the sink (close it after this). */
  async stop(): Promise<void> {
    this.stopped = true;
    this.unlisten?.();
    await this.applying;
    const sessions = [...this.sessions.values()];
    this.sessions.clear();
    await Promise.all(sessions.map((s) => s.stop()));
  }
}

const ingestorMetrics = [
  pulled<OpcuaIngestor>('gauge', { name: 'iot_ingest_opcua_devices', help: 'OPC UA devices the ingestor reads (active in the registry)' }, (i) => i.devices),
  pulled<OpcuaIngestor>('gauge', { name: 'iot_ingest_opcua_devices_connected', help: 'OPC UA devices with a live session and subscription' }, (i) => i.connectedDevices),
  pulled<OpcuaIngestor>('counter', { name: 'iot_ingest_opcua_notifications_total', help: 'Monitored-item values received from OPC UA servers' }, (i) => i.counters.notifications),
  pulled<OpcuaIngestor>('counter', { name: 'iot_ingest_opcua_reconnects_total', help: 'OPC UA connections lost and re-established' }, (i) => i.counters.reconnects),
];

/** Shows this ingestor's figures on /metrics; returns the removal. */
export function registerOpcuaMetrics(ingestor: OpcuaIngestor): () => void {
  return addSource(ingestorMetrics, ingestor);
}

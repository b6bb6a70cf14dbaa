// The Modbus TCP ingestor: polls every active device whose connection_type is MODBUS, one
// DevicePoller (connection, timer, timeout) each, and hands the readings to the ReadingSink.
// The registry is re-read whenever it changed (checked at every poll and every second): a channel
// added, re-addressed or removed, a device added, disabled or moved to another host apply at the
// next poll without a restart. Faults become equipment events (faults.ts) after the device's
// faultThreshold failed polls in a row, and one recovery event when it answers again.
import type { Pool } from 'pg';
import { logger } from '../../lib/log';
import type { ChannelInfo, RegistryCache } from '../registry';
import type { DeadLetter, Reading } from '../reading';
import type { ReadingSink } from '../sink';
import { parseModbusAddress } from './address';
import { MODBUS_DEFAULTS, ModbusDefaults, modbusDeviceConfig } from './config';
import { DevicePoller, DeviceSpec } from './device-poller';
import { EventRecorder } from './events';
import { FaultTracker, PollOutcome } from './faults';
import { planReads, PlannedPoint } from './plan';

const log = logger('ingest-modbus');

export interface ModbusPollerOptions extends Partial<ModbusDefaults> {
  /** How often the registry version is checked for new devices (default 1000 ms). */
  registryCheckMs?: number;
}

export interface ModbusPollerStats {
  devices: number;
  polls: number;
  answeredRequests: number;
  failedRequests: number;
  readings: number;
  eventsRaised: number;
  connectedDevices: number;
}

interface DeviceState {
  poller: DevicePoller;
  faults: FaultTracker;
  key: string;
}

export class ModbusPoller {
  private readonly devices = new Map<string, DeviceState>();
  private readonly events: EventRecorder;
  private readonly defaults: ModbusDefaults;
  /** Registry problems already reported (dead letter + warning), as of the last sync. */
  private reported = new Set<string>();
  private reporting = new Set<string>();
  private timer: NodeJS.Timeout | undefined;
  private seenVersion = -1;
  private stopped = false;
  private retired: ModbusPollerStats = { devices: 0, polls: 0, answeredRequests: 0, failedRequests: 0, readings: 0, eventsRaised: 0, connectedDevices: 0 };
  eventsRaised = 0;
  /** Polls that waited for the sink's buffer to drain (the database behind): their devices' next polls came late. */
  sinkWaits = 0;

  constructor(
    pool: Pool,
    private readonly registry: RegistryCache,
    private readonly sink: ReadingSink,
    private readonly options: ModbusPollerOptions = {},
  ) {
    this.events = new EventRecorder(pool);
    this.defaults = {
      pollIntervalMs: options.pollIntervalMs ?? MODBUS_DEFAULTS.pollIntervalMs,
      timeoutMs: options.timeoutMs ?? MODBUS_DEFAULTS.timeoutMs,
      faultThreshold: options.faultThreshold ?? MODBUS_DEFAULTS.faultThreshold,
    };
  }

  /** Starts polling the devices the registry has now (the registry must be started). */
  async start(): Promise<void> {
    this.stopped = false;
    this.sync();
    this.timer = setInterval(() => this.sync(), this.options.registryCheckMs ?? 1000);
    this.timer.unref();
    log.info('Modbus poller started', { devices: this.devices.size });
  }

  /** Applies the registry if it changed since the last look. Cheap when it did not. */
  sync(force = false): void {
    if (this.stopped || (!force && this.registry.version === this.seenVersion)) return;
    this.seenVersion = this.registry.version;
    this.reporting = new Set();
    const byDevice = new Map<string, ChannelInfo[]>();
    for (const c of this.registry.channelsByConnection('MODBUS')) {
      const list = byDevice.get(c.deviceId) ?? [];
      list.push(c);
      byDevice.set(c.deviceId, list);
    }
    for (const [deviceId, state] of this.devices) {
      if (!byDevice.has(deviceId)) {
        this.devices.delete(deviceId);
        void this.retire(state, 'no longer in the registry as an active MODBUS device with channels');
      }
    }
    for (const [deviceId, channels] of byDevice) {
      const spec = this.specFor(channels);
      const state = this.devices.get(deviceId);
      if (!spec) {
        if (state) {
          this.devices.delete(deviceId);
          void this.retire(state, 'its connection_config is not usable');
        }
        continue;
      }
      const key = JSON.stringify([spec.config, spec.blocks.map((b) => [b.table, b.start, b.count, b.points.map((p) => [p.item.sensorType, p.item.scale, p.item.valueOffset, p.item.unit])])]);
      if (state) {
        if (state.key !== key) {
          state.key = key;
          state.poller.update(spec);
          state.faults.threshold = spec.config.faultThreshold;
          log.info('device re-read from the registry', { device: spec.deviceCode, channels: channels.length, requests: spec.blocks.length });
        }
        continue;
      }
      const faults = new FaultTracker(spec.config.faultThreshold);
      const poller = new DevicePoller(spec, {
        beforePoll: () => this.sync(),
        deliver: (readings, letters) => this.deliver(readings, letters),
        outcome: (s, outcome) => this.onOutcome(s, faults, outcome),
      });
      this.devices.set(deviceId, { poller, faults, key });
      poller.start();
      log.info('polling device', { device: spec.deviceCode, host: spec.config.host, port: spec.config.port, unitId: spec.config.unitId,
        intervalMs: spec.config.pollIntervalMs, channels: channels.length, requests: spec.blocks.length });
    }
    // A problem fixed and later made again is reported again.
    this.reported = this.reporting;
  }

  /** The device's connection and read plan, or undefined (and one dead letter) when its config is unusable. */
  private specFor(channels: ChannelInfo[]): DeviceSpec | undefined {
    const first = channels[0];
    const config = modbusDeviceConfig(first.connectionConfig, this.defaults);
    if (typeof config === 'string') {
      this.reportOnce(first, `config:${JSON.stringify(first.connectionConfig)}`, `device ${first.deviceCode} is not polled: ${config}`);
      return undefined;
    }
    const points: PlannedPoint<ChannelInfo>[] = [];
    for (const c of channels) {
      const address = parseModbusAddress(c.protocolAddress);
      if (typeof address === 'string') {
        this.reportOnce(c, `address:${c.sensorType}:${c.protocolAddress}`, `device ${c.deviceCode} channel ${c.sensorType} is not polled: ${address}`);
        continue;
      }
      points.push({ address, item: c });
    }
    return {
      deviceId: first.deviceId, deviceCode: first.deviceCode, tenantId: first.tenantId, workCenterId: first.workCenterId,
      config, blocks: planReads(points, config.maxGap),
    };
  }

  /** A registry entry the poller cannot use: one warning and one dead letter while it stays so. */
  private reportOnce(c: ChannelInfo, what: string, reason: string): void {
    const key = `${c.deviceId}/${what}`;
    this.reporting.add(key);
    if (this.reported.has(key)) return;
    log.warn(reason);
    this.sink.reject([{ source: 'MODBUS', topic: `modbus/${c.deviceCode}`, tenantId: c.tenantId, sourceKey: `modbus/${c.deviceCode}`,
      reasonClass: 'registry', payload: JSON.stringify({ deviceId: c.deviceCode, protocolAddress: c.protocolAddress, connectionConfig: c.connectionConfig }),
      reason }]);
  }

  private async deliver(readings: Reading[], letters: DeadLetter[]): Promise<void> {
    if (letters.length) this.sink.reject(letters);
    if (readings.length && !this.sink.add(readings)) {
      this.sinkWaits++;
      await this.sink.wait();
    }
  }

  private onOutcome(spec: DeviceSpec, faults: FaultTracker, outcome: PollOutcome): void {
    const event = faults.observe(outcome);
    if (!event) return;
    const c = spec.config;
    const description = `Modbus device ${spec.deviceCode} (${c.host}:${c.port} unit ${c.unitId}): ${event.cause}`;
    (event.severity === 'INFO' ? log.info : log.error)(event.severity === 'INFO' ? 'device answers again' : 'device communication fault',
      { device: spec.deviceCode, code: event.eventCode, description });
    this.eventsRaised++;
    this.events.record({ workCenterId: spec.workCenterId, deviceId: spec.deviceId, eventType: event.eventType, severity: event.severity,
      eventCode: event.eventCode, description, metadata: { ...event.metadata, host: c.host, port: c.port, unitId: c.unitId } });
  }

  private async retire(state: DeviceState, why: string): Promise<void> {
    log.info('stopped polling device', { device: state.poller.current.deviceCode, why });
    await state.poller.stop();
    const s = state.poller.stats;
    this.retired.polls += s.polls;
    this.retired.answeredRequests += s.answeredRequests;
    this.retired.failedRequests += s.failedRequests;
    this.retired.readings += s.readings;
  }

  get stats(): ModbusPollerStats {
    const out = { ...this.retired, devices: this.devices.size, eventsRaised: this.eventsRaised, connectedDevices: 0 };
    for (const { poller } of this.devices.values()) {
      out.polls += poller.stats.polls;
      out.answeredRequests += poller.stats.answeredRequests;
      out.failedRequests += poller.stats.failedRequests;
      out.readings += poller.stats.readings;
      if (poller.stats.connected) out.connectedDevices++;
    }
    return out;
  }

  /** Per-device counters, by device code (tests, metrics). */
  deviceStats(deviceCode: string) {
    for (const { poller } of this.devices.values()) if (poller.current.deviceCode === deviceCode) return poller.stats;
    return undefined;
  }

  /**
   * Stops every device's polling. Polls under way finish and hand their readings to the sink first
   * (close the sink after this to write them); pending equipment events are written within `deadlineMs`.
   */
  async stop(deadlineMs = 5000): Promise<void> {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    const states = [...this.devices.values()];
    this.devices.clear();
    await Promise.all(states.map((s) => this.retire(s, 'the poller is stopping')));
    await this.events.flush(deadlineMs);
    this.events.close();
    log.info('Modbus poller stopped', { ...this.stats });
  }
}

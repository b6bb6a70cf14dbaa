// The ingestors' view of the registry: facility, work center, device and channel by code, and the
// reference data payloads are read with (iot.units, iot.unit_aliases, iot.quality_words).
// Loaded whole (a plant has thousands of channels, not millions), reloaded when the database
// says the registry changed (NOTIFY iot_registry_changed from sql/120_registry_notify.sql and sql/115_units.sql),
// on a miss (at most every few seconds, so a newly registered device is seen at once) and
// every minute as a safety net.
import { EventEmitter } from 'node:events';
import type { Pool, PoolClient } from 'pg';
import { logger } from '../lib/log';
import type { Quality } from './reading';

const log = logger('registry');

export interface ChannelInfo {
  tenantId: string;
  deviceId: string;
  deviceCode: string;
  workCenterId: string;
  sensorType: string;
  unit: string;
  protocolAddress: string | null;
  scale: number;
  valueOffset: number;
  connectionType: string;
  connectionConfig: Record<string, unknown>;
}

export interface FacilityInfo {
  tenantId: string;
  facilityId: string;
}

/** A row of iot.units: base = value * toBaseFactor + toBaseOffset. */
export interface UnitInfo {
  unit: string;
  quantity: string;
  toBaseFactor: number;
  toBaseOffset: number;
}

interface Snapshot {
  facilities: Map<string, FacilityInfo>;           // facility_code
  workCenters: Map<string, string>;                 // facilityId/wcCode -> work center id
  channelsByDevice: Map<string, ChannelInfo>;       // tenantId/deviceCode/SENSOR_TYPE
  channelsByWorkCenter: Map<string, ChannelInfo[]>; // workCenterId/SENSOR_TYPE
  channels: ChannelInfo[];
  unitsBySpelling: Map<string, UnitInfo[]>;         // unitKey(unit or alias)
  unitsByFoldedSpelling: Map<string, UnitInfo[]>;   // the same, lower case
  qualityWords: Map<string, Quality>;               // upper(word)
  qualityPrefixes: [string, Quality][];             // upper(word), longest first
}

const empty = (): Snapshot => ({
  facilities: new Map(), workCenters: new Map(), channelsByDevice: new Map(), channelsByWorkCenter: new Map(), channels: [],
  unitsBySpelling: new Map(), unitsByFoldedSpelling: new Map(), qualityWords: new Map(), qualityPrefixes: [],
});

/** How unit spellings are compared: compatibility forms folded (℉ is °F, ² is 2), white space ignored. */
export const unitKey = (text: string) => text.normalize('NFKC').replace(/\s+/g, '');

/** Sensor types match in any case; the registry keys them in the contract's upper case. */
const sensorKey = (sensorType: string) => sensorType.toUpperCase();

/** Converted values are rounded to this many significant digits, so 22.5 °C is 72.5 °F, not 72.49999999999993. */
const CONVERTED_DIGITS = 12;

function addSpelling(map: Map<string, UnitInfo[]>, key: string, unit: UnitInfo): void {
  const list = map.get(key) ?? [];
  if (!list.includes(unit)) list.push(unit);
  map.set(key, list);
}

export class RegistryCache {
  private snapshot: Snapshot = empty();
  private listener: PoolClient | undefined;
  private timer: NodeJS.Timeout | undefined;
  private lastMissReload = 0;
  private loading: Promise<void> | undefined;
  private next: Promise<void> | undefined;
  private stale = false;
  private stopped = false;
  private readonly reloads = new EventEmitter();
  version = 0;

  constructor(private readonly pool: Pool, private readonly missReloadMs = 2000) {}

  async start(): Promise<void> {
    await this.reload();
    await this.listen();
    this.timer = setInterval(() => void this.reload().catch((error) => log.warn('reload failed', { error })), 60_000);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    if (this.listener) {
      const l = this.listener;
      this.listener = undefined;
      l.removeAllListeners('notification');
      await l.query('unlisten *').catch(() => undefined);
      l.release();
    }
  }

  private async listen(): Promise<void> {
    if (this.stopped) return;
    try {
      const client = await this.pool.connect();
      this.listener = client;
      client.on('notification', () => {
        this.stale = true;
        void this.reload().catch((error) => log.warn('reload failed', { error }));
      });
      client.on('error', (error) => {
        log.warn('registry listener lost; will reconnect', { error });
        if (this.listener === client) {
          this.listener = undefined;
          client.release(error);
          if (!this.stopped) setTimeout(() => void this.listen(), 2000).unref();
        }
      });
      await client.query('listen iot_registry_changed');
    } catch (error) {
      if (this.stopped) return;
      log.warn('cannot listen for registry changes yet; retrying', { error });
      setTimeout(() => void this.listen(), 2000).unref();
    }
  }

  /**
   * Reload now. A call during a load waits for one more load after it (shared by all such callers):
   * the load in flight may have read the registry before the change that prompted this call.
   */
  reload(): Promise<void> {
    if (!this.loading) {
      this.loading = this.load().finally(() => (this.loading = undefined));
      return this.loading;
    }
    if (!this.next) {
      const again = () => {
        this.next = undefined;
        return this.reload();
      };
      this.next = this.loading.then(again, again);
    }
    return this.next;
  }

  /** After a miss: reload unless one happened recently. Resolves true if a reload ran. */
  async reloadAfterMiss(): Promise<boolean> {
    if (Date.now() - this.lastMissReload < this.missReloadMs && !this.stale) return false;
    this.lastMissReload = Date.now();
    await this.reload();
    return true;
  }

  private async load(): Promise<void> {
    this.stale = false;
    const { rows } = await this.pool.query(`
      select f.facility_code, f.id as facility_id, f.tenant_id,
             w.id as work_center_id, w.work_center_code,
             d.id as device_id, d.device_code, d.connection_type, d.connection_config,
             c.sensor_type, c.unit, c.protocol_address, c.scale, c.value_offset
      from iot.facilities f
      left join iot.work_centers w on w.facility_id = f.id and w.is_active
      left join iot.iot_devices d on d.work_center_id = w.id and d.is_active
      left join iot.device_channels c on c.device_id = d.id and c.is_active`);
    const units = await this.pool.query(`select unit, quantity, to_base_factor, to_base_offset from iot.units`);
    const aliases = await this.pool.query(`select alias, unit from iot.unit_aliases order by alias`);
    const words = await this.pool.query(`select word, quality, match_prefix from iot.quality_words`);
    const next = empty();
    const byName = new Map<string, UnitInfo>();
    for (const u of units.rows) {
      byName.set(u.unit, { unit: u.unit, quantity: u.quantity, toBaseFactor: u.to_base_factor, toBaseOffset: u.to_base_offset });
    }
    for (const [spelling, unit] of [...[...byName.keys()].map((u) => [u, u]), ...aliases.rows.map((a) => [a.alias, a.unit])]) {
      const info = byName.get(unit)!;
      addSpelling(next.unitsBySpelling, unitKey(spelling), info);
      addSpelling(next.unitsByFoldedSpelling, unitKey(spelling).toLowerCase(), info);
    }
    for (const w of words.rows) {
      const word = String(w.word).toUpperCase();
      if (w.match_prefix) next.qualityPrefixes.push([word, w.quality]);
      next.qualityWords.set(word, w.quality);
    }
    next.qualityPrefixes.sort((a, b) => b[0].length - a[0].length);
    for (const r of rows) {
      next.facilities.set(r.facility_code, { tenantId: r.tenant_id, facilityId: r.facility_id });
      if (r.work_center_id) next.workCenters.set(`${r.facility_id}/${r.work_center_code}`, r.work_center_id);
      if (!r.sensor_type) continue;
      const channel: ChannelInfo = {
        tenantId: r.tenant_id, deviceId: r.device_id, deviceCode: r.device_code, workCenterId: r.work_center_id,
        sensorType: r.sensor_type, unit: r.unit, protocolAddress: r.protocol_address, scale: r.scale,
        valueOffset: r.value_offset, connectionType: r.connection_type, connectionConfig: r.connection_config,
      };
      next.channels.push(channel);
      next.channelsByDevice.set(`${r.tenant_id}/${r.device_code}/${sensorKey(r.sensor_type)}`, channel);
      const key = `${r.work_center_id}/${sensorKey(r.sensor_type)}`;
      const list = next.channelsByWorkCenter.get(key) ?? [];
      list.push(channel);
      next.channelsByWorkCenter.set(key, list);
    }
    this.snapshot = next;
    this.version++;
    this.reloads.emit('reloaded');
    log.debug('registry loaded', { facilities: next.facilities.size, channels: next.channels.length, units: byName.size });
  }

  /**
   * Called after every reload (a registry change, a miss, the safety-net minute), for ingestors
   * that diff the registry against what they run (OPC UA sessions). Returns the removal.
   */
  onReload(listener: () => void): () => void {
    this.reloads.on('reloaded', listener);
    return () => this.reloads.off('reloaded', listener);
  }

  facility(code: string): FacilityInfo | undefined {
    return this.snapshot.facilities.get(code);
  }

  workCenterId(facilityId: string, code: string): string | undefined {
    return this.snapshot.workCenters.get(`${facilityId}/${code}`);
  }

  /** The device's active channel of this sensor type (in any case). */
  channel(tenantId: string, deviceCode: string, sensorType: string): ChannelInfo | undefined {
    return this.snapshot.channelsByDevice.get(`${tenantId}/${deviceCode}/${sensorKey(sensorType)}`);
  }

  /** The work center's active channels of this sensor type (in any case). */
  channelsOf(workCenterId: string, sensorType: string): ChannelInfo[] {
    return this.snapshot.channelsByWorkCenter.get(`${workCenterId}/${sensorKey(sensorType)}`) ?? [];
  }

  /**
   * The units a spelling may name: exactly (white space ignored), else ignoring case. Empty when
   * unknown; more than one when ambiguous (with units mW and MW, a payload's "mw").
   */
  units(spelling: string): UnitInfo[] {
    const key = unitKey(spelling);
    return this.snapshot.unitsBySpelling.get(key) ?? this.snapshot.unitsByFoldedSpelling.get(key.toLowerCase()) ?? [];
  }

  /**
   * `value` given in unit `from`, expressed in unit `to` (a channel's unit), or why it cannot be.
   * `converted` is false when both spellings name the same unit (F and °F).
   */
  convert(value: number, from: string, to: string): { value: number; converted: boolean } | string {
    if (from === to) return { value, converted: false };
    const show = (u: UnitInfo[]) => u.map((x) => JSON.stringify(x.unit)).join(' or ');
    const source = this.units(from);
    if (source.length === 0) return `unit ${JSON.stringify(from)} is not a known unit (see iot.units and iot.unit_aliases)`;
    if (source.length > 1) return `unit ${JSON.stringify(from)} is ambiguous: it may be ${show(source)}`;
    const target = this.units(to);
    if (target.length !== 1) {
      return `unit ${JSON.stringify(from)} cannot be converted to the channel's unit ${JSON.stringify(to)}, which is ` +
        (target.length ? `ambiguous (${show(target)})` : 'not in iot.units or iot.unit_aliases');
    }
    const [a, b] = [source[0], target[0]];
    if (a === b) return { value, converted: false };
    if (a.quantity !== b.quantity) {
      return `unit ${JSON.stringify(from)} (${a.quantity}) cannot be converted to the channel's unit ${JSON.stringify(to)} (${b.quantity})`;
    }
    const out = (value * a.toBaseFactor + a.toBaseOffset - b.toBaseOffset) / b.toBaseFactor;
    if (!Number.isFinite(out)) return `value ${value} ${from} is out of range in ${JSON.stringify(to)}`;
    return { value: Number(out.toPrecision(CONVERTED_DIGITS)), converted: true };
  }

  /** The stored quality a word means (any case): exact words first, then the longest matching prefix. */
  quality(word: string): Quality | undefined {
    const upper = word.trim().toUpperCase();
    return this.snapshot.qualityWords.get(upper) ?? this.snapshot.qualityPrefixes.find(([p]) => upper.startsWith(p))?.[1];
  }

  channelsByConnection(connectionType: string): ChannelInfo[] {
    return this.snapshot.channels.filter((c) => c.connectionType === connectionType);
  }
}

// The ingestors' view of the registry: facility, work center, device and channel by code.
// Loaded whole (a plant has thousands of channels, not millions), reloaded when the database
// says the registry changed (NOTIFY iot_registry_changed from sql/120_registry_notify.sql),
// on a miss (at most every few seconds, so a newly registered device is seen at once) and
// every minute as a safety net.
import type { Pool, PoolClient } from 'pg';
import { logger } from '../lib/log';

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

interface Snapshot {
  facilities: Map<string, FacilityInfo>;           // facility_code
  workCenters: Map<string, string>;                 // facilityId/wcCode -> work center id
  channelsByDevice: Map<string, ChannelInfo>;       // tenantId/deviceCode/sensorType
  channelsByWorkCenter: Map<string, ChannelInfo[]>; // workCenterId/sensorType
  channels: ChannelInfo[];
}

const empty = (): Snapshot => ({
  facilities: new Map(), workCenters: new Map(), channelsByDevice: new Map(), channelsByWorkCenter: new Map(), channels: [],
});

export class RegistryCache {
  private snapshot: Snapshot = empty();
  private listener: PoolClient | undefined;
  private timer: NodeJS.Timeout | undefined;
  private lastMissReload = 0;
  private loading: Promise<void> | undefined;
  private next: Promise<void> | undefined;
  private stale = false;
  private stopped = false;
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
    const next = empty();
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
      next.channelsByDevice.set(`${r.tenant_id}/${r.device_code}/${r.sensor_type}`, channel);
      const key = `${r.work_center_id}/${r.sensor_type}`;
      const list = next.channelsByWorkCenter.get(key) ?? [];
      list.push(channel);
      next.channelsByWorkCenter.set(key, list);
    }
    this.snapshot = next;
    this.version++;
    log.debug('registry loaded', { facilities: next.facilities.size, channels: next.channels.length });
  }

  facility(code: string): FacilityInfo | undefined {
    return this.snapshot.facilities.get(code);
  }

  workCenterId(facilityId: string, code: string): string | undefined {
    return this.snapshot.workCenters.get(`${facilityId}/${code}`);
  }

  channel(tenantId: string, deviceCode: string, sensorType: string): ChannelInfo | undefined {
    return this.snapshot.channelsByDevice.get(`${tenantId}/${deviceCode}/${sensorType}`);
  }

  channelsOf(workCenterId: string, sensorType: string): ChannelInfo[] {
    return this.snapshot.channelsByWorkCenter.get(`${workCenterId}/${sensorType}`) ?? [];
  }

  channelsByConnection(connectionType: string): ChannelInfo[] {
    return this.snapshot.channels.filter((c) => c.connectionType === connectionType);
  }
}

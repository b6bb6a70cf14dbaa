// Sparkplug DEATH certificates as equipment events (iot.record_equipment_event, sql/300), one per
// registry device per outage. event_type ERROR, severity ERROR, event_code SPARKPLUG_NDEATH or
// SPARKPLUG_DDEATH: a DEATH says the link to the edge node (its MQTT session ended, the broker
// published its will) or to the device behind it is gone, a communication fault like
// OPCUA_CONNECTION_LOST and MODBUS_TIMEOUT; not SHUTDOWN, which would claim the machine stopped,
// and nobody knows that. The next birth records SPARKPLUG_ONLINE (WARNING, severity INFO).
import type { Pool } from 'pg';
import { logger } from '../../lib/log';
import type { MappedDevice } from './directory';

const log = logger('ingest-sparkplug');

export type SparkplugEventCode = 'SPARKPLUG_NDEATH' | 'SPARKPLUG_DDEATH' | 'SPARKPLUG_ONLINE';

export class SparkplugEvents {
  constructor(private readonly pool: Pool) {}

  /** Never throws: an event that cannot be written is logged. */
  async record(device: MappedDevice, code: SparkplugEventCode, description: string, metadata: Record<string, unknown> = {}): Promise<void> {
    const [type, severity] = code === 'SPARKPLUG_ONLINE' ? ['WARNING', 'INFO'] : ['ERROR', 'ERROR'];
    try {
      await this.pool.query('select iot.record_equipment_event($1, $2, $3, $4, $5::jsonb, $6, $7)', [
        device.workCenterId, type, description, severity,
        JSON.stringify({ protocol: 'SPARKPLUG_B', ...device.identity, ...metadata }), code, device.deviceId]);
    } catch (error) {
      log.warn('could not record a Sparkplug equipment event', { error, device: device.deviceCode, code });
    }
  }
}

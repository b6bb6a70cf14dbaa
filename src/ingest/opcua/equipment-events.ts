// OPC UA faults as equipment events (iot.record_equipment_event, sql/300_telemetry_api.sql): one per
// outage, not one per retry. ERROR for a device the ingestor cannot read (connection lost or refused,
// a wrong password, an untrusted certificate, a bad configuration), WARNING for a degraded one (a
// channel whose node the server refuses), INFO when a device that had an ERROR is read again.
import type { Pool } from 'pg';
import { logger } from '../../lib/log';

const log = logger('ingest-opcua');

export type OpcuaEventCode =
  | 'OPCUA_CONNECTION_LOST' | 'OPCUA_CONNECTION_FAILED' | 'OPCUA_AUTH_FAILED' | 'OPCUA_CERTIFICATE_UNTRUSTED'
  | 'OPCUA_CONFIG_INVALID' | 'OPCUA_MONITORED_ITEM_REFUSED' | 'OPCUA_CONNECTION_RESTORED';

export interface DeviceRef {
  deviceId: string;
  deviceCode: string;
  workCenterId: string;
}

export class EquipmentEvents {
  constructor(private readonly pool: Pool) {}

  /** Never throws: an event that cannot be written is logged (the outage itself is already in the log). */
  async record(device: DeviceRef, code: OpcuaEventCode, description: string, metadata: Record<string, unknown> = {}): Promise<void> {
    const [type, severity] = code === 'OPCUA_CONNECTION_RESTORED' ? ['WARNING', 'INFO']
      : code === 'OPCUA_MONITORED_ITEM_REFUSED' ? ['WARNING', 'WARNING'] : ['ERROR', 'ERROR'];
    try {
      await this.pool.query('select iot.record_equipment_event($1, $2, $3, $4, $5::jsonb, $6, $7)',
        [device.workCenterId, type, description, severity, JSON.stringify({ protocol: 'OPC_UA', ...metadata }), code, device.deviceId]);
    } catch (error) {
      log.warn('could not record an OPC UA equipment event', { error, device: device.deviceCode, code });
    }
  }
}

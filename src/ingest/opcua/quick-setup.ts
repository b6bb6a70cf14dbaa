// The seed's quick single-server set-up: OPCUA_ENDPOINT_URL and OPCUA_NODE_IDS become one registry
// device (device code `opcua-quick`, connection_type OPC_UA, endpointUrl = OPCUA_ENDPOINT_URL) whose
// channels are those NodeIds. A NodeId's last name part is its sensor type (ns=2;s=Press1.Temperature
// -> TEMPERATURE; it must be a row of iot.sensor_types; the channel's unit is that type's default).
// The device sits on the work center OPCUA_WORK_CENTER names (FACILITY/WORKCENTER), or on the only
// work center when there is one. Run at every start: the device follows the variables (NodeIds no
// longer listed are deactivated). From then on it is an ordinary OPC UA device of the registry.
import type { Pool } from 'pg';
import { logger } from '../../lib/log';

const log = logger('ingest-opcua');
export const QUICK_DEVICE_CODE = 'opcua-quick';

export function sensorTypeOfNodeId(nodeId: string): string | undefined {
  const m = /;s=(.+)$/.exec(nodeId);
  if (!m) return undefined;
  const last = m[1].split(/[./]/).pop() ?? '';
  return /^[A-Za-z][A-Za-z0-9_]{0,62}$/.test(last) ? last.toUpperCase() : undefined;
}

/** Registers (or updates) the quick device; returns its id, or why it could not. */
export async function applyQuickOpcuaSetup(pool: Pool, endpointUrl: string, nodeIds: string[], workCenter?: string): Promise<string | { problem: string }> {
  const wc = await pool.query<{ id: string; tenant_id: string }>(workCenter
    ? `select w.id, w.tenant_id from iot.work_centers w join iot.facilities f on f.id = w.facility_id
        where f.facility_code || '/' || w.work_center_code = $1 and w.is_active`
    : `select id, tenant_id from iot.work_centers where is_active`, workCenter ? [workCenter] : []);
  if (wc.rows.length !== 1) {
    const problem = workCenter ? `OPCUA_WORK_CENTER ${workCenter} names no active work center (FACILITY/WORKCENTER)`
      : `OPCUA_ENDPOINT_URL needs OPCUA_WORK_CENTER (FACILITY/WORKCENTER): there are ${wc.rows.length} work centers`;
    log.error(`quick OPC UA set-up not applied: ${problem}`, { endpoint: endpointUrl });
    return { problem };
  }
  const known = new Set((await pool.query<{ t: string }>(`select upper(sensor_type) as t from iot.sensor_types`)).rows.map((r) => r.t));
  const channels = new Map<string, string>();
  for (const id of nodeIds) {
    const type = sensorTypeOfNodeId(id);
    if (!type || !known.has(type)) log.error('OPCUA_NODE_IDS entry skipped: its last name part is not a sensor type of iot.sensor_types', { nodeId: id, known: [...known].join(',') });
    else if (channels.has(type)) log.error('OPCUA_NODE_IDS entry skipped: a second NodeId for the same sensor type', { nodeId: id, sensorType: type });
    else channels.set(type, id);
  }
  const { id: workCenterId, tenant_id: tenantId } = wc.rows[0];
  const client = await pool.connect();
  try {
    await client.query('begin');
    const d = await client.query<{ id: string }>(
      `insert into iot.iot_devices (tenant_id, work_center_id, device_code, device_type, connection_type, connection_config)
       values ($1, $2, $3, 'SENSOR', 'OPC_UA', $4)
       on conflict (tenant_id, device_code) do update set work_center_id = excluded.work_center_id, connection_type = 'OPC_UA',
         connection_config = iot.iot_devices.connection_config || excluded.connection_config, is_active = true
       returning id`, [tenantId, workCenterId, QUICK_DEVICE_CODE, { endpointUrl }]);
    const deviceId = d.rows[0].id;
    await client.query(`update iot.device_channels set is_active = false where device_id = $1 and not (upper(sensor_type) = any ($2::text[]))`,
      [deviceId, [...channels.keys()]]);
    for (const [type, nodeId] of channels) {
      await client.query(
        `insert into iot.device_channels (tenant_id, device_id, sensor_type, unit, protocol_address)
         select $1, $2, s.sensor_type, s.default_unit, $4 from iot.sensor_types s where upper(s.sensor_type) = $3
         on conflict (device_id, sensor_type) do update set protocol_address = excluded.protocol_address, is_active = true`,
        [tenantId, deviceId, type, nodeId]);
    }
    await client.query('commit');
    log.info('quick OPC UA set-up applied', { device: QUICK_DEVICE_CODE, endpoint: endpointUrl, channels: channels.size });
    return deviceId;
  } catch (error) {
    await client.query('rollback').catch(() => undefined);
    throw error;
  } finally {
    client.release();
  }
}

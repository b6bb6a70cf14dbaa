// The demo plant speaks every protocol the product reads: most work centers publish MQTT JSON, and
// three are moved to the other protocols, each served by its simulator on loopback and registered
// as such, so `npm start` shows OPC UA, Modbus TCP and Sparkplug B readings beside MQTT ones.
//   RTM PRESS-01 -> OPC UA (an in-process node-opcua server), RTM CUTT-01 -> Modbus TCP (one
//   simulated PLC per device), ATL BIND-02 -> Sparkplug B edge node on the same broker.
import type { Pool } from 'pg';
import { logger } from '../lib/log';
import { freePort } from '../lib/embedded/ports';
import { DEMO_FACILITIES, DEMO_TENANT, DemoFacility } from './demo-plant';

const log = logger('demo');

const MOVED: Record<string, { facility: string; workCenter: string }> = {
  OPC_UA: { facility: 'RTM', workCenter: 'PRES-01' },
  MODBUS: { facility: 'RTM', workCenter: 'CUTT-01' },
  SPARKPLUG: { facility: 'ATL', workCenter: 'BIND-02' },
};

/** The demo facilities cut down to one work center, or with those work centers left out. */
function pick(only: { facility: string; workCenter: string }[], keep: boolean): DemoFacility[] {
  const chosen = (f: DemoFacility, code: string) => only.some((o) => o.facility === f.code && o.workCenter === code);
  return DEMO_FACILITIES
    .map((f) => ({ ...f, workCenters: f.workCenters.filter((w) => chosen(f, w.code) === keep) }))
    .filter((f) => f.workCenters.length);
}

export interface DemoProtocols {
  /** The facilities (and work centers) the MQTT JSON simulator still publishes. */
  mqttFacilities: DemoFacility[];
  /**
   * Starts the publishers that need the ingestors listening first: a Sparkplug edge node's births
   * sent before the Sparkplug ingestor subscribed would be lost (its data then waits for a rebirth).
   */
  startPublishers(): Promise<void>;
  stop(): Promise<void>;
}

export async function startDemoProtocols(pool: Pool, tenantId: string, brokerUrl: string, intervalMs: number): Promise<DemoProtocols> {
  const stops: (() => Promise<void>)[] = [];
  const moved: { facility: string; workCenter: string }[] = [];
  const attempt = async (name: string, start: () => Promise<void>) => {
    try {
      await start();
      moved.push(MOVED[name]);
    } catch (error) {
      // A simulator that cannot start (a port taken) leaves its work center on MQTT JSON.
      log.warn(`demo: ${name} simulator not started; its work center stays on MQTT`, { error });
    }
  };

  await attempt('OPC_UA', async () => {
    const { startOpcuaSimServer, simNodeId } = await import('./opcua-server.js');
    const facilities = pick([MOVED.OPC_UA], true);
    const server = await startOpcuaSimServer({ port: await freePort(), facilities, intervalMs });
    stops.push(() => server.stop());
    for (const d of facilities.flatMap((f) => f.workCenters.flatMap((w) => w.devices))) {
      const r = await pool.query<{ id: string }>(
        `update iot.iot_devices set connection_type = 'OPC_UA', connection_config = $3
          where tenant_id = $1 and device_code = $2 returning id`,
        [tenantId, d.deviceCode, JSON.stringify({ endpointUrl: server.endpointUrl, securityMode: 'None', samplingIntervalMs: intervalMs })]);
      for (const c of d.channels) {
        await pool.query(`update iot.device_channels set protocol_address = $3 where device_id = $1 and sensor_type = $2`,
          [r.rows[0]?.id, c.sensorType, simNodeId(d.deviceCode, c.sensorType)]);
      }
    }
  });
  await attempt('MODBUS', async () => {
    const { ModbusPlant, registerModbusPlant } = await import('./modbus-server.js');
    const plant = new ModbusPlant({ facilities: pick([MOVED.MODBUS], true), rate: 1000 / intervalMs, host: '127.0.0.1' });
    await plant.start();
    stops.push(() => plant.stop());
    await registerModbusPlant(pool, tenantId, plant, intervalMs);
  });
  const late: (() => Promise<void>)[] = [];
  await attempt('SPARKPLUG', async () => {
    const { SparkplugPlant, registerSparkplugDemoPlant } = await import('./sparkplug-node.js');
    const facilities = pick([MOVED.SPARKPLUG], true);
    await registerSparkplugDemoPlant(pool, facilities, DEMO_TENANT.code);
    const plant = new SparkplugPlant({ brokerUrl, facilities, intervalMs, dataQos: 1 });
    let started = false;
    late.push(async () => {
      await plant.start();
      started = true;
    });
    stops.push(async () => {
      if (started) await plant.stop();
    });
  });
  log.info('demo plant: work centers on other protocols', { moved: moved.map((m) => `${m.facility}/${m.workCenter}`).join(', ') });
  return {
    mqttFacilities: pick(moved, false),
    async startPublishers() {
      for (const start of late) await start().catch((error) => log.warn('demo publisher did not start', { error }));
    },
    async stop() {
      for (const stop of stops.reverse()) await stop().catch((error) => log.warn('demo simulator stop failed', { error }));
    },
  };
}

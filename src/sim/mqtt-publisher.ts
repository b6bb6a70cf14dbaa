// Publishes the simulated plant to an MQTT broker on the ingest contract's topics.
import mqtt from 'mqtt';
import { logger } from '../lib/log';
import { DEMO_FACILITIES, DemoFacility } from './demo-plant';
import { PlantSimulator } from './plant-simulator';

const log = logger('simulator');

export interface SimulatorHandle {
  published(): number;
  stop(): Promise<void>;
}

export async function startMqttSimulator(brokerUrl: string, intervalMs: number, auth: { username?: string; password?: string } = {},
  facilities: DemoFacility[] = DEMO_FACILITIES): Promise<SimulatorHandle> {
  const client = await mqtt.connectAsync(brokerUrl, {
    clientId: `iot-simulator-${process.pid}`, reconnectPeriod: 1000, ...auth,
  });
  const sim = new PlantSimulator(facilities);
  let count = 0;
  let busy = false;
  const timer = setInterval(() => {
    if (busy || !client.connected) return; // skip a tick rather than pile up
    busy = true;
    const readings = sim.tick(new Date(), intervalMs / 1000);
    Promise.all(readings.map((r) => client.publishAsync(r.topic, JSON.stringify(r.payload), { qos: 1 })))
      .then(() => (count += readings.length))
      .catch((error) => log.warn('publish failed', { error }))
      .finally(() => (busy = false));
  }, intervalMs);
  log.info('demo plant publishing', { broker: brokerUrl, intervalMs });
  return {
    published: () => count,
    async stop() {
      clearInterval(timer);
      await client.endAsync();
    },
  };
}

// The broker for a suite: TEST_MQTT_URL (mosquitto in CI) or a fresh in-process aedes.
import { startEmbeddedBroker } from '../../src/lib/embedded/broker';

export async function testBroker(): Promise<{ url: string; kind: string; stop(): Promise<void> }> {
  if (process.env.TEST_MQTT_URL) return { url: process.env.TEST_MQTT_URL, kind: 'external', stop: async () => undefined };
  const b = await startEmbeddedBroker(0);
  return { url: b.url, kind: 'aedes', stop: () => b.stop() };
}

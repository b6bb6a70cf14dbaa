// The broker for a suite: TEST_MQTT_URL (mosquitto in CI) or a fresh in-process aedes.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import type { MqttClient } from 'mqtt';
import { startEmbeddedBroker } from '../../src/lib/embedded/broker';

export async function testBroker(): Promise<{ url: string; kind: string; stop(): Promise<void> }> {
  if (process.env.TEST_MQTT_URL) return { url: process.env.TEST_MQTT_URL, kind: 'external', stop: async () => undefined };
  const b = await startEmbeddedBroker(0);
  return { url: b.url, kind: 'aedes', stop: () => b.stop() };
}

/** Publishes at QoS 1 with mosquitto_pub where it is installed (as a device would), else with mqtt.js. */
export async function publishAsDevice(brokerUrl: string, fallback: MqttClient, topic: string, payload: string): Promise<string> {
  const url = new URL(brokerUrl);
  try {
    // Asynchronously: the in-process broker must keep running while mosquitto_pub talks to it.
    await promisify(execFile)('mosquitto_pub', ['-h', url.hostname, '-p', url.port, '-q', '1', '-t', topic, '-m', payload]);
    return 'mosquitto_pub';
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
    await fallback.publishAsync(topic, payload, { qos: 1 });
    return 'mqtt.js';
  }
}

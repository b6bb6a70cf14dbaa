// Publishes `messages` MQTT messages of `perMessage` readings each, spread over the channels it is
// given, as fast as the broker takes them (QoS 1, a window of unacknowledged publishes).
import mqtt from 'mqtt';

interface Job { url: string; channels: { topic: string; deviceId: string }[]; messages: number; perMessage: number; t0: number; qos: 0 | 1 }

process.once('message', async (job: Job) => {
  const client = await mqtt.connectAsync(job.url, { clientId: `bench-pub-${process.pid}` });
  const started = Date.now();
  const window = 500;
  let inFlight: Promise<unknown>[] = [];
  for (let m = 0; m < job.messages; m++) {
    const ch = job.channels[m % job.channels.length];
    const base = job.t0 + Math.floor(m / job.channels.length) * job.perMessage;
    const payload = job.perMessage === 1
      ? JSON.stringify({ deviceId: ch.deviceId, value: m % 100, timestamp: new Date(base).toISOString() })
      : JSON.stringify(Array.from({ length: job.perMessage }, (_, i) => ({ deviceId: ch.deviceId, value: (m + i) % 100, timestamp: new Date(base + i).toISOString() })));
    inFlight.push(client.publishAsync(ch.topic, payload, { qos: job.qos }));
    if (inFlight.length >= window) {
      await Promise.all(inFlight);
      inFlight = [];
    }
  }
  await Promise.all(inFlight);
  process.send?.({ publishMs: Date.now() - started });
  await client.endAsync();
  process.exit(0);
});

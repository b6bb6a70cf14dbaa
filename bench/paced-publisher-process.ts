// Publishes readings at a steady rate for a while: every 10 ms, the readings due by then, one MQTT
// message per reading (the topic names the sensor), each stamped with the moment it is published
// (the latency benchmark compares the receipt of sensorReadingUpdated with that stamp; one clock,
// one machine). QoS 0, so the publisher's own acknowledgements do not pace it. Values are a plant's
// (bench/plant-values.ts); before, every reading was out of range and each batch ran the full event detector.
import mqtt from 'mqtt';
import { plantValues } from './plant-values';

interface Channel { topic: string; deviceId: string }
interface Job { url: string; channels: Channel[]; readingsPerSecond: number; seconds: number }

process.once('message', async (job: Job) => {
  const client = await mqtt.connectAsync(job.url, { clientId: `bench-paced-${process.pid}` });
  const started = Date.now();
  let sent = 0;
  let next = 0;
  const valueOf = plantValues(job.channels); // a plant's values: in range, 1 channel in 100 drifting out
  await new Promise<void>((done) => {
    const tick = setInterval(() => {
      const elapsed = Date.now() - started;
      if (elapsed >= job.seconds * 1000) {
        clearInterval(tick);
        done();
        return;
      }
      const due = Math.floor((elapsed / 1000) * job.readingsPerSecond);
      const timestamp = new Date().toISOString();
      for (; sent < due; sent++, next++) {
        const i = next % job.channels.length;
        const c = job.channels[i];
        const value = valueOf(i, Math.floor(next / job.channels.length));
        client.publish(c.topic, JSON.stringify({ deviceId: c.deviceId, value: Number(value.toFixed(3)), timestamp }), { qos: 0 });
      }
    }, 10);
  });
  process.send?.({ readings: sent, seconds: (Date.now() - started) / 1000 });
  await client.endAsync();
  process.exit(0);
});

// Publishes readings at a steady rate for a while: every 10 ms, the readings due by then, one MQTT
// message per reading (the topic names the sensor), each stamped with the moment it is published
// (the latency benchmark compares the receipt of sensorReadingUpdated with that stamp; one clock,
// one machine). QoS 0, so the publisher's own acknowledgements do not pace it.
import mqtt from 'mqtt';

interface Channel { topic: string; deviceId: string }
interface Job { url: string; channels: Channel[]; readingsPerSecond: number; seconds: number }

process.once('message', async (job: Job) => {
  const client = await mqtt.connectAsync(job.url, { clientId: `bench-paced-${process.pid}` });
  const started = Date.now();
  let sent = 0;
  let next = 0;
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
      for (; sent < due; sent++) {
        const c = job.channels[next++ % job.channels.length];
        client.publish(c.topic, JSON.stringify({ deviceId: c.deviceId, value: 50 + (sent % 10), timestamp }), { qos: 0 });
      }
    }, 10);
  });
  process.send?.({ readings: sent, seconds: (Date.now() - started) / 1000 });
  await client.endAsync();
  process.exit(0);
});

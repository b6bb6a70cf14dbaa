// bench:ingest's publisher (a child process): MQTT JSON messages of `perMessage` readings over the
// bench plant's channels, as fast as the broker takes them (QoS 1, a window of unacknowledged
// publishes), or paced at `rate` readings/s for `seconds` (the long run). Values are a plant's:
// inside each sensor type's normal range with noise, and a few channels drifting out of range for
// a while (about 1 in 100 at any time), so event detection has excursions to find. Timestamps are
// live (now), strictly increasing per channel, so nothing is a duplicate across runs.
import mqtt from 'mqtt';
import { plantValues } from './plant-values';

interface Job {
  url: string;
  channels: { topic: string; deviceId: string }[];
  messages: number;
  perMessage: number;
  qos: 0 | 1;
  /** Paced mode: readings per second, for `seconds` (messages is then ignored). */
  rate?: number;
  seconds?: number;
}

process.once('message', async (job: Job) => {
  const client = await mqtt.connectAsync(job.url, { clientId: `bench-pub-${process.pid}` });
  const last = new Array<number>(job.channels.length).fill(0);
  const valueOf = plantValues(job.channels);
  const payloadFor = (m: number) => {
    const c = m % job.channels.length;
    const ch = job.channels[c];
    const items: string[] = [];
    for (let i = 0; i < job.perMessage; i++) {
      const t = Math.max(Date.now(), last[c] + 1);
      last[c] = t;
      const value = valueOf(c, Math.floor(m / job.channels.length));
      items.push(`{"deviceId":"${ch.deviceId}","value":${value.toFixed(3)},"timestamp":"${new Date(t).toISOString()}"}`);
    }
    return job.perMessage === 1 ? items[0] : `[${items.join(',')}]`;
  };
  const started = Date.now();
  const window = 500;
  let inFlight: Promise<unknown>[] = [];
  let sent = 0;
  const paced = job.rate !== undefined && job.seconds !== undefined;
  const total = paced ? Math.ceil((job.rate! * job.seconds!) / job.perMessage) : job.messages;
  for (let m = 0; m < total; m++) {
    if (paced) {
      // Keep to the rate: never more than rate * elapsed readings published.
      const due = ((Date.now() - started) / 1000) * job.rate!;
      if (sent * job.perMessage > due) await new Promise((r) => setTimeout(r, Math.ceil(((sent * job.perMessage - due) / job.rate!) * 1000)));
    }
    inFlight.push(client.publishAsync(job.channels[m % job.channels.length].topic, payloadFor(m), { qos: job.qos }));
    sent++;
    if (inFlight.length >= window) {
      await Promise.all(inFlight);
      inFlight = [];
    }
  }
  await Promise.all(inFlight);
  process.send?.({ publishMs: Date.now() - started, messages: sent, readings: sent * job.perMessage });
  await client.endAsync();
  process.exit(0);
});

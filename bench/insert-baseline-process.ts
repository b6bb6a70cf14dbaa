// bench:ingest's baseline (a child): what a plain Node-RED flow does, "mqtt in" -> "postgres" with
// one INSERT per message and no batching. Each message is acknowledged when it arrives and its
// INSERT handed to a pool of 4 connections (as Node-RED's postgres node queues it), at most 2,000
// waiting (beyond that the broker is not read, or memory would grow without bound).
import mqtt from 'mqtt';
import { Pool } from 'pg';

interface Job { dbUrl: string; brokerUrl: string; clientId: string; tenantId: string; devices: Record<string, string>; units: Record<string, string> }

process.once('message', async (job: Job) => {
  const pool = new Pool({ connectionString: job.dbUrl, max: 4 });
  let stored = 0;
  let failed = 0;
  let waiting = 0;
  let peakRss = 0;
  let resume: (() => void) | undefined;
  const client = await mqtt.connectAsync(job.brokerUrl, { clientId: job.clientId, clean: true });
  client.handleMessage = (packet, done) => {
    const type = packet.topic.slice(packet.topic.lastIndexOf('/') + 1);
    const body = JSON.parse(packet.payload.toString());
    const items: { deviceId: string; value: number; timestamp: string }[] = Array.isArray(body) ? body : [body];
    const values: unknown[] = [];
    const rows = items.map((r, i) => {
      values.push(r.timestamp, job.tenantId, job.devices[r.deviceId], type, r.value, job.units[type]);
      const p = i * 6;
      return `($${p + 1}, $${p + 2}, $${p + 3}, $${p + 4}, $${p + 5}, $${p + 6}, 'GOOD')`;
    });
    waiting++;
    pool.query(`insert into iot_private.sensor_readings (time, tenant_id, device_id, sensor_type, value, unit, quality) values ${rows.join(', ')} on conflict do nothing`, values)
      .then((r) => (stored += r.rowCount ?? 0), () => failed++)
      .finally(() => {
        waiting--;
        if (waiting < 2000 && resume) {
          const r = resume;
          resume = undefined;
          r();
        }
      });
    if (waiting < 2000) done();
    else resume = done;
  };
  await client.subscribeAsync('facility/+/workcenter/+/sensor/+', { qos: 1 });
  const timer = setInterval(() => {
    peakRss = Math.max(peakRss, process.memoryUsage().rss);
    process.send?.({ kind: 'stats', stored, failed, peakRss });
  }, 100);
  process.on('message', async (m: { kind: string }) => {
    if (m.kind !== 'stop') return;
    clearInterval(timer);
    await client.endAsync();
    await pool.end();
    process.send?.({ kind: 'stats', stored, failed, peakRss });
    process.send?.({ kind: 'stopped' }, () => process.exit(0));
  });
  process.send?.({ kind: 'ready' });
});

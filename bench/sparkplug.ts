// Sparkplug B bench: readings/s stored end to end (edge nodes in a child process -> broker ->
// Sparkplug ingestor -> COPY sink -> sensor_readings), beside the raw COPY ceiling of the same
// database in the same run. Each edge node has one device with 5 metrics; each DDATA carries
// BENCH_SPARKPLUG_SAMPLES samples of every metric (alias only, no datatype, as Sparkplug says), so
// a message is 5 x samples readings. Not a test: it prints figures.
// This one file is also the publisher (run as a child process with SPARKPLUG_BENCH_ROLE=publisher).
import { fork } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mqtt, { MqttClient } from 'mqtt';
import { Pool } from 'pg';
import { get as sparkplugPayload } from 'sparkplug-payload';
import { org } from 'sparkplug-payload/lib/sparkplugPayloadProto';
import { RegistryCache } from '../src/ingest/registry';
import { ReadingSink } from '../src/ingest/sink';
import { SparkplugIngestor } from '../src/ingest/sparkplug/ingestor';
import { setLogLevel } from '../src/lib/log';
import { benchBroker, benchDatabase, copyCeiling, fmt, handleArguments } from './support';

const METRICS = ['TEMPERATURE', 'VIBRATION', 'PRESSURE', 'SPEED', 'COUNT'];

interface Job { url: string; nodes: number; messagesPerNode: number; samples: number; qos: 0 | 1; t0: number }

/** The publisher: NBIRTH + DBIRTH per node, then DDATA round-robin over the nodes, a window of unacknowledged publishes. */
async function publisher(job: Job): Promise<void> {
  const codec = sparkplugPayload('spBv1.0')!;
  const Payload = org.eclipse.tahu.protobuf.Payload;
  const clients: MqttClient[] = [];
  const seq: number[] = [];
  for (let n = 0; n < job.nodes; n++) {
    const death = codec.encodePayload({ timestamp: Date.now(), metrics: [{ name: 'bdSeq', type: 'UInt64', value: 0 }] });
    const c = await mqtt.connectAsync(job.url, { clientId: `bench-sp-node-${n}-${process.pid}`,
      will: { topic: `spBv1.0/BENCH/NDEATH/N${n}`, payload: Buffer.from(death), qos: 1, retain: false } });
    clients.push(c);
    await c.publishAsync(`spBv1.0/BENCH/NBIRTH/N${n}`, Buffer.from(codec.encodePayload({ timestamp: job.t0, seq: 0,
      metrics: [{ name: 'bdSeq', type: 'UInt64', value: 0 }, { name: 'Node Control/Rebirth', type: 'Boolean', value: false }] })), { qos: 1 });
    await c.publishAsync(`spBv1.0/BENCH/DBIRTH/N${n}/D${n}`, Buffer.from(codec.encodePayload({ timestamp: job.t0, seq: 1,
      metrics: METRICS.map((m, i) => ({ name: `M/${m}`, alias: i + 1, type: 'Double' as const, value: null })) })), { qos: 1 });
    seq.push(2);
  }
  process.send?.({ ready: true });
  const started = Date.now();
  const window = 500;
  let inFlight: Promise<unknown>[] = [];
  for (let k = 0; k < job.messagesPerNode; k++) {
    for (let n = 0; n < job.nodes; n++) {
      const metrics: org.eclipse.tahu.protobuf.Payload.IMetric[] = [];
      for (let s = 0; s < job.samples; s++) {
        const t = job.t0 + 1 + k * job.samples + s;
        for (let a = 1; a <= METRICS.length; a++) metrics.push({ alias: a, timestamp: t, doubleValue: (k + s + a) % 100 });
      }
      const payload = Payload.encode({ timestamp: Date.now(), seq: seq[n], metrics }).finish();
      seq[n] = (seq[n] + 1) % 256;
      inFlight.push(clients[n].publishAsync(`spBv1.0/BENCH/DDATA/N${n}/D${n}`, Buffer.from(payload), { qos: job.qos }));
      if (inFlight.length >= window) {
        await Promise.all(inFlight);
        inFlight = [];
      }
    }
  }
  await Promise.all(inFlight);
  process.send?.({ publishMs: Date.now() - started });
  for (const c of clients) await c.endAsync();
  process.exit(0);
}

async function main() {
  handleArguments(`
npm run bench:sparkplug: readings per second stored from Sparkplug B edge nodes (publisher in a child process).

Variables:
  BENCH_SPARKPLUG_NODES     edge nodes, one device of 5 metrics each (50)
  BENCH_SPARKPLUG_MESSAGES  DDATA messages per node (400)
  BENCH_SPARKPLUG_SAMPLES   samples of every metric per DDATA (4: 20 readings per message)
  BENCH_SPARKPLUG_QOS       QoS of the DDATA (1; Sparkplug itself says 0)`);
  const NODES = Number(process.env.BENCH_SPARKPLUG_NODES ?? 50);
  const MESSAGES = Number(process.env.BENCH_SPARKPLUG_MESSAGES ?? 400);
  const SAMPLES = Number(process.env.BENCH_SPARKPLUG_SAMPLES ?? 4);
  const QOS = Number(process.env.BENCH_SPARKPLUG_QOS ?? 1) as 0 | 1;
  setLogLevel('warn');
  const db = await benchDatabase('sparkplug');
  const broker = await benchBroker();
  const pool = new Pool({ connectionString: db.url, max: 8 });
  const dir = mkdtempSync(join(tmpdir(), 'bench-sparkplug-'));
  const t = (await pool.query(`insert into iot.tenants (tenant_code, name) values ('bench', 'Bench') returning id`)).rows[0].id;
  const f = (await pool.query(`insert into iot.facilities (tenant_id, facility_code, name) values ($1, 'B1', 'Bench') returning id`, [t])).rows[0].id;
  const wc = (await pool.query(`insert into iot.work_centers (tenant_id, facility_id, work_center_code, name, work_center_type) values ($1, $2, 'WC', 'WC', 'PRESS') returning id`, [t, f])).rows[0].id;
  const ids: string[] = [];
  for (let n = 0; n < NODES; n++) {
    const d = (await pool.query(`insert into iot.iot_devices (tenant_id, work_center_id, device_code, connection_type, connection_config)
      values ($1, $2, $3, 'MQTT', $4) returning id`, [t, wc, `SP-${n}`, { sparkplug: { groupId: 'BENCH', edgeNodeId: `N${n}`, deviceId: `D${n}` } }])).rows[0].id;
    ids.push(d);
    for (const m of METRICS) {
      await pool.query(`insert into iot.device_channels (tenant_id, device_id, sensor_type, unit, protocol_address) values ($1, $2, $3, 'u', $4)`, [t, d, m, `M/${m}`]);
    }
  }
  const registry = new RegistryCache(pool, 0);
  await registry.start();
  const sink = new ReadingSink(pool, { batchSize: 5000, maxWaitMs: 100, bufferMax: 200_000, writers: 2 }); // as bench/ingest.ts
  const ingestor = new SparkplugIngestor({ brokerUrl: broker.url, clientId: 'bench-sparkplug-ingest', stateDir: join(dir, 'sparkplug') }, registry, sink, pool);
  await ingestor.start();
  const total = NODES * MESSAGES * SAMPLES * METRICS.length;
  const t0 = Date.now() - 3 * 86_400_000;
  const child = fork(__filename, [], { env: { ...process.env, SPARKPLUG_BENCH_ROLE: 'publisher' }, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const messages: { ready?: boolean; publishMs?: number }[] = [];
  const next = () => new Promise<{ ready?: boolean; publishMs?: number }>((resolve, reject) => {
    if (messages.length) return resolve(messages.shift()!);
    child.once('message', (m) => resolve(m as never));
    child.once('exit', (code) => reject(new Error(`publisher exited ${code}`)));
  });
  child.send({ url: broker.url, nodes: NODES, messagesPerNode: MESSAGES, samples: SAMPLES, qos: QOS, t0 } satisfies Job);
  await next(); // births sent
  const started = Date.now();
  let peakRss = 0;
  const sampler = setInterval(() => (peakRss = Math.max(peakRss, process.memoryUsage().rss)), 250);
  const published = await next();
  while (sink.stats.stored + sink.stats.duplicates < total && Date.now() - started < 600_000) await new Promise((r) => setTimeout(r, 50));
  const seconds = (Date.now() - started) / 1000;
  clearInterval(sampler);
  const stored = Number((await pool.query('select count(*) from iot_private.sensor_readings')).rows[0].count);
  console.log(`  (end to end done: ${fmt(stored)} of ${fmt(total)} readings in ${seconds.toFixed(2)} s; measuring the COPY ceiling)`);
  const ceiling = await copyCeiling(pool, ids.flatMap((deviceId) => METRICS.map((sensorType) => ({ tenantId: t, deviceId, sensorType }))),
    total, t0 - 86_400_000, 1);
  const e2e = stored / seconds;
  console.log(`\nSparkplug B ingest (tier ${db.tier}, PostgreSQL ${db.version}, broker ${broker.kind}), publisher in a child process`);
  console.log(`| edge nodes | readings/message | DDATA QoS | published/s (msgs) | stored/s | COPY ceiling | ratio | seq gaps | dead letters | peak RSS |`);
  console.log(`|---|---|---|---|---|---|---|---|---|---|`);
  console.log(`| ${fmt(NODES)} | ${SAMPLES * METRICS.length} | ${QOS} | ${fmt((NODES * MESSAGES) / (published.publishMs! / 1000))} | ${fmt(e2e)} | ` +
    `${fmt(ceiling)} | ${(e2e / ceiling).toFixed(2)} | ${ingestor.stats.seqGaps} | ${ingestor.stats.deadLetters} | ${Math.round(peakRss / 1048576)} MiB |`);
  if (stored !== total) console.log(`  WARNING: ${fmt(total - stored)} readings not stored`);
  await ingestor.stop();
  await sink.close();
  await registry.stop();
  await pool.end();
  await broker.stop();
  await db.drop();
  rmSync(dir, { recursive: true, force: true });
}

if (process.env.SPARKPLUG_BENCH_ROLE === 'publisher') {
  process.once('message', (job: Job) => void publisher(job).catch((error) => {
    console.error(error);
    process.exit(1);
  }));
} else {
  main().catch((error) => {
    console.error(error);
    process.exit(1);
  });
}

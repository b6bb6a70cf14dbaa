// Sparkplug B bench: readings/s stored end to end (edge nodes in a child process -> broker ->
// Sparkplug ingestor in a child process -> COPY sink -> sensor_readings). sparkplugRow is
// bench:ingest's Sparkplug row (on its database and broker); run alone, the same row beside the raw
// COPY ceiling of its own database. Each edge node has one device with 5 metrics; each DDATA carries
// BENCH_SPARKPLUG_SAMPLES samples of every metric (alias only, no datatype, as Sparkplug says), so
// a message is 5 x samples readings. Not a test: it prints figures.
// This one file is also the publisher (run as a child process with SPARKPLUG_BENCH_ROLE=publisher).
import { fork } from 'node:child_process';
import mqtt, { MqttClient } from 'mqtt';
import { get as sparkplugPayload } from 'sparkplug-payload';
import { org } from 'sparkplug-payload/lib/sparkplugPayloadProto';
import { fmt, handleArguments } from './support';
import { BenchContext, BenchRow, IngestChild, mib, retireTenant, rowTenant, runMain, sinkSettings, sleep, standalone, storedFor } from './rows';

const METRICS = ['TEMPERATURE', 'VIBRATION', 'PRESSURE', 'SPEED', 'COUNT'];

interface Job { url: string; nodes: number; messagesPerNode: number; samples: number; qos: 0 | 1; t0: number; group: string }

/** The publisher: NBIRTH + DBIRTH per node, then DDATA round-robin over the nodes, a window of unacknowledged publishes. */
async function publisher(job: Job): Promise<void> {
  const codec = sparkplugPayload('spBv1.0')!;
  const Payload = org.eclipse.tahu.protobuf.Payload;
  const clients: MqttClient[] = [];
  const seq: number[] = [];
  for (let n = 0; n < job.nodes; n++) {
    const death = codec.encodePayload({ timestamp: Date.now(), metrics: [{ name: 'bdSeq', type: 'UInt64', value: 0 }] });
    const c = await mqtt.connectAsync(job.url, { clientId: `bench-sp-node-${n}-${process.pid}`,
      will: { topic: `spBv1.0/${job.group}/NDEATH/N${n}`, payload: Buffer.from(death), qos: 1, retain: false } });
    clients.push(c);
    await c.publishAsync(`spBv1.0/${job.group}/NBIRTH/N${n}`, Buffer.from(codec.encodePayload({ timestamp: job.t0, seq: 0,
      metrics: [{ name: 'bdSeq', type: 'UInt64', value: 0 }, { name: 'Node Control/Rebirth', type: 'Boolean', value: false }] })), { qos: 1 });
    await c.publishAsync(`spBv1.0/${job.group}/DBIRTH/N${n}/D${n}`, Buffer.from(codec.encodePayload({ timestamp: job.t0, seq: 1,
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
      inFlight.push(clients[n].publishAsync(`spBv1.0/${job.group}/DDATA/N${n}/D${n}`, Buffer.from(payload), { qos: job.qos }));
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

const USAGE = `
npm run bench:sparkplug: readings per second stored from Sparkplug B edge nodes (publisher in a
child process, ingestor in another), beside the raw COPY ceiling of the same database.

Variables:
  BENCH_SPARKPLUG_NODES     edge nodes, one device of 5 metrics each (50)
  BENCH_SPARKPLUG_READINGS  readings published in all (300000), or
  BENCH_SPARKPLUG_MESSAGES  DDATA messages per node (from BENCH_SPARKPLUG_READINGS)
  BENCH_SPARKPLUG_SAMPLES   samples of every metric per DDATA (4: 20 readings per message)
  BENCH_SPARKPLUG_QOS       QoS of the DDATA (1; Sparkplug itself says 0)`;

/**
 * bench:ingest's Sparkplug B row: NODES edge nodes (one device of 5 metrics each, a tenant of its
 * own, group BENCH-<pid>) publish DDATA as fast as the broker takes them; readings/s from the
 * births to the last reading stored.
 */
export async function sparkplugRow(ctx: BenchContext): Promise<BenchRow> {
  const NODES = Number(process.env.BENCH_SPARKPLUG_NODES ?? 50);
  const SAMPLES = Number(process.env.BENCH_SPARKPLUG_SAMPLES ?? 4);
  const QOS = Number(process.env.BENCH_SPARKPLUG_QOS ?? 1) as 0 | 1;
  const perMessage = SAMPLES * METRICS.length;
  const MESSAGES = Number(process.env.BENCH_SPARKPLUG_MESSAGES ?? Math.ceil(Number(process.env.BENCH_SPARKPLUG_READINGS ?? 300_000) / (NODES * perMessage)));
  const name = `Sparkplug B, ${perMessage} readings/DDATA (${SAMPLES} samples x ${METRICS.length} metrics), ${NODES} edge nodes`;
  if (!ctx.brokerUrl) return { name, readingsPerSecond: null, note: 'n/a: needs an MQTT broker' };
  const pool = ctx.pool;
  const group = `BENCH-${process.pid}`;
  const { tenantId, workCenterId } = await rowTenant(pool, `bench-sparkplug-${process.pid}`);
  for (let n = 0; n < NODES; n++) {
    const d = (await pool.query(`insert into iot.iot_devices (tenant_id, work_center_id, device_code, connection_type, connection_config)
      values ($1, $2, $3, 'MQTT', $4) returning id`, [tenantId, workCenterId, `SP-${n}`, { sparkplug: { groupId: group, edgeNodeId: `N${n}`, deviceId: `D${n}` } }])).rows[0].id;
    for (const m of METRICS) {
      await pool.query(`insert into iot.device_channels (tenant_id, device_id, sensor_type, unit, protocol_address) values ($1, $2, $3, 'u', $4)`, [tenantId, d, m, `M/${m}`]);
    }
  }
  const ingest = new IngestChild({ protocol: 'sparkplug', dbUrl: ctx.dbUrl, sink: sinkSettings(ctx), brokerUrl: ctx.brokerUrl, clientId: `bench-sparkplug-ingest-${process.pid}` });
  const total = NODES * MESSAGES * perMessage;
  const t0 = Date.now() - 3 * 86_400_000;
  let publishMs = 0;
  let child: ReturnType<typeof fork> | undefined;
  try {
    await ingest.ready;
    await sleep(300); // the subscription granted
    child = fork(__filename, [], { env: { ...process.env, SPARKPLUG_BENCH_ROLE: 'publisher' }, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    let births = false;
    child.on('message', (m: { ready?: boolean; publishMs?: number }) => {
      if (m.ready) births = true;
      if (m.publishMs !== undefined) publishMs = m.publishMs;
    });
    let exited: number | null = null;
    child.once('exit', (code) => (exited = code ?? -1));
    child.send({ url: ctx.brokerUrl, nodes: NODES, messagesPerNode: MESSAGES, samples: SAMPLES, qos: QOS, t0, group } satisfies Job);
    while (!births) {
      if (exited !== null) throw new Error(`Sparkplug publisher exited ${exited} before its births`);
      await sleep(20);
    }
    const started = Date.now();
    let last = -1;
    let finished = Date.now();
    const done = () => ingest.latest.stored + ingest.latest.duplicates;
    // Until every reading is stored, or nothing moved for 10 s (then the note says how many are missing).
    while (done() < total) {
      await sleep(20);
      if (done() !== last) {
        last = done();
        finished = Date.now();
      } else if (Date.now() - finished > 10_000) break;
    }
    if (done() >= total) finished = Date.now();
    const final = await ingest.stop();
    const stored = await storedFor(pool, tenantId);
    const seconds = (finished - started) / 1000;
    const lost = total - stored;
    return { name, readingsPerSecond: stored / seconds, peakRssMiB: mib(final.peakRss),
      note: `${fmt(stored)} of ${fmt(total)} stored in ${seconds.toFixed(1)} s; DDATA QoS ${QOS}, published in ${(publishMs / 1000).toFixed(1)} s; ` +
        `seq gaps ${final.extra.seqGaps ?? 0}, dead letters ${final.deadLetters}` + (lost > 0 ? `; ${fmt(lost)} NOT STORED` : '') };
  } finally {
    if (child && child.exitCode === null) child.kill('SIGTERM');
    await ingest.stop();
    await retireTenant(pool, tenantId);
  }
}

if (require.main === module) {
  if (process.env.SPARKPLUG_BENCH_ROLE === 'publisher') {
    process.once('message', (job: Job) => void publisher(job).catch((error) => {
      console.error(error);
      process.exit(1);
    }));
  } else {
    handleArguments(USAGE);
    runMain(() => standalone('Sparkplug B', [sparkplugRow], true));
  }
}

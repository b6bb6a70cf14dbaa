// npm run bench:ingest — readings per second stored end to end (publisher process -> broker ->
// MQTT ingestor -> COPY sink -> sensor_readings), against the raw COPY ceiling of the same
// database measured in the same run, and their ratio. Not a test: it prints figures.
import { fork } from 'node:child_process';
import { join } from 'node:path';
import { Pool } from 'pg';
import { from as copyFrom } from 'pg-copy-streams';
import { MqttIngestor } from '../src/ingest/mqtt';
import { RegistryCache } from '../src/ingest/registry';
import { ReadingSink } from '../src/ingest/sink';
import { setLogLevel } from '../src/lib/log';
import { benchBroker, benchDatabase, fmt, handleArguments, seedBenchPlant } from './support';

handleArguments(`
npm run bench:ingest: readings per second stored end to end (publisher process -> MQTT broker ->
ingestor -> COPY sink -> sensor_readings), beside the raw COPY ceiling of the same database.

Variables:
  BENCH_READINGS               readings to publish (500000)
  BENCH_READINGS_PER_MESSAGE   readings per MQTT message (20)`);

const N = Number(process.env.BENCH_READINGS ?? 500_000);
const PER_MESSAGE = Number(process.env.BENCH_READINGS_PER_MESSAGE ?? 20);

async function copyCeiling(pool: Pool, ids: { tenantId: string; deviceId: string; sensorType: string }[], n: number): Promise<number> {
  // The same row shape straight into the same table with its indexes, in one COPY stream.
  const client = await pool.connect();
  const t0 = Date.parse('2025-06-01T00:00:00Z');
  const t1 = t0 + Math.ceil(n / ids.length) * 1000;
  await client.query(`select iot_private.ensure_partitions('sensor_readings', $1, $2)`, [new Date(t0), new Date(t1)]);
  const started = process.hrtime.bigint();
  await new Promise<void>((resolve, reject) => {
    const stream = client.query(copyFrom('copy iot_private.sensor_readings (time, tenant_id, device_id, sensor_type, value, unit, quality) from stdin'));
    stream.on('error', reject).on('finish', () => resolve());
    let i = 0;
    const write = () => {
      let ok = true;
      while (i < n && ok) {
        let chunk = '';
        for (let k = 0; k < 1000 && i < n; k++, i++) {
          const c = ids[i % ids.length];
          chunk += `${new Date(t0 + Math.floor(i / ids.length) * 1000).toISOString()}\t${c.tenantId}\t${c.deviceId}\t${c.sensorType}\t${i % 100}\tu\tGOOD\n`;
        }
        ok = stream.write(chunk);
      }
      if (i < n) stream.once('drain', write);
      else stream.end();
    };
    write();
  });
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  client.release();
  return n / seconds;
}

async function main() {
  setLogLevel('warn');
  const db = await benchDatabase('ingest');
  const broker = await benchBroker();
  const pool = new Pool({ connectionString: db.url, max: 8 });
  try {
    const { channels, ids } = await seedBenchPlant(pool);
    const registry = new RegistryCache(pool);
    await registry.start();
    const sink = new ReadingSink(pool, { batchSize: 5000, maxWaitMs: 100, bufferMax: 200_000, writers: 2 });
    const ingestor = new MqttIngestor({ brokerUrl: broker.url, topics: ['facility/+/workcenter/+/sensor/+'], qos: 1,
      clientId: `bench-ingest-${process.pid}`, maxFutureSeconds: 300 }, registry, sink);
    await ingestor.start();
    await new Promise((r) => setTimeout(r, 300));

    const messages = Math.ceil(N / PER_MESSAGE);
    const total = messages * PER_MESSAGE;
    let peakRss = 0;
    const sampler = setInterval(() => (peakRss = Math.max(peakRss, process.memoryUsage().rss)), 100);
    const child = fork(join(__dirname, 'publisher-process.js'), [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    const started = Date.now();
    const published = new Promise<{ publishMs: number }>((r) => child.once('message', (m) => r(m as { publishMs: number })));
    child.send({ url: broker.url, channels, messages, perMessage: PER_MESSAGE, t0: Date.parse('2026-01-01T00:00:00Z'), qos: 1 });
    // Redeliveries (QoS 1 after a reconnect) count as duplicates, so wait for every distinct reading,
    // or until nothing moves for 10 s (a broker that drops queued messages, see the report).
    let last = -1;
    let lastChange = Date.now();
    let finished = Date.now();
    while (sink.stats.stored < total) {
      await new Promise((r) => setTimeout(r, 20));
      if (sink.stats.stored !== last) {
        last = sink.stats.stored;
        lastChange = finished = Date.now();
      } else if (Date.now() - lastChange > 10_000 && sink.buffered === 0) {
        break;
      }
    }
    if (sink.stats.stored >= total) finished = Date.now();
    const e2eSeconds = (finished - started) / 1000;
    const lost = total - sink.stats.stored;
    clearInterval(sampler);
    const { publishMs } = await published;
    const e2e = sink.stats.stored / e2eSeconds;
    await ingestor.stop();
    await sink.close();
    await registry.stop();

    console.log(`  (end to end done: ${fmt(total)} readings in ${e2eSeconds.toFixed(2)} s; measuring the COPY ceiling)`);
    const ceiling = await copyCeiling(pool, ids, total);
    const stored = Number((await pool.query(`select count(*) from iot_private.sensor_readings where time >= '2026-01-01'`)).rows[0].count);
    console.log([
      `ingest benchmark (PostgreSQL ${db.version}, tier ${db.tier}, broker ${broker.kind}, ${ids.length} channels)`,
      `  published      ${fmt(total)} readings in ${fmt(messages)} QoS 1 messages of ${PER_MESSAGE} (publisher took ${(publishMs / 1000).toFixed(2)} s)`,
      `  stored         ${fmt(stored)} rows (dead letters ${sink.stats.deadLetters}, duplicates ${sink.stats.duplicates})`,
      ...(lost > 0 ? [`  NOT DELIVERED  ${fmt(lost)} readings: the broker dropped queued messages while ingest paused` +
        ` (mosquitto's default max_queued_messages 1000; deploy/mosquitto/mosquitto.conf raises it)`] : []),
      `  end to end     ${fmt(e2e)} readings/s  (${e2eSeconds.toFixed(2)} s, ${sink.stats.batches} batches, peak RSS ${fmt(peakRss / 2 ** 20)} MiB)`,
      `  COPY ceiling   ${fmt(ceiling)} rows/s  (same rows, same table and indexes, one COPY stream)`,
      `  ratio          ${(e2e / ceiling).toFixed(2)} of the COPY ceiling`,
    ].join('\n'));
  } finally {
    await pool.end();
    await broker.stop();
    await db.drop();
  }
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});

// npm run bench:realtime — how fast the database's NOTIFYs reach GraphQL subscribers over real
// WebSockets on loopback. Not a test: it prints a table.
//  1. latency: MQTT publish -> ingest -> NOTIFY -> sensorReadingUpdated received, at two rates;
//  2. fan-out: N subscribers of criticalAlertTriggered, one alert inserted, time until each has it;
//     server memory per connection; database transactions per event.
// Subscribers live in child processes (bench/ws-clients-process.ts) so the API process measured is
// the one serving them; the publisher too (bench/paced-publisher-process.ts).
import { ChildProcess, fork } from 'node:child_process';
import { join } from 'node:path';
import { MqttIngestor } from '../src/ingest/mqtt';
import { RegistryCache } from '../src/ingest/registry';
import { ReadingSink } from '../src/ingest/sink';
import { createPool } from '../src/lib/db/pool';
import { setLogLevel } from '../src/lib/log';
import { signToken } from '../src/lib/secrets';
import { startApi } from '../src/server/app';
import { benchBroker, benchDatabase, fmt, handleArguments, seedBenchPlant } from './support';

handleArguments(`
npm run bench:realtime: latency from MQTT publish to a sensorReadingUpdated subscriber, and the
fan-out of one alert to many criticalAlertTriggered subscribers, over real WebSockets on loopback.

Variables:
  BENCH_RATES          readings/s for the latency runs (1000,10000)
  BENCH_SECONDS        length of each latency run (10)
  BENCH_SUBSCRIBERS    subscriber counts for the fan-out runs (1000,10000)
  BENCH_BROADCASTS     alerts per fan-out run (5)
  BENCH_BATCH_WAIT_MS  INGEST_BATCH_MAX_WAIT_MS of the ingestor (10: a reading waits at most this long for its batch)`);

const list = (v: string | undefined, d: number[]) => (v ? v.split(',').map(Number) : d);
const RATES = list(process.env.BENCH_RATES, [1000, 10000]);
const SECONDS = Number(process.env.BENCH_SECONDS ?? 10);
const SUBSCRIBERS = list(process.env.BENCH_SUBSCRIBERS, [1000, 10000]);
const BROADCASTS = Number(process.env.BENCH_BROADCASTS ?? 5);
const BATCH_WAIT_MS = Number(process.env.BENCH_BATCH_WAIT_MS ?? 10);
const SECRET = 'bench-realtime-secret-0123456789abcdef';
const CLIENT_PROCESSES = 2;

type Receipt = [key: string, receivedAt: number];

function percentile(sorted: number[], p: number): number {
  if (!sorted.length) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}
const ms = (n: number) => (Number.isFinite(n) ? `${n.toFixed(n < 10 ? 1 : 0)} ms` : 'n/a');

/** Opens `sockets` subscribers split over child processes; resolves when all are subscribed. */
async function openSubscribers(url: string, query: string, field: string, key: string,
  sockets: { token: string; variables: Record<string, unknown> }[]) {
  const children: ChildProcess[] = [];
  const per = Math.ceil(sockets.length / CLIENT_PROCESSES);
  await Promise.all(Array.from({ length: CLIENT_PROCESSES }, (_x, i) => {
    const part = sockets.slice(i * per, (i + 1) * per);
    if (!part.length) return Promise.resolve();
    const child = fork(join(__dirname, 'ws-clients-process.js'), [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    children.push(child);
    return new Promise<void>((resolve, reject) => {
      child.once('message', (m: { ready?: number; failed?: string }) => (m.ready ? resolve() : reject(new Error(m.failed))));
      child.send({ job: { url, sockets: part, query, field, key } });
    });
  }));
  return {
    async receipts(): Promise<Receipt[]> {
      const parts = await Promise.all(children.map((c) => new Promise<Receipt[]>((resolve) => {
        c.once('message', (m: { receipts: Receipt[] }) => resolve(m.receipts));
        c.send({ report: true });
      })));
      return parts.flat();
    },
    async close() {
      await Promise.all(children.map((c) => new Promise<void>((resolve) => {
        c.once('exit', () => resolve());
        c.send({ close: true });
      })));
    },
  };
}

async function main() {
  setLogLevel('warn');
  const db = await benchDatabase('realtime');
  const broker = await benchBroker();
  const pool = createPool(db.url, 12, 'bench-realtime');
  const rows: string[] = [];
  try {
    const plant = await seedBenchPlant(pool);
    const registry = new RegistryCache(pool);
    await registry.start();
    const sink = new ReadingSink(pool, { batchSize: 5000, maxWaitMs: BATCH_WAIT_MS, bufferMax: 200_000, writers: 2 });
    const ingestor = new MqttIngestor({ brokerUrl: broker.url, topics: ['facility/+/workcenter/+/sensor/+'], qos: 0,
      clientId: `bench-realtime-${process.pid}`, maxFutureSeconds: 300 }, registry, sink);
    await ingestor.start();
    const interval = (await pool.query(`select value from iot_private.settings where key = 'live_reading_interval_ms'`)).rows[0]?.value ?? '1000';
    const api = await startApi({
      pool, host: '127.0.0.1', port: 0, jwtSecret: SECRET, graphiql: false, websockets: true, graphqlPath: '/graphql', maxPageSize: 1000,
      wsMaxSocketsPerIp: 100_000, wsMaxSocketsPerUser: 100_000, wsMaxSubscriptionsPerSocket: 10,
    });
    const wsUrl = api.url.replace(/^http/, 'ws') + '/graphql';
    const token = (subject: string) => signToken(SECRET, { role: 'iot_operator', tenantId: plant.tenantId, subject });

    // 1. Latency, publish to receipt: one subscriber per device.
    for (const rate of RATES) {
      const subs = await openSubscribers(wsUrl,
        'subscription($d: ID!) { sensorReadingUpdated(iotDeviceId: $d) { readingTimestamp } }', 'sensorReadingUpdated', 'readingTimestamp',
        plant.devices.map((d) => ({ token: token(`lat-${d.code}`), variables: { d: d.id } })));
      const storedBefore = sink.stats.stored;
      const publisher = fork(join(__dirname, 'paced-publisher-process.js'), [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
      const done = new Promise<{ readings: number; seconds: number }>((r) => publisher.once('message', (m) => r(m as { readings: number; seconds: number })));
      publisher.send({ url: broker.url, channels: plant.channels, readingsPerSecond: rate, seconds: SECONDS });
      const published = await done;
      await new Promise((r) => setTimeout(r, 1500));
      const stored = sink.stats.stored - storedBefore;
      if (stored < published.readings) {
        const why = (await pool.query(`select reason, count(*)::int as n from iot_private.ingest_dead_letters group by 1 order by 2 desc limit 3`)).rows;
        console.log(`  (not stored: ${fmt(published.readings - stored)}; dead-letter reasons: ${JSON.stringify(why)})`);
      }
      const latencies = (await subs.receipts()).map(([stamp, at]) => at - Date.parse(stamp)).sort((a, b) => a - b);
      await subs.close();
      rows.push(`| latency publish -> sensorReadingUpdated | ${fmt(published.readings / published.seconds)} readings/s, ${plant.devices.length} subscribers | ` +
        `${ms(percentile(latencies, 50))} | ${ms(percentile(latencies, 99))} | ${ms(latencies[latencies.length - 1])} | ${fmt(latencies.length)} events; ${fmt(stored)} of ${fmt(published.readings)} readings stored (dead letters ${sink.stats.deadLetters}) |`);
    }
    await ingestor.stop();
    await sink.close();
    await registry.stop();

    // 2. Fan-out of one alert to N subscribers.
    for (const n of SUBSCRIBERS) {
      global.gc?.();
      const before = process.memoryUsage();
      const subs = await openSubscribers(wsUrl,
        'subscription($t: ID!) { criticalAlertTriggered(tenantId: $t) { id severity } }', 'criticalAlertTriggered', 'id',
        Array.from({ length: n }, (_x, i) => ({ token: token(`fan-${i % 1000}`), variables: { t: plant.tenantId } })));
      global.gc?.();
      const after = process.memoryUsage();
      const delays: number[] = [];
      let received = 0;
      let transactions = 0;
      for (let b = 0; b < BROADCASTS; b++) {
        const xact0 = await commits(pool);
        const sentAt = Date.now();
        const alert = (await pool.query(
          `insert into iot.predictive_maintenance_alerts (tenant_id, work_center_id, alert_type, predicted_failure_mode, severity, urgency,
             failure_probability, description, alert_reason)
           values ($1, $2, 'FAILURE_PREDICTION', $3, 'CRITICAL', 'IMMEDIATE', 0.9, 'bench broadcast', 'MODEL_PREDICTION') returning id`,
          [plant.tenantId, plant.workCenters[b % plant.workCenters.length], `BENCH_${n}_${b}`])).rows[0].id;
        await waitForQuiet(2000);
        transactions += (await commits(pool)) - xact0 - 2; // minus the insert and the counting query itself
        const mine = (await subs.receipts()).filter(([id]) => id === alert);
        received += mine.length;
        for (const [, at] of mine) delays.push(at - sentAt);
      }
      await subs.close();
      delays.sort((a, b) => a - b);
      const perConn = (after.rss - before.rss) / n;
      rows.push(`| fan-out criticalAlertTriggered | ${fmt(n)} subscribers x ${BROADCASTS} alerts (${fmt(received)} of ${fmt(n * BROADCASTS)} received) | ` +
        `${ms(percentile(delays, 50))} | ${ms(percentile(delays, 99))} | ${ms(delays[delays.length - 1])} | ` +
        `${fmt(perConn / 1024)} KiB RSS per connection (heap ${fmt((after.heapUsed - before.heapUsed) / n / 1024)} KiB); ${(transactions / BROADCASTS).toFixed(1)} extra DB transactions per event |`);
    }
    await api.close();
    console.log([
      `realtime benchmark (PostgreSQL ${db.version}, tier ${db.tier}, broker ${broker.kind}, loopback, ` +
        `INGEST_BATCH_MAX_WAIT_MS ${BATCH_WAIT_MS}, LIVE_READING_INTERVAL_MS ${interval})`,
      '',
      '| measurement | load | p50 | p99 | max | notes |',
      '|---|---|---|---|---|---|',
      ...rows,
    ].join('\n'));
  } finally {
    await pool.close();
    await broker.stop();
    await db.drop();
  }
}

/** Committed transactions of this database so far (pg_stat_database is updated within a second). */
async function commits(pool: ReturnType<typeof createPool>): Promise<number> {
  await new Promise((r) => setTimeout(r, 1100));
  return Number((await pool.query(`select xact_commit from pg_stat_database where datname = current_database()`)).rows[0].xact_commit);
}
const waitForQuiet = (msToWait: number) => new Promise((r) => setTimeout(r, msToWait));

main().catch((error) => {
  console.error(error);
  process.exit(1);
});

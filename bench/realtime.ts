// npm run bench:realtime — how fast the database's NOTIFYs reach GraphQL subscribers over real
// WebSockets on loopback. Not a test: it prints a table.
//  1. latency: MQTT publish -> ingest -> NOTIFY -> sensorReadingUpdated received, at two rates;
//  2. fan-out: N subscribers of criticalAlertTriggered, one alert inserted, time until each has it;
//     server memory per connection; database transactions per event.
// Subscribers live in child processes (bench/ws-clients-process.ts) so the API process measured is
// the one serving them; the publisher too (bench/paced-publisher-process.ts).
import { ChildProcess, fork } from 'node:child_process';
import { join } from 'node:path';
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import { MqttIngestor } from '../src/ingest/mqtt';
import { RegistryCache } from '../src/ingest/registry';
import { ReadingSink } from '../src/ingest/sink';
import { createPool } from '../src/lib/db/pool';
import { setLogLevel } from '../src/lib/log';
import { signToken } from '../src/lib/secrets';
import { startApi } from '../src/server/app';
import { HopRecorder, readingKey } from './realtime-hops';
import { benchBroker, benchDatabase, fmt, handleArguments, profiled, seedBenchPlant } from './support';

handleArguments(`
npm run bench:realtime: latency from MQTT publish to a sensorReadingUpdated subscriber, and the
fan-out of one alert to many criticalAlertTriggered subscribers, over real WebSockets on loopback.

Variables:
  BENCH_RATES          readings/s for the latency runs (1000,10000)
  BENCH_SECONDS        length of each latency run (10)
  BENCH_WARMUP_SECONDS readings published at the first rate before any is measured, so channels have state (5)
  BENCH_SUBSCRIBERS    subscriber counts for the fan-out runs (1000,10000)
  BENCH_BROADCASTS     alerts per fan-out run (5)
  BENCH_BATCH_WAIT_MS  INGEST_BATCH_MAX_WAIT_MS of the ingestor (10: a reading waits at most this long for its batch)
  BENCH_INGEST_ASYNC_COMMIT  1: the ingestor's sessions use synchronous_commit=off (to see what the WAL flush costs)
  BENCH_CLIENT_PROCESSES  child processes the subscribers are spread over (2)
  BENCH_CPU_PROF       a folder: a V8 CPU profile of the API process during each fan-out run (fan-out-<N>.cpuprofile)
  BENCH_HOPS           1 (default): also print where the latency goes, hop by hop, and tell the readings
                       a notice of their own batch delivered from trailing values flushed after the
                       publisher stopped; 0: only the table (both kinds mixed)`);

const list = (v: string | undefined, d: number[]) => (v ? v.split(',').map(Number) : d);
const RATES = list(process.env.BENCH_RATES, [1000, 10000]);
const SECONDS = Number(process.env.BENCH_SECONDS ?? 10);
const WARMUP_S = Number(process.env.BENCH_WARMUP_SECONDS ?? 5);
const SUBSCRIBERS = list(process.env.BENCH_SUBSCRIBERS, [1000, 10000]);
const BROADCASTS = Number(process.env.BENCH_BROADCASTS ?? 5);
const BATCH_WAIT_MS = Number(process.env.BENCH_BATCH_WAIT_MS ?? 10);
const SECRET = 'bench-realtime-secret-0123456789abcdef';
const HOPS = process.env.BENCH_HOPS !== '0';
const CLIENT_PROCESSES = Number(process.env.BENCH_CLIENT_PROCESSES ?? 2);
// Children are the compiled .js (npm run bench:realtime) or the .ts beside this file (npx tsx bench/realtime.ts).
const childScript = (name: string) => join(__dirname, `${name}${__filename.endsWith('.ts') ? '.ts' : '.js'}`);

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
    const child = fork(childScript('ws-clients-process'), [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
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
  const hopTables: string[] = [];
  const closeLater: (() => Promise<void>)[] = [];
  try {
    const plant = await seedBenchPlant(pool);
    const registry = new RegistryCache(pool);
    await registry.start();
    // The ingestor has a pool of its own, as the ingest process has (src/cli/runtime.ts); the API keeps `pool`.
    // BENCH_INGEST_ASYNC_COMMIT=1: the ingest sessions commit without waiting for the WAL flush (what it would save).
    const ingestUrl = process.env.BENCH_INGEST_ASYNC_COMMIT === '1' ? withOption(db.url, '-c synchronous_commit=off') : db.url;
    const ingestPool = createPool(ingestUrl, 4, 'bench-realtime-ingest');
    closeLater.push(() => ingestPool.close());
    const interval = (await pool.query(`select value from iot_private.settings where key = 'live_reading_interval_ms'`)).rows[0]?.value ?? '1000';
    const hops = new HopRecorder(Number(interval) / 2);
    const sink = new ReadingSink(ingestPool, { batchSize: 5000, maxWaitMs: BATCH_WAIT_MS, bufferMax: 200_000, writers: 2 });
    if (HOPS) {
      hops.watchSink(sink, ingestPool);
      const channel = (await pool.query(`select iot_private.notify_channel('iot_live_readings', $1) as c`, [plant.tenantId])).rows[0].c;
      await hops.listen(db.url, channel);
      closeLater.push(() => hops.stop());
    }
    const ingestor = new MqttIngestor({ brokerUrl: broker.url, topics: ['facility/+/workcenter/+/sensor/+'], qos: 0,
      clientId: `bench-realtime-${process.pid}`, maxFutureSeconds: 300 }, registry, sink);
    await ingestor.start();
    const api = await startApi({
      pool, host: '127.0.0.1', port: 0, jwtSecret: SECRET, graphiql: false, websockets: true, graphqlPath: '/graphql', maxPageSize: 1000,
      wsMaxSocketsPerIp: 100_000, wsMaxSocketsPerUser: 100_000, wsMaxSubscriptionsPerSocket: 10,
    });
    const wsUrl = api.url.replace(/^http/, 'ws') + '/graphql';
    const token = (subject: string) => signToken(SECRET, { role: 'iot_operator', tenantId: plant.tenantId, subject });

    /** Publishes `rate` readings/s for `seconds` from a child process; what it published. */
    const publish = (rate: number, seconds: number) => {
      const publisher = fork(childScript('paced-publisher-process'), [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
      const done = new Promise<{ readings: number; seconds: number }>((r) => publisher.once('message', (m) => r(m as { readings: number; seconds: number })));
      publisher.send({ url: broker.url, channels: plant.channels, readingsPerSecond: rate, seconds });
      return done;
    };

    // 0. Warm-up, not measured: a running plant's channels have event state and a baseline; a
    // fresh database's first batch of each channel goes through the full event detector.
    if (WARMUP_S > 0) {
      await publish(RATES[0], WARMUP_S);
      await sink.flush();
    }

    // 1. Latency, publish to receipt: one subscriber per device.
    for (const rate of RATES) {
      const subs = await openSubscribers(wsUrl,
        'subscription($d: ID!) { sensorReadingUpdated(iotDeviceId: $d) { iotDeviceId sensorType readingTimestamp } }', 'sensorReadingUpdated',
        'iotDeviceId,sensorType,readingTimestamp',
        plant.devices.map((d) => ({ token: token(`lat-${d.code}`), variables: { d: d.id } })));
      const storedBefore = sink.stats.stored;
      hops.reset();
      // This process runs the ingestor and the API (like `iot start`): how long its event loop stalls.
      const loopDelay = monitorEventLoopDelay({ resolution: 5 });
      loopDelay.enable();
      const published = await publish(rate, SECONDS);
      // Stored readings are counted once the last one is in (at most 10 s after the publisher stopped).
      const stopped = Date.now();
      await new Promise((r) => setTimeout(r, 1500));
      while (sink.stats.stored - storedBefore < published.readings && Date.now() - stopped < 10_000) {
        await new Promise((r) => setTimeout(r, 100));
      }
      const settledMs = Date.now() - stopped;
      const stored = sink.stats.stored - storedBefore;
      if (stored < published.readings) {
        const why = (await pool.query(`select reason, count(*)::int as n from iot_private.ingest_dead_letters group by 1 order by 2 desc limit 3`)).rows;
        console.log(`  (not stored: ${fmt(published.readings - stored)}; dead-letter reasons: ${JSON.stringify(why)})`);
      }
      // Each receipt is one reading a notice carried: device/sensor type/its publish stamp (ms).
      const delivered = (await subs.receipts()).map(([key, at]): Receipt => {
        const [device, sensor, stamp] = key.split('|');
        return [readingKey(device, sensor, Date.parse(stamp)), at];
      });
      // Two kinds of delivery: by the reading's own batch (the notice it was due for: the issue's
      // streaming latency), and trailing values, held back by the interval and flushed once their
      // device fell silent, here when the publisher stopped (an interval later by design).
      const trailing = (key: string) => HOPS && hops.flushed(key);
      const latencyOf = ([key, at]: Receipt) => at - Number(key.split('/')[2]);
      const latencies = delivered.filter((r) => !trailing(r[0])).map(latencyOf).sort((a, b) => a - b);
      const flushed = delivered.filter((r) => trailing(r[0])).map(latencyOf).sort((a, b) => a - b);
      await subs.close();
      loopDelay.disable();
      if (HOPS) {
        hopTables.push(...hops.table(delivered, `${fmt(rate)} readings/s`),
          `event loop delay of the ingest+API process: p50 ${(loopDelay.percentile(50) / 1e6).toFixed(1)} ms, ` +
          `p99 ${(loopDelay.percentile(99) / 1e6).toFixed(1)} ms, max ${(loopDelay.max / 1e6).toFixed(1)} ms`, '');
      }
      const load = `${fmt(published.readings / published.seconds)} readings/s, ${plant.devices.length} subscribers`;
      rows.push(`| latency publish -> sensorReadingUpdated | ${load} | ` +
        `${ms(percentile(latencies, 50))} | ${ms(percentile(latencies, 99))} | ${ms(latencies[latencies.length - 1])} | ${fmt(latencies.length)} events` +
        `${HOPS ? ' sent by their own batch' : ''}; ${fmt(stored)} of ${fmt(published.readings)} readings stored ${settledMs > 1600 ? `${(settledMs / 1000).toFixed(1)} s after the publisher stopped ` : ''}(dead letters ${sink.stats.deadLetters}) |`);
      if (flushed.length) {
        rows.push(`| trailing values after the publisher stopped | ${load} | ${ms(percentile(flushed, 50))} | ${ms(percentile(flushed, 99))} | ` +
          `${ms(flushed[flushed.length - 1])} | ${fmt(flushed.length)} events held back by LIVE_READING_INTERVAL_MS ${interval}, flushed once their device was quiet for it |`);
      }
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
      // The API's CPU per alert: its event loop's busy time over the 2 s after the insert, less the
      // same window with no alert (keep-alive pings, timers).
      const quietStart = performance.eventLoopUtilization();
      await waitForQuiet(2000);
      const quietBusy = performance.eventLoopUtilization(quietStart).active;
      let alertBusy = 0;
      await profiled(`fan-out-${n}`, async () => {
        for (let b = 0; b < BROADCASTS; b++) {
          const xact0 = await commits(pool);
          const eluStart = performance.eventLoopUtilization();
          const sentAt = Date.now();
          const alert = (await pool.query(
            `insert into iot.predictive_maintenance_alerts (tenant_id, work_center_id, alert_type, predicted_failure_mode, severity, urgency,
               failure_probability, description, alert_reason)
             values ($1, $2, 'FAILURE_PREDICTION', $3, 'CRITICAL', 'IMMEDIATE', 0.9, 'bench broadcast', 'MODEL_PREDICTION') returning id`,
            [plant.tenantId, plant.workCenters[b % plant.workCenters.length], `BENCH_${n}_${b}`])).rows[0].id;
          await waitForQuiet(2000);
          alertBusy += performance.eventLoopUtilization(eluStart).active - quietBusy;
          transactions += (await commits(pool)) - xact0 - 2; // minus the insert and the counting query itself
          const mine = (await subs.receipts()).filter(([id]) => id === alert);
          received += mine.length;
          for (const [, at] of mine) delays.push(at - sentAt);
        }
      });
      await subs.close();
      delays.sort((a, b) => a - b);
      const perConn = (after.rss - before.rss) / n;
      rows.push(`| fan-out criticalAlertTriggered | ${fmt(n)} subscribers x ${BROADCASTS} alerts (${fmt(received)} of ${fmt(n * BROADCASTS)} received) | ` +
        `${ms(percentile(delays, 50))} | ${ms(percentile(delays, 99))} | ${ms(delays[delays.length - 1])} | ` +
        `${fmt(perConn / 1024)} KiB RSS per connection (heap ${fmt((after.heapUsed - before.heapUsed) / n / 1024)} KiB); ${(transactions / BROADCASTS).toFixed(1)} extra DB transactions per event; ` +
        `API busy ${fmt(alertBusy / BROADCASTS)} ms per alert (${(alertBusy / BROADCASTS / n * 1000).toFixed(1)} µs per subscriber) |`);
    }
    await api.close();
    console.log([
      `realtime benchmark (PostgreSQL ${db.version}, tier ${db.tier}, broker ${broker.kind}, loopback, ` +
        `INGEST_BATCH_MAX_WAIT_MS ${BATCH_WAIT_MS}, LIVE_READING_INTERVAL_MS ${interval}` +
        `${process.env.BENCH_INGEST_ASYNC_COMMIT === '1' ? ', ingest synchronous_commit off' : ''})`,
      '',
      '| measurement | load | p50 | p99 | max | notes |',
      '|---|---|---|---|---|---|',
      ...rows,
      ...(hopTables.length ? ['', ...hopTables] : []),
    ].join('\n'));
  } finally {
    for (const close of closeLater.reverse()) await close().catch(() => undefined);
    await pool.close();
    await broker.stop();
    await db.drop();
  }
}

function withOption(url: string, option: string): string {
  const u = new URL(url);
  u.searchParams.set('options', option);
  return u.toString();
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

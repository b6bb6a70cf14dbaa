// npm run bench:ingest — readings per second stored end to end (publisher process -> broker ->
// ingest process(es) -> COPY sink -> sensor_readings, event detection on), each row beside the raw
// COPY ceiling and a one-INSERT-per-message baseline measured in the same run on the same
// database. Prints a markdown table. Not a test: it prints figures.
import { ChildProcess, fork } from 'node:child_process';
import { join } from 'node:path';
import { Pool } from 'pg';
import { setLogLevel } from '../src/lib/log';
import { modbusRow } from './modbus';
import { opcuaRow } from './opcua';
import { REST_BATCHES, restRow } from './rest';
import { BenchContext, BenchRow, guarded, RowFunction, sleep } from './rows';
import { sparkplugRow } from './sparkplug';
import { benchBroker, benchDatabase, copyCeiling, fmt, handleArguments, seedBenchPlant } from './support';

export type { BenchContext, BenchRow } from './rows';

handleArguments(`
npm run bench:ingest: readings per second stored end to end (publisher process -> MQTT broker ->
ingest process(es) -> COPY sink -> sensor_readings, event detection on), beside the raw COPY
ceiling and a one-INSERT-per-message baseline (a Node-RED-like flow) on the same database.

Variables:
  BENCH_READINGS              readings per row (500000; the 1-reading-per-message row: a fifth)
  BENCH_BATCH_SIZE            INGEST_BATCH_SIZE of the ingest processes (5000)
  BENCH_BATCH_MAX_WAIT_MS     INGEST_BATCH_MAX_WAIT_MS (100)
  BENCH_WRITERS               sink writers per ingest process (2)
  BENCH_MINUTES               then a long run of that many minutes at BENCH_RATE, printing RSS (0: none)
  BENCH_RATE                  readings/s of the long run (50000)
  BENCH_MQTT_URL              an MQTT 5 broker (mosquitto) also measures two ingest processes sharing
                              one subscription ($share); aedes cannot
  BENCH_CPU_PROF              a folder: each child process writes a V8 CPU profile there (--cpu-prof)
  BENCH_PROTOCOLS             protocol rows to measure after the MQTT ones (sparkplug,opcua,modbus,rest;
                              "none": none). Their own variables: npx tsx bench/<protocol>.ts --help
                              (BENCH_SPARKPLUG_*, BENCH_OPCUA_*, BENCH_MODBUS_*, BENCH_REST_*, BENCH_SECONDS)`);

const N = Number(process.env.BENCH_READINGS ?? 500_000);
const BATCH = Number(process.env.BENCH_BATCH_SIZE ?? 5000);
const WAIT = Number(process.env.BENCH_BATCH_MAX_WAIT_MS ?? 100);
const WRITERS = Number(process.env.BENCH_WRITERS ?? 2);
const MINUTES = Number(process.env.BENCH_MINUTES ?? 0);
const RATE = Number(process.env.BENCH_RATE ?? 50_000);

/**
 * The other protocols' rows, measured after the MQTT rows on the same database (and broker), each
 * with the sink settings above, its ingestor in a process of its own (bench/protocol-ingest-process.ts).
 * A row that fails is printed as n/a with the reason.
 */
const PROTOCOLS = (process.env.BENCH_PROTOCOLS ?? 'sparkplug,opcua,modbus,rest').split(',').map((p) => p.trim());
const PROTOCOL_ROWS: [protocol: string, label: string, row: RowFunction][] = [
  ['sparkplug', 'Sparkplug B', sparkplugRow],
  ['opcua', 'OPC UA', opcuaRow],
  ['modbus', 'Modbus TCP', modbusRow],
  ...REST_BATCHES.map((b): [string, string, RowFunction] => ['rest', `REST, ${b} reading${b === 1 ? '' : 's'}/request`, restRow(b)]),
];
export const EXTRA_ROWS: RowFunction[] = PROTOCOL_ROWS.map(([protocol, label, row]) => PROTOCOLS.includes(protocol)
  ? guarded(label, row)
  : async () => ({ name: label, readingsPerSecond: null, note: `n/a: not measured (BENCH_PROTOCOLS=${PROTOCOLS.join(',')})` }));

// BENCH_CPU_PROF=<folder>: every child writes a V8 CPU profile there (open it in Chrome DevTools or speedscope).
const profile = process.env.BENCH_CPU_PROF ? ['--cpu-prof', `--cpu-prof-dir=${process.env.BENCH_CPU_PROF}`] : [];
const child = (file: string) => fork(join(__dirname, file), [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'], execArgv: [...process.execArgv, ...profile] });
const once = <T>(c: ChildProcess, kind: string) => new Promise<T>((resolve, reject) => {
  const on = (m: { kind?: string }) => { if (m?.kind === kind) { c.off('message', on); resolve(m as T); } };
  c.on('message', on);
  c.once('exit', (code) => reject(new Error(`${kind}: child exited with ${code}`)));
});
interface Stats { stored: number; peakRss: number; rss?: number; duplicates?: number; deadLetters?: number; batches?: number }

/** Starts the consumers, publishes, and waits until they stored every reading (or nothing moved for 10 s). */
async function measure(consumers: ChildProcess[], ctx: BenchContext, perMessage: number, readings: number) {
  const latest = consumers.map<Stats>(() => ({ stored: 0, peakRss: 0 }));
  consumers.forEach((c, i) => c.on('message', (m: Stats & { kind: string }) => { if (m.kind === 'stats') latest[i] = m; }));
  await Promise.all(consumers.map((c) => once(c, 'ready')));
  const base = latest.reduce((a, s) => a + s.stored, 0);
  const messages = Math.ceil(readings / perMessage);
  const total = messages * perMessage;
  const publisher = child('ingest-publisher-process.js');
  const started = Date.now();
  publisher.send({ url: ctx.brokerUrl, channels: ctx.channels, messages, perMessage, qos: 1 });
  let last = -1;
  let lastChange = Date.now();
  let finished = Date.now();
  const stored = () => latest.reduce((a, s) => a + s.stored, 0) - base;
  while (stored() < total) {
    await sleep(20);
    if (stored() !== last) {
      last = stored();
      lastChange = finished = Date.now();
    } else if (Date.now() - lastChange > 10_000) break;
  }
  if (stored() >= total) finished = Date.now();
  await Promise.all(consumers.map(async (c) => { c.send({ kind: 'stop' }); await once(c, 'stopped').catch(() => undefined); }));
  const seconds = (finished - started) / 1000;
  return { perSecond: stored() / seconds, seconds, stored: stored(), total, peakRssMiB: latest.reduce((a, s) => a + s.peakRss, 0) / 2 ** 20 };
}

function ingestProcess(ctx: BenchContext, clientId: string, sharedGroup?: string): ChildProcess {
  const c = child('ingest-process.js');
  c.send({ dbUrl: ctx.dbUrl, brokerUrl: ctx.brokerUrl, clientId, sharedGroup, batchSize: BATCH, maxWaitMs: WAIT, writers: WRITERS });
  return c;
}

async function mqttRow(ctx: BenchContext, name: string, perMessage: number, readings: number, processes: number): Promise<BenchRow> {
  const group = processes > 1 ? `bench-${process.pid}` : undefined;
  const consumers = Array.from({ length: processes }, (_x, i) => ingestProcess(ctx, `bench-ingest-${process.pid}-${name.length}-${i}`, group));
  const r = await measure(consumers, ctx, perMessage, readings);
  const lost = r.total - r.stored;
  return { name, perMessage, readingsPerSecond: r.perSecond, peakRssMiB: r.peakRssMiB,
    note: `${fmt(r.stored)} stored in ${r.seconds.toFixed(1)} s` + (lost > 0 ? `; ${fmt(lost)} NOT DELIVERED (broker queue limit?)` : '') };
}

async function baselineRow(ctx: BenchContext, plant: Awaited<ReturnType<typeof seedBenchPlant>>, perMessage: number, readings: number): Promise<BenchRow> {
  const c = child('insert-baseline-process.js');
  const units: Record<string, string> = { TEMPERATURE: '°F', VIBRATION: 'mm/s', PRESSURE: 'PSI' };
  c.send({ dbUrl: ctx.dbUrl, brokerUrl: ctx.brokerUrl, clientId: `bench-baseline-${process.pid}`, tenantId: plant.tenantId,
    devices: Object.fromEntries(plant.devices.map((d) => [d.code, d.id])), units });
  const r = await measure([c], ctx, perMessage, readings);
  return { name: `baseline: one INSERT per message (Node-RED-like), ${perMessage} reading${perMessage === 1 ? '' : 's'}/message`, perMessage,
    readingsPerSecond: r.perSecond, peakRssMiB: r.peakRssMiB,
    note: `${fmt(r.stored)} stored in ${r.seconds.toFixed(1)} s; no events, no heartbeats, no dedup check beyond the key` };
}

async function longRun(ctx: BenchContext): Promise<void> {
  const ingest = ingestProcess(ctx, `bench-long-${process.pid}`);
  let s: Stats = { stored: 0, peakRss: 0 };
  ingest.on('message', (m: Stats & { kind: string }) => { if (m.kind === 'stats') s = m; });
  await once(ingest, 'ready');
  const publisher = child('ingest-publisher-process.js');
  publisher.send({ url: ctx.brokerUrl, channels: ctx.channels, messages: 0, perMessage: 20, qos: 1, rate: RATE, seconds: MINUTES * 60 });
  console.log(`\nlong run: ${MINUTES} min at ${fmt(RATE)} readings/s (20 per message), one ingest process`);
  console.log('| minute | stored | readings/s since last | RSS MiB |\n|---:|---:|---:|---:|');
  let prev = 0;
  for (let m = 0.5; m <= MINUTES; m += 0.5) {
    await sleep(30_000);
    console.log(`| ${m.toFixed(1)} | ${fmt(s.stored)} | ${fmt((s.stored - prev) / 30)} | ${fmt((s.rss ?? 0) / 2 ** 20)} |`);
    prev = s.stored;
  }
  publisher.kill();
  ingest.send({ kind: 'stop' });
  await once(ingest, 'stopped').catch(() => undefined);
}

async function main() {
  setLogLevel('warn');
  const db = await benchDatabase('ingest');
  const broker = await benchBroker();
  const pool = new Pool({ connectionString: db.url, max: 4 });
  try {
    const plant = await seedBenchPlant(pool);
    const ctx: BenchContext = { dbUrl: db.url, pool, brokerUrl: broker.url, brokerKind: broker.kind, channels: plant.channels, ids: plant.ids,
      sink: { batchSize: BATCH, maxWaitMs: WAIT, writers: WRITERS } };
    // Today's and tomorrow's partitions (tier 3), for the baseline's plain INSERTs.
    if (db.tier === 3) await pool.query(`select iot_private.ensure_partitions('sensor_readings', now() - interval '1 day', now() + interval '1 day')`);
    const shared = broker.kind.startsWith('aedes') ? undefined : `two ingest processes, shared subscription ($share), 20 readings/message`;
    const rows: BenchRow[] = [];
    const run = async (what: Promise<BenchRow>) => {
      const row = await what;
      console.log(`  measured: ${row.name}: ${row.readingsPerSecond === null ? 'n/a' : fmt(row.readingsPerSecond) + ' readings/s'} (${row.note ?? ''})`);
      rows.push(row);
    };
    await run(mqttRow(ctx, 'MQTT JSON, 20 readings/message, one ingest process', 20, N, 1));
    await run(mqttRow(ctx, 'MQTT JSON, 1 reading/message, one ingest process', 1, Math.ceil(N / 5), 1));
    if (shared) await run(mqttRow(ctx, `MQTT JSON, ${shared}`, 20, N, 2));
    else rows.push({ name: 'MQTT JSON, two ingest processes, shared subscription', readingsPerSecond: null, note: 'n/a: needs MQTT 5 $share (aedes has none; BENCH_MQTT_URL=mosquitto)' });
    for (const extra of EXTRA_ROWS) await run(extra(ctx));
    await run(baselineRow(ctx, plant, 20, N));
    await run(baselineRow(ctx, plant, 1, Math.ceil(N / 5)));
    const ceiling = await copyCeiling(pool, plant.ids, N);
    // Each row beside the baseline with as many readings per message (protocol rows: the 20-reading one).
    const baselineOf = (r: BenchRow) => rows.find((b) => b.name.startsWith('baseline') && b.perMessage === (r.perMessage ?? 20))?.readingsPerSecond ?? null;
    const baseline = baselineOf({ name: '', readingsPerSecond: null });
    const table = [
      `ingest benchmark: PostgreSQL ${db.version}, tier ${db.tier}, broker ${broker.kind}, ${plant.ids.length} channels, ` +
        `batch ${fmt(BATCH)} / wait ${WAIT} ms / ${WRITERS} writers, event detection on`,
      '',
      '| path | readings/s | of COPY ceiling | x baseline (same readings/message) | peak RSS MiB | notes |',
      '|---|---:|---:|---:|---:|---|',
      `| raw COPY ceiling (one COPY stream, same table and indexes) | ${fmt(ceiling)} | 1.00 | ${baseline ? (ceiling / baseline).toFixed(1) : 'n/a'} | | no events, no dedup |`,
      ...rows.map((r) => `| ${r.name} | ${r.readingsPerSecond === null ? 'n/a' : fmt(r.readingsPerSecond)} | ` +
        `${r.readingsPerSecond === null ? '' : (r.readingsPerSecond / ceiling).toFixed(2)} | ` +
        `${r.readingsPerSecond === null || !baselineOf(r) ? '' : (r.readingsPerSecond / baselineOf(r)!).toFixed(1)} | ` +
        `${r.peakRssMiB === undefined ? '' : fmt(r.peakRssMiB)} | ${r.note ?? ''} |`),
    ];
    console.log('\n' + table.join('\n'));
    if (MINUTES > 0) await longRun(ctx);
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

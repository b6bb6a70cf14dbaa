// OPC UA bench: readings/s stored end to end (simulator server -> monitored items -> OPC UA
// ingestor -> COPY sink -> sensor_readings) for N monitored items, beside what the server produced
// in the same seconds. Not a test: it prints figures. The simulator runs in a child process (this
// file again, with BENCH_OPCUA_ROLE=server), so server and ingestor do not share an event loop.
import { fork } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Pool } from 'pg';
import { OpcuaIngestor } from '../src/ingest/opcua/ingestor';
import { RegistryCache } from '../src/ingest/registry';
import { ReadingSink } from '../src/ingest/sink';
import { freePort } from '../src/lib/embedded/ports';
import { setLogLevel } from '../src/lib/log';
import { OpcuaSimServer, simNodeId } from '../src/sim/opcua-server';
import { benchDatabase, fmt, handleArguments } from './support';

if (process.env.BENCH_OPCUA_ROLE !== 'server') handleArguments(`
npm run bench:opcua: readings per second stored from N OPC UA monitored items (simulator in a child process).

Variables:
  BENCH_OPCUA_ITEMS        monitored items (1000; the demo plant's 50 channels, repeated)
  BENCH_OPCUA_INTERVAL_MS  the simulator's update interval per item (100)
  BENCH_SECONDS            measured seconds (20)`);

const ITEMS = Number(process.env.BENCH_OPCUA_ITEMS ?? 1000);
const INTERVAL = Number(process.env.BENCH_OPCUA_INTERVAL_MS ?? 100);
const SECONDS = Number(process.env.BENCH_SECONDS ?? 20);

type ToServer = { cmd: 'window' } | { cmd: 'pause' } | { cmd: 'stop' };
type FromServer = { ready: { endpointUrl: string; nodes: { deviceCode: string; sensorType: string }[] } } | { paused: { produced: number; from: number; to: number } } | { watched: number };

async function serve() {
  const copies = Math.ceil(ITEMS / 50);
  const sim = new OpcuaSimServer({ port: Number(process.env.BENCH_OPCUA_PORT), copies, intervalMs: INTERVAL });
  await sim.start();
  let from = 0;
  let windowStart = 0;
  const send = (m: FromServer) => process.send!(m);
  const nodes = [...sim.nodes.values()].slice(0, ITEMS).map((n) => ({ deviceCode: n.deviceCode, sensorType: n.sensorType }));
  const wanted = new Set(nodes.map((n) => simNodeId(n.deviceCode, n.sensorType)));
  const watchTimer = setInterval(() => send({ watched: [...sim.nodes.values()].filter((n) => wanted.has(n.nodeId) && sim.watched(n)).length }), 500);
  process.on('message', async (m: ToServer) => {
    if (m.cmd === 'window') {
      from = sim.produced.length;
      windowStart = Date.now();
    } else if (m.cmd === 'pause') {
      sim.pause();
      const inWindow = sim.produced.slice(from).filter((p) => wanted.has(p.nodeId));
      send({ paused: { produced: inWindow.length, from: windowStart, to: Date.now() } });
    } else {
      clearInterval(watchTimer);
      await sim.dispose();
      process.exit(0);
    }
  });
  send({ ready: { endpointUrl: sim.endpointUrl, nodes } });
}

async function main() {
  setLogLevel('warn');
  const db = await benchDatabase('opcua');
  const pool = new Pool({ connectionString: db.url, max: 8 });
  const dir = mkdtempSync(join(tmpdir(), 'bench-opcua-'));
  const child = fork(__filename, [], { env: { ...process.env, BENCH_OPCUA_ROLE: 'server', BENCH_OPCUA_PORT: String(await freePort()) }, execArgv: process.execArgv });
  let watched = 0;
  const next = <K extends string>(k: K) => new Promise<any>((resolve) => { // eslint-disable-line @typescript-eslint/no-explicit-any
    const on = (m: Record<string, unknown>) => {
      if (k in m) {
        child.off('message', on);
        resolve(m[k]);
      }
    };
    child.on('message', on);
  });
  child.on('message', (m: Record<string, unknown>) => {
    if ('watched' in m) watched = m.watched as number;
  });
  const ready = await next('ready') as { endpointUrl: string; nodes: { deviceCode: string; sensorType: string }[] };
  const nodes = ready.nodes;
  const sim = { endpointUrl: ready.endpointUrl };
  const t = (await pool.query(`insert into iot.tenants (tenant_code, name) values ('bench', 'Bench') returning id`)).rows[0].id;
  const f = (await pool.query(`insert into iot.facilities (tenant_id, facility_code, name) values ($1, 'B1', 'Bench') returning id`, [t])).rows[0].id;
  const wc = (await pool.query(`insert into iot.work_centers (tenant_id, facility_id, work_center_code, name, work_center_type) values ($1, $2, 'WC', 'WC', 'PRESS') returning id`, [t, f])).rows[0].id;
  const byDevice = new Map<string, typeof nodes>();
  for (const n of nodes) byDevice.set(n.deviceCode, [...(byDevice.get(n.deviceCode) ?? []), n]);
  for (const [code, list] of byDevice) {
    const d = (await pool.query(`insert into iot.iot_devices (tenant_id, work_center_id, device_code, connection_type, connection_config)
      values ($1, $2, $3, 'OPC_UA', $4) returning id`, [t, wc, code, { endpointUrl: sim.endpointUrl, publishingIntervalMs: 250 }])).rows[0].id;
    for (const n of list) {
      await pool.query(`insert into iot.device_channels (tenant_id, device_id, sensor_type, unit, protocol_address) values ($1, $2, $3, 'u', $4)`,
        [t, d, n.sensorType, simNodeId(n.deviceCode, n.sensorType)]);
    }
  }
  const registry = new RegistryCache(pool, 0);
  await registry.start();
  const sink = new ReadingSink(pool, { batchSize: 5000, maxWaitMs: 200, bufferMax: 100_000 });
  const ingestor = new OpcuaIngestor({ pkiDir: join(dir, 'pki') }, registry, sink, pool);
  const setupStart = Date.now();
  await ingestor.start();
  while (watched < nodes.length && Date.now() - setupStart < 300_000) await new Promise((r) => setTimeout(r, 200));
  const setupSeconds = (Date.now() - setupStart) / 1000;
  await new Promise((r) => setTimeout(r, 2000)); // settle
  child.send({ cmd: 'window' } satisfies ToServer);
  let peakRss = 0;
  const sampler = setInterval(() => (peakRss = Math.max(peakRss, process.memoryUsage().rss)), 500);
  await new Promise((r) => setTimeout(r, SECONDS * 1000));
  const pausedAnswer = next('paused');
  child.send({ cmd: 'pause' } satisfies ToServer);
  const w = await pausedAnswer as { produced: number; from: number; to: number };
  const seconds = (w.to - w.from) / 1000;
  const produced = w.produced;
  await new Promise((r) => setTimeout(r, 2000)); // the last publishes
  await sink.flush();
  // What was produced in the window and stored (by source timestamp), whenever it was written.
  const stored = Number((await pool.query('select count(*) from iot_private.sensor_readings where time >= $1 and time <= $2',
    [new Date(w.from), new Date(w.to)])).rows[0].count);
  clearInterval(sampler);
  console.log(`\nOPC UA ingest (tier ${db.tier}, PostgreSQL ${db.version}), simulator in a child process`);
  console.log(`| items | devices (sessions) | update interval | produced/s | stored/s | stored / produced | subscribe all | ingestor peak RSS |`);
  console.log(`|---|---|---|---|---|---|---|---|`);
  console.log(`| ${fmt(nodes.length)} | ${fmt(byDevice.size)} | ${INTERVAL} ms | ${fmt(produced / seconds)} | ${fmt(stored / seconds)} | ` +
    `${(stored / Math.max(1, produced)).toFixed(3)} | ${setupSeconds.toFixed(1)} s | ${Math.round(peakRss / 1048576)} MiB |`);
  await ingestor.stop();
  await sink.close();
  await registry.stop();
  child.send({ cmd: 'stop' } satisfies ToServer);
  await pool.end();
  await db.drop();
  rmSync(dir, { recursive: true, force: true });
}

(process.env.BENCH_OPCUA_ROLE === 'server' ? serve() : main()).catch((error) => {
  console.error(error);
  process.exit(1);
});

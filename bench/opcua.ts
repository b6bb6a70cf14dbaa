// OPC UA bench: readings/s stored end to end (simulator server -> monitored items -> OPC UA
// ingestor -> COPY sink -> sensor_readings) for N monitored items, beside what the server produced
// in the same seconds. Not a test: it prints figures. The simulator runs in a child process (this
// file again, with BENCH_OPCUA_ROLE=server) and the ingestor in another, so they do not share an
// event loop. opcuaRow is bench:ingest's OPC UA row, on its database.
import { fork } from 'node:child_process';
import { freePort } from '../src/lib/embedded/ports';
import { fmt, handleArguments } from './support';
import { BenchContext, BenchRow, IngestChild, keptUp, mib, retireTenant, rowTenant, runMain, sinkSettings, sleep, standalone, storedFor } from './rows';

const USAGE = `
npm run bench:opcua: readings per second stored from N OPC UA monitored items (simulator in a child
process, ingestor in another), what the server produced in the same seconds beside it.

Variables:
  BENCH_OPCUA_ITEMS        monitored items (2000; the demo plant's 50 channels, repeated)
  BENCH_OPCUA_INTERVAL_MS  the simulator's update interval per item (50)
  BENCH_OPCUA_ITEMS_PER_SESSION  monitored items per device, one session each (100)
  BENCH_SECONDS            measured seconds (12)`;

const ITEMS = Number(process.env.BENCH_OPCUA_ITEMS ?? 2000);
const INTERVAL = Number(process.env.BENCH_OPCUA_INTERVAL_MS ?? 50);
const SECONDS = Number(process.env.BENCH_SECONDS ?? 12);
const PER_SESSION = Number(process.env.BENCH_OPCUA_ITEMS_PER_SESSION ?? 100);
const SETUP_MAX_MS = 120_000;

// node-opcua is loaded when an OPC UA row runs, not when bench:ingest imports this file.
// eslint-disable-next-line @typescript-eslint/no-require-imports
const simulator = () => require('../src/sim/opcua-server') as typeof import('../src/sim/opcua-server');

type ToServer = { cmd: 'window' } | { cmd: 'pause' } | { cmd: 'stop' };
type FromServer = { ready: { endpointUrl: string; nodes: { deviceCode: string; sensorType: string }[] } } | { paused: { produced: number; from: number; to: number } } | { watched: number };

async function serve() {
  const { OpcuaSimServer, simNodeId } = simulator();
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

/**
 * bench:ingest's OPC UA row: ITEMS monitored items (a tenant of its own, one session per simulated
 * device) updated every INTERVAL ms by the simulator; stored/s of what was produced in a SECONDS window.
 * The server produces at a fixed rate, so the row shows whether the ingest path keeps up with it.
 */
export async function opcuaRow(ctx: BenchContext): Promise<BenchRow> {
  const { simNodeId } = simulator();
  const pool = ctx.pool;
  const child = fork(__filename, [], { env: { ...process.env, BENCH_OPCUA_ROLE: 'server', BENCH_OPCUA_PORT: String(await freePort()) },
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  let watched = 0;
  let exited: number | null = null;
  child.once('exit', (code) => (exited = code ?? -1));
  const next = <T>(k: string) => new Promise<T>((resolve, reject) => {
    const on = (m: Record<string, unknown>) => {
      if (!(k in m)) return;
      child.off('message', on);
      resolve(m[k] as T);
    };
    child.on('message', on);
    child.once('exit', (code) => reject(new Error(`OPC UA simulator exited (${code}) before '${k}'`)));
  });
  child.on('message', (m: Record<string, unknown>) => {
    if ('watched' in m) watched = m.watched as number;
  });
  let ingest: IngestChild | undefined;
  let tenantId: string | undefined;
  try {
    const { endpointUrl, nodes } = await next<{ endpointUrl: string; nodes: { deviceCode: string; sensorType: string }[] }>('ready');
    const tenant = await rowTenant(pool, `bench-opcua-${process.pid}`);
    tenantId = tenant.tenantId;
    // PER_SESSION items per registry device (one session and subscription each): the simulator's
    // devices have 2-3 channels, and hundreds of sessions would measure session set-up, not ingest.
    // A channel is unique per device and sensor type, so each item gets a bench sensor type OPC000...
    await pool.query(`insert into iot.sensor_types (sensor_type, description, default_unit)
                      select 'OPC' || lpad(i::text, 4, '0'), 'bench OPC UA item', 'u' from generate_series(0, $1 - 1) i
                      on conflict do nothing`, [PER_SESSION]);
    const sessions = Math.ceil(nodes.length / PER_SESSION);
    for (let s = 0; s < sessions; s++) {
      const d = (await pool.query(`insert into iot.iot_devices (tenant_id, work_center_id, device_code, connection_type, connection_config)
        values ($1, $2, $3, 'OPC_UA', $4) returning id`, [tenantId, tenant.workCenterId, `OPC-${s}`, { endpointUrl, publishingIntervalMs: 250 }])).rows[0].id;
      await pool.query(`insert into iot.device_channels (tenant_id, device_id, sensor_type, unit, protocol_address)
        select $1, $2, 'OPC' || lpad((k - 1)::text, 4, '0'), 'u', a from unnest($3::text[]) with ordinality as x(a, k)`,
        [tenantId, d, nodes.slice(s * PER_SESSION, (s + 1) * PER_SESSION).map((n) => simNodeId(n.deviceCode, n.sensorType))]);
    }
    ingest = new IngestChild({ protocol: 'opcua', dbUrl: ctx.dbUrl, sink: sinkSettings(ctx) });
    const setupStart = Date.now();
    await ingest.ready;
    while (watched < nodes.length && Date.now() - setupStart < SETUP_MAX_MS && exited === null) await sleep(200);
    const setupSeconds = (Date.now() - setupStart) / 1000;
    await sleep(2000); // settle
    const watchedAtStart = watched;
    child.send({ cmd: 'window' } satisfies ToServer);
    await sleep(SECONDS * 1000);
    const paused = next<{ produced: number; from: number; to: number }>('paused');
    child.send({ cmd: 'pause' } satisfies ToServer);
    const w = await paused;
    const seconds = (w.to - w.from) / 1000;
    await sleep(2000); // the last publishes
    await ingest.flush();
    // What was produced in the window and stored (by source timestamp), whenever it was written.
    const stored = await storedFor(pool, tenantId, new Date(w.from), new Date(w.to));
    const final = await ingest.stop();
    return { name: `OPC UA, ${fmt(nodes.length)} monitored items (${fmt(sessions)} sessions, ${INTERVAL} ms updates)`,
      readingsPerSecond: stored / seconds, peakRssMiB: mib(final.peakRss),
      note: `produced ${fmt(w.produced / seconds)}/s, stored ${fmt(stored / seconds)}/s (${(stored / Math.max(1, w.produced)).toFixed(3)} of produced) ` +
        `in a ${seconds.toFixed(1)} s window: ${keptUp(stored, w.produced)}; ${watchedAtStart} of ${nodes.length} items watched, ` +
        `subscribed in ${setupSeconds.toFixed(1)} s` };
  } finally {
    await ingest?.stop();
    if (tenantId) await retireTenant(pool, tenantId);
    if (exited === null) {
      child.send({ cmd: 'stop' } satisfies ToServer);
      await Promise.race([new Promise((r) => child.once('exit', r)), sleep(10_000)]);
      if (child.exitCode === null) child.kill('SIGKILL');
    }
  }
}

if (require.main === module) {
  if (process.env.BENCH_OPCUA_ROLE === 'server') runMain(serve);
  else {
    handleArguments(USAGE);
    runMain(() => standalone('OPC UA', [opcuaRow]));
  }
}

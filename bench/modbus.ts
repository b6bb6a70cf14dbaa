// Modbus benchmark: readings per second stored end to end (simulated PLCs in a child process ->
// Modbus TCP on loopback -> ModbusPoller -> COPY sink -> sensor_readings) for N devices x M
// registers polled every interval. Not a test: it prints figures. The same file is the child
// process (BENCH_MODBUS_CHILD=1) so the servers do not share the poller's thread.
import { fork } from 'node:child_process';
import { Pool } from 'pg';
import { ModbusPoller } from '../src/ingest/modbus/poller';
import { RegistryCache } from '../src/ingest/registry';
import { ReadingSink } from '../src/ingest/sink';
import { setLogLevel } from '../src/lib/log';
import { ModbusSimServer } from '../src/sim/modbus-server';
import { benchDatabase, fmt, handleArguments } from './support';

const DEVICES = Number(process.env.BENCH_MODBUS_DEVICES ?? 10);
const REGISTERS = Number(process.env.BENCH_MODBUS_REGISTERS ?? 100);
const INTERVAL_MS = Number(process.env.BENCH_MODBUS_INTERVAL_MS ?? 50);
const SECONDS = Number(process.env.BENCH_SECONDS ?? 20);

/** Child: DEVICES simulated PLCs whose holding registers all change every interval. */
async function serve(): Promise<void> {
  const servers: ModbusSimServer[] = [];
  for (let i = 0; i < DEVICES; i++) {
    const s = new ModbusSimServer({ registers: Math.max(REGISTERS, 1), bits: 16 });
    await s.start();
    servers.push(s);
  }
  let n = 0;
  setInterval(() => {
    n++;
    for (const s of servers) for (let r = 0; r < REGISTERS; r++) s.holding.writeUInt16BE((n + r) & 0xffff, r * 2);
  }, INTERVAL_MS);
  process.send!({ ports: servers.map((s) => s.port) });
  process.on('message', (m) => {
    if (m === 'counts') process.send!({ requests: servers.reduce((sum, s) => sum + s.requests.total, 0) });
  });
}

async function main(): Promise<void> {
  handleArguments(`
npm run bench:modbus (bench/modbus.ts): readings per second stored from Modbus TCP polling
(simulated PLCs in a child process -> ModbusPoller -> COPY sink -> sensor_readings).

Variables:
  BENCH_MODBUS_DEVICES       simulated PLCs, one connection each (10)
  BENCH_MODBUS_REGISTERS     holding registers polled per device, one channel each (100)
  BENCH_MODBUS_INTERVAL_MS   poll interval per device (50)
  BENCH_SECONDS              measuring time after a 3 s warm-up (20)`);
  setLogLevel('warn');
  const db = await benchDatabase('modbus');
  const pool = new Pool({ connectionString: db.url, max: 8 });
  const child = fork(__filename, [], { env: { ...process.env, BENCH_MODBUS_CHILD: '1' }, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  try {
    const { ports } = await new Promise<{ ports: number[] }>((resolve, reject) => {
      child.once('message', (m) => resolve(m as { ports: number[] }));
      child.once('exit', (code) => reject(new Error(`Modbus server process exited ${code}`)));
    });
    const requests = () => new Promise<number>((resolve) => {
      child.once('message', (m) => resolve((m as { requests: number }).requests));
      child.send('counts');
    });
    // One sensor type per register (a channel is unique per device and sensor type).
    await pool.query(`insert into iot.sensor_types (sensor_type, description, default_unit)
                      select 'R' || lpad(i::text, 3, '0'), 'bench register', 'units' from generate_series(0, $1 - 1) i`, [REGISTERS]);
    const t = (await pool.query(`insert into iot.tenants (tenant_code, name) values ('bench', 'Bench') returning id`)).rows[0].id;
    const f = (await pool.query(`insert into iot.facilities (tenant_id, facility_code, name) values ($1, 'B1', 'Bench') returning id`, [t])).rows[0].id;
    const wc = (await pool.query(`insert into iot.work_centers (tenant_id, facility_id, work_center_code, name, work_center_type) values ($1, $2, 'WC', 'WC', 'PRESS') returning id`, [t, f])).rows[0].id;
    for (let i = 0; i < DEVICES; i++) {
      const config = { host: '127.0.0.1', port: ports[i], pollIntervalMs: INTERVAL_MS, timeoutMs: 2000 };
      const d = (await pool.query(`insert into iot.iot_devices (tenant_id, work_center_id, device_code, connection_type, connection_config)
                                   values ($1, $2, $3, 'MODBUS', $4) returning id`, [t, wc, `PLC-${i}`, JSON.stringify(config)])).rows[0].id;
      await pool.query(`insert into iot.device_channels (tenant_id, device_id, sensor_type, unit, protocol_address)
                        select $1, $2, 'R' || lpad(i::text, 3, '0'), 'units', 'holding:' || i from generate_series(0, $3 - 1) i`, [t, d, REGISTERS]);
    }
    const registry = new RegistryCache(pool);
    await registry.start();
    const sink = new ReadingSink(pool, { batchSize: 5000, maxWaitMs: 100, bufferMax: 200_000, writers: 2 });
    const poller = new ModbusPoller(pool, registry, sink);
    let peakRss = 0;
    const sampler = setInterval(() => (peakRss = Math.max(peakRss, process.memoryUsage().rss)), 100);
    await poller.start();
    await new Promise((r) => setTimeout(r, 3000));
    const s0 = { stored: sink.stats.stored, polls: poller.stats.polls, requests: await requests(), at: Date.now() };
    await new Promise((r) => setTimeout(r, SECONDS * 1000));
    const s1 = { stored: sink.stats.stored, polls: poller.stats.polls, requests: await requests(), at: Date.now() };
    clearInterval(sampler);
    const seconds = (s1.at - s0.at) / 1000;
    const offered = (DEVICES * REGISTERS * 1000) / INTERVAL_MS;
    const rate = (s1.stored - s0.stored) / seconds;
    const stats = poller.stats;
    const waits = poller.sinkWaits;
    const buffered = sink.buffered;
    await poller.stop();
    await sink.close();
    await registry.stop();
    console.log([
      `Modbus benchmark (PostgreSQL ${db.version}, tier ${db.tier}): ${DEVICES} devices x ${REGISTERS} registers every ${INTERVAL_MS} ms`,
      `  requests       ${fmt((s1.requests - s0.requests) / seconds)}/s on the servers (${Math.ceil(REGISTERS / 125)} per poll: adjacent registers merged, 125 at most)`,
      `  polls          ${fmt((s1.polls - s0.polls) / seconds)}/s of ${fmt((DEVICES * 1000) / INTERVAL_MS)}/s scheduled; failed requests ${stats.failedRequests}`,
      `  stored         ${fmt(rate)} readings/s of ${fmt(offered)}/s polled (${(rate / offered).toFixed(2)}), duplicates ${sink.stats.duplicates}, dead letters ${sink.stats.deadLetters}`,
      `  back-pressure  ${waits} polls waited for the sink (buffer full: the database is behind); ${fmt(buffered)} readings buffered at the end, ${sink.stats.batches} batches`,
      `  memory         peak RSS ${fmt(peakRss / 2 ** 20)} MiB`,
    ].join('\n'));
  } finally {
    child.kill('SIGTERM');
    await pool.end();
    await db.drop();
  }
}

if (process.env.BENCH_MODBUS_CHILD === '1') {
  serve().catch((error) => {
    console.error(error);
    process.exit(1);
  });
} else {
  main().catch((error) => {
    console.error(error);
    process.exit(1);
  });
}

// Modbus benchmark: readings per second stored end to end (simulated PLCs in a child process ->
// Modbus TCP on loopback -> ModbusPoller -> COPY sink -> sensor_readings) for N devices x M
// registers polled every interval. Not a test: it prints figures. The same file is the child
// process (BENCH_MODBUS_CHILD=1) so the servers do not share the poller's thread; the poller runs
// in a child of its own too. modbusRow is bench:ingest's Modbus row, on its database.
import { fork } from 'node:child_process';
import { ModbusSimServer } from '../src/sim/modbus-server';
import { fmt, handleArguments } from './support';
import { BenchContext, BenchRow, IngestChild, keptUp, mib, retireTenant, rowTenant, runMain, sinkSettings, sleep, standalone } from './rows';

const DEVICES = Number(process.env.BENCH_MODBUS_DEVICES ?? 20);
const REGISTERS = Number(process.env.BENCH_MODBUS_REGISTERS ?? 250);
const INTERVAL_MS = Number(process.env.BENCH_MODBUS_INTERVAL_MS ?? 50);
const SECONDS = Number(process.env.BENCH_SECONDS ?? 12);

const USAGE = `
npm run bench:modbus (bench/modbus.ts): readings per second stored from Modbus TCP polling
(simulated PLCs in a child process -> ModbusPoller in another -> COPY sink -> sensor_readings).

Variables:
  BENCH_MODBUS_DEVICES       simulated PLCs, one connection each (20)
  BENCH_MODBUS_REGISTERS     holding registers polled per device, one channel each (250)
  BENCH_MODBUS_INTERVAL_MS   poll interval per device (50)
  BENCH_SECONDS              measuring time after a 3 s warm-up (12)`;

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

/**
 * bench:ingest's Modbus row: DEVICES simulated PLCs (a tenant of its own) of REGISTERS holding
 * registers each, all changing every interval and polled every INTERVAL_MS; readings/s stored over
 * SECONDS after a warm-up. The poll schedule sets the offered rate: the row shows whether the poller
 * and sink keep up with it.
 */
export async function modbusRow(ctx: BenchContext): Promise<BenchRow> {
  const pool = ctx.pool;
  const child = fork(__filename, [], { env: { ...process.env, BENCH_MODBUS_CHILD: '1' }, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  let ingest: IngestChild | undefined;
  let tenantId: string | undefined;
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
                      select 'R' || lpad(i::text, 4, '0'), 'bench register', 'units' from generate_series(0, $1 - 1) i
                      on conflict do nothing`, [REGISTERS]);
    const tenant = await rowTenant(pool, `bench-modbus-${process.pid}`);
    tenantId = tenant.tenantId;
    for (let i = 0; i < DEVICES; i++) {
      const config = { host: '127.0.0.1', port: ports[i], pollIntervalMs: INTERVAL_MS, timeoutMs: 2000 };
      const d = (await pool.query(`insert into iot.iot_devices (tenant_id, work_center_id, device_code, connection_type, connection_config)
                                   values ($1, $2, $3, 'MODBUS', $4) returning id`, [tenantId, tenant.workCenterId, `PLC-${i}`, JSON.stringify(config)])).rows[0].id;
      await pool.query(`insert into iot.device_channels (tenant_id, device_id, sensor_type, unit, protocol_address)
                        select $1, $2, 'R' || lpad(i::text, 4, '0'), 'units', 'holding:' || i from generate_series(0, $3 - 1) i`, [tenantId, d, REGISTERS]);
    }
    ingest = new IngestChild({ protocol: 'modbus', dbUrl: ctx.dbUrl, sink: sinkSettings(ctx) });
    await ingest.ready;
    await sleep(3000);
    const s0 = { stored: ingest.latest.stored, polls: ingest.latest.extra.polls ?? 0, requests: await requests(), at: Date.now() };
    await sleep(SECONDS * 1000);
    const l = ingest.latest;
    const s1 = { stored: l.stored, polls: l.extra.polls ?? 0, requests: await requests(), at: Date.now() };
    const seconds = (s1.at - s0.at) / 1000;
    const offered = (DEVICES * REGISTERS * 1000) / INTERVAL_MS;
    const rate = (s1.stored - s0.stored) / seconds;
    const final = await ingest.stop();
    return { name: `Modbus TCP, ${fmt(DEVICES * REGISTERS)} registers polled (${DEVICES} PLCs x ${REGISTERS}, every ${INTERVAL_MS} ms)`,
      readingsPerSecond: rate, peakRssMiB: mib(final.peakRss),
      note: `produced (polled schedule) ${fmt(offered)}/s, stored ${fmt(rate)}/s (${(rate / offered).toFixed(2)}); ` +
        `${fmt((s1.polls - s0.polls) / seconds)} polls/s of ${fmt((DEVICES * 1000) / INTERVAL_MS)}/s scheduled, ` +
        `${fmt((s1.requests - s0.requests) / seconds)} requests/s (${Math.ceil(REGISTERS / 125)} per poll); failed requests ${final.extra.failedRequests ?? 0}, ` +
        `${final.extra.sinkWaits ?? 0} polls waited for the sink: ${keptUp(rate, offered)}` };
  } finally {
    await ingest?.stop();
    if (tenantId) await retireTenant(pool, tenantId);
    child.kill('SIGTERM');
  }
}

if (require.main === module) {
  if (process.env.BENCH_MODBUS_CHILD === '1') runMain(serve);
  else {
    handleArguments(USAGE);
    runMain(() => standalone('Modbus', [modbusRow]));
  }
}

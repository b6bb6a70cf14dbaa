// REST ingest benchmark: readings per second stored end to end (HTTP clients in a child process ->
// POST /ingest/readings over keep-alive connections -> device key check -> COPY sink ->
// sensor_readings), for batches of N readings per request. Each request waits for its commit, so
// this is the rate a gateway sees with its answers. Not a test: it prints figures. The same file is
// the client process (BENCH_REST_CHILD=1) so the clients do not share the server's thread; the
// server and sink run in a child of their own. restRow(batch) is bench:ingest's REST row, on its database.
import { fork } from 'node:child_process';
import { Agent, request } from 'node:http';
import { createDeviceKey } from '../src/ingest/rest/device-keys';
import { fmt, handleArguments } from './support';
import { BenchContext, BenchRow, IngestChild, mib, retireTenant, rowTenant, RowFunction, runMain, sinkSettings, standalone } from './rows';

export const REST_BATCHES = (process.env.BENCH_REST_BATCHES ?? '1,100,1000').split(',').map(Number);
const CONNECTIONS = Number(process.env.BENCH_REST_CONNECTIONS ?? 16);
const DEVICES = Number(process.env.BENCH_REST_DEVICES ?? 50);
const SECONDS = Number(process.env.BENCH_SECONDS ?? 10);
const SENSORS = ['TEMPERATURE', 'VIBRATION', 'PRESSURE'];

const USAGE = `
npm run bench:rest (bench/rest.ts): readings per second stored through the REST endpoint
(HTTP keep-alive clients in a child process -> POST /ingest/readings on a server in another ->
COPY sink -> sensor_readings), each request answered after its commit.

Variables:
  BENCH_REST_BATCHES       readings per request, one row each (1,100,1000)
  BENCH_REST_CONNECTIONS   keep-alive connections posting at once (16)
  BENCH_REST_DEVICES       REST_API devices, one API key each, 3 channels each (50)
  BENCH_SECONDS            measuring time per row (10)`;

interface Job { url: string; keys: string[]; batch: number; seconds: number }
interface Done { requests: number; readings: number; errors: Record<string, number>; p50: number; p99: number }

/** Child: CONNECTIONS clients, each posting batches for one device after another, until the time is up. */
async function clients(job: Job): Promise<Done> {
  const agent = new Agent({ keepAlive: true, maxSockets: CONNECTIONS });
  const last = new Map<string, number>(); // per channel: times strictly increase, so nothing is a duplicate
  const latencies: number[] = [];
  const errors: Record<string, number> = {};
  let requests = 0;
  let readings = 0;
  const end = Date.now() + job.seconds * 1000;
  const post = (key: string, body: string) => new Promise<number>((resolve) => {
    const req = request(`${job.url}/ingest/readings`, {
      method: 'POST', agent,
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) },
    }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('error', () => resolve(-1));
    req.end(body);
  });
  const worker = async (w: number) => {
    for (let i = w; Date.now() < end; i += CONNECTIONS) {
      const device = i % job.keys.length;
      const items = [];
      for (let j = 0; j < job.batch; j++) {
        const sensorType = SENSORS[j % SENSORS.length];
        const k = `${device}/${sensorType}`;
        const t = Math.max(Date.now(), (last.get(k) ?? 0) + 1);
        last.set(k, t);
        items.push({ sensorType, value: 50 + (j % 40), timestamp: new Date(t).toISOString() });
      }
      const started = performance.now();
      const status = await post(job.keys[device], JSON.stringify(items));
      latencies.push(performance.now() - started);
      requests++;
      if (status === 200) readings += job.batch;
      else errors[status] = (errors[status] ?? 0) + 1;
    }
  };
  await Promise.all(Array.from({ length: CONNECTIONS }, (_, w) => worker(w)));
  agent.destroy();
  latencies.sort((a, b) => a - b);
  const q = (p: number) => latencies[Math.min(latencies.length - 1, Math.floor(latencies.length * p))] ?? 0;
  return { requests, readings, errors, p50: q(0.5), p99: q(0.99) };
}

/**
 * bench:ingest's REST row for batches of `batch` readings per request: DEVICES REST_API devices (a
 * tenant of its own per row, one key each), CONNECTIONS clients posting for SECONDS; readings/s the
 * sink stored while they posted.
 */
export function restRow(batch: number): RowFunction {
  return async (ctx: BenchContext): Promise<BenchRow> => {
    const pool = ctx.pool;
    const tenant = await rowTenant(pool, `bench-rest-${batch}-${process.pid}`);
    const ingest = new IngestChild({ protocol: 'rest', dbUrl: ctx.dbUrl, sink: sinkSettings(ctx), restMaxReadings: batch });
    try {
      const keys: string[] = [];
      for (let i = 0; i < DEVICES; i++) {
        const d = (await pool.query(`insert into iot.iot_devices (tenant_id, work_center_id, device_code, connection_type) values ($1, $2, $3, 'REST_API') returning id`,
          [tenant.tenantId, tenant.workCenterId, `GW-${i}`])).rows[0].id;
        for (const [s, u] of [['TEMPERATURE', '°F'], ['VIBRATION', 'mm/s'], ['PRESSURE', 'PSI']]) {
          await pool.query(`insert into iot.device_channels (tenant_id, device_id, sensor_type, unit) values ($1, $2, $3, $4)`, [tenant.tenantId, d, s, u]);
        }
        keys.push((await createDeviceKey(pool, d, 'bench')).apiKey);
      }
      const { url } = await ingest.ready;
      const child = fork(__filename, [], { env: { ...process.env, BENCH_REST_CHILD: '1' }, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
      const s0 = { stored: ingest.latest.stored, at: Date.now() };
      const done = await new Promise<Done>((resolve, reject) => {
        child.once('message', (m) => resolve(m as Done));
        child.once('exit', (code) => reject(new Error(`REST client process exited ${code}`)));
        child.send({ url: url!, keys, batch, seconds: SECONDS } satisfies Job);
      });
      const seconds = (Date.now() - s0.at) / 1000;
      child.kill('SIGTERM');
      const final = await ingest.stop();
      const stored = final.stored - s0.stored;
      const errors = Object.entries(done.errors).map(([s, n]) => `${s}: ${n}`).join(', ') || 'none';
      return { name: `REST, ${fmt(batch)} reading${batch === 1 ? '' : 's'}/request (${CONNECTIONS} keep-alive connections, answered after commit)`,
        readingsPerSecond: stored / seconds, peakRssMiB: mib(final.peakRss),
        note: `${fmt(done.requests / seconds)} requests/s, p50 ${done.p50.toFixed(1)} ms, p99 ${done.p99.toFixed(1)} ms; ` +
          `answered ${fmt(done.readings)} stored, sink stored ${fmt(stored)}; errors ${errors}` };
    } finally {
      await ingest.stop();
      await retireTenant(pool, tenant.tenantId);
    }
  };
}

export const restRows = (): RowFunction[] => REST_BATCHES.map(restRow);

if (require.main === module) {
  if (process.env.BENCH_REST_CHILD === '1') {
    process.once('message', (job) => {
      clients(job as Job).then((done) => process.send!(done, () => process.exit(0)), (error) => {
        console.error(error);
        process.exit(1);
      });
    });
  } else {
    handleArguments(USAGE);
    runMain(() => standalone('REST', restRows()));
  }
}

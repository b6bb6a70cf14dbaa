// npm run bench:batch — what one sink batch costs in the database, step by step (begin + staging,
// binary COPY, ingest_staged_readings, commit), for batches shaped like bench:ingest's traffic (20
// readings per message of one channel, 300 channels, live timestamps, 1 channel in 100 out of
// range). A profiling aid: it prints figures, it is not a test.
import { Client } from 'pg';
import { binaryCopyRows } from '../src/ingest/copy-binary';
import type { Reading } from '../src/ingest/reading';
import { from as copyFrom } from 'pg-copy-streams';
import { benchDatabase, seedBenchPlant, fmt, handleArguments } from './support';
import { Pool } from 'pg';

handleArguments(`
npm run bench:batch: the database's cost of one ingest batch, step by step, averaged over batches.

Variables:
  BENCH_BATCH_SIZE   readings per batch (5000)
  BENCH_READINGS_PER_MESSAGE  consecutive readings of one channel (20; 1: a batch spreads over the channels)
  BENCH_BATCHES      batches to write (60)
  BENCH_WARMUP       first batches not counted (up to 10: a third of BENCH_BATCHES)
  BENCH_EXPLAIN      1: log every nested statement's duration (auto_explain, server log); analyze: with plans
  BENCH_KEEP         1: keep the database and print its URL`);

const BATCH = Number(process.env.BENCH_BATCH_SIZE ?? 5000);
const PER_MESSAGE = Number(process.env.BENCH_READINGS_PER_MESSAGE ?? 20);
const BATCHES = Number(process.env.BENCH_BATCHES ?? 60);
const LEVEL: Record<string, [number, number]> = { TEMPERATURE: [67.5, 1], VIBRATION: [1.2, 0.15], PRESSURE: [100, 3] };

async function main() {
  const db = await benchDatabase('batch');
  const pool = new Pool({ connectionString: db.url, max: 2 });
  const plant = await seedBenchPlant(pool);
  await pool.end();
  const client = new Client({ connectionString: db.url });
  await client.connect();
  if (process.env.BENCH_EXPLAIN) {
    await client.query(`load 'auto_explain'; set auto_explain.log_min_duration = 0; set auto_explain.log_nested_statements = on; set auto_explain.log_analyze = ${process.env.BENCH_EXPLAIN === 'analyze' ? 'on' : 'off'}; set auto_explain.log_timing = on`);
  }
  let seed = 12345;
  const rand = () => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff);
  const last = new Array<number>(plant.ids.length).fill(0);
  let m = 0;
  const sums = { begin: 0, copy: 0, ingest: 0, commit: 0 };
  const n0 = Number(process.env.BENCH_WARMUP ?? Math.min(10, Math.floor(BATCHES / 3)));
  for (let b = 0; b < BATCHES; b++) {
    const batch: Reading[] = [];
    for (let k = 0; k < BATCH / PER_MESSAGE; k++, m++) {
      const c = m % plant.ids.length;
      const ch = plant.ids[c];
      const [level, noise] = LEVEL[ch.sensorType];
      const faulty = (c + Math.floor(m / (plant.ids.length * 50))) % 100 === 0;
      for (let i = 0; i < PER_MESSAGE; i++) {
        const t = Math.max(Date.now(), last[c] + 1);
        last[c] = t;
        const v = level * (faulty ? 1.5 : 1) + (rand() - 0.5) * 2 * noise;
        batch.push({ time: new Date(t), tenantId: ch.tenantId, deviceId: ch.deviceId, sensorType: ch.sensorType, value: Number(v.toFixed(3)), unit: 'u', quality: 'GOOD' });
      }
    }
    const t0 = performance.now();
    await client.query('begin; select iot_private.create_reading_staging()');
    const t1 = performance.now();
    await new Promise<void>((resolve, reject) => {
      const s = client.query(copyFrom('copy pg_temp.reading_staging (time, tenant_id, device_id, sensor_type, value, unit, quality, metadata) from stdin (format binary)'));
      s.on('error', reject).on('finish', () => resolve());
      s.end(binaryCopyRows(batch));
    });
    const t2 = performance.now();
    await client.query('select * from iot_private.ingest_staged_readings()');
    const t3 = performance.now();
    await client.query('commit');
    const t4 = performance.now();
    if (b >= n0) { sums.begin += t1 - t0; sums.copy += t2 - t1; sums.ingest += t3 - t2; sums.commit += t4 - t3; }
  }
  const k = BATCHES - n0;
  const total = (sums.begin + sums.copy + sums.ingest + sums.commit) / k;
  console.log(`tier ${db.tier}, PostgreSQL ${db.version}, batch ${BATCH}, ${k} batches measured (after ${n0} warm-up)`);
  for (const [name, v] of Object.entries(sums)) console.log(`  ${name.padEnd(8)} ${(v / k).toFixed(2)} ms`);
  console.log(`  total    ${total.toFixed(2)} ms per batch = ${fmt(BATCH / total * 1000)} readings/s of one writer`);
  await client.end();
  if (!process.env.BENCH_KEEP) await db.drop(); else console.log(db.url);
}
main().catch((e) => { console.error(e); process.exit(1); });

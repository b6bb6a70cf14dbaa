// iot_private.flush_live_readings() (sql/600_live_events.sql), the rules the API's frequent flush
// relies on: a device whose readings were held back is flushed only once it has been quiet (no
// batch) for the interval, so a device reporting faster than the interval keeps its fresh
// leading-edge notices; one caller scans at a time (advisory lock), the others return 0.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { Client } from 'pg';
import { ReadingSink } from '../../src/ingest/sink';
import { createTestDatabase, seedSmallPlant, TestDatabase } from '../helpers/db';
import { sleep } from '../helpers/wait';

const test = suite('db: flush_live_readings() waits for a quiet device and runs once at a time');
let db: TestDatabase;
let plant: Awaited<ReturnType<typeof seedSmallPlant>>;
let listener: Client;
const notices: any[] = [];

async function store(value: number, time: Date) {
  const sink = new ReadingSink(db.pool, { batchSize: 1000, maxWaitMs: 5, bufferMax: 10_000, writers: 1 });
  sink.add([{ time, tenantId: plant.tenantId, deviceId: plant.deviceId, sensorType: 'TEMPERATURE', value, unit: '°F', quality: 'GOOD' }]);
  await sink.close();
  assert.is(sink.stats.stored, 1);
}
const flush = async () => (await db.pool.query<{ n: number }>('select iot_private.flush_live_readings() as n')).rows[0].n;

test.before(async () => {
  db = await createTestDatabase('live_events_flush');
  plant = await seedSmallPlant(db.pool);
  await db.pool.query(`update iot_private.settings set value = '1000' where key = 'live_reading_interval_ms'`);
  listener = new Client({ connectionString: db.url });
  await listener.connect();
  const { rows } = await listener.query('select iot_private.notify_channel($1, $2) as c', ['iot_live_readings', plant.tenantId]);
  await listener.query(`listen "${rows[0].c}"`);
  listener.on('notification', (n) => notices.push(JSON.parse(n.payload ?? 'null')));
});
test.after(async () => {
  await listener?.end();
  await db?.drop();
});

test('a held-back device still reporting is not flushed, even when its last notice is older than the interval', async () => {
  const t = Date.now();
  await store(1, new Date(t)); // due: notice
  await sleep(600);
  await store(2, new Date(t + 600)); // 600 ms after the notice: held back
  await sleep(500); // last notice 1.1 s ago, last batch 0.5 s ago
  assert.is(await flush(), 0, 'the device reported within the interval: its next batch sends fresh values');
  await sleep(600); // now quiet for 1.1 s
  assert.is(await flush(), 1, 'quiet for the interval: its held-back value is sent');
  await sleep(100);
  const values = notices.map((n) => n.readings[0].reading_value);
  assert.equal(values, [1, 2], 'the leading-edge notice, then the flushed value');
  assert.is(notices[1].count, 1, 'the one reading held back');
  assert.is(await flush(), 0, 'sent once');
});

test('one caller at a time: while another holds the flush lock, flush_live_readings() returns 0 and leaves the device due', async () => {
  await sleep(1100);
  const t = Date.now();
  await store(3, new Date(t)); // due
  await store(4, new Date(t + 10)); // held back
  await sleep(1100);
  const other = await db.pool.connect();
  try {
    await other.query('begin');
    await other.query(`select pg_advisory_xact_lock(hashtextextended('iot_private.flush_live_readings', 0))`);
    assert.is(await flush(), 0, 'another caller is scanning');
    await other.query('commit');
  } finally {
    other.release();
  }
  assert.is(await flush(), 1, 'the lock is free again: sent');
});

test.run();

// Held-back live readings (issue 8, NOTIFY discipline): a batch within LIVE_READING_INTERVAL_MS of
// its device's last notice sends nothing; when the device then falls silent, the API instance that
// has sensorReadingUpdated subscribers flushes that value within about 1.5 intervals
// (src/server/plugins/live/flush.ts), not at the minute job. A device reporting faster than the
// interval is never flushed (its own batches send fresh values), and a dashboard gets each value
// once. Real API, real graphql-ws client, readings through the real ReadingSink.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { createClient, type Client } from 'graphql-ws';
import WebSocket from 'ws';
import { ReadingSink } from '../../src/ingest/sink';
import { createTestDatabase, seedSmallPlant, TestDatabase } from '../helpers/db';
import { startTestApi, TestApi } from '../helpers/graphql';
import { sleep, waitFor } from '../helpers/wait';

const test = suite('server: held-back live readings are flushed by the API within 1.5 intervals');
let db: TestDatabase;
let api: TestApi;
let plant: Awaited<ReturnType<typeof seedSmallPlant>>;
let client: Client;
const INTERVAL_MS = 1000;
const events: { value: number; time: number; at: number }[] = [];

async function store(value: number, time: Date) {
  const sink = new ReadingSink(db.pool, { batchSize: 1000, maxWaitMs: 5, bufferMax: 10_000, writers: 1 });
  sink.add([{ time, tenantId: plant.tenantId, deviceId: plant.deviceId, sensorType: 'TEMPERATURE', value, unit: '°F', quality: 'GOOD' }]);
  await sink.close();
  assert.is(sink.stats.stored, 1, `reading ${value} stored`);
}

async function setIntervalMs(ms: number) {
  await db.pool.query(`update iot_private.settings set value = $1 where key = 'live_reading_interval_ms'`, [String(ms)]);
}

test.before(async () => {
  db = await createTestDatabase('live_flush');
  plant = await seedSmallPlant(db.pool);
  api = await startTestApi(db.url);
  client = createClient({ url: api.wsUrl, webSocketImpl: WebSocket, retryAttempts: 0,
    connectionParams: { authToken: api.token('iot_operator', plant.tenantId, 'flush') } });
  client.subscribe({ query: 'subscription($d: ID!) { sensorReadingUpdated(iotDeviceId: $d) { readingValue readingTimestamp } }', variables: { d: plant.deviceId } }, {
    next: (v) => {
      const e = (v.data as any)?.sensorReadingUpdated;
      if (e) events.push({ value: e.readingValue, time: Date.parse(e.readingTimestamp), at: Date.now() });
    },
    error: (e) => console.error('subscription error', e),
    complete: () => undefined,
  });
  await sleep(500);
});
test.after(async () => {
  await client?.dispose();
  await api?.close();
  await db?.drop();
});

test('a value held back by the interval reaches the dashboard about an interval after its device fell silent, once', async () => {
  // 2 s here (the API learns it at its first flush): the held-back batch below comes well within it even on a busy machine.
  await setIntervalMs(2000);
  const t = Date.now();
  await store(70, new Date(t));
  await waitFor(() => events.some((e) => e.value === 70), 5000, 'the first batch\'s leading-edge notice');
  const before = Date.now();
  await store(71, new Date(t + 10));
  const after = Date.now();
  const { rows } = await db.pool.query('select notified, pending_count::int as n from iot_private.live_reading_state where device_id = $1', [plant.deviceId]);
  assert.equal([rows[0].notified, rows[0].n], [false, 1], 'the second batch was held back by the interval');
  await sleep(300);
  assert.not.ok(events.some((e) => e.value === 71), 'held back while the interval runs');
  await waitFor(() => events.some((e) => e.value === 71), 8000, 'the held-back value');
  const at = events.find((e) => e.value === 71)!.at;
  // Quiet for an interval first (measured from the batch's start: the flush must not send what the
  // device's own next batch would), then at most half an interval of timer plus the margin; the
  // minute job (not running here) would have taken up to 60 s.
  assert.ok(at - before >= 2000 - 50, `held-back value delivered ${at - before} ms after its batch started`);
  assert.ok(at - after <= 3000 + 1000, `held-back value delivered ${at - after} ms after its batch committed`);
  await sleep(2500);
  assert.is(events.filter((e) => e.value === 71).length, 1, 'delivered once');
});

// Whether a flush would send a value of a device still reporting is proved deterministically in
// test/db/live-events-flush.test.ts; here: the NOTIFY discipline holds with the API's flush running.
test('a device reporting faster than the interval: one notice per interval, fresh values, its last value once', async () => {
  await setIntervalMs(INTERVAL_MS);
  await sleep(2500);
  events.length = 0;
  const sentAt = new Map<number, number>();
  // One reading every 400 ms for 4 s: batches at 0 (sent), 400 and 800 (held), 1200 (sent), ...
  const start = Date.now();
  for (let i = 0; i < 10; i++) {
    const wait = start + i * 400 - Date.now();
    if (wait > 0) await sleep(wait);
    sentAt.set(100 + i, Date.now());
    await store(100 + i, new Date());
  }
  const lastStoredAt = Date.now();
  await sleep(INTERVAL_MS * 2 + 200);
  const during = events.filter((e) => e.at < lastStoredAt);
  assert.ok(during.length >= 2 && during.length <= 5, `${during.length} notices in 4 s at one per 1 s interval`);
  for (let k = 1; k < during.length; k++) {
    assert.ok(during[k].at - during[k - 1].at >= INTERVAL_MS - 150, `notices ${during[k].at - during[k - 1].at} ms apart: at most one per interval`);
  }
  for (const e of during) {
    // Delivered soon after it was stored, never an interval late.
    const age = e.at - sentAt.get(e.value)!;
    assert.ok(age < INTERVAL_MS, `value ${e.value} delivered ${age} ms after it was stored`);
  }
  // After the last batch the device is silent: its last value (if held back) comes once, within 1.5 intervals.
  const last = events.filter((e) => e.value === 109);
  assert.is(last.length, 1, 'the last value, once');
  assert.ok(last[0].at - lastStoredAt <= INTERVAL_MS * 1.5 + 1000, `the last value ${last[0].at - lastStoredAt} ms after its batch`);
});

test.run();

import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { createHash } from 'node:crypto';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { createServer, Server, Socket, connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Pool } from 'pg';
import type { Reading } from '../../src/ingest/reading';
import { ReadingSink, registerSinkMetrics } from '../../src/ingest/sink';
import { renderMetrics } from '../../src/lib/metrics';
import { crontab } from '../../src/lib/worker';
import pruneDeadLetters from '../../workers/dead_letters__prune';
import { createTestDatabase, seedSmallPlant, TestDatabase } from '../helpers/db';
import { poolThroughProxy, simpleQueryMessage, urlThrough } from '../helpers/proxy';
import { onTiers } from '../helpers/tier';
import { sleep, waitFor } from '../helpers/wait';

const test = suite('ingest: the COPY sink');
let db: TestDatabase;
let plant: Awaited<ReturnType<typeof seedSmallPlant>>;

test.before(async () => {
  db = await createTestDatabase('sink');
  plant = await seedSmallPlant(db.pool);
});
test.after(async () => db.drop());

const base = Date.parse('2026-01-01T00:00:00Z');
const reading = (i: number, over: Partial<Reading> = {}): Reading => ({
  time: new Date(base + i * 1000), tenantId: plant.tenantId, deviceId: plant.deviceId, sensorType: 'TEMPERATURE',
  value: 60 + (i % 10), unit: '°F', quality: 'GOOD', ...over,
});
const count = async (where = 'true') =>
  Number((await db.pool.query(`select count(*) from iot_private.sensor_readings where ${where}`)).rows[0].count);

test('stores batches by COPY, once each: duplicates (QoS 1 redeliveries) are skipped', async () => {
  const sink = new ReadingSink(db.pool, { batchSize: 500, maxWaitMs: 20, bufferMax: 10_000 });
  const batch = Array.from({ length: 1200 }, (_, i) => reading(i));
  sink.add(batch);
  sink.add(batch.slice(0, 300)); // redelivered
  await sink.close();
  assert.is(await count(), 1200);
  assert.is(sink.stats.stored, 1200);
  assert.is(sink.stats.duplicates, 300);
  assert.ok(sink.stats.batches >= 3, `batches ${sink.stats.batches}`);
  const hb = await db.pool.query('select last_heartbeat from iot.iot_devices where id = $1', [plant.deviceId]);
  assert.ok(hb.rows[0].last_heartbeat, 'heartbeat updated per batch');
});

// The batch function inserts plainly and, on a unique violation, takes the duplicates out and
// stores the rest (sql/110_ingest.sql). Staged by hand here, so the batch can hold what a sink
// never sends: one reading twice with different values.
const stageAndStore = async (client: import('pg').PoolClient, rows: Reading[]) => {
  await client.query('select iot_private.create_reading_staging()');
  for (const r of rows) {
    await client.query(`insert into pg_temp.reading_staging (time, tenant_id, device_id, sensor_type, value, unit, quality)
                        values ($1, $2, $3, $4, $5, $6, $7)`, [r.time, r.tenantId, r.deviceId, r.sensorType, r.value, r.unit, r.quality]);
  }
  const { rows: [out] } = await client.query('select * from iot_private.ingest_staged_readings()');
  return { inserted: Number(out.inserted), duplicates: Number(out.duplicates), rejected: Number(out.rejected) };
};

test('a batch with stored readings and one reading twice: the new ones are stored once (the first staged of a pair), the rest counted as duplicates', async () => {
  const client = await db.pool.connect();
  try {
    await client.query('begin');
    assert.equal(await stageAndStore(client, [reading(2000), reading(2001), reading(2002)]), { inserted: 3, duplicates: 0, rejected: 0 });
    await client.query('commit');
    await client.query('begin');
    const out = await stageAndStore(client, [
      reading(2001, { value: 99 }), reading(2002), // stored already (one with another value)
      reading(2003), reading(2004, { value: 41 }), reading(2004, { value: 42 }), // new, the last one twice
    ]);
    await client.query('commit');
    assert.equal(out, { inserted: 2, duplicates: 3, rejected: 0 });
    const { rows } = await db.pool.query(`select extract(epoch from time)::bigint - ${base / 1000} as i, value from iot_private.sensor_readings
      where device_id = $1 and sensor_type = 'TEMPERATURE' and time >= $2 and time <= $3 order by time`,
      [plant.deviceId, new Date(base + 2000_000), new Date(base + 2004_000)]);
    assert.equal(rows.map((r) => [Number(r.i), r.value]), [[2000, 60], [2001, 61], [2002, 62], [2003, 63], [2004, 41]]);
    const state = await db.pool.query(`select last_time from iot_private.channel_event_state where device_id = $1 and sensor_type = 'TEMPERATURE'`, [plant.deviceId]);
    assert.is(state.rows[0].last_time.getTime(), base + 2004_000, 'events judged the batch after the duplicates left it');
  } finally {
    await client.query('rollback').catch(() => undefined);
    client.release();
  }
});

test('two writers storing overlapping batches at the same moment: every reading once, inserted counts add up', async () => {
  const a = await db.pool.connect();
  const b = await db.pool.connect();
  try {
    const first = Array.from({ length: 50 }, (_, i) => reading(2100 + i));
    const second = Array.from({ length: 50 }, (_, i) => reading(2125 + i)); // 25 shared with the first
    await a.query('begin');
    const outA = await stageAndStore(a, first);
    await b.query('begin');
    const pendingB = stageAndStore(b, second); // waits on a's uncommitted readings
    await sleep(200);
    await a.query('commit');
    const outB = await pendingB;
    await b.query('commit');
    assert.equal(outA, { inserted: 50, duplicates: 0, rejected: 0 });
    assert.equal(outB, { inserted: 25, duplicates: 25, rejected: 0 });
    assert.is(await count(`time >= '${new Date(base + 2100_000).toISOString()}' and time < '${new Date(base + 2175_000).toISOString()}'`), 75);
  } finally {
    await a.query('rollback').catch(() => undefined);
    await b.query('rollback').catch(() => undefined);
    a.release();
    b.release();
  }
});

test('binary COPY stores every field as given: milliseconds, extreme and negative values, units and metadata with tabs, newlines, backslashes and non-ASCII', async () => {
  const sink = new ReadingSink(db.pool, { batchSize: 100, maxWaitMs: 5, bufferMax: 1000 });
  const odd: Reading[] = [
    reading(3000, { time: new Date(base + 3000_000 + 7), value: -0.000123456789 }),
    reading(3001, { value: 1e15, unit: 'a\tb\\c\nd é 🚀', metadata: { note: 'tab\there, new\nline, back\\slash, "quoted", ünïcødé 🚀', n: 1.5, nested: { ok: true } } }),
    reading(3002, { value: 1e-15, quality: 'UNCERTAIN', unit: '' }),
    reading(3003, { value: 0, quality: 'BAD', metadata: {} }),
  ];
  sink.add(odd);
  await sink.close();
  const { rows } = await db.pool.query(`select time, value, unit, quality, metadata from iot_private.sensor_readings
    where device_id = $1 and sensor_type = 'TEMPERATURE' and time >= $2 and time < $3 order by time`,
    [plant.deviceId, new Date(base + 3000_000), new Date(base + 3004_000)]);
  assert.equal(rows.map((r) => [r.time.getTime(), r.value, r.unit, r.quality, r.metadata]),
    odd.map((r) => [r.time.getTime(), r.value, r.unit, r.quality, r.metadata ?? null]));
});

test('a reading whose channel was deactivated meanwhile becomes a dead letter; the rest are stored', async () => {
  await db.pool.query(`update iot.device_channels set is_active = false where device_id = $1 and sensor_type = 'PRESSURE'`, [plant.deviceId]);
  const sink = new ReadingSink(db.pool, { batchSize: 100, maxWaitMs: 10, bufferMax: 1000 });
  sink.add([reading(5000), reading(5001, { sensorType: 'PRESSURE', unit: 'PSI' }), reading(5002)]);
  await sink.close();
  assert.is(await count(`time >= '${new Date(base + 5000_000).toISOString()}'`), 2);
  const dl = await db.pool.query(`select reason from iot_private.ingest_dead_letters where source = 'SINK'`);
  assert.is(dl.rowCount, 1);
  assert.match(dl.rows[0].reason, 'PRESSURE');
  await db.pool.query(`update iot.device_channels set is_active = true where device_id = $1`, [plant.deviceId]);
});

test('readings the database refuses are isolated by halving; good readings beside them are stored', async () => {
  const sink = new ReadingSink(db.pool, { batchSize: 64, maxWaitMs: 10, bufferMax: 1000 });
  const batch = Array.from({ length: 64 }, (_, i) => reading(10_000 + i));
  batch[17] = reading(10_017, { quality: 'WEIRD' as never }); // violates sensor_readings_quality_valid
  sink.add(batch);
  await sink.close();
  assert.is(await count(`time >= '${new Date(base + 10_000_000).toISOString()}'`), 63);
  const dl = await db.pool.query(`select reason from iot_private.ingest_dead_letters where reason like '%quality%'`);
  assert.is(dl.rowCount, 1);
});

test('while the database is down the sink holds readings within its bound and stores them all when it returns', async () => {
  const { proxy, pool } = await poolThroughProxy(db.url, { max: 2, connectionTimeoutMillis: 1000 });
  const sink = new ReadingSink(pool, { batchSize: 100, maxWaitMs: 10, bufferMax: 500 });
  const states: boolean[] = [];
  sink.on('database', (up: boolean) => states.push(up));
  sink.add(Array.from({ length: 50 }, (_, i) => reading(20_000 + i)));
  await sink.flush();
  await proxy.down();
  const start = 20_050;
  let accepted = true;
  let offered = 0;
  for (let i = 0; i < 10 && accepted; i++) {
    accepted = sink.add(Array.from({ length: 100 }, (_, j) => reading(start + i * 100 + j)));
    offered += 100;
  }
  assert.not.ok(accepted, 'add() reports a full buffer so producers stop');
  let released = false;
  const waiting = sink.wait().then(() => (released = true));
  await sleep(300);
  assert.not.ok(released, 'wait() blocks while the database is down');
  assert.ok(sink.buffered <= 600, `buffer stays bounded: ${sink.buffered}`);
  await proxy.up();
  await waiting;
  await sink.close();
  await pool.end();
  await proxy.down();
  assert.is(await count(`time >= '${new Date(base + 20_000_000).toISOString()}'`), 50 + offered);
  assert.equal(states.slice(0, 2), [false, true]);
  assert.ok(sink.stats.failedAttempts > 0);
});

/** Fails (instead of hanging the suite) when `p` does not settle within `ms`: a wedged writer shows here. */
async function within<T>(ms: number, p: Promise<T>, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what} did not finish within ${ms} ms`)), ms)));
  try {
    return await Promise.race([p, late]);
  } finally {
    clearTimeout(timer);
  }
}
const now = () => Date.now() - 60_000;
const letters = async (where = 'true', params: unknown[] = []) => (await db.pool.query(
  `select source, topic, payload, reason, tenant_id, topic_bytes, topic_sha256, payload_bytes, payload_sha256, payload_base64,
          source_key, reason_class, suppressed_count
   from iot_private.ingest_dead_letters where ${where} order by id`, params)).rows;
const sha = (b: Buffer | string) => createHash('sha256').update(b).digest('hex');

test('readings it cannot write (Invalid Date, a time outside the accepted range, bad ids, text jsonb refuses) are dead letters at once; the next batch is stored', async () => {
  const sink = new ReadingSink(db.pool, { batchSize: 100, maxWaitMs: 10, bufferMax: 1000, maxFutureMs: 300_000 });
  const t = now();
  const since = (await db.pool.query(`select coalesce(max(id), 0) as id from iot_private.ingest_dead_letters`)).rows[0].id;
  const circular: Record<string, unknown> = {};
  circular.self = circular;
  const bad: [Partial<Reading>, string][] = [
    [{ time: new Date(1e16) }, 'timestamp Invalid Date is not a valid date-time'],
    [{ time: new Date(-8e15) }, 'is before the year 2000'],
    [{ time: new Date(Date.UTC(1999, 11, 31)) }, 'is before the year 2000'],
    [{ time: new Date(Date.now() + 3600_000) }, 's in the future'],
    [{ time: 'yesterday' as never }, 'is not a valid date-time'],
    [{ deviceId: 'not-a-uuid' }, 'deviceId "not-a-uuid" is not a uuid'],
    [{ value: Number.NaN }, 'value null is not a finite number'],
    [{ sensorType: 'TEMP\u0000ERATURE' }, 'sensorType'],
    [{ unit: '\ud800' }, 'unit'],
    [{ metadata: { note: 'a\u0000b' } }, 'metadata holds U+0000'],
    [{ metadata: { n: 10n } as never }, 'metadata cannot be written as JSON'],
    [{ metadata: circular }, 'metadata cannot be written as JSON'],
  ];
  sink.add(bad.map(([over], i) => reading(0, { time: new Date(t + i), ...over })));
  sink.add([reading(0, { time: new Date(t + 100) }), reading(0, { time: new Date(t + 101) })]);
  await within(10_000, sink.close(), 'writing after refused readings');
  assert.is(await count(`time in ('${new Date(t + 100).toISOString()}', '${new Date(t + 101).toISOString()}')`), 2, 'the good readings beside them are stored');
  const dl = await letters(`reason like 'reading refused before writing:%' and id > $1`, [since]);
  assert.is(dl.length, bad.length);
  bad.forEach(([, reason], i) => assert.match(dl[i].reason, reason));
  assert.ok(dl.every((l) => l.source === 'SINK' && l.payload_sha256?.length === 64 && l.source_key === `device/${l.source_key.slice(7)}`));
  assert.is(sink.stats.deadLetters, bad.length);
});

test('a batch transaction waiting on a lock ends at its lock timeout and is retried, not split or dead-lettered', async () => {
  const sink = new ReadingSink(db.pool, { batchSize: 100, maxWaitMs: 10, bufferMax: 1000, transactionTimeoutMs: 3000 });
  const holder = await db.pool.connect();
  const t = now();
  try {
    await holder.query('begin');
    await holder.query('select 1 from iot.iot_devices where id = $1 for update', [plant.deviceId]); // the heartbeat update waits on it
    sink.add([reading(0, { time: new Date(t) })]);
    await sleep(2500);
    const waiting = await db.pool.query(`select count(*)::int as n from pg_stat_activity
      where datname = current_database() and wait_event_type = 'Lock' and now() - query_start > interval '1.5 seconds'`);
    assert.is(waiting.rows[0].n, 0, 'no session waits on a lock for longer than the lock timeout (1 s here)');
    assert.ok(sink.stats.failedAttempts >= 1, `attempts that failed: ${sink.stats.failedAttempts}`);
  } finally {
    await holder.query('rollback');
    holder.release();
  }
  await within(10_000, sink.close(), 'the batch once the lock is gone');
  assert.is(await count(`time = '${new Date(t).toISOString()}'`), 1);
  assert.is(sink.stats.deadLetters, 0);
});

test('a database that stops answering mid-transaction: the watchdog cuts the connection, the batch is retried and stored', async () => {
  const target = new URL(db.url);
  const proxy = new FreezingProxy(target.hostname, Number(target.port || 5432));
  await proxy.up();
  const pool = new Pool({ connectionString: urlThrough(db.url, proxy.port), max: 2 });
  pool.on('error', () => undefined);
  const sink = new ReadingSink(pool, { batchSize: 100, maxWaitMs: 10, bufferMax: 1000, transactionTimeoutMs: 1000 });
  const t = now();
  sink.add([reading(0, { time: new Date(t) })]);
  await sink.flush();
  proxy.freeze(); // connections stay open, nothing gets through
  sink.add([reading(0, { time: new Date(t + 1) })]);
  await sleep(2500);
  assert.ok(sink.stats.transactionTimeouts >= 1, 'the frozen transaction was cut');
  proxy.thaw();
  await within(15_000, sink.close(), 'the retried batch');
  await pool.end();
  await proxy.down();
  assert.is(await count(`time in ('${new Date(t).toISOString()}', '${new Date(t + 1).toISOString()}')`), 2);
});

// A connection lost while COMMIT runs: the batch may or may not be stored. The sink asks
// txid_status() which, so a committed batch is counted, receipted and dead-lettered once (before,
// its retry reported every reading as a duplicate and wrote its dead letters a second time), and
// one that did not commit is written again.
for (const forward of [true, false]) {
  test(`a connection lost while a batch commits (${forward ? 'the commit done, its answer lost' : 'the commit never arrived'}): stored, counted, receipted and dead-lettered once`, async () => {
    const { proxy, pool } = await poolThroughProxy(db.url, { max: 2 });
    const sink = new ReadingSink(pool, { batchSize: 1000, maxWaitMs: 10, bufferMax: 10_000 });
    const t = now() - (forward ? 0 : 10_000);
    const good = Array.from({ length: 20 }, (_, i) => reading(0, { time: new Date(t + i) }));
    const lettersBefore = (await letters()).length;
    try {
      proxy.cutAt(simpleQueryMessage('commit'), forward);
      // One batch: the 20 readings and the dead letter of the reading refused before writing.
      const receipt = await within(15_000, sink.store([...good, reading(0, { time: new Date(Number.NaN) })]), 'the receipt');
      await within(15_000, sink.close(), 'close');
      assert.is(sink.stats.commitsInDoubt, 1, 'the cut came while the batch committed');
      assert.is(await count(`time >= '${new Date(t).toISOString()}' and time < '${new Date(t + 20).toISOString()}'`), 20);
      assert.equal({ stored: receipt.stored, duplicates: receipt.duplicates, refused: receipt.refused.length }, { stored: 20, duplicates: 0, refused: 1 });
      assert.is(sink.stats.stored, 20);
      assert.is(sink.stats.duplicates, 0);
      assert.is((await letters()).length - lettersBefore, 1, 'the dead letter is written once');
    } finally {
      await pool.end();
      await proxy.down();
    }
  });
}

test('a batch in doubt while the database is unreachable: the outage is reported, and once it returns the batch is found committed, not written again', async () => {
  const { proxy, pool } = await poolThroughProxy(db.url, { max: 2, connectionTimeoutMillis: 1000 });
  const sink = new ReadingSink(pool, { batchSize: 1000, maxWaitMs: 10, bufferMax: 10_000 });
  const states: boolean[] = [];
  sink.on('database', (up: boolean) => states.push(up));
  const t = now() - 20_000;
  const good = Array.from({ length: 10 }, (_, i) => reading(0, { time: new Date(t + i) }));
  try {
    proxy.cutAt(simpleQueryMessage('commit'), true, true);
    const receipt = sink.store(good);
    receipt.catch(() => undefined); // awaited below; a failed run closes the sink first, which rejects it
    await waitFor(() => !sink.stats.databaseUp, 5000, 'the outage to be reported while the batch is in doubt');
    assert.is(sink.stats.commitsInDoubt, 1);
    await sleep(300);
    await proxy.up();
    const answer = await within(15_000, receipt, 'the receipt after the database returned');
    await within(15_000, sink.close(), 'close');
    assert.equal({ stored: answer.stored, duplicates: answer.duplicates }, { stored: 10, duplicates: 0 });
    assert.is(sink.stats.duplicates, 0);
    assert.is(await count(`time >= '${new Date(t).toISOString()}' and time < '${new Date(t + 10).toISOString()}'`), 10);
    assert.equal(states, [false, true]);
  } finally {
    // A failed run must not leave the sink asking for ever (and pool.end() waiting on it).
    await sink.close({ deadlineMs: 1000 }).catch(() => undefined);
    await pool.end();
    await proxy.down();
  }
});

test('readings the database refuses for a rule only it knows are isolated by halving; the rest of the batch is stored', async () => {
  await db.pool.query(`alter table iot_private.sensor_readings add constraint test_refuses_13_5 check (value <> 13.5)`);
  try {
    const sink = new ReadingSink(db.pool, { batchSize: 200, maxWaitMs: 10, bufferMax: 1000 });
    const t = now() - 3600_000;
    sink.add(Array.from({ length: 200 }, (_, i) => reading(0, { time: new Date(t + i * 10), value: i === 77 || i === 150 ? 13.5 : 20 })));
    await within(20_000, sink.close(), 'bisecting the batch');
    assert.is(await count(`time >= '${new Date(t).toISOString()}' and time < '${new Date(t + 2000).toISOString()}'`), 198);
    const dl = await letters(`reason like '%test_refuses_13_5%'`);
    assert.is(dl.length, 2);
    assert.is(JSON.parse(dl[0].payload).value, 13.5);
    assert.is(dl[0].reason_class, 'refused');
  } finally {
    await db.pool.query(`alter table iot_private.sensor_readings drop constraint test_refuses_13_5`);
  }
});

test('dead letters: U+0000, unpaired surrogates and invalid UTF-8 are stored visibly with a base64 copy; topic and payload clipped with size and hash', async () => {
  const sink = new ReadingSink(db.pool, { batchSize: 100, maxWaitMs: 10, bufferMax: 1000 });
  const raw = Buffer.from([0x7b, 0x00, 0xff, 0xfe, 0x41, 0x7d]); // "{", NUL, two invalid bytes, "A", "}"
  const longTopic = 'facility/F1/workcenter/PRESS-1/sensor/' + 'x'.repeat(60_000);
  const longPayload = '€'.repeat(5000); // 15,000 bytes: clipped at a character boundary
  sink.reject([
    { source: 'MQTT', topic: 'facility/F1/a', payload: 'not json \u0000 here', reason: 'payload is not valid JSON: case-nul' },
    { source: 'MQTT', topic: 'facility/F1/b\ud800', payload: 'lone \udc00 surrogate', reason: 'payload is not valid JSON: case-surrogate \ud800' },
    { source: 'MQTT', topic: 'facility/F1/c', payload: raw.toString('utf8'), rawPayload: raw, reason: 'payload is not valid JSON: case-raw' },
    { source: 'MQTT', topic: longTopic, payload: longPayload, reason: 'payload is not valid JSON: case-long' },
  ]);
  await within(10_000, sink.close(), 'writing the dead letters');
  const [nul, sur, bytes, long] = await letters(`reason like '%: case-%'`);
  assert.is(nul.payload, 'not json \\u0000 here');
  assert.is(Buffer.from(nul.payload_base64, 'base64').toString('utf8'), 'not json \u0000 here');
  assert.is(nul.payload_sha256, sha('not json \u0000 here'));
  assert.is(sur.topic, 'facility/F1/b\\ud800');
  assert.is(sur.payload, 'lone \\udc00 surrogate');
  assert.match(sur.reason, 'case-surrogate \\ud800');
  assert.equal(Buffer.from(bytes.payload_base64, 'base64'), raw, 'the bytes as sent');
  assert.is(bytes.payload_bytes, raw.length);
  assert.is(bytes.payload_sha256, sha(raw));
  assert.is(bytes.payload, '{\\u0000\ufffd\ufffdA}');
  assert.is(long.topic_bytes, Buffer.byteLength(longTopic));
  assert.is(long.topic_sha256, sha(longTopic));
  assert.is(Buffer.byteLength(long.topic), 512);
  assert.is(long.payload_bytes, 15_000);
  assert.is(long.payload, '€'.repeat(1365), '4096 bytes at most, never half a character');
  assert.is(long.payload_base64, null, 'nothing escaped, no copy');
  assert.is(long.source_key, 'facility/F1');
  assert.is(sink.stats.deadLetters, 4);
});

test('a dead letter the database refuses is kept in plain form; the other dead letters of its batch are stored', async () => {
  await db.pool.query(`alter table iot_private.ingest_dead_letters add constraint test_refuses_marker check (reason not like '%REFUSE-ME%')`);
  try {
    const sink = new ReadingSink(db.pool, { batchSize: 100, maxWaitMs: 10, bufferMax: 1000 });
    sink.reject(Array.from({ length: 11 }, (_, i) => ({ source: 'MQTT' as const, topic: 'facility/F1/x', payload: `p${i}`,
      reason: i === 4 ? 'payload is not valid JSON: REFUSE-ME batch-11' : `payload is not valid JSON: batch-11 #${i}` })));
    await within(10_000, sink.close(), 'isolating the refused dead letter');
    assert.is((await letters(`reason like '%: batch-11 #%'`)).length, 10, 'the ten others');
    const [plain] = await letters(`reason like 'dead letter refused by the database as prepared%'`);
    assert.ok(plain, 'the refused one, in plain form');
    assert.match(plain.reason, 'test_refuses_marker');
    const kept = JSON.parse(Buffer.from(plain.payload_base64, 'base64').toString('utf8'));
    assert.is(kept.reason, 'payload is not valid JSON: REFUSE-ME batch-11');
    assert.is(kept.payload, 'p4');
    assert.is(sink.stats.deadLetters, 11);
  } finally {
    await db.pool.query(`alter table iot_private.ingest_dead_letters drop constraint test_refuses_marker`);
  }
});

test('dead letters are rate-limited per source: beyond the burst they are counted into a summary row and in the metrics', async () => {
  const sink = new ReadingSink(db.pool, { batchSize: 1000, maxWaitMs: 10, bufferMax: 1000,
    deadLetters: { ratePerSource: 1, burstPerSource: 20, rateTotal: 1000 } });
  sink.reject(Array.from({ length: 500 }, (_, i) => ({ source: 'MQTT' as const, topic: `facility/FLOOD/workcenter/W/sensor/S${i}`,
    payload: 'x', reason: `value "x" must be a number (flood ${i})` })));
  sink.reject([{ source: 'MQTT', topic: 'facility/QUIET/workcenter/W/sensor/S', payload: 'y', reason: 'value "y" must be a number (quiet)' }]);
  await within(10_000, sink.close(), 'writing the dead letters and their summary');
  const flood = await letters(`source_key = 'facility/FLOOD'`);
  const single = flood.filter((l) => l.suppressed_count === 0);
  const [summary] = flood.filter((l) => l.suppressed_count > 0);
  assert.ok(single.length >= 20 && single.length <= 22, `written one by one: ${single.length}`);
  assert.is(summary.suppressed_count + single.length, 500, 'every one is either written or counted');
  assert.is(summary.reason_class, 'rate_limited');
  assert.match(summary.reason, `rate limit: ${summary.suppressed_count} dead letters from facility/FLOOD were counted`);
  assert.match(summary.reason, `Reasons: value ${summary.suppressed_count}`);
  assert.is((await letters(`source_key = 'facility/QUIET'`)).length, 1, 'another source is not held back');
  assert.is(sink.stats.deadLettersSuppressed, summary.suppressed_count);
  assert.is(sink.stats.deadLetterSummaries, 1);
  const unregister = registerSinkMetrics(sink);
  try {
    const text = await renderMetrics();
    assert.match(text, `iot_ingest_dead_letters_suppressed_total ${summary.suppressed_count}`);
    assert.match(text, `iot_ingest_dead_letters_by_class_total{class="value",outcome="suppressed"} ${summary.suppressed_count}`);
    assert.match(text, `iot_ingest_dead_letters_by_class_total{class="value",outcome="written"} ${single.length + 1}`);
    assert.is(text.split('\n').filter((l) => l === '# TYPE iot_ingest_dead_letters_by_class_total counter').length, 1, 'one family');
  } finally {
    unregister();
  }
});

test('close() with the database down spills what it could not write; the next sink replays it and removes the file', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'iot-spill-'));
  const { proxy, pool } = await poolThroughProxy(db.url, { max: 2 });
  try {
    const sink = new ReadingSink(pool, { batchSize: 500, maxWaitMs: 10, bufferMax: 100_000, spillDir: dir });
    await proxy.down();
    const t = now() - 7200_000;
    sink.add(Array.from({ length: 3000 }, (_, i) => reading(0, { time: new Date(t + i) })));
    sink.reject([{ source: 'MQTT', topic: 'facility/F1/spill', payload: 'spilled \u0000', reason: 'payload is not valid JSON: spilled' }]);
    await within(15_000, sink.close({ deadlineMs: 500 }), 'closing with the database down');
    assert.is(sink.stats.spilledReadings, 3000);
    assert.is(sink.stats.spilledDeadLetters, 1);
    const files = readdirSync(dir);
    assert.is(files.length, 1);
    assert.match(files[0], /^spill-.*\.ndjson$/);
    await proxy.up();
    const next = new ReadingSink(pool, { batchSize: 500, maxWaitMs: 10, bufferMax: 1000, spillDir: dir });
    await within(20_000, next.replaySpills(), 'replaying');
    await within(20_000, next.close(), 'storing the replayed readings');
    assert.is(await count(`time >= '${new Date(t).toISOString()}' and time < '${new Date(t + 3000).toISOString()}'`), 3000);
    assert.is((await letters(`reason = 'payload is not valid JSON: spilled'`))[0]?.payload, 'spilled \\u0000');
    assert.equal(readdirSync(dir), [], 'the file is removed once all of it is stored');
    assert.is(next.stats.replayedReadings, 3000);
  } finally {
    await pool.end();
    await proxy.down();
    rmSync(dir, { recursive: true, force: true });
  }
});

onTiers(test, [3], 'tiers 1-2: TimescaleDB makes chunks')('tier 3: a batch dated 2001, 2010 and now makes only the partitions its readings fall in', async () => {
  const partitions = async () => (await db.pool.query(`select partition_name, from_time, to_time from iot_private.partition_bounds('sensor_readings')`)).rows;
  const before = await partitions();
  const sink = new ReadingSink(db.pool, { batchSize: 100, maxWaitMs: 10, bufferMax: 1000 });
  const t = now();
  sink.add([reading(0, { time: new Date('2001-03-04T05:06:07Z') }), reading(0, { time: new Date('2010-07-08T09:10:11Z') }),
    reading(0, { time: new Date(t) })]);
  await within(10_000, sink.close(), 'the batch');
  const made = (await partitions()).filter((p) => !before.some((b) => b.partition_name === p.partition_name));
  assert.equal(made.map((p) => p.partition_name).sort(), ['sensor_readings_p20010101_20020101', 'sensor_readings_p20100101_20110101']);
  assert.is(await count(`time in ('2001-03-04T05:06:07Z', '2010-07-08T09:10:11Z', '${new Date(t).toISOString()}')`), 3);
  // A reading 100 days old gets a month (clipped to its neighbours), one 10 days old its day.
  const ensure = (at: number) => db.pool.query(`select iot_private.ensure_partitions_for('sensor_readings', array[$1::timestamptz]) as n`, [new Date(at)]);
  // Noon UTC, so that the hour after is in the same day and month whatever the time of the run.
  const noonDaysAgo = (days: number) => Math.floor((Date.now() - days * 86_400_000) / 86_400_000) * 86_400_000 + 12 * 3600_000;
  assert.is((await ensure(noonDaysAgo(100))).rows[0].n, 1);
  assert.is((await ensure(noonDaysAgo(100) + 3600_000)).rows[0].n, 0, 'the same partition holds the hour after');
  assert.is((await ensure(noonDaysAgo(10))).rows[0].n, 1);
  const ten = new Date(noonDaysAgo(10)).toISOString().slice(0, 10).replace(/-/g, '');
  assert.ok((await partitions()).some((p) => p.partition_name === `sensor_readings_p${ten}`), 'a day partition, named as before');
  // The span function (the job that makes partitions ahead, benchmarks) stays within the same bound.
  const span = await db.pool.query(`select iot_private.ensure_partitions('sensor_readings', '2003-01-01', '2005-06-01') as n`);
  assert.is(span.rows[0].n, 3, 'a year each: 2003, 2004, 2005');
});

test('the dead_letters__prune job deletes dead letters older than the retention, none newer', async () => {
  await db.pool.query(`insert into iot_private.ingest_dead_letters (received_at, source, reason)
    select now() - make_interval(days => d), 'MQTT', 'prune test ' || d from generate_series(1, 40) d`);
  const logs: string[] = [];
  const helpers = { query: (text: string, values?: unknown[]) => db.pool.query(text, values), logger: { info: (m: string) => logs.push(m) } };
  await pruneDeadLetters({ days: 30 }, helpers as never);
  const left = await db.pool.query(`select count(*)::int as n, max(reason) from iot_private.ingest_dead_letters where reason like 'prune test %'`);
  assert.is(left.rows[0].n, 29, 'days 1 to 29 are kept');
  assert.match(logs.join('\n'), 'deleted 11 older than 30 days');
  assert.match(crontab(0, 15, 30), /^23 \* \* \* \* dead_letters__prune \?max=1 \{"days":30\}$/m);
});

test('an empty flush and a close with nothing queued are harmless', async () => {
  const sink = new ReadingSink(db.pool, { batchSize: 10, maxWaitMs: 10, bufferMax: 100 });
  await sink.flush();
  await sink.close();
  assert.is(sink.stats.batches, 0);
  await waitFor(() => true);
});

/** A TCP proxy whose connections can be frozen: open, but nothing passes (a network that stops answering). */
class FreezingProxy {
  private server: Server | undefined;
  private pairs = new Set<[Socket, Socket]>();
  private frozen = false;
  port = 0;

  constructor(private readonly host: string, private readonly targetPort: number) {}

  async up(): Promise<void> {
    this.server = createServer((client) => {
      const upstream = connect(this.targetPort, this.host);
      const pair: [Socket, Socket] = [client, upstream];
      this.pairs.add(pair);
      client.pipe(upstream).pipe(client);
      if (this.frozen) this.pause(pair);
      const close = () => {
        client.destroy();
        upstream.destroy();
        this.pairs.delete(pair);
      };
      client.on('error', close).on('close', close);
      upstream.on('error', close).on('close', close);
    });
    await new Promise<void>((resolve) => this.server!.listen(0, '127.0.0.1', () => resolve()));
    this.port = (this.server.address() as { port: number }).port;
  }

  private pause([a, b]: [Socket, Socket]): void {
    a.unpipe(b);
    b.unpipe(a);
  }

  freeze(): void {
    this.frozen = true;
    for (const pair of this.pairs) this.pause(pair);
  }

  thaw(): void {
    this.frozen = false;
    for (const [a, b] of this.pairs) {
      a.pipe(b);
      b.pipe(a);
    }
  }

  async down(): Promise<void> {
    for (const [a, b] of this.pairs) {
      a.destroy();
      b.destroy();
    }
    this.pairs.clear();
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
  }
}

test.run();

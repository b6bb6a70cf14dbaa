// Hardening (issue 7, findings 4 and 5): dead letters are data, written or retried, never dropped,
// and bounded. Replayed against a running MQTT ingestor (real broker, the sink with the default
// dead-letter limits, a migrated database): after each attack the ingestor is still connected, a
// good reading published right after is stored, another tenant's query is answered within a
// second, the dead letters (or their rate-limit summary) are there and the counters moved.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { createHash, randomBytes } from 'node:crypto';
import mqtt, { MqttClient } from 'mqtt';
import { MqttIngestor } from '../../src/ingest/mqtt';
import { RegistryCache } from '../../src/ingest/registry';
import { ReadingSink } from '../../src/ingest/sink';
import { specs } from '../../src/lib/config';
import { renderMetrics } from '../../src/lib/metrics';
import { registerSinkMetrics } from '../../src/ingest/sink';
import { publishAsDevice, testBroker } from '../helpers/broker';
import { hardeningProbes } from '../helpers/hardening';
import { createTestDatabase, seedSmallPlant, TestDatabase } from '../helpers/db';
import { sleep, waitFor } from '../helpers/wait';

const test = suite('hardening: dead letters are never lost and never unbounded');
let db: TestDatabase;
let plant: Awaited<ReturnType<typeof seedSmallPlant>>;
let other: Awaited<ReturnType<typeof seedSmallPlant>>;
let broker: Awaited<ReturnType<typeof testBroker>>;
let registry: RegistryCache;
let sink: ReadingSink;
let ingestor: MqttIngestor;
let publisher: MqttClient;
let unregister: () => void;
const run = Math.random().toString(36).slice(2, 8);
const TOPIC = 'facility/F1/workcenter/PRESS-1/sensor/TEMPERATURE';
const num = (name: keyof typeof specs) => Number(specs[name]?.default);

test.before(async () => {
  db = await createTestDatabase('hardening_dead_letters');
  plant = await seedSmallPlant(db.pool);
  other = await seedSmallPlant(db.pool, 'other', 'F2');
  broker = await testBroker();
  console.log(`  [hardening/dead-letters] broker ${broker.kind} ${broker.url}, tier ${db.tier}`);
  registry = new RegistryCache(db.pool, 0);
  await registry.start();
  // The default dead-letter limits (as `iot start` runs them); summaries every second instead of every minute.
  sink = new ReadingSink(db.pool, {
    batchSize: 1000, maxWaitMs: 50, bufferMax: 10_000, summaryIntervalMs: 1000,
    deadLetters: {
      maxTopicBytes: num('INGEST_DEAD_LETTER_MAX_TOPIC_BYTES'), maxPayloadBytes: num('INGEST_DEAD_LETTER_MAX_PAYLOAD_BYTES'),
      ratePerSource: num('INGEST_DEAD_LETTER_RATE'), burstPerSource: num('INGEST_DEAD_LETTER_BURST'), rateTotal: num('INGEST_DEAD_LETTER_RATE_TOTAL'),
    },
  });
  unregister = registerSinkMetrics(sink);
  ingestor = new MqttIngestor({ brokerUrl: broker.url, topics: specs.MQTT_TOPICS.default.split(','), qos: 1,
    clientId: `test-hardening-dl-${run}`, maxFutureSeconds: 300 }, registry, sink);
  await ingestor.start();
  publisher = await mqtt.connectAsync(broker.url, { clientId: `test-hardening-dl-pub-${run}` });
  await sleep(200); // subscription granted
});
test.after(async () => {
  unregister();
  await publisher.endAsync();
  await ingestor.stop();
  await Promise.race([sink.close(), sleep(15_000)]);
  await registry.stop();
  await broker.stop();
  await db.drop();
});



const { goodReadingIsStored, otherTenantAnswers } = hardeningProbes(() => ({
  db, ingestor, brokerUrl: broker.url, publisher, topic: TOPIC, deviceCode: plant.deviceCode, deviceId: plant.deviceId,
  otherTenantId: other.tenantId,
}));

const sha = (b: Buffer | string) => createHash('sha256').update(b).digest('hex');
const metric = async (line: string) => {
  let text = '';
  try {
    text = await renderMetrics();
  } catch (error) {
    return Number.NaN; // a collector that throws: every comparison with it fails
  }
  const m = text.split('\n').find((l) => l.startsWith(line + ' '));
  return m ? Number(m.slice(line.length + 1)) : 0;
};

test('finding 4: a NUL byte in a non-JSON payload loses nothing: all 11 dead letters of the batch are stored, visibly escaped, counted', async () => {
  const before = sink.stats.deadLetters;
  const metricBefore = await metric('iot_ingest_dead_letters_total');
  const marker = `nul-${run}`;
  const payloads = Array.from({ length: 11 }, (_, i) => Buffer.from(i === 5 ? `${marker} #${i} has a \u0000 NUL` : `${marker} #${i} is not json`));
  payloads[8] = Buffer.concat([Buffer.from(`${marker} #8 bad utf-8 `), Buffer.from([0xff, 0xfe, 0x00])]);
  // Published back to back: they reach the sink within one batch.
  await Promise.all(payloads.map((p) => publisher.publishAsync(TOPIC, p, { qos: 1 })));
  const count = async () => Number((await db.pool.query(
    `select count(*) from iot_private.ingest_dead_letters where payload like $1`, [`${marker} #%`])).rows[0].count);
  await waitFor(async () => (await count()) >= 11, 10_000, `11 dead letters (${await count()} so far)`);
  const rows: Record<string, string | number>[] = (await db.pool.query(`select payload, payload_base64, payload_bytes, payload_sha256, reason, reason_class
    from iot_private.ingest_dead_letters where payload like $1 order by payload`, [`${marker} #%`])).rows;
  assert.is(rows.length, 11);
  const nul = rows.find((r) => String(r.payload).startsWith(`${marker} #5 `))! as Record<string, string>;
  assert.is(nul.payload, `${marker} #5 has a \\u0000 NUL`, 'U+0000 written visibly');
  assert.equal(Buffer.from(nul.payload_base64, 'base64'), payloads[5], 'and kept exactly, in base64');
  assert.is(nul.payload_sha256, sha(payloads[5]));
  assert.is(Number(nul.payload_bytes), payloads[5].length);
  const bad = rows.find((r) => String(r.payload).startsWith(`${marker} #8 `))! as Record<string, string>;
  assert.ok(bad.payload.includes('\ufffd') && bad.payload.endsWith('\\u0000'), `invalid UTF-8 visible: ${JSON.stringify(bad.payload)}`);
  assert.ok(bad.payload_base64, 'a base64 copy');
  assert.ok(rows.every((r) => String(r.reason).startsWith('payload is not valid JSON') && r.reason_class === 'payload'), JSON.stringify(rows.map((r) => r.reason)));
  assert.is(sink.stats.deadLetters - before, 11, 'the dead-letter counter moved by 11');
  assert.is((await metric('iot_ingest_dead_letters_total')) - metricBefore, 11, '/metrics too');
  await goodReadingIsStored();
  await otherTenantAnswers();
});

test('finding 5: 1,000 messages with a 60 kB topic add kilobytes, not 121 MB: clipped with size and hash, rate-limited into a summary, in /metrics', async () => {
  const sizeBefore = Number((await db.pool.query(`select pg_total_relation_size('iot_private.ingest_dead_letters') as n`)).rows[0].n);
  const suppressedBefore = sink.stats.deadLettersSuppressed;
  const heapBefore = process.memoryUsage().heapUsed;
  let heapPeak = heapBefore;
  const sampler = setInterval(() => (heapPeak = Math.max(heapPeak, process.memoryUsage().heapUsed)), 5);
  // Random text, as an attacker would send: TOAST cannot compress it away.
  const noise = randomBytes(45_000).toString('base64').replace(/[+/#]/g, 'x');
  const longTopic = (i: number) => `facility/F1/workcenter/PRESS-1/sensor/${String(i).padStart(4, '0')}${noise}`;
  const started = Date.now();
  try {
    for (let i = 0; i < 1000; i += 50) {
      await Promise.all(Array.from({ length: 50 }, (_, j) => publisher.publishAsync(longTopic(i + j), '{"value": 70}', { qos: 1 })));
    }
    // Until the dead letters stop coming (the sink has written what it will, summaries included).
    let last = -1;
    let still = 0;
    await waitFor(async () => {
      const { rows: [c] } = await db.pool.query(`select count(*)::int as n, count(*) filter (where topic like $1)::int as flood
        from iot_private.ingest_dead_letters`, [`facility/F1/workcenter/PRESS-1/sensor/%${noise.slice(0, 100)}%`]);
      still = c.n === last ? still + 1 : 0;
      last = c.n;
      if (c.flood > 0 && still >= 30) return true;
      await sleep(50);
      return false;
    }, 60_000, 'the dead letters of the flood to be written');
  } finally {
    clearInterval(sampler);
  }
  const seconds = (Date.now() - started) / 1000;
  const grewBytes = Number((await db.pool.query(`select pg_total_relation_size('iot_private.ingest_dead_letters') as n`)).rows[0].n) - sizeBefore;
  assert.ok(grewBytes < 2 * 2 ** 20, `the dead-letter table grew ${(grewBytes / 2 ** 20).toFixed(1)} MiB`);
  // Every one of the 1,000 is accounted for: stored one by one, or counted in a summary row.
  const accounted = (await db.pool.query(`select count(*) filter (where topic_bytes > 60000)::int as single,
      coalesce(sum(suppressed_count) filter (where reason_class = 'rate_limited' and source_key = 'facility/F1'), 0)::int as suppressed
    from iot_private.ingest_dead_letters`)).rows[0];
  assert.is(accounted.single + accounted.suppressed, 1000, 'all 1,000 written one by one or counted');
  const single = (await db.pool.query(`select topic, topic_bytes, topic_sha256, reason from iot_private.ingest_dead_letters
    where topic_bytes > 60000 and suppressed_count = 0 order by id`)).rows;
  const summaries = (await db.pool.query(`select topic, reason, suppressed_count, source_key from iot_private.ingest_dead_letters
    where reason_class = 'rate_limited' and source_key = 'facility/F1'`)).rows;
  console.log(`  [hardening/dead-letters] 1,000 messages with a 60 kB topic in ${seconds.toFixed(1)} s: ${single.length} stored one by one, ` +
    `${summaries.reduce((n, s) => n + s.suppressed_count, 0)} counted in ${summaries.length} summary rows; the table grew ${(grewBytes / 1024).toFixed(0)} kB; ` +
    `heap +${((heapPeak - heapBefore) / 2 ** 20).toFixed(0)} MiB at most`);
  const [burstPerSource, ratePerSource] = [num('INGEST_DEAD_LETTER_BURST'), num('INGEST_DEAD_LETTER_RATE')];
  assert.ok(single.length <= burstPerSource + Math.ceil(seconds * ratePerSource) + 1, `${single.length} stored one by one`);
  assert.ok(single.length >= 1);
  const first = single[0];
  assert.is(Buffer.byteLength(first.topic), num('INGEST_DEAD_LETTER_MAX_TOPIC_BYTES'), 'the topic is clipped');
  const index = Number(first.topic.slice('facility/F1/workcenter/PRESS-1/sensor/'.length, 'facility/F1/workcenter/PRESS-1/sensor/'.length + 4));
  assert.is(first.topic_bytes, Buffer.byteLength(longTopic(index)), 'its size as sent');
  assert.is(first.topic_sha256, sha(longTopic(index)), 'and its hash');
  assert.ok(first.reason.length <= 2001, `the reason is clipped too (${first.reason.length} characters)`);
  assert.ok(summaries.length >= 1, 'a summary row says how many were counted');
  assert.match(summaries[0].reason, /^rate limit: \d+ dead letters from facility\/F1 were counted, not stored one by one/);
  assert.ok(heapPeak - heapBefore < 256 * 2 ** 20, `heap grew ${heapPeak - heapBefore} bytes`);
  assert.ok(sink.stats.deadLettersSuppressed - suppressedBefore >= 1000 - single.length, 'the suppressed counter moved');
  assert.ok((await metric('iot_ingest_dead_letters_suppressed_total')) >= 1000 - single.length, '/metrics shows the flood');
  assert.ok((await renderMetrics()).includes('iot_ingest_dead_letters_by_class_total{class="'), 'counts by reason class');
  await goodReadingIsStored();
  await otherTenantAnswers();
});

test('finding 5: dead letters are pruned by age (INGEST_DEAD_LETTER_RETENTION_DAYS); newer ones stay', async () => {
  await db.pool.query(`update iot_private.ingest_dead_letters set received_at = now() - interval '31 days' where topic_bytes > 60000`);
  const total = async () => Number((await db.pool.query('select count(*) from iot_private.ingest_dead_letters')).rows[0].count);
  const before = await total();
  const old = Number((await db.pool.query(`select count(*) from iot_private.ingest_dead_letters where received_at < now() - interval '30 days'`)).rows[0].count);
  const { rows } = await db.pool.query(`select iot_private.prune_dead_letters(now() - make_interval(days => $1)) as n`, [num('INGEST_DEAD_LETTER_RETENTION_DAYS')]);
  assert.is(rows[0].n, old);
  assert.ok(old > 0);
  assert.is(await total(), before - old);
  await goodReadingIsStored();
});

test.run();

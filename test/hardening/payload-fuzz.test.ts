// Fuzzing the MQTT payload parser (issue 7) with fast-check, for a bounded time (FUZZ_SECONDS,
// default 10): random and mutated topics and payloads, number literals beyond a double (1e400,
// 1e-400, 5e-324), timestamps beyond a Date, oversized and over-full messages, random bytes, deep
// nesting. Against a real registry (a migrated database with the registry cache). Properties:
//   - parseMqttMessage never throws;
//   - a message refused whole (topic, size, JSON, empty or over-full array) is exactly one dead
//     letter; otherwise every reading in it becomes exactly one reading or one dead letter;
//   - every reading is within the documented ranges (value, time, quality, metadata size);
//   - every reason is a non-empty, bounded text, and a dead letter's payload is clipped.
// A failure prints fast-check's seed and the shrunk counterexample: replay it with FUZZ_SEED.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import fc from 'fast-check';
import {
  EARLIEST_TIME, IngestLimits, inValueRange, MAX_METADATA_BYTES, parseMqttMessage, ParseResult,
} from '../../src/ingest/mqtt-payload';
import { RegistryCache } from '../../src/ingest/registry';
import { createTestDatabase, seedSmallPlant, TestDatabase } from '../helpers/db';

const test = suite('hardening: the MQTT payload parser under fuzzing');
const SECONDS = Number(process.env.FUZZ_SECONDS ?? 10);
let db: TestDatabase;
let plant: Awaited<ReturnType<typeof seedSmallPlant>>;
let registry: RegistryCache;

test.before(async () => {
  db = await createTestDatabase('payload_fuzz');
  plant = await seedSmallPlant(db.pool);
  await seedSmallPlant(db.pool, 'other', 'F2');
  // A second TEMPERATURE channel on PRESS-1, so a reading without deviceId there is ambiguous.
  const d = await db.pool.query<{ id: string }>(`insert into iot.iot_devices (tenant_id, work_center_id, device_code, device_type)
    values ($1, $2, 'F1-DEV-2', 'SENSOR') returning id`, [plant.tenantId, plant.workCenterId]);
  await db.pool.query(`insert into iot.device_channels (tenant_id, device_id, sensor_type, unit) values ($1, $2, 'TEMPERATURE', 'degC'), ($1, $2, 'SPEED', 'sheets/h')`,
    [plant.tenantId, d.rows[0].id]);
  registry = new RegistryCache(db.pool, 0);
  await registry.start();
});
test.after(async () => {
  await registry.stop();
  await db.drop();
});

// ---- what a device (or an attacker) may send ------------------------------------------------------

const json = (v: unknown) => JSON.stringify(v);
/** Mostly `usual`, sometimes one of `unusual`: most messages must get far enough to be stored. */
const mostly = <T>(usual: fc.Arbitrary<T>, ...unusual: fc.Arbitrary<T>[]) =>
  fc.oneof({ weight: 8 * unusual.length, arbitrary: usual }, ...unusual.map((arbitrary) => ({ weight: 1, arbitrary })));
const sensorType = mostly(fc.constantFrom('TEMPERATURE', 'temperature', 'Vibration', 'PRESSURE', 'pressure'),
  fc.constantFrom('speed', 'HUMIDITY', ''));
const contractTopic = fc.tuple(mostly(fc.constant('F1'), fc.constantFrom('F2', 'NOPE', 'f1')), mostly(fc.constant('PRESS-1'), fc.constantFrom('NOPE', '')),
  sensorType).map(([f, w, s]) => `facility/${f}/workcenter/${w}/sensor/${s}`);
const topic = fc.oneof(
  { weight: 30, arbitrary: contractTopic },
  { weight: 2, arbitrary: fc.tuple(contractTopic, fc.constantFrom('/extra', '/', '/#', '/+/x')).map(([t, s]) => t + s) },
  { weight: 2, arbitrary: fc.tuple(contractTopic, fc.integer({ min: 0, max: 5 })).map(([t, n]) => t.split('/').slice(0, n).join('/')) },
  { weight: 1, arbitrary: fc.string({ maxLength: 300, unit: 'binary' }) },
);

/** Number literals as they appear in a payload's text, many beyond what a double or a Date holds. */
const literal = fc.oneof(
  fc.double({ noNaN: true, noDefaultInfinity: true }).map(json),
  fc.integer().map(String),
  fc.tuple(fc.integer({ min: -99999, max: 99999 }), fc.integer({ min: -420, max: 420 })).map(([m, e]) => `${m}e${e}`),
  fc.constantFrom('1e400', '-1e400', '1e-400', '-1e-400', '5e-324', '-5e-324', '1.7976931348623157e308', '1e15', '-1e15', '1e-15',
    '1.0000000000000002e15', '9.999999999999999e-16', '-0', '0e-999', '0.0', '1e16', '-1e16', '8.64e15', '8.640000000000001e15',
    '946684799', '946684800', '99999999999', '100000000000', '0.' + '0'.repeat(330) + '1', '1' + '0'.repeat(400)),
);
const now = Date.now();
const timestampText = mostly(
  fc.integer({ min: -40 * 86_400_000, max: 600_000 }).map((d) => json(new Date(now + d).toISOString())),
  literal,
  fc.date({ noInvalidDate: true }).map((d) => json(d.toISOString())),
  fc.constantFrom('"2026-02-30T00:00:00Z"', '"1999-12-31T23:59:59.999Z"', '"2000-01-01 00:00"', '"+275760-09-13T00:00:00Z"',
    '"yesterday"', '""', 'true', '[]', '{}'),
  fc.string({ maxLength: 40 }).map(json),
);
const valueText = mostly(fc.double({ min: -1e6, max: 1e6, noNaN: true }).map((v) => json(Math.round(v * 1000) / 1000)), literal, literal,
  fc.constantFrom('null', 'true', '"70"', '[70]', '{"v": 70}', '"NaN"'));
/** A field, left out half the time. */
const field = (name: string, text: fc.Arbitrary<string>) => fc.option(text.map((t) => `${json(name)}: ${t}`), { nil: undefined, freq: 2 });
/** A field mostly left out (sensorType and unit are optional, and a random one is mostly refused). */
const rareField = (name: string, text: fc.Arbitrary<string>) => mostly(fc.constant(undefined), text.map((t) => `${json(name)}: ${t}`));
const readingText = fc.tuple(
  mostly(fc.constant('"deviceId": "F1-DEV-1"'), fc.constantFrom('"deviceId": "F1-DEV-2"', '"deviceId": "F2-DEV-1"', '"deviceId": ""',
    '"deviceId": 7', '"deviceId": null'), fc.string({ maxLength: 20 }).map((d) => `"deviceId": ${json(d)}`), fc.constant(undefined)),
  rareField('sensorType', sensorType.map(json)),
  fc.option(valueText.map((t) => `"value": ${t}`), { nil: undefined, freq: 20 }),
  rareField('unit', fc.oneof(fc.constantFrom('"F"', '"°C"', '"degC"', '"K"', '"bar"', '"MPa"', '"kg"', '"mm/s"', '""', '5', 'null'),
    fc.string({ maxLength: 12 }).map(json))),
  field('timestamp', timestampText),
  field('quality', fc.oneof(fc.constantFrom('"GOOD"', '"VERIFIED"', '"BadSensorFailure"', '"SHINY"', '192', 'null'), fc.jsonValue({ maxDepth: 2 }).map(json))),
  fc.dictionary(fc.string({ maxLength: 12, unit: 'binary' }), fc.oneof(fc.jsonValue({ maxDepth: 3 }).map(json), literal), { maxKeys: 2 }),
).map(([deviceId, type, value, unit, timestamp, quality, extra]) => `{${[deviceId, type, value, unit, timestamp, quality,
  ...Object.entries(extra).map(([k, v]) => `${json(k)}: ${v}`)].filter((f) => f !== undefined).join(', ')}}`);

const messageText = fc.oneof(
  { weight: 6, arbitrary: readingText },
  { weight: 4, arbitrary: fc.array(fc.oneof({ weight: 8, arbitrary: readingText }, { weight: 1, arbitrary: fc.jsonValue({ maxDepth: 2 }).map(json) }),
    { maxLength: 14 }).map((items) => `[${items.join(', ')}]`) },
  { weight: 1, arbitrary: fc.jsonValue().map(json) },
  { weight: 1, arbitrary: fc.integer({ min: 1, max: 3000 }).map((n) => '['.repeat(n) + ']'.repeat(n)) },
);
/** Byte-level damage: cut, insert, duplicate. */
const mutated = fc.tuple(messageText, fc.array(fc.tuple(fc.nat(), fc.nat({ max: 6 }), fc.string({ maxLength: 4, unit: 'binary' })), { maxLength: 4 }))
  .map(([text, edits]) => edits.reduce((t, [at, cut, insert]) => {
    const i = t.length ? at % t.length : 0;
    return t.slice(0, i) + insert + t.slice(i + cut);
  }, text));
/** Text (sent as UTF-8), or random bytes. */
const payload: fc.Arbitrary<string | Uint8Array> = fc.oneof(
  { weight: 20, arbitrary: messageText },
  { weight: 3, arbitrary: mutated },
  { weight: 1, arbitrary: fc.uint8Array({ maxLength: 600 }) },
  { weight: 1, arbitrary: fc.tuple(messageText, fc.nat({ max: 9000 })).map(([t, pad]) => t + ' '.repeat(pad)) },
);
const limits: fc.Arbitrary<IngestLimits> = fc.record({
  maxFutureMs: fc.constantFrom(0, 300_000, 86_400_000),
  maxAgeMs: fc.constantFrom(0, 7 * 86_400_000),
  maxMessageBytes: fc.constantFrom(1024, 4096, 262_144, 262_144),
  maxReadingsPerMessage: fc.integer({ min: 1, max: 30 }),
});

// ---- what must hold ----------------------------------------------------------------------------

const CONTRACT_TOPIC = /^facility\/([^/]+)\/workcenter\/([^/]+)\/sensor\/([^/]+)$/;

/** How many outcomes a message must have: 1 when refused whole, else one per reading in it. */
function expectedOutcomes(topicText: string, bytes: Buffer, l: IngestLimits): { whole: boolean; items: number; array: boolean } {
  const m = CONTRACT_TOPIC.exec(topicText);
  const facility = m && registry.facility(m[1]);
  if (!m || !facility || !registry.workCenterId(facility.facilityId, m[2]) || bytes.length > l.maxMessageBytes) {
    return { whole: true, items: 1, array: false };
  }
  let body: unknown;
  try {
    body = JSON.parse(bytes.toString('utf8'));
  } catch {
    return { whole: true, items: 1, array: false };
  }
  if (!Array.isArray(body)) return { whole: false, items: 1, array: false };
  if (body.length === 0 || body.length > l.maxReadingsPerMessage) return { whole: true, items: 1, array: false };
  return { whole: false, items: body.length, array: true };
}

const seen = { readings: 0, deadLetters: 0, refusedWhole: 0 };

function check(topicText: string, bytes: Buffer, l: IngestLimits, receivedAt: Date): void {
  let r: ParseResult;
  try {
    r = parseMqttMessage(topicText, bytes, { ...l, registry, receivedAt });
  } catch (error) {
    throw new Error(`parseMqttMessage threw: ${(error as Error).stack}`);
  }
  const expected = expectedOutcomes(topicText, bytes, l);
  seen.readings += r.readings.length;
  seen.deadLetters += r.deadLetters.length;
  if (expected.whole) seen.refusedWhole++;
  if (expected.whole) {
    assert.equal([r.readings.length, r.deadLetters.length], [0, 1], 'a message refused whole is exactly one dead letter');
  } else {
    assert.is(r.readings.length + r.deadLetters.length, expected.items, 'each reading is one reading or one dead letter');
    if (expected.array) {
      const indices = r.deadLetters.map((d) => Number(/^item (\d+): /.exec(d.reason)?.[1]));
      assert.ok(indices.every((i) => Number.isInteger(i) && i < expected.items), `dead letters name their item: ${r.deadLetters.map((d) => d.reason)}`);
      assert.is(new Set(indices).size, indices.length, 'no item has two dead letters');
    }
  }
  for (const d of r.deadLetters) {
    assert.type(d.reason, 'string');
    assert.ok(d.reason.trim().length > 0, 'a reason is not empty');
    assert.ok(d.reason.length <= 1000, `a reason is bounded (${d.reason.length} characters)`);
    assert.ok((d.payload ?? '').length <= 4097, `a dead letter's payload is clipped (${d.payload?.length} characters)`);
    assert.is(d.topic, topicText);
    assert.is(d.source, 'MQTT');
  }
  for (const x of r.readings) {
    assert.ok(Number.isFinite(x.value) && inValueRange(x.value), `value ${x.value} is within the accepted range`);
    const t = x.time.getTime();
    assert.ok(Number.isFinite(t), 'the time is a valid Date');
    assert.ok(t >= EARLIEST_TIME, `time ${x.time.toISOString()} is not before 2000`);
    assert.ok(t <= receivedAt.getTime() + l.maxFutureMs, `time ${x.time.toISOString()} is within INGEST_MAX_FUTURE_SECONDS`);
    if (l.maxAgeMs) assert.ok(t >= receivedAt.getTime() - l.maxAgeMs, `time ${x.time.toISOString()} is within INGEST_MAX_AGE_DAYS`);
    assert.ok(['GOOD', 'UNCERTAIN', 'BAD'].includes(x.quality), `quality ${x.quality}`);
    assert.ok(x.sensorType !== '' && x.sensorType === x.sensorType.toUpperCase(), `sensor type ${x.sensorType}`);
    if (x.metadata !== null && x.metadata !== undefined) {
      const text = JSON.stringify(x.metadata);
      assert.ok(Buffer.byteLength(text) <= MAX_METADATA_BYTES, 'metadata within its bound');
      assert.not.match(text, /\\u0000/, 'no U+0000 in metadata');
    }
  }
}

test(`for ${SECONDS} s, no topic or payload makes the parser throw, lose an item or store a reading out of range`, () => {
  const receivedAt = new Date(now);
  const property = fc.property(topic, payload, limits, (t, p, l) => check(t, Buffer.from(p), l, receivedAt));
  const seed = process.env.FUZZ_SEED === undefined ? undefined : Number(process.env.FUZZ_SEED);
  const details = fc.check(property, { numRuns: 10_000_000, interruptAfterTimeLimit: SECONDS * 1000, markInterruptAsFailure: false, seed });
  console.log(`  [fuzz] ${details.numRuns} messages in ${SECONDS} s (seed ${details.seed}): ${seen.readings} readings, ` +
    `${seen.deadLetters} dead letters, ${seen.refusedWhole} messages refused whole`);
  if (details.failed) throw new Error(fc.defaultReportMessage(details) ?? 'fast-check failed');
  assert.ok(details.numRuns >= 1000, `only ${details.numRuns} runs`);
  assert.ok(seen.readings > details.numRuns / 20, 'the generated messages reach the paths that store readings');
});

test('the documented edge cases, each exactly as the properties expect', () => {
  const receivedAt = new Date(now);
  const l: IngestLimits = { maxFutureMs: 300_000, maxAgeMs: 0, maxMessageBytes: 262_144, maxReadingsPerMessage: 1000 };
  const t = 'facility/F1/workcenter/PRESS-1/sensor/VIBRATION';
  for (const p of ['{"value": 1e400}', '{"value": 5e-324}', '{"value": 1.7976931348623157e308}', '{"value": 1, "timestamp": 1e16}',
    '{"value": 1e-400}', `[${'{"value": 1},'.repeat(1000)}{"value": 1}]`, '['.repeat(100_000) + ']'.repeat(100_000)]) {
    check(t, Buffer.from(p), { ...l, maxMessageBytes: 1_000_000 }, receivedAt);
  }
  check(`${t}/extra`, Buffer.from('{"value": 1}'), l, receivedAt);
  check(t, Buffer.alloc(300_000, 0x20), l, receivedAt);
});

test.run();

// The MQTT payload parser against a real registry (a migrated database and the registry cache):
// sensor types in any case, quality words, unit aliases and conversions, metadata.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { DEFAULT_LIMITS, IngestLimits, MAX_METADATA_BYTES, parseMqttMessage, ParseResult } from '../../src/ingest/mqtt-payload';
import { RegistryCache } from '../../src/ingest/registry';
import { loadContract } from '../helpers/contract';
import { createTestDatabase, seedSmallPlant, TestDatabase } from '../helpers/db';
import { waitFor } from '../helpers/wait';

const test = suite('ingest: MQTT payloads read with the registry (units, qualities, sensor types)');
let db: TestDatabase;
let plant: Awaited<ReturnType<typeof seedSmallPlant>>;
let registry: RegistryCache;
const ids: Record<string, string> = {};

/** The seed's examples (seed-contract.json mqtt.payload_examples), checked against the file where it is present. */
const SEED_TOPIC = 'facility/F1/workcenter/WC-PRESS-01/sensor/TEMPERATURE';
const SEED_PAYLOADS = [
  { deviceId: 'temp-sensor-01', sensorType: 'TEMPERATURE', value: 72.5, unit: 'F', timestamp: '2026-01-10T12:00:00Z', quality: 'VERIFIED' },
  { value: 70.0, timestamp: '2026-01-10T12:00:00.000Z' },
];

const TOPIC = (sensor = 'TEMPERATURE') => `facility/F1/workcenter/PRESS-1/sensor/${sensor}`;

function parse(topic: string, payload: unknown, limits: Partial<IngestLimits> = {}, receivedAt = new Date()): ParseResult {
  const text = typeof payload === 'string' ? payload : JSON.stringify(payload);
  return parseMqttMessage(topic, Buffer.from(text), { ...DEFAULT_LIMITS, ...limits, registry, receivedAt });
}

/** The one reading a message must give (fails with the dead letters' reasons otherwise). */
function one(topic: string, payload: unknown, limits: Partial<IngestLimits> = {}, receivedAt?: Date) {
  const r = parse(topic, payload, limits, receivedAt);
  assert.is(r.deadLetters.length, 0, `unexpected dead letters: ${r.deadLetters.map((d) => d.reason).join('; ')}`);
  assert.is(r.readings.length, 1);
  return r.readings[0];
}

/** The reason a message's one reading is refused with. */
function refused(topic: string, payload: unknown, limits: Partial<IngestLimits> = {}, receivedAt?: Date): string {
  const r = parse(topic, payload, limits, receivedAt);
  assert.is(r.readings.length, 0, `stored, but should be refused: ${JSON.stringify(r.readings)}`);
  assert.is(r.deadLetters.length, 1);
  return r.deadLetters[0].reason;
}

async function addDevice(workCenterId: string, code: string, channels: [string, string][]): Promise<string> {
  const d = await db.pool.query<{ id: string }>(
    `insert into iot.iot_devices (tenant_id, work_center_id, device_code, device_type) values ($1, $2, $3, 'SENSOR') returning id`,
    [plant.tenantId, workCenterId, code]);
  for (const [type, unit] of channels) {
    await db.pool.query(`insert into iot.device_channels (tenant_id, device_id, sensor_type, unit) values ($1, $2, $3, $4)`,
      [plant.tenantId, d.rows[0].id, type, unit]);
  }
  return d.rows[0].id;
}

/** Runs `change` and waits for the registry cache to reload after its NOTIFY. */
async function changeRegistry(change: string, params: unknown[] = []): Promise<void> {
  const version = registry.version;
  await db.pool.query(change, params);
  await waitFor(() => registry.version > version, 5000, 'the registry to reload');
}

test.before(async () => {
  db = await createTestDatabase('payload');
  plant = await seedSmallPlant(db.pool);
  // The seed's equipment: temp-sensor-01 with a TEMPERATURE channel in °F on WC-PRESS-01 of facility F1.
  const w = await db.pool.query<{ id: string }>(
    `insert into iot.work_centers (tenant_id, facility_id, work_center_code, name, work_center_type)
     values ($1, $2, 'WC-PRESS-01', 'Press 01', 'PRESS') returning id`, [plant.tenantId, plant.facilityId]);
  ids.seedSensor = await addDevice(w.rows[0].id, 'temp-sensor-01', [['TEMPERATURE', '°F']]);
  ids.celsius = await addDevice(plant.workCenterId, 'F1-DEV-C', [['TEMPERATURE', 'degC'], ['SPEED', 'furlongs/fortnight']]);
  registry = new RegistryCache(db.pool, 0);
  await registry.start();
});
test.after(async () => {
  await registry.stop();
  await db.drop();
});

const loaded = loadContract();
if (!loaded.contract) console.log(`  [payload] skipping the check of this file's copies of the seed's payloads: ${loaded.reason}`);
(loaded.contract ? test : test.skip)("the test's copies of the seed's example payloads are the contract's", () => {
  const { mqtt } = loaded.contract!;
  assert.equal(mqtt.payload_examples, SEED_PAYLOADS);
  assert.ok(mqtt.topic_examples.includes(SEED_TOPIC));
});

test("the seed's first example: 72.5 °F GOOD on temp-sensor-01, the word VERIFIED kept in metadata", () => {
  const r = one(SEED_TOPIC, SEED_PAYLOADS[0]);
  assert.equal({ ...r, time: r.time.toISOString() }, {
    time: '2026-01-10T12:00:00.000Z', tenantId: plant.tenantId, deviceId: ids.seedSensor, sensorType: 'TEMPERATURE',
    value: 72.5, unit: '°F', quality: 'GOOD', metadata: { quality: 'VERIFIED' },
  });
});

test("the seed's second example (no deviceId, no unit): 70.0 on the work center's only TEMPERATURE channel", () => {
  const r = one(SEED_TOPIC, SEED_PAYLOADS[1]);
  assert.equal({ ...r, time: r.time.toISOString() }, {
    time: '2026-01-10T12:00:00.000Z', tenantId: plant.tenantId, deviceId: ids.seedSensor, sensorType: 'TEMPERATURE',
    value: 70, unit: '°F', quality: 'GOOD', metadata: null,
  });
});

test('sensor types match in any case, in topics and payloads, and are stored upper case', () => {
  for (const [topicType, payloadType] of [['temperature', undefined], ['Temperature', 'TEMPERATURE'], ['TEMPERATURE', 'temperature'],
    ['tEmPeRaTuRe', 'Temperature']]) {
    const r = one(TOPIC(topicType), { deviceId: plant.deviceCode, sensorType: payloadType, value: 70 });
    assert.is(r.sensorType, 'TEMPERATURE', `topic ${topicType}, payload ${payloadType}`);
    assert.is(r.deviceId, plant.deviceId);
  }
  assert.is(one(`facility/F1/workcenter/WC-PRESS-01/sensor/temperature`, { value: 1 }).deviceId, ids.seedSensor);
  assert.match(refused(TOPIC('temperature'), { deviceId: plant.deviceCode, sensorType: 'VIBRATION', value: 1 }),
    'sensorType "VIBRATION" does not match topic sensor "temperature"');
});

test('quality words from the field map to GOOD / UNCERTAIN / BAD; a word other than the stored quality is kept', () => {
  const cases: [unknown, string, Record<string, unknown> | null][] = [
    ['GOOD', 'GOOD', null], ['good', 'GOOD', null], [' Uncertain ', 'UNCERTAIN', null], ['bad', 'BAD', null],
    ['VERIFIED', 'GOOD', { quality: 'VERIFIED' }], ['verified', 'GOOD', { quality: 'verified' }],
    ['Good', 'GOOD', null], ['GoodClamped', 'GOOD', { quality: 'GoodClamped' }],
    ['Uncertain', 'UNCERTAIN', null], ['UncertainLastUsableValue', 'UNCERTAIN', { quality: 'UncertainLastUsableValue' }],
    ['Bad', 'BAD', null], ['BadSensorFailure', 'BAD', { quality: 'BadSensorFailure' }],
    ['BadCommunicationFailure', 'BAD', { quality: 'BadCommunicationFailure' }],
    ['SUSPECT', 'UNCERTAIN', { quality: 'SUSPECT' }], ['INVALID', 'BAD', { quality: 'INVALID' }],
    // Unknown words, and anything that is not a word, are stored as UNCERTAIN with what was sent.
    ['SHINY', 'UNCERTAIN', { quality: 'SHINY' }], [192, 'UNCERTAIN', { quality: 192 }], [true, 'UNCERTAIN', { quality: true }],
  ];
  let t = Date.parse('2026-02-01T00:00:00Z');
  for (const [word, quality, metadata] of cases) {
    const r = one(TOPIC(), { deviceId: plant.deviceCode, value: 70, quality: word, timestamp: new Date(t++).toISOString() });
    assert.equal([r.quality, r.metadata], [quality, metadata], `quality ${JSON.stringify(word)}`);
  }
  assert.equal(one(TOPIC(), { deviceId: plant.deviceCode, value: 70, quality: null }).quality, 'GOOD', 'null is no quality');
});

test('a quality word added to iot.quality_words is used without a restart', async () => {
  assert.is(one(TOPIC(), { deviceId: plant.deviceCode, value: 70, quality: 'Nominal' }).quality, 'UNCERTAIN');
  await changeRegistry(`insert into iot.quality_words (word, quality) values ('NOMINAL', 'GOOD')`);
  const r = one(TOPIC(), { deviceId: plant.deviceCode, value: 70, quality: 'Nominal' });
  assert.equal([r.quality, r.metadata], ['GOOD', { quality: 'Nominal' }]);
});

test('units match by alias, in any case and spacing; the stored unit is the channel\'s and nothing is converted', () => {
  for (const unit of ['F', '°F', 'degF', 'deg F', 'fahrenheit', 'Fahrenheit', 'FAHRENHEIT', 'f', '℉', 'ºF', ' °F ']) {
    const r = one(TOPIC(), { deviceId: plant.deviceCode, value: 70.25, unit });
    assert.equal([r.value, r.unit, r.metadata], [70.25, '°F', null], `unit ${JSON.stringify(unit)}`);
  }
  for (const unit of ['psi', 'PSI', 'Psi', 'psig']) {
    const r = one(TOPIC('PRESSURE'), { deviceId: plant.deviceCode, value: 101, unit });
    assert.equal([r.value, r.unit, r.metadata], [101, 'PSI', null], `unit ${JSON.stringify(unit)}`);
  }
  const r = one(TOPIC('VIBRATION'), { deviceId: plant.deviceCode, value: 1.5, unit: 'mm/sec' });
  assert.equal([r.value, r.unit], [1.5, 'mm/s']);
  // A blank unit is no unit.
  assert.is(one(TOPIC(), { deviceId: plant.deviceCode, value: 70, unit: '' }).value, 70);
});

test('a reading in another unit of the channel\'s quantity is converted, the original kept in metadata', () => {
  const cases: [string, string, number, string, number, number][] = [
    // topic sensor, device, value, unit, stored value, digits compared
    ['TEMPERATURE', plant.deviceCode, 22.5, 'C', 72.5, 12],
    ['TEMPERATURE', plant.deviceCode, 100, '°C', 212, 12],
    ['TEMPERATURE', plant.deviceCode, -40, 'celsius', -40, 12],
    ['TEMPERATURE', plant.deviceCode, 273.15, 'K', 32, 12],
    ['TEMPERATURE', 'F1-DEV-C', 212, '°F', 100, 12],          // onto a channel whose unit is an alias (degC)
    ['PRESSURE', plant.deviceCode, 1, 'bar', 14.503773773, 11],
    ['PRESSURE', plant.deviceCode, 689.4757293168361, 'kPa', 100, 12],
    ['VIBRATION', plant.deviceCode, 0.1, 'in/s', 2.54, 12],
  ];
  for (const [sensor, deviceId, value, unit, expected, digits] of cases) {
    const r = one(TOPIC(sensor), { deviceId, value, unit });
    assert.is(Number(r.value.toPrecision(digits)), expected, `${value} ${unit} on ${sensor} of ${deviceId}: ${r.value}`);
    assert.equal(r.metadata, { originalValue: value, originalUnit: unit });
  }
  const r = one(TOPIC(), { deviceId: plant.deviceCode, value: 22.5, unit: 'C' });
  assert.is(r.value, 72.5, 'rounded, not 72.49999999999993');
  assert.is(r.unit, '°F');
});

test('a unit that cannot be converted is refused with the reason', () => {
  assert.match(refused(TOPIC(), { deviceId: plant.deviceCode, value: 3, unit: 'kg' }),
    'unit "kg" (mass) cannot be converted to the channel\'s unit "°F" (temperature)');
  assert.match(refused(TOPIC('PRESSURE'), { deviceId: plant.deviceCode, value: 3, unit: '°C' }),
    'unit "°C" (temperature) cannot be converted to the channel\'s unit "PSI" (pressure)');
  assert.match(refused(TOPIC(), { deviceId: plant.deviceCode, value: 3, unit: 'furlongs' }), 'unit "furlongs" is not a known unit');
  assert.match(refused(TOPIC(), { deviceId: plant.deviceCode, value: 3, unit: 5 }), 'unit 5 must be a string');
  assert.match(refused(TOPIC('PRESSURE'), { deviceId: plant.deviceCode, value: 1e305, unit: 'MPa' }), 'out of range');
  // A channel unit that is not in the table: its own spelling is stored, anything else is refused.
  assert.is(one(TOPIC('SPEED'), { deviceId: 'F1-DEV-C', value: 3, unit: 'furlongs/fortnight' }).unit, 'furlongs/fortnight');
  assert.match(refused(TOPIC('SPEED'), { deviceId: 'F1-DEV-C', value: 3, unit: 'm/s' }),
    'channel\'s unit "furlongs/fortnight", which is not in iot.units or iot.unit_aliases');
});

test('an alias or a unit added to the tables is used without a restart', async () => {
  assert.match(refused(TOPIC(), { deviceId: plant.deviceCode, value: 70, unit: 'Grad F' }), 'not a known unit');
  await changeRegistry(`insert into iot.unit_aliases (alias, unit) values ('Grad F', '°F')`);
  assert.equal(one(TOPIC(), { deviceId: plant.deviceCode, value: 70, unit: 'Grad F' }).metadata, null);
  await changeRegistry(`insert into iot.units (unit, quantity, to_base_factor) values ('furlongs/fortnight', 'velocity', 201.168 / 1209600)`);
  const r = one(TOPIC('SPEED'), { deviceId: 'F1-DEV-C', value: 201.168 / 1209600, unit: 'm/s' });
  assert.is(r.value, 1);
  // Case is ignored only where it names one unit.
  assert.is(one(TOPIC('PRESSURE'), { deviceId: plant.deviceCode, value: 1, unit: 'mpa' }).metadata?.originalUnit, 'mpa');
  await changeRegistry(`insert into iot.units (unit, quantity, to_base_factor) values ('mPa', 'pressure', 0.001)`);
  assert.match(refused(TOPIC('PRESSURE'), { deviceId: plant.deviceCode, value: 1, unit: 'mpa' }),
    /unit "mpa" is ambiguous: it may be "(MPa" or "mPa|mPa" or "MPa)"/);
  assert.is(one(TOPIC('PRESSURE'), { deviceId: plant.deviceCode, value: 1e6, unit: 'mPa' }).value, 0.145037737730);
});

test('the tables refuse units that could not convert', async () => {
  for (const [sql, constraint] of [
    [`insert into iot.units (unit, quantity, to_base_factor) values ('x1', 'length', 0)`, 'units_to_base_factor_positive'],
    [`insert into iot.units (unit, quantity, to_base_factor) values ('x2', 'length', 'NaN')`, 'units_to_base_factor_positive'],
    [`insert into iot.units (unit, quantity, to_base_factor, to_base_offset) values ('x3', 'length', 1, 'Infinity')`, 'units_to_base_offset_finite'],
    [`insert into iot.unit_aliases (alias, unit) values ('x4', 'no such unit')`, 'unit_aliases_unit_fkey'],
    [`insert into iot.quality_words (word, quality) values ('Shiny', 'SPARKLING')`, 'quality_words_quality_valid'],
    [`insert into iot.quality_words (word, quality) values ('verified', 'BAD')`, 'quality_words_word_upper_key'],
  ]) {
    const error = await db.pool.query(sql).then(() => undefined, (e) => e);
    assert.ok(error, `accepted: ${sql}`);
    assert.is(error.constraint, constraint, `${sql}: ${error.message}`);
  }
});

test('metadata: the fields beyond the contract, with the quality word; null when nothing', () => {
  const r = one(TOPIC(), { deviceId: plant.deviceCode, value: 70, quality: 'VERIFIED', batch: 'B-7', gateway: { fw: '1.2' } });
  assert.equal(r.metadata, { batch: 'B-7', gateway: { fw: '1.2' }, quality: 'VERIFIED' });
  const converted = one(TOPIC(), { deviceId: plant.deviceCode, value: 20, unit: 'C', line: 3 });
  assert.equal(converted.metadata, { line: 3, originalValue: 20, originalUnit: 'C' });
  const plain = one(TOPIC(), { deviceId: plant.deviceCode, sensorType: 'temperature', value: 70, unit: '°F',
    timestamp: '2026-02-02T00:00:00Z', quality: 'GOOD' });
  assert.is(plain.metadata, null);
  const proto = one(TOPIC(), `{"deviceId": "${plant.deviceCode}", "value": 70, "__proto__": {"x": 1}}`);
  assert.is(JSON.stringify(proto.metadata), '{"__proto__":{"x":1}}', 'a field named __proto__ is kept as data');
});

test('metadata is bounded, and what jsonb cannot hold is refused before it reaches the database', () => {
  const fits = 'x'.repeat(MAX_METADATA_BYTES - 20);
  assert.is((one(TOPIC(), { deviceId: plant.deviceCode, value: 70, note: fits }).metadata as { note: string }).note, fits);
  assert.match(refused(TOPIC(), { deviceId: plant.deviceCode, value: 70, note: 'x'.repeat(MAX_METADATA_BYTES) }),
    `more than the ${MAX_METADATA_BYTES} allowed`);
  assert.match(refused(TOPIC(), { deviceId: plant.deviceCode, value: 70, quality: 'é'.repeat(MAX_METADATA_BYTES / 2) }),
    `more than the ${MAX_METADATA_BYTES} allowed`);
  assert.match(refused(TOPIC(), `{"deviceId": "${plant.deviceCode}", "value": 70, "note": "a\\u0000b"}`), 'field "note" holds U+0000');
  assert.match(refused(TOPIC(), `{"deviceId": "${plant.deviceCode}", "value": 70, "note": ["\\ud800"]}`), 'unpaired surrogate');
  assert.match(refused(TOPIC(), { deviceId: plant.deviceCode, value: 70, originalUnit: 'C' }), 'field "originalUnit" is reserved');
});

// Bounds (README "Sending readings"): what a device can send and what is stored.

test('a value is 0 or of magnitude 1e-15 to 1e15; a reason quotes the number as sent, not as JSON.parse read it', () => {
  const dev = plant.deviceCode;
  for (const value of ['1e15', '-1e15', '1e-15', '-1e-15', '0', '-0', '0e-400', '0.0', '999999999999999.9']) {
    assert.is(one(TOPIC(), `{"deviceId": "${dev}", "value": ${value}}`).value, Number(value), `value ${value}`);
  }
  const cases: [string, string][] = [
    ['1.7976931348623157e308', 'value 1.7976931348623157e308 is outside the accepted range: 0, or a magnitude from 1e-15 to 1e15'],
    ['5e-324', 'value 5e-324 is outside the accepted range'],
    ['-1.0000000000000002e15', 'value -1.0000000000000002e15 is outside the accepted range'],
    ['1e-16', 'value 1e-16 is outside the accepted range'],
    ['1e400', 'value 1e400 is beyond what a 64-bit float holds'],
    ['-1E+400', 'value -1E+400 is beyond what a 64-bit float holds'],
    ['1e-400', 'value 1e-400 is not 0 but too small to store'],
    ['0.' + '0'.repeat(400) + '1', 'is not 0 but too small to store'],
  ];
  for (const [value, reason] of cases) assert.match(refused(TOPIC(), `{"deviceId": "${dev}", "value": ${value}}`), reason, `value ${value}`);
  // In arrays, with duplicate and nested fields: the literal of that reading's own field.
  const r = parse(TOPIC(), `[{"deviceId": "${dev}", "value": 1, "value": 1e999, "x": {"value": 3}}, {"deviceId": "${dev}", "value": 2,
    "timestamp": "2026-02-03T00:00:00Z"}, [1e999], {"deviceId": "${dev}", "extra": [1e999], "value": 2e999}]`);
  assert.equal(r.deadLetters.map((d) => d.reason), [
    'item 0: value 1e999 is beyond what a 64-bit float holds (accepted: 0, or a magnitude from 1e-15 to 1e15)',
    'item 2: reading must be a JSON object',
    'item 3: value 2e999 is beyond what a 64-bit float holds (accepted: 0, or a magnitude from 1e-15 to 1e15)',
  ]);
  assert.equal(r.readings.map((x) => x.value), [2]);
  // The range holds in the channel's unit, after conversion.
  assert.match(refused(TOPIC('PRESSURE'), { deviceId: dev, value: 1e13, unit: 'MPa' }),
    'value 10000000000000 (1450377377300000 PSI in the channel\'s unit) is outside the accepted range');
  assert.match(refused(TOPIC(), `{"deviceId": "${dev}", "value": 1, "note": 1e400}`), 'field "note" holds a number beyond what a 64-bit float holds');
});

test('a timestamp is from 2000-01-01 (or INGEST_MAX_AGE_DAYS ago) to INGEST_MAX_FUTURE_SECONDS ahead, and one a clock can hold', () => {
  const dev = plant.deviceCode;
  const now = new Date('2026-06-01T00:00:00Z');
  const at = (timestamp: string | number, limits: Partial<IngestLimits> = {}) =>
    one(TOPIC(), `{"deviceId": "${dev}", "value": 1, "timestamp": ${JSON.stringify(timestamp)}}`, limits, now).time.toISOString();
  const no = (timestamp: string, limits: Partial<IngestLimits> = {}) =>
    refused(TOPIC(), `{"deviceId": "${dev}", "value": 1, "timestamp": ${timestamp}}`, limits, now);
  assert.is(at(946684800), '2000-01-01T00:00:00.000Z');
  assert.is(at(946684800000), '2000-01-01T00:00:00.000Z');
  assert.is(at('2000-01-01T00:00:00Z'), '2000-01-01T00:00:00.000Z');
  assert.is(at('2026-06-01T00:05:00Z'), '2026-06-01T00:05:00.000Z', 'INGEST_MAX_FUTURE_SECONDS ahead is accepted');
  assert.match(no('1e16'), 'timestamp 1e16 is beyond any time a clock can hold (accepted: from 2000-01-01T00:00:00.000Z to 300 s after arrival)');
  assert.match(no('-1e16'), 'timestamp -1e16 is beyond any time a clock can hold');
  assert.match(no('8.64e15'), 'timestamp 8.64e15 (+275760-09-13T00:00:00.000Z) is more than 300 s in the future');
  assert.match(no('1e400'), 'timestamp 1e400 is not a finite number');
  assert.match(no('946684799'), 'timestamp 946684799 (1999-12-31T23:59:59.000Z) is before the year 2000');
  assert.match(no('-1'), 'is before the year 2000');
  assert.match(no('"1999-12-31T23:59:59.999Z"'), 'is before the year 2000');
  assert.match(no('"2026-06-01T00:05:01Z"'), 'is more than 300 s in the future (INGEST_MAX_FUTURE_SECONDS');
  assert.match(no('"+275760-09-13T00:00:00Z"'), 'is not an ISO 8601 date-time');
  assert.match(no('"2026-06-01T25:00:00Z"'), 'is not a valid date-time');
  assert.match(no('true'), 'timestamp true must be an ISO 8601 string or epoch seconds or milliseconds');
  // INGEST_MAX_AGE_DAYS
  const week = { maxAgeMs: 7 * 86_400_000 };
  assert.is(at('2026-05-25T00:00:00Z', week), '2026-05-25T00:00:00.000Z');
  assert.match(no('"2026-05-24T23:59:59Z"', week),
    'is more than 7 days old (INGEST_MAX_AGE_DAYS; accepted: 7 days before arrival, and not before 2000-01-01T00:00:00.000Z to 300 s after arrival)');
});

test('a message larger than INGEST_MAX_MESSAGE_BYTES is one dead letter, not decoded; so is one of more readings than allowed', () => {
  const dev = plant.deviceCode;
  const reading = (i: number) => ({ deviceId: dev, value: i, timestamp: new Date(Date.UTC(2026, 1, 4) + i * 1000).toISOString() });
  const limits = { maxMessageBytes: 4096, maxReadingsPerMessage: 3 };
  const exact = JSON.stringify([reading(1)]).padEnd(4096, ' ');
  assert.is(parse(TOPIC(), exact, limits).readings.length, 1, 'exactly INGEST_MAX_MESSAGE_BYTES is read');
  const big = parse(TOPIC(), exact + ' ', limits);
  assert.equal([big.readings.length, big.deadLetters.length], [0, 1]);
  assert.is(big.deadLetters[0].reason, 'payload is 4097 bytes, more than the 4096 allowed (INGEST_MAX_MESSAGE_BYTES): not read; send fewer readings per message');
  assert.is(big.deadLetters[0].tenantId, plant.tenantId);
  const huge = parse(TOPIC(), JSON.stringify(Array.from({ length: 20_000 }, (_, i) => reading(i))));
  assert.match(huge.deadLetters[0].reason, /^payload is \d+ bytes, more than the 262144 allowed/);
  assert.ok(huge.deadLetters[0].payload!.length <= 4097, 'the dead letter keeps the start of the payload only');
  assert.is(parse(TOPIC(), [1, 2, 3].map(reading), limits).readings.length, 3);
  const many = parse(TOPIC(), [1, 2, 3, 4].map(reading), limits);
  assert.equal([many.readings.length, many.deadLetters.map((d) => d.reason)],
    [0, ['payload holds 4 readings, more than the 3 allowed per message (INGEST_MAX_READINGS_PER_MESSAGE): none stored; send fewer readings per message']]);
  assert.equal(parse(TOPIC(), '[]').deadLetters.map((d) => d.reason), ['payload is an empty array']);
});

test('a topic outside the contract (a level too many or too few) is one dead letter saying so', () => {
  for (const topic of [TOPIC() + '/extra', 'facility/F1/workcenter/PRESS-1/sensor', 'facility/F1', 'facility//workcenter/PRESS-1/sensor/TEMPERATURE',
    'facility/F1/workcenter/PRESS-1/sensor/TEMPERATURE/']) {
    const r = parse(topic, { deviceId: plant.deviceCode, value: 1 });
    assert.equal(r.readings, []);
    assert.equal(r.deadLetters.map((d) => d.reason),
      [`topic ${JSON.stringify(topic)} does not match facility/{facilityCode}/workcenter/{workCenterCode}/sensor/{sensorType}`]);
  }
});

test('nesting too deep to stringify is a dead letter, not an exception', () => {
  const deep = '['.repeat(200_000) + ']'.repeat(200_000);
  const cases = [`{"deviceId": "${plant.deviceCode}", "value": 1, "x": ${deep}}`, `{"deviceId": "${plant.deviceCode}", "value": ${deep}}`, `[${deep}]`];
  for (const payload of cases) {
    const r = parse(TOPIC(), payload, { maxMessageBytes: 1_000_000 });
    assert.equal([r.readings.length, r.deadLetters.length], [0, 1], payload.slice(0, 60));
    assert.ok(r.deadLetters[0].reason.length < 400, r.deadLetters[0].reason);
  }
});

test.run();

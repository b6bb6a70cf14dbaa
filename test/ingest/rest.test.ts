import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { createHash } from 'node:crypto';
import { KEY_PATTERN, createDeviceKey, listDeviceKeys, revokeDeviceKey } from '../../src/ingest/rest/device-keys';
import type { RestIngestLimits } from '../../src/ingest/rest/router';
import { RestIngestServer } from '../../src/ingest/rest/server';
import type { Reading } from '../../src/ingest/reading';
import { RegistryCache } from '../../src/ingest/registry';
import { ReadingSink } from '../../src/ingest/sink';
import { createTestDatabase, seedSmallPlant, TestDatabase } from '../helpers/db';
import { startTestApi } from '../helpers/graphql';
import { poolThroughProxy } from '../helpers/proxy';
import { sleep, waitFor } from '../helpers/wait';

const test = suite('ingest: REST endpoint for REST_API devices');
let db: TestDatabase;
let plant: Awaited<ReturnType<typeof seedSmallPlant>>;
let registry: RegistryCache;
let sink: ReadingSink;
let server: RestIngestServer;
const devices: Record<string, string> = {}; // code -> id
const keys: Record<string, string> = {}; // code -> API key
const stops: (() => Promise<void>)[] = [];

async function restDevice(code: string, channels: [string, string][]): Promise<string> {
  const d = await db.pool.query<{ id: string }>(
    `insert into iot.iot_devices (tenant_id, work_center_id, device_code, connection_type) values ($1, $2, $3, 'REST_API') returning id`,
    [plant.tenantId, plant.workCenterId, code]);
  for (const [type, unit] of channels) {
    await db.pool.query(`insert into iot.device_channels (tenant_id, device_id, sensor_type, unit) values ($1, $2, $3, $4)`,
      [plant.tenantId, d.rows[0].id, type, unit]);
  }
  return (devices[code] = d.rows[0].id);
}

const LIMITS: Partial<RestIngestLimits> = { keyCacheMs: 200, maxMessageBytes: 65_536, maxReadingsPerMessage: 200, maxFutureMs: 300_000 };

async function startServer(limits: Partial<RestIngestLimits>, s: ReadingSink, pool = db.pool): Promise<RestIngestServer> {
  const srv = new RestIngestServer({ port: 0, host: '127.0.0.1', limits, drainMs: 2000 }, registry, s, pool);
  await srv.start();
  stops.push(() => srv.stop());
  return srv;
}

test.before(async () => {
  db = await createTestDatabase('rest');
  plant = await seedSmallPlant(db.pool); // F1-DEV-1 is an MQTT device
  await restDevice('REST-1', [['TEMPERATURE', '°F'], ['PRESSURE', 'PSI']]);
  await restDevice('REST-2', [['TEMPERATURE', '°F']]);
  await restDevice('REST-3', [['TEMPERATURE', '°F']]);
  for (const code of ['REST-1', 'REST-2', 'REST-3']) keys[code] = (await createDeviceKey(db.pool, code, `test ${code}`)).apiKey;
  registry = new RegistryCache(db.pool);
  await registry.start();
  sink = new ReadingSink(db.pool, { batchSize: 500, maxWaitMs: 10, bufferMax: 10_000 });
  server = await startServer(LIMITS, sink);
});
test.after(async () => {
  for (const stop of stops.reverse()) await stop();
  await sink.close();
  await registry.stop();
  await db.drop();
});

interface Answer { status: number; headers: Headers; body: any } // eslint-disable-line @typescript-eslint/no-explicit-any
async function post(body: string | Buffer, options: { key?: string | null; type?: string; url?: string; headers?: Record<string, string> } = {}): Promise<Answer> {
  const headers: Record<string, string> = { 'content-type': options.type ?? 'application/json', ...options.headers };
  const key = options.key === undefined ? keys['REST-1'] : options.key;
  if (key !== null) headers.authorization = `Bearer ${key}`;
  const res = await fetch(`${options.url ?? server.url}/ingest/readings`, { method: 'POST', headers, body });
  const text = await res.text();
  let parsed: unknown = text;
  try {
    parsed = JSON.parse(text);
  } catch {
    // not JSON: kept as text for the assertion message
  }
  return { status: res.status, headers: res.headers, body: parsed };
}

const base = Date.now() - 3 * 3600_000; // three hours ago: at(i) up to 10,000 s stays in the past
const at = (i: number) => new Date(base + i * 1000).toISOString();
const stored = async (device: string, where = 'true') => Number((await db.pool.query(
  `select count(*) from iot_private.sensor_readings where device_id = $1 and ${where}`, [devices[device] ?? device])).rows[0].count);

test('keys: made in SQL for REST_API devices only, shown once, stored as a salted SHA-256; operators only for their tenant', async () => {
  const made = await createDeviceKey(db.pool, 'REST-1', 'second key');
  const m = KEY_PATTERN.exec(made.apiKey);
  assert.ok(m, made.apiKey);
  const row = (await db.pool.query('select * from iot_private.device_api_keys where id = $1', [made.keyId])).rows[0];
  assert.is(row.device_id, devices['REST-1']);
  const secret = Buffer.from(m![2], 'base64url');
  assert.is(secret.length, 32);
  assert.equal(createHash('sha256').update(row.salt).update(secret).digest(), row.key_hash);
  assert.not.ok(JSON.stringify(row).includes(m![2]), 'the secret itself is not stored');
  const other = await createDeviceKey(db.pool, 'REST-1');
  assert.is.not(other.apiKey, made.apiKey);

  let code: string | undefined;
  await createDeviceKey(db.pool, plant.deviceCode).catch((e) => (code = e.code));
  assert.is(code, '22023', 'an MQTT device gets no API key');

  // Through the API roles: an operator of the tenant may; another tenant's operator sees no device.
  const mine = await db.asRole('iot_operator', { tenant_id: plant.tenantId }, (c) =>
    c.query('select key_id, api_key from iot.create_device_api_key($1)', [devices['REST-2']]));
  assert.match(mine.rows[0].api_key, KEY_PATTERN);
  const stranger = (await db.pool.query(`insert into iot.tenants (tenant_code, name) values ('other', 'other') returning id`)).rows[0].id;
  let denied: string | undefined;
  await db.asRole('iot_operator', { tenant_id: stranger }, (c) => c.query('select * from iot.create_device_api_key($1)', [devices['REST-2']]))
    .catch((e) => (denied = e.code));
  assert.is(denied, 'P0002');
  assert.ok((await listDeviceKeys(db.pool, 'REST-1')).length >= 3);
});

test('one JSON reading: 200, stored with its unit converted and its quality word mapped', async () => {
  const r = await post(JSON.stringify({ deviceId: 'REST-1', sensorType: 'temperature', value: 20, unit: '°C', timestamp: at(1), quality: 'VERIFIED' }));
  assert.is(r.status, 200, JSON.stringify(r.body));
  assert.equal(r.body, { received: 1, stored: 1, duplicates: 0, duplicateIndexes: [], refused: [] });
  const row = (await db.pool.query(`select value, unit, quality, metadata from iot_private.sensor_readings where device_id = $1 and time = $2`,
    [devices['REST-1'], at(1)])).rows[0];
  assert.is(row.value, 68);
  assert.is(row.unit, '°F');
  assert.is(row.metadata.originalUnit, '°C');
});

test('a batch with bad readings beside good ones: the good are stored, the bad refused by index with the reason, as dead letters; sent again, duplicates', async () => {
  const items = [
    { sensorType: 'TEMPERATURE', value: 70, timestamp: at(10) },
    { sensorType: 'TEMPERATURE', value: 'warm', timestamp: at(11) },
    { sensorType: 'HUMIDITY', value: 40, timestamp: at(12) },
    { sensorType: 'PRESSURE', value: 100, timestamp: new Date(Date.now() + 3600_000).toISOString() },
    { sensorType: 'PRESSURE', value: 101, unit: 'PSI', timestamp: at(14), line_speed: 12 },
  ];
  const body = '[\n' + items.map((i) => JSON.stringify(i)).join(',\n') + '\n]';
  const r = await post(body);
  assert.is(r.status, 200);
  assert.is(r.body.stored, 2);
  assert.equal(r.body.refused.map((x: { index: number }) => x.index), [1, 2, 3]);
  assert.equal(r.body.refused.map((x: { line: number }) => x.line), [3, 4, 5], 'one reading per line: lines named');
  assert.match(r.body.refused[0].reason, 'value "warm" must be a number');
  assert.match(r.body.refused[1].reason, 'has no active channel "HUMIDITY"');
  assert.match(r.body.refused[2].reason, 'in the future');
  assert.is(await stored('REST-1', `time in ('${at(10)}', '${at(14)}')`), 2);
  const dl = await db.pool.query(`select reason, payload, source_key from iot_private.ingest_dead_letters where source = 'REST_API' order by id`);
  assert.is(dl.rowCount, 3);
  assert.match(dl.rows[0].reason, /^item 1: value "warm"/);
  assert.match(dl.rows[0].payload, '"warm"');
  assert.is(dl.rows[0].source_key, 'device/REST-1');

  const again = await post(JSON.stringify({ readings: items }));
  assert.is(again.status, 200);
  assert.is(again.body.stored, 0);
  assert.is(again.body.duplicates, 2);
  assert.equal(again.body.duplicateIndexes, [0, 4]);
  assert.is(await stored('REST-1', `time in ('${at(10)}', '${at(14)}')`), 2);
});

test('CSV for gateways: header row, quoted cells, extra columns as metadata; a bad row is refused by its line, the others stored', async () => {
  const csv = [
    'deviceId,sensorType,value,unit,timestamp,quality,note',
    `REST-1,TEMPERATURE,71.5,°F,${at(20)},GOOD,"line 1, left"`,
    `REST-1,pressure,99,PSI,${Math.floor((base + 21_000) / 1000)},,`,
    `REST-1,TEMPERATURE,abc,°F,${at(22)},GOOD,`,
    `REST-1,TEMPERATURE,72,°F,${at(23)},GOOD,"say ""hi""",extra`,
    '',
    `,TEMPERATURE,73,,${at(24)},,`,
  ].join('\r\n');
  const r = await post(csv, { type: 'text/csv; charset=utf-8' });
  assert.is(r.status, 200, JSON.stringify(r.body));
  assert.is(r.body.received, 5);
  assert.is(r.body.stored, 3);
  assert.equal(r.body.refused.map((x: { line: number }) => x.line), [4, 5]);
  assert.match(r.body.refused[0].reason, 'value "abc" must be a number');
  assert.match(r.body.refused[1].reason, 'line 5 has 8 cells, more than the 7 columns');
  const row = (await db.pool.query(`select metadata from iot_private.sensor_readings where device_id = $1 and time = $2`,
    [devices['REST-1'], at(20)])).rows[0];
  assert.equal(row.metadata, { note: 'line 1, left' });
  assert.is(await stored('REST-1', `time = '${new Date(base + 21_000 - ((base + 21_000) % 1000)).toISOString()}'`), 1, 'epoch seconds read');
});

test('401 without a key, with a malformed key, a wrong secret, a revoked key (within the cache time); nothing stored', async () => {
  const body = JSON.stringify({ sensorType: 'TEMPERATURE', value: 70, timestamp: at(30) });
  const none = await post(body, { key: null });
  assert.is(none.status, 401);
  assert.match(none.headers.get('www-authenticate') ?? '', 'Bearer');
  assert.is((await post(body, { key: 'hunter2' })).status, 401);
  const m = KEY_PATTERN.exec(keys['REST-1'])!;
  const wrong = `iotk_${m[1]}_${'A'.repeat(43)}`;
  assert.is((await post(body, { key: wrong })).status, 401);
  const unknown = `iotk_${'0'.repeat(32)}_${m[2]}`;
  assert.is((await post(body, { key: unknown })).status, 401);
  assert.is((await post(body, { key: undefined, headers: {} })).status, 200, 'the good key works');

  const made = await createDeviceKey(db.pool, 'REST-3');
  const ok = await post(JSON.stringify({ sensorType: 'TEMPERATURE', value: 70, timestamp: at(31) }), { key: made.apiKey });
  assert.is(ok.status, 200);
  assert.ok(await revokeDeviceKey(db.pool, made.keyId));
  await sleep(250); // keyCacheMs 200
  const revoked = await post(JSON.stringify({ sensorType: 'TEMPERATURE', value: 70, timestamp: at(32) }), { key: made.apiKey });
  assert.is(revoked.status, 401);
  assert.match(revoked.body.error, 'revoked');
  assert.is(await stored('REST-3', `time = '${at(32)}'`), 0);
});

test('403 when a reading names another device than the key\'s: none of the request is stored; a device no longer REST_API is refused', async () => {
  const r = await post(JSON.stringify([
    { deviceId: 'REST-1', sensorType: 'TEMPERATURE', value: 70, timestamp: at(40) },
    { deviceId: 'REST-2', sensorType: 'TEMPERATURE', value: 70, timestamp: at(40) },
  ]));
  assert.is(r.status, 403);
  assert.equal(r.body.refused.map((x: { index: number }) => x.index), [1]);
  assert.is(await stored('REST-1', `time = '${at(40)}'`), 0);
  assert.is(await stored('REST-2', `time = '${at(40)}'`), 0);
  // The device id (uuid) names the device as well as its code.
  const byId = await post(JSON.stringify({ deviceId: devices['REST-2'], sensorType: 'TEMPERATURE', value: 70, timestamp: at(41) }), { key: keys['REST-2'] });
  assert.is(byId.status, 200);
  assert.is(byId.body.stored, 1);

  await db.pool.query(`update iot.iot_devices set connection_type = 'MQTT' where id = $1`, [devices['REST-3']]);
  await sleep(250);
  const moved = await post(JSON.stringify({ sensorType: 'TEMPERATURE', value: 70, timestamp: at(42) }), { key: keys['REST-3'] });
  assert.is(moved.status, 403);
  assert.match(moved.body.error, 'not REST_API');
  await db.pool.query(`update iot.iot_devices set connection_type = 'REST_API' where id = $1`, [devices['REST-3']]);
});

test('413 beyond INGEST_MAX_MESSAGE_BYTES or INGEST_MAX_READINGS_PER_MESSAGE, 400 with the line for a body that is not JSON or CSV, 415 for other types', async () => {
  const huge = JSON.stringify(Array.from({ length: 2000 }, (_, i) => ({ sensorType: 'TEMPERATURE', value: 70, timestamp: at(1000 + i), pad: 'x'.repeat(20) })));
  assert.ok(Buffer.byteLength(huge) > 65_536);
  const big = await post(huge);
  assert.is(big.status, 413);
  assert.match(big.body.error, 'INGEST_MAX_MESSAGE_BYTES');
  const many = await post(JSON.stringify(Array.from({ length: 201 }, (_, i) => ({ sensorType: 'TEMPERATURE', value: 70, timestamp: at(4000 + i) }))));
  assert.is(many.status, 413);
  assert.match(many.body.error, 'INGEST_MAX_READINGS_PER_MESSAGE');
  assert.is(await stored('REST-1', `time >= '${at(1000)}' and time < '${at(5000)}'`), 0);

  const broken = await post('[\n{"sensorType": "TEMPERATURE", "value": 70},\n{"sensorType": "TEMPERATURE" "value": 71}\n]');
  assert.is(broken.status, 400);
  assert.is(broken.body.line, 3);
  assert.match(broken.body.error, 'not valid JSON');
  const csv = await post('sensorType,value\nTEMPERATURE,70\nTEMPERATURE,"71\n', { type: 'text/csv' });
  assert.is(csv.status, 400);
  assert.is(csv.body.line, 3);
  const noValue = await post('sensorType,reading\nTEMPERATURE,70\n', { type: 'text/csv' });
  assert.is(noValue.status, 400);
  assert.match(noValue.body.error, 'no value column');
  assert.is((await post('TEMPERATURE=70', { type: 'text/plain' })).status, 415);
  assert.is((await post('{}', { type: 'application/xml' })).status, 415);
});

test('readings handed to store() share batches with add() readings and each is answered exactly: stored, duplicate, refused by the database, orphaned', async () => {
  const s = new ReadingSink(db.pool, { batchSize: 10_000, maxWaitMs: 200, bufferMax: 100_000 });
  const t0 = Date.now() - 1800_000;
  const r = (device: string, i: number, over: Partial<Reading> = {}): Reading => ({
    time: new Date(t0 + i * 1000), tenantId: plant.tenantId, deviceId: device, sensorType: 'TEMPERATURE', value: 70, unit: '°F', quality: 'GOOD', ...over,
  });
  // Already stored before: a duplicate.
  await s.store([r(devices['REST-2'], 0)]);
  const batchesBefore = s.stats.batches;
  s.add(Array.from({ length: 100 }, (_, i) => r(plant.deviceId, i))); // MQTT readings in the same batch
  const result = await s.store([
    r(devices['REST-2'], 0),                                     // 0 duplicate (stored before)
    r(devices['REST-2'], 1),                                     // 1 stored
    r(devices['REST-2'], 2), r(devices['REST-2'], 2),            // 2 stored, 3 duplicate within the request
    r(devices['REST-2'], 4, { value: 1e20 }),                    // 4 the database refuses (value range)
    r(devices['REST-2'], 5, { sensorType: 'PRESSURE' }),         // 5 no such channel: moved to dead letters in SQL
    r(devices['REST-2'], 6, { time: new Date(Number.NaN) }),     // 6 refused before writing
    r(plant.deviceId, 3),                                        // 7 a duplicate of an add() reading in the same batch
  ]);
  assert.is(result.stored, 2);
  assert.is(result.duplicates, 3);
  assert.equal(result.duplicateIndexes, [0, 3, 7]);
  assert.equal(result.refused.map((x) => x.index), [4, 5, 6]);
  assert.match(result.refused[0].reason, 'database refused the reading');
  assert.match(result.refused[1].reason, 'channel PRESSURE of device');
  assert.match(result.refused[2].reason, 'not a valid date-time');
  assert.ok(s.stats.batches > batchesBefore);
  await s.close();
  assert.is(await stored(plant.deviceId, `time >= '${new Date(t0).toISOString()}' and time < '${new Date(t0 + 100_000).toISOString()}'`), 100);
  assert.is(await stored('REST-2', `time >= '${new Date(t0).toISOString()}' and time < '${new Date(t0 + 100_000).toISOString()}'`), 3);
});

test('503 with Retry-After while the database is down and the buffer is full; nothing lost: all stored when it returns, once', async () => {
  const { proxy, pool } = await poolThroughProxy(db.url, { max: 2, connectionTimeoutMillis: 1000 });
  const s = new ReadingSink(pool, { batchSize: 100, maxWaitMs: 10, bufferMax: 10, writers: 1 });
  const srv = await startServer({ ...LIMITS, keyCacheMs: 60_000, commitTimeoutMs: 500 }, s, pool);
  let proxyDown = false;
  try {
    const batch = (from: number) => JSON.stringify(Array.from({ length: 10 }, (_, i) => ({ sensorType: 'TEMPERATURE', value: 70, timestamp: at(6000 + from + i) })));
    const ok = await post(batch(0), { url: srv.url, key: keys['REST-3'] });
    assert.is(ok.status, 200, JSON.stringify(ok.body));

    await proxy.down();
    proxyDown = true;
    const slow = await post(batch(10), { url: srv.url, key: keys['REST-3'] });
    assert.is(slow.status, 503, JSON.stringify(slow.body));
    assert.is(slow.headers.get('retry-after'), '5');
    assert.match(slow.body.error, 'not committed within 500 ms');
    await waitFor(() => !s.stats.databaseUp, 5000, 'the sink to see the database down');
    // The first ten are in the writer's attempt; the next ten fill the buffer (bufferMax 10).
    const slow2 = await post(batch(20), { url: srv.url, key: keys['REST-3'] });
    assert.is(slow2.status, 503, JSON.stringify(slow2.body));
    assert.ok(s.bufferFull);
    const started = Date.now();
    const full = await post(batch(30), { url: srv.url, key: keys['REST-3'] });
    assert.is(full.status, 503);
    assert.is(full.headers.get('retry-after'), '5');
    assert.match(full.body.error, 'buffer is full');
    assert.ok(Date.now() - started < 450, 'answered at once, not after the commit timeout');

    await proxy.up();
    proxyDown = false;
    await waitFor(async () => (await stored('REST-3', `time >= '${at(6010)}' and time < '${at(6030)}'`)) === 20, 15_000, 'the held readings');
    // The client sends all three again, as Retry-After told it: the held twenty are duplicates, the refused ten are stored.
    for (const from of [10, 20]) {
      const again = await post(batch(from), { url: srv.url, key: keys['REST-3'] });
      assert.equal([again.status, again.body.stored, again.body.duplicates], [200, 0, 10]);
    }
    const third = await post(batch(30), { url: srv.url, key: keys['REST-3'] });
    assert.equal([third.status, third.body.stored], [200, 10]);
    assert.is(await stored('REST-3', `time >= '${at(6000)}' and time < '${at(6040)}'`), 40);
  } finally {
    if (proxyDown) await proxy.up();
    await srv.stop();
    await s.close({ deadlineMs: 2000 });
    await pool.end();
    await proxy.down();
  }
});

test('429 over the per-key rate, per key', async () => {
  const srv = await startServer({ ...LIMITS, requestsPerSecondPerKey: 1, burstPerKey: 3 }, sink);
  const body = (i: number) => JSON.stringify({ sensorType: 'TEMPERATURE', value: 70, timestamp: at(7000 + i) });
  const statuses = [];
  for (let i = 0; i < 4; i++) statuses.push((await post(body(i), { url: srv.url, key: keys['REST-2'] })).status);
  assert.equal(statuses, [200, 200, 200, 429]);
  assert.is((await post(body(9), { url: srv.url, key: keys['REST-1'] })).status, 200, 'another key has its own budget');
});

test('bad input never stops the process nor loses good readings: 300 hostile requests, then every good reading beside them is stored', async () => {
  const hostile: [string, string][] = [
    ['application/json', '['.repeat(100_000)],
    ['application/json', '[' + '['.repeat(5000) + ']'.repeat(5000) + ']'],
    ['application/json', JSON.stringify({ sensorType: 'TEMPERATURE', value: 1e308 * 10 })],
    ['application/json', '{"sensorType":"TEMPERATURE","value":1e400}'],
    ['application/json', JSON.stringify({ sensorType: 'TEMPERATURE', value: 70, __proto__x: 1, nested: JSON.parse('{"a":'.repeat(3000) + '1' + '}'.repeat(3000)) })],
    ['application/json', '{"sensorType":"TEMPERATURE","value":70,"bad":"\\u0000"}'],
    ['application/json', '{"sensorType":"TEMPERATURE","value":70,"__proto__":{"admin":true}}'],
    ['text/csv', 'sensorType,value,__proto__\nTEMPERATURE,70,x\n'],
    ['text/csv', 'sensorType,value\n' + 'TEMPERATURE,'.repeat(10_000) + '\n'],
    ['application/json', Buffer.from([0xff, 0xfe, 0x00, 0x41]).toString('latin1')],
    ['application/json', '{"readings": 5}'],
    ['application/json', '"just a string"'],
    ['application/json', '[]'],
  ];
  let good = 0;
  const expected: string[] = [];
  for (let i = 0; i < 300; i++) {
    const [type, body] = hostile[i % hostile.length];
    const r = await post(body, { type });
    assert.ok([200, 400, 413].includes(r.status), `status ${r.status} for ${body.slice(0, 40)}`);
    if (i % 10 === 0) {
      const t = at(8000 + good++);
      expected.push(t);
      const g = await post(JSON.stringify([{ sensorType: 'TEMPERATURE', value: 'x' }, { sensorType: 'TEMPERATURE', value: 70, timestamp: t }]));
      assert.is(g.body.stored, 1);
    }
  }
  assert.is(await stored('REST-1', `time = any ('{${expected.join(',')}}'::timestamptz[])`), good);
  const jsonbBad = await post('{"sensorType":"TEMPERATURE","value":70,"timestamp":"' + at(9000) + '","bad":"\\u0000"}');
  assert.is(jsonbBad.status, 200);
  assert.is(jsonbBad.body.refused.length, 1, JSON.stringify(jsonbBad.body));
});

test('stopping the server and the sink during requests: a 200 means committed; what was not answered is stored by sending it again, nothing twice', async () => {
  const s = new ReadingSink(db.pool, { batchSize: 500, maxWaitMs: 50, bufferMax: 10_000 });
  const srv = await startServer(LIMITS, s);
  const body = (k: number) => JSON.stringify(Array.from({ length: 50 }, (_, i) => ({ sensorType: 'PRESSURE', value: 90, timestamp: at(9600 + k * 50 + i) })));
  const sends = Array.from({ length: 20 }, (_, k) => post(body(k), { url: srv.url }).catch(() => ({ status: -1, body: null })));
  await sleep(20);
  await srv.stop();
  await s.close();
  const answers = await Promise.all(sends);
  const where = (k: number) => `sensor_type = 'PRESSURE' and time >= '${at(9600 + k * 50)}' and time < '${at(9650 + k * 50)}'`;
  for (const [k, a] of answers.entries()) {
    if (a.status === 200) assert.is(await stored('REST-1', where(k)), 50, `request ${k} answered 200: all stored`);
  }
  // The client sends again whatever got no 200, to the running server.
  let resent = 0;
  for (const [k, a] of answers.entries()) {
    if (a.status === 200) continue;
    resent++;
    const again = await post(body(k));
    assert.is(again.status, 200);
    assert.is(again.body.stored + again.body.duplicates, 50);
  }
  assert.is(await stored('REST-1', `sensor_type = 'PRESSURE' and time >= '${at(9600)}' and time < '${at(10_600)}'`), 1000);
  console.log(`  (${20 - resent} of 20 requests answered 200 before the stop; ${resent} sent again)`);
});

test('an operator makes and revokes a key through GraphQL (createDeviceApiKey, revokeDeviceApiKey); the key posts readings', async () => {
  const api = await startTestApi(db.url);
  try {
    const bearer = api.token('iot_operator', plant.tenantId);
    const made = await api.gql(`mutation($d: UUID!) { createDeviceApiKey(input: {deviceId: $d, label: "from GraphQL"}) { result { keyId apiKey } } }`,
      { d: devices['REST-2'] }, bearer);
    assert.not.ok(made.errors, JSON.stringify(made.errors));
    const { keyId, apiKey } = made.data.createDeviceApiKey.result;
    assert.match(apiKey, KEY_PATTERN);
    const r = await post(JSON.stringify({ sensorType: 'TEMPERATURE', value: 70, timestamp: at(9500) }), { key: apiKey });
    assert.is(r.status, 200);
    const mqtt = await api.gql(`mutation($d: UUID!) { createDeviceApiKey(input: {deviceId: $d}) { result { keyId } } }`, { d: plant.deviceId }, bearer);
    assert.match(mqtt.errors?.[0]?.message ?? '', 'not REST_API');
    const analyst = await api.gql(`mutation($k: UUID!) { revokeDeviceApiKey(input: {keyId: $k}) { boolean } }`, { k: keyId },
      api.token('iot_analyst', plant.tenantId));
    assert.ok(analyst.errors?.length, 'an analyst cannot revoke keys');
    const revoked = await api.gql(`mutation($k: UUID!) { revokeDeviceApiKey(input: {keyId: $k}) { boolean } }`, { k: keyId }, bearer);
    assert.not.ok(revoked.errors, JSON.stringify(revoked.errors));
    assert.is(revoked.data.revokeDeviceApiKey.boolean, true);
    await sleep(250);
    assert.is((await post(JSON.stringify({ sensorType: 'TEMPERATURE', value: 70, timestamp: at(9501) }), { key: apiKey })).status, 401);
  } finally {
    await api.close();
  }
});

test.run();

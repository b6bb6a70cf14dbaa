import { execFile, spawn, spawnSync, ChildProcess } from 'node:child_process';
import { promisify } from 'node:util';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { parseModbusAddress } from '../../src/ingest/modbus/address';
import { decodeBit, decodeRegisters, encodeRegisters } from '../../src/ingest/modbus/codec';
import { planReads } from '../../src/ingest/modbus/plan';
import { ModbusPoller } from '../../src/ingest/modbus/poller';
import { RegistryCache } from '../../src/ingest/registry';
import { ReadingSink } from '../../src/ingest/sink';
import { freePort } from '../../src/lib/embedded/ports';
import { seedDemoPlant } from '../../src/sim/demo-plant';
import { ModbusPlant, ModbusSimServer, registerModbusPlant } from '../../src/sim/modbus-server';
import { createTestDatabase, seedSmallPlant, TestDatabase } from '../helpers/db';
import { poolThroughProxy } from '../helpers/proxy';
import { sleep, waitFor } from '../helpers/wait';

const execFileAsync = promisify(execFile);
const test = suite('ingest: Modbus TCP poller against real Modbus servers');
let db: TestDatabase;
let plant: Awaited<ReturnType<typeof seedSmallPlant>>;
let registry: RegistryCache;
let sink: ReadingSink;
const servers: ModbusSimServer[] = [];
const pollers: ModbusPoller[] = [];
const sinks: ReadingSink[] = [];

test.before(async () => {
  db = await createTestDatabase('modbus');
  plant = await seedSmallPlant(db.pool);
  // Sensor types for the decoding test: one per data type and byte order.
  for (const t of ['I16_AB', 'I16_BA', 'U16_AB', 'U16_BA', 'I32_ABCD', 'I32_CDAB', 'I32_BADC', 'I32_DCBA', 'U32_ABCD', 'U32_CDAB',
    'U32_BADC', 'U32_DCBA', 'F32_ABCD', 'F32_CDAB', 'F32_BADC', 'F32_DCBA', 'COIL_3', 'DISCRETE_5', 'U16_SCALED']) {
    await db.pool.query(`insert into iot.sensor_types (sensor_type, description, default_unit) values ($1, $1, 'units')`, [t]);
  }
  registry = new RegistryCache(db.pool, 0);
  await registry.start();
  sink = new ReadingSink(db.pool, { batchSize: 1000, maxWaitMs: 20, bufferMax: 10_000 });
  console.log(`  [modbus] tier ${db.tier}`);
});
// A test that failed half way leaves nothing running for the next: its pollers stopped, its devices disabled.
async function cleanUp(): Promise<void> {
  for (const p of pollers.splice(0)) await p.stop();
  for (const s of sinks.splice(0)) await s.close();
  await db.pool.query(`update iot.iot_devices set is_active = false where connection_type = 'MODBUS' and is_active`);
  await registry.reload();
}
test.before.each(cleanUp);
test.after(async () => {
  await cleanUp();
  for (const s of servers) await s.stop();
  await sink.close();
  await registry.stop();
  await db.drop();
});

async function server(): Promise<ModbusSimServer> {
  const s = new ModbusSimServer({ registers: 200, bits: 64 });
  await s.start();
  servers.push(s);
  return s;
}

/** A MODBUS device on the small plant's work center with channels [sensorType, address, scale?, offset?]. */
async function addDevice(code: string, config: Record<string, unknown>, channels: [string, string, number?, number?][]): Promise<string> {
  const d = await db.pool.query<{ id: string }>(
    `insert into iot.iot_devices (tenant_id, work_center_id, device_code, device_type, connection_type, connection_config)
     values ($1, $2, $3, 'SENSOR', 'MODBUS', $4) returning id`, [plant.tenantId, plant.workCenterId, code, JSON.stringify(config)]);
  for (const [type, address, scale, offset] of channels) {
    await db.pool.query(`insert into iot.device_channels (tenant_id, device_id, sensor_type, unit, protocol_address, scale, value_offset)
                         values ($1, $2, $3, 'units', $4, $5, $6)`, [plant.tenantId, d.rows[0].id, type, address, scale ?? 1, offset ?? 0]);
  }
  await registry.reload();
  return d.rows[0].id;
}

async function retire(...deviceIds: string[]): Promise<void> {
  await db.pool.query(`update iot.iot_devices set is_active = false where id = any ($1)`, [deviceIds]);
  await registry.reload();
}

const count = async (deviceId: string, extra = '', params: unknown[] = []) =>
  Number((await db.pool.query(`select count(*) from iot_private.sensor_readings where device_id = $1 ${extra}`, [deviceId, ...params])).rows[0].count);
const events = async (deviceId: string) => (await db.pool.query(
  `select event_type, event_code, severity, event_description from iot.equipment_events where iot_device_id = $1 order by event_timestamp, id`,
  [deviceId])).rows;
function poller(options = {}, into = sink): ModbusPoller {
  const p = new ModbusPoller(db.pool, registry, into, { registryCheckMs: 100, ...options });
  pollers.push(p);
  return p;
}
function ownSink(): ReadingSink {
  const s = new ReadingSink(db.pool, { batchSize: 500, maxWaitMs: 20, bufferMax: 10_000 });
  sinks.push(s);
  return s;
}

// --- parsing, decoding and planning (no network) --------------------------------------------------

test('addresses: the documented grammar is accepted, 0-based, and anything else is refused with a reason', () => {
  assert.equal(parseModbusAddress('holding:0'), { table: 'holding', offset: 0, width: 1, type: 'uint16', order: 'AB' });
  assert.equal(parseModbusAddress('input:30010:float32:CDAB'), { table: 'input', offset: 30010, width: 2, type: 'float32', order: 'CDAB' });
  assert.equal(parseModbusAddress('HOLDING:100:INT32:be'), { table: 'holding', offset: 100, width: 2, type: 'int32', order: 'ABCD' });
  assert.equal(parseModbusAddress('holding:0x10:int16:LE'), { table: 'holding', offset: 16, width: 1, type: 'int16', order: 'BA' });
  assert.equal(parseModbusAddress('coil:5'), { table: 'coil', offset: 5, width: 1 });
  assert.equal(parseModbusAddress('discrete:12'), { table: 'discrete', offset: 12, width: 1 });
  for (const [bad, says] of [['holding:70000', 'beyond 65535'], ['coil:1:uint16', 'takes no data type'], ['holding:1:int64', 'not one of'],
    ['holding:1:int16:CDAB', 'does not fit'], ['holding:65535:float32', 'runs past'], ['ns=2;s=Press.Temp', 'does not match'], ['', 'empty']] as const) {
    const r = parseModbusAddress(bad);
    assert.type(r, 'string', bad);
    assert.ok((r as string).includes(says), `${bad}: ${r}`);
  }
});

test('decoding: every type and byte order against known register contents', () => {
  const regs = (...words: number[]) => Buffer.from(words.flatMap((w) => [w >> 8, w & 0xff]));
  const dec = (address: string, buf: Buffer) => decodeRegisters(buf, 0, parseModbusAddress(address) as never);
  assert.is(dec('holding:0:int16', regs(0xff38)), -200);
  assert.is(dec('holding:0:int16:BA', regs(0x38ff)), -200);
  assert.is(dec('holding:0:uint16', regs(0xff38)), 65336);
  assert.is(dec('holding:0:uint16:BA', regs(0x38ff)), 65336);
  // 0x12345678 laid out four ways; -500 (0xFFFFFE0C) likewise.
  assert.is(dec('holding:0:uint32:ABCD', regs(0x1234, 0x5678)), 0x12345678);
  assert.is(dec('holding:0:uint32:CDAB', regs(0x5678, 0x1234)), 0x12345678);
  assert.is(dec('holding:0:uint32:BADC', regs(0x3412, 0x7856)), 0x12345678);
  assert.is(dec('holding:0:uint32:DCBA', regs(0x7856, 0x3412)), 0x12345678);
  assert.is(dec('holding:0:int32:ABCD', regs(0xffff, 0xfe0c)), -500);
  assert.is(dec('holding:0:int32:CDAB', regs(0xfe0c, 0xffff)), -500);
  assert.is(dec('holding:0:int32:BADC', regs(0xffff, 0x0cfe)), -500);
  assert.is(dec('holding:0:int32:DCBA', regs(0x0cfe, 0xffff)), -500);
  // 1.0f is 0x3F800000; 123.456f is 0x42F6E979.
  assert.is(dec('holding:0:float32', regs(0x3f80, 0x0000)), 1);
  assert.is(dec('holding:0:float32:CDAB', regs(0x0000, 0x3f80)), 1);
  assert.is(dec('holding:0:float32:BADC', regs(0x803f, 0x0000)), 1);
  assert.is(dec('holding:0:float32:DCBA', regs(0x0000, 0x803f)), 1);
  assert.is(dec('holding:0:float32:CDAB', regs(0xe979, 0x42f6)), Math.fround(123.456));
  // Offsets inside a merged response; bits.
  assert.is(decodeRegisters(regs(0, 0, 0x1234, 0x5678), 10, parseModbusAddress('input:12:uint32') as never), 0x12345678);
  assert.is(decodeBit([false, false, true], 5, parseModbusAddress('coil:7') as never), 1);
  // The simulator's encoder is the inverse for every layout.
  for (const order of ['ABCD', 'CDAB', 'BADC', 'DCBA'] as const) {
    assert.is(decodeRegisters(encodeRegisters(-123456, 'int32', order), 0, { table: 'holding', offset: 0, width: 2, type: 'int32', order }), -123456);
  }
});

test('planning: adjacent addresses of one table merge, gaps and tables split, 125 registers / 2000 bits per request at most', () => {
  const p = (a: string) => ({ address: parseModbusAddress(a) as never, item: a });
  const blocks = planReads([p('holding:4:float32'), p('holding:0'), p('holding:1:int32'), p('holding:3'), p('holding:10'), p('input:0'), p('coil:0'), p('coil:1')]);
  assert.equal(blocks.map((b) => [b.table, b.start, b.count]), [['coil', 0, 2], ['holding', 0, 6], ['holding', 10, 1], ['input', 0, 1]]);
  assert.equal(planReads([p('holding:0'), p('holding:10')], 9).map((b) => [b.start, b.count]), [[0, 11]], 'a gap the device allows is bridged');
  const many = Array.from({ length: 130 }, (_, i) => p(`input:${i}`));
  assert.equal(planReads(many).map((b) => [b.start, b.count]), [[0, 125], [125, 5]]);
  const bits = Array.from({ length: 2100 }, (_, i) => p(`discrete:${i}`));
  assert.equal(planReads(bits).map((b) => [b.start, b.count]), [[0, 2000], [2000, 100]]);
  // A 32-bit value never straddles two requests.
  const edge = [...Array.from({ length: 124 }, (_, i) => p(`holding:${i}`)), p('holding:124:float32')];
  assert.equal(planReads(edge).map((b) => [b.start, b.count]), [[0, 124], [124, 2]]);
});

// --- end to end: simulator -> poller -> sink -> sensor_readings ------------------------------------

test('every type and byte order is stored right from a real server; each table is one merged request per poll', async () => {
  const s = await server();
  const wire = (table: 'holding' | 'input', at: number, ...words: number[]) =>
    words.forEach((w, i) => (table === 'holding' ? s.holding : s.input).writeUInt16BE(w, (at + i) * 2));
  wire('holding', 0, 0xff38, 0x38ff, 0xff38, 0x38ff);
  wire('holding', 4, 0xffff, 0xfe0c, 0xfe0c, 0xffff, 0xffff, 0x0cfe, 0x0cfe, 0xffff);
  wire('holding', 12, 0x1234, 0x5678, 0x5678, 0x1234, 0x3412, 0x7856, 0x7856, 0x3412);
  wire('holding', 20, 200);
  wire('input', 0, 0x42f6, 0xe979, 0xe979, 0x42f6, 0xf642, 0x79e9, 0x79e9, 0xf642);
  s.set('coil:3', 1);
  s.set('discrete:5', 1);
  const id = await addDevice('MB-TYPES', { host: '127.0.0.1', port: s.port, pollIntervalMs: 100 }, [
    ['I16_AB', 'holding:0:int16', 0.1], ['I16_BA', 'holding:1:int16:BA'], ['U16_AB', 'holding:2'], ['U16_BA', 'holding:3:uint16:BA'],
    ['I32_ABCD', 'holding:4:int32'], ['I32_CDAB', 'holding:6:int32:CDAB'], ['I32_BADC', 'holding:8:int32:BADC'], ['I32_DCBA', 'holding:10:int32:DCBA'],
    ['U32_ABCD', 'holding:12:uint32:ABCD'], ['U32_CDAB', 'holding:14:uint32:CDAB'], ['U32_BADC', 'holding:16:uint32:BADC'], ['U32_DCBA', 'holding:18:uint32:LE'],
    ['U16_SCALED', 'holding:20', 0.5, -40],
    ['F32_ABCD', 'input:0:float32'], ['F32_CDAB', 'input:2:float32:CDAB'], ['F32_BADC', 'input:4:float32:BADC'], ['F32_DCBA', 'input:6:float32:DCBA'],
    ['COIL_3', 'coil:3'], ['DISCRETE_5', 'discrete:5'],
  ]);
  const p = poller();
  await p.start();
  await sleep(650);
  const stats = p.deviceStats('MB-TYPES')!;
  await p.stop();
  await sink.flush();
  const f = Math.fround(123.456);
  const expected: Record<string, number> = {
    I16_AB: -20, I16_BA: -200, U16_AB: 65336, U16_BA: 65336, I32_ABCD: -500, I32_CDAB: -500, I32_BADC: -500, I32_DCBA: -500,
    U32_ABCD: 305419896, U32_CDAB: 305419896, U32_BADC: 305419896, U32_DCBA: 305419896, U16_SCALED: 60,
    F32_ABCD: f, F32_CDAB: f, F32_BADC: f, F32_DCBA: f, COIL_3: 1, DISCRETE_5: 1,
  };
  const rows = (await db.pool.query(`select sensor_type, count(*)::int as n, min(value) as lo, max(value) as hi, min(quality) as q
                                      from iot_private.sensor_readings where device_id = $1 group by 1`, [id])).rows;
  const got = Object.fromEntries(rows.map((r) => [r.sensor_type, r]));
  console.log(`  [modbus] ${stats.polls} polls, server saw holding ${s.requests.holding}, input ${s.requests.input}, coil ${s.requests.coil}, discrete ${s.requests.discrete}`);
  assert.ok(stats.polls >= 4, `polls: ${stats.polls}`);
  for (const [type, value] of Object.entries(expected)) {
    assert.ok(got[type], `${type} stored`);
    assert.is(got[type].lo, value, type);
    assert.is(got[type].hi, value, type);
    assert.is(got[type].n, stats.polls, `${type}: one reading per poll`);
    assert.is(got[type].q, 'GOOD');
  }
  // 13 holding channels over registers 0-20, 4 input channels, 1 coil, 1 discrete: 4 requests a poll.
  assert.is(s.requests.holding, stats.polls);
  assert.is(s.requests.input, stats.polls);
  assert.is(s.requests.coil, stats.polls);
  assert.is(s.requests.discrete, stats.polls);
  await retire(id);
});

test('timeouts and exception responses: one event after N failed polls, one recovery, polling goes on', async () => {
  const s = await server();
  const id = await addDevice('MB-FAULTY', { host: '127.0.0.1', port: s.port, pollIntervalMs: 50, timeoutMs: 150, faultThreshold: 3 },
    [['TEMPERATURE', 'holding:0:int16', 0.1], ['PRESSURE', 'input:0:float32']]);
  s.set('holding:0:int16', 700);
  s.set('input:0:float32', 101.5);
  const p = poller();
  await p.start();
  await waitFor(async () => (await count(id)) >= 4, 5000, 'healthy readings');
  assert.is((await events(id)).length, 0);

  // Stop answering: the poller times out; nothing is stored for polls that got no answer.
  s.faults.silent = true;
  await sleep(100);
  await sink.flush();
  const before = await count(id);
  await waitFor(async () => (await events(id)).length >= 1, 5000, 'the timeout event');
  await sleep(700); // several more failed polls: still one event
  await sink.flush();
  assert.is(await count(id), before, 'no reading stored for unanswered polls');
  let ev = await events(id);
  assert.is(ev.length, 1);
  assert.is(ev[0].event_type, 'ERROR');
  assert.is(ev[0].severity, 'ERROR');
  assert.is(ev[0].event_code, 'MODBUS_TIMEOUT');
  assert.ok(ev[0].event_description.includes('MB-FAULTY') && ev[0].event_description.includes('holding:0'), ev[0].event_description);

  s.faults.silent = false;
  await waitFor(async () => (await events(id)).length >= 2, 5000, 'the recovery event');
  ev = await events(id);
  assert.equal([ev[1].event_type, ev[1].event_code, ev[1].severity], ['STARTUP', 'MODBUS_COMMUNICATION_RESTORED', 'INFO']);
  await waitFor(async () => (await count(id)) > before, 5000, 'readings again');

  // Every read refused with exception 02: ERROR; then only the holding table refused with 04: WARNING (degraded).
  s.faults.exception = { code: 2 };
  await waitFor(async () => (await events(id)).length >= 3, 5000, 'the exception event');
  s.faults.exception = undefined;
  await waitFor(async () => (await events(id)).length >= 4, 5000, 'the second recovery');
  s.faults.exception = { code: 4, table: 'holding' };
  await waitFor(async () => (await events(id)).length >= 5, 5000, 'the degraded event');
  await sleep(300);
  await sink.flush();
  const pressureBefore = await count(id, `and sensor_type = 'PRESSURE'`);
  await sleep(300);
  await sink.flush();
  assert.ok(await count(id, `and sensor_type = 'PRESSURE'`) > pressureBefore, 'the answered table is still stored');
  s.faults.exception = undefined;
  // Connection refused (the server is gone): ERROR MODBUS_CONNECTION_FAILED, then back.
  await waitFor(async () => (await events(id)).length >= 6, 5000, 'the third recovery');
  await s.stop();
  await waitFor(async () => (await events(id)).length >= 7, 5000, 'the connection event');
  await s.start();
  await waitFor(async () => (await events(id)).length >= 8, 5000, 'the fourth recovery');
  await p.stop();
  ev = await events(id);
  assert.equal(ev.map((e) => `${e.event_type}/${e.event_code}/${e.severity}`), [
    'ERROR/MODBUS_TIMEOUT/ERROR', 'STARTUP/MODBUS_COMMUNICATION_RESTORED/INFO',
    'ERROR/MODBUS_EXCEPTION_02/ERROR', 'STARTUP/MODBUS_COMMUNICATION_RESTORED/INFO',
    'WARNING/MODBUS_EXCEPTION_04/WARNING', 'STARTUP/MODBUS_COMMUNICATION_RESTORED/INFO',
    'ERROR/MODBUS_CONNECTION_FAILED/ERROR', 'STARTUP/MODBUS_COMMUNICATION_RESTORED/INFO',
  ]);
  assert.ok(ev[2].event_description.includes('illegal data address'), ev[2].event_description);
  await retire(id);
});

test('a slow device does not delay another device\'s polls', async () => {
  const slow = await server();
  const fast = await server();
  slow.faults.delayMs = 400;
  const slowId = await addDevice('MB-SLOW', { host: '127.0.0.1', port: slow.port, pollIntervalMs: 50, timeoutMs: 1000 }, [['TEMPERATURE', 'holding:0']]);
  const fastId = await addDevice('MB-FAST', { host: '127.0.0.1', port: fast.port, pollIntervalMs: 50, timeoutMs: 1000 }, [['TEMPERATURE', 'holding:0']]);
  const p = poller();
  await p.start();
  await sleep(2000);
  await p.stop();
  await sink.flush();
  const times = (await db.pool.query<{ t: Date }>(`select time as t from iot_private.sensor_readings where device_id = $1 order by time`, [fastId])).rows.map((r) => r.t.getTime());
  const gaps = times.slice(1).map((t, i) => t - times[i]);
  const slowCount = await count(slowId);
  console.log(`  [modbus] in 2 s: fast device ${times.length} readings (largest gap ${Math.max(...gaps)} ms), slow device (400 ms answers) ${slowCount}`);
  assert.ok(times.length >= 25, `fast device polled ${times.length} times`);
  assert.ok(Math.max(...gaps) < 250, `largest gap between the fast device's readings: ${Math.max(...gaps)} ms`);
  assert.ok(slowCount >= 3 && slowCount <= 6, `slow device: ${slowCount}`);
  await retire(slowId, fastId);
});

test('server restarts mid-stream and a stop of the poller: every answered poll stored once, none twice', async () => {
  const s = await server();
  const own = ownSink();
  const id = await addDevice('MB-RESTART', { host: '127.0.0.1', port: s.port, pollIntervalMs: 20, timeoutMs: 200 },
    [['TEMPERATURE', 'holding:0:int16', 0.1], ['VIBRATION', 'holding:1', 0.01], ['PRESSURE', 'input:0:float32']]);
  let value = 0;
  const ticker = setInterval(() => s.set('holding:0:int16', 600 + (value++ % 200)), 5);
  const p = poller({}, own);
  await p.start();
  await sleep(400);
  await s.restart(300);
  const afterFirst = new Date();
  await sleep(400);
  s.dropConnections();
  await sleep(400);
  await s.restart(0);
  await sleep(400);
  const stats = p.deviceStats('MB-RESTART')!;
  // As on SIGTERM: stop polling (a poll under way finishes and hands its readings over), then close the sink.
  await p.stop();
  await own.close();
  clearInterval(ticker);
  const stored = await count(id);
  const resumed = await count(id, 'and time > $2', [afterFirst]);
  console.log(`  [modbus] ${stats.polls} polls, ${stats.answeredRequests} answered requests, ${stats.readings} readings handed over, ` +
    `${stored} stored, ${own.stats.duplicates} duplicates, ${stats.connects} connections`);
  assert.ok(stats.connects >= 3, `reconnected after each restart (${stats.connects} connections)`);
  assert.ok(resumed > 0, 'polls resumed after the restart');
  assert.is(stored, stats.readings, 'every reading of an answered poll is stored');
  assert.is(own.stats.duplicates, 0);
  assert.is(own.stats.lostAtShutdown, 0);
  await retire(id);
});

test('database down during polling: answered polls are buffered, then polling waits; nothing lost, events kept in order', async () => {
  const { proxy, pool } = await poolThroughProxy(db.url, { max: 3, connectionTimeoutMillis: 1000 });
  try {
    const s = await server();
    const small = new ReadingSink(pool, { batchSize: 50, maxWaitMs: 10, bufferMax: 200 });
    sinks.push(small);
    const id = await addDevice('MB-DBDOWN', { host: '127.0.0.1', port: s.port, pollIntervalMs: 10, timeoutMs: 100, faultThreshold: 2 },
      [['TEMPERATURE', 'holding:0'], ['PRESSURE', 'holding:1']]);
    const p = new ModbusPoller(pool, registry, small, { registryCheckMs: 100 });
    pollers.push(p);
    await p.start();
    await waitFor(async () => (await count(id)) > 10, 5000, 'readings before the outage');
    await proxy.down();
    // While the database is away: a fault and its recovery happen on the device.
    s.faults.silent = true;
    await waitFor(() => p.eventsRaised >= 1, 5000, 'the fault event (queued)');
    s.faults.silent = false;
    await waitFor(() => p.eventsRaised >= 2, 5000, 'the recovery event (queued)');
    await waitFor(() => p.sinkWaits > 0, 5000, 'polling to wait for the full buffer');
    const stats = p.deviceStats('MB-DBDOWN')!;
    const pollsWhileFull = stats.polls;
    await sleep(300);
    assert.ok(stats.polls - pollsWhileFull <= 1, `polling paused while the buffer is full (${stats.polls - pollsWhileFull} polls)`);
    assert.ok(small.buffered <= 200 + 2, `buffer bounded: ${small.buffered}`);
    await proxy.up();
    await waitFor(async () => (await events(id)).length >= 2, 10_000, 'the queued events');
    await sleep(300);
    await p.stop();
    await small.close();
    const stored = await count(id);
    console.log(`  [modbus] database outage: ${stats.readings} readings handed over, ${stored} stored, ${small.stats.duplicates} duplicates, ${p.sinkWaits} polls waited`);
    assert.is(stored, stats.readings);
    assert.is(small.stats.duplicates, 0);
    assert.equal((await events(id)).map((e) => e.event_code), ['MODBUS_TIMEOUT', 'MODBUS_COMMUNICATION_RESTORED']);
  } finally {
    await pool.end();
    await proxy.down();
  }
});

test('polls faster than a millisecond apart still get distinct timestamps: nothing is lost to the (device, sensor, time) dedup', async () => {
  const s = await server();
  const own = ownSink();
  const id = await addDevice('MB-FASTEST', { host: '127.0.0.1', port: s.port, pollIntervalMs: 0.2 }, [['TEMPERATURE', 'holding:0']]);
  const p = poller({}, own);
  await p.start();
  await sleep(1000);
  const stats = p.deviceStats('MB-FASTEST')!;
  await p.stop();
  await own.close();
  const times = (await db.pool.query(`select count(*)::int n, count(distinct time)::int d, max(time) - min(time) as span from iot_private.sensor_readings where device_id = $1`, [id])).rows[0];
  console.log(`  [modbus] ${stats.polls} polls in 1 s at a 0.2 ms interval: ${times.n} stored, ${own.stats.duplicates} duplicates`);
  assert.ok(stats.polls > 200, `polls: ${stats.polls} (a poll takes about a millisecond on loopback)`);
  assert.is(times.n, stats.readings);
  assert.is(times.d, times.n);
  assert.is(own.stats.duplicates, 0);
  await retire(id);
});

test('registry changes apply without a restart: channel added, re-addressed, device disabled', async () => {
  const s = await server();
  s.set('holding:0', 11);
  s.set('holding:50', 22);
  s.set('input:7', 33);
  const id = await addDevice('MB-LIVE', { host: '127.0.0.1', port: s.port, pollIntervalMs: 50 }, [['TEMPERATURE', 'holding:0']]);
  const p = poller();
  await p.start();
  await waitFor(async () => (await count(id)) > 0, 5000, 'first readings');
  await db.pool.query(`insert into iot.device_channels (tenant_id, device_id, sensor_type, unit, protocol_address) values ($1, $2, 'PRESSURE', 'units', 'input:7')`,
    [plant.tenantId, id]);
  await waitFor(async () => (await count(id, `and sensor_type = 'PRESSURE' and value = 33`)) > 0, 5000, 'the added channel');
  await db.pool.query(`update iot.device_channels set protocol_address = 'holding:50' where device_id = $1 and sensor_type = 'TEMPERATURE'`, [id]);
  await waitFor(async () => (await count(id, `and sensor_type = 'TEMPERATURE' and value = 22`)) > 0, 5000, 'the new address');
  await db.pool.query(`update iot.iot_devices set is_active = false where id = $1`, [id]);
  await sleep(500);
  const requests = s.requests.total;
  await sleep(400);
  assert.is(s.requests.total, requests, 'a disabled device is not polled');
  assert.is(p.stats.devices, 0);
  await p.stop();
});

test('a channel without an address is reported once as a dead letter; the device\'s other channels are polled', async () => {
  const s = await server();
  s.set('holding:3', 42);
  const id = await addDevice('MB-HALF', { host: '127.0.0.1', port: s.port, pollIntervalMs: 50 }, [['PRESSURE', 'holding:3']]);
  await db.pool.query(`insert into iot.device_channels (tenant_id, device_id, sensor_type, unit) values ($1, $2, 'TEMPERATURE', 'units')`, [plant.tenantId, id]);
  await registry.reload();
  const p = poller();
  await p.start();
  await waitFor(async () => (await count(id, `and sensor_type = 'PRESSURE' and value = 42`)) >= 3, 5000, 'the addressed channel');
  await registry.reload(); // a registry reload does not repeat the report
  await sleep(200);
  await registry.reload();
  await sleep(200);
  await p.stop();
  await sink.flush();
  const letters = (await db.pool.query(`select reason from iot_private.ingest_dead_letters where source = 'MODBUS' and reason like '%MB-HALF%'`)).rows;
  assert.is(letters.length, 1, JSON.stringify(letters));
  assert.ok(letters[0].reason.includes('TEMPERATURE') && letters[0].reason.includes('protocol_address is empty'), letters[0].reason);
  assert.is(await count(id, `and sensor_type = 'TEMPERATURE'`), 0);
});

test('the database refuses a Modbus address or setting the poller cannot use (IOT01, naming the field)', async () => {
  const id = await addDevice('MB-CHECKED', { host: '127.0.0.1', port: 502 }, []);
  const refused = async (sql: string, params: unknown[], says: string) => {
    const error = await db.pool.query(sql, params).then(() => undefined, (e) => e);
    assert.ok(error, `refused: ${sql}`);
    assert.is(error.code, 'IOT01');
    assert.ok(error.message.includes(says), error.message);
  };
  await refused(`insert into iot.device_channels (tenant_id, device_id, sensor_type, unit, protocol_address) values ($1, $2, 'TEMPERATURE', '°F', 'holding:70000')`,
    [plant.tenantId, id], 'protocol_address');
  await refused(`insert into iot.device_channels (tenant_id, device_id, sensor_type, unit, protocol_address) values ($1, $2, 'TEMPERATURE', '°F', 'holding:1:int16:CDAB')`,
    [plant.tenantId, id], 'byte order');
  await refused(`update iot.iot_devices set connection_config = connection_config || '{"faultThreshold": 0}' where id = $1`, [id], 'faultThreshold');
  // What the poller accepts, the database accepts (same grammar).
  await db.pool.query(`insert into iot.device_channels (tenant_id, device_id, sensor_type, unit, protocol_address) values ($1, $2, 'TEMPERATURE', '°F', 'input:0x10:float32:le')`,
    [plant.tenantId, id]);
  // An MQTT device with an OPC UA address cannot become a Modbus one until the address is fixed.
  await db.pool.query(`update iot.device_channels set protocol_address = 'ns=2;s=Press.Temp' where device_id = $1 and sensor_type = 'TEMPERATURE'`, [plant.deviceId]);
  await refused(`update iot.iot_devices set connection_type = 'MODBUS', connection_config = '{"host": "plc"}' where id = $1`, [plant.deviceId], 'protocol_address');
  await db.pool.query(`update iot.device_channels set protocol_address = null where device_id = $1`, [plant.deviceId]);
  await retire(id);
});

test('the demo plant over Modbus: values in their ranges, injected stuck values are stuck', async () => {
  const tenantId = await seedDemoPlant(db.pool);
  const demo = new ModbusPlant({ maxDevices: 2, rate: 10 }); // CHI PRES-01: its sensor block and its counter
  await demo.start();
  try {
    assert.is(await registerModbusPlant(db.pool, tenantId, demo, 100), 2);
    await registry.reload();
    const p = poller();
    await p.start();
    const sens = demo.devices[0].device.deviceCode;
    const ids = (await db.pool.query(`select device_code, id from iot.iot_devices where tenant_id = $1 and connection_type = 'MODBUS'`, [tenantId])).rows;
    const sensId = ids.find((r) => r.device_code === sens)!.id;
    await waitFor(async () => (await count(sensId)) >= 15, 5000, 'demo readings');
    demo.inject(sens, { kind: 'stuck' });
    await sleep(200);
    const stuckFrom = new Date();
    await sleep(500);
    await p.stop();
    await sink.flush();
    const r = (await db.pool.query(`select sensor_type, min(value) lo, max(value) hi, count(*)::int n from iot_private.sensor_readings r
                                     join iot.iot_devices d on d.id = r.device_id where d.tenant_id = $1 group by 1 order by 1`, [tenantId])).rows;
    console.log(`  [modbus] demo plant: ${r.map((x) => `${x.sensor_type} ${x.lo}..${x.hi} (${x.n})`).join(', ')}`);
    const by = Object.fromEntries(r.map((x) => [x.sensor_type, x]));
    for (const [type, lo, hi] of [['TEMPERATURE', 50, 100], ['VIBRATION', 0, 10], ['PRESSURE', 50, 150], ['SPEED', 0, 20000], ['COUNT', 0, 1e9]] as const) {
      assert.ok(by[type], `${type} stored`);
      assert.ok(by[type].lo >= lo && by[type].hi <= hi, `${type} ${by[type].lo}..${by[type].hi}`);
    }
    assert.ok(by.COUNT.hi > by.COUNT.lo, 'the counter counts');
    const stuck = (await db.pool.query(`select count(distinct value)::int n, count(*)::int total from iot_private.sensor_readings
                                         where device_id = $1 and sensor_type = 'PRESSURE' and time > $2`, [sensId, stuckFrom])).rows[0];
    assert.ok(stuck.total >= 3 && stuck.n === 1, `stuck pressure: ${stuck.n} distinct values in ${stuck.total}`);
    await db.pool.query(`update iot.iot_devices set is_active = false where tenant_id = $1`, [tenantId]);
    await registry.reload();
  } finally {
    await demo.stop();
  }
});

// --- an independent implementation: Debian's python3-pymodbus ---------------------------------------

const PY_SERVER = `
import sys
from pymodbus.server import StartTcpServer
from pymodbus.datastore import ModbusSequentialDataBlock, ModbusSlaveContext, ModbusServerContext
hr = [0] * 100; ir = [0] * 100
hr[0:2] = [0x5678, 0x1234]      # uint32 CDAB = 0x12345678
hr[2] = 0xFF38                   # int16 -200
ir[0:2] = [0x42F6, 0xE979]      # float32 ABCD = 123.456
co = [0, 1] + [0] * 98
store = ModbusSlaveContext(di=ModbusSequentialDataBlock(0, [0] * 100), co=ModbusSequentialDataBlock(0, co),
                           hr=ModbusSequentialDataBlock(0, hr), ir=ModbusSequentialDataBlock(0, ir), zero_mode=True)
print("ready", flush=True)
StartTcpServer(context=ModbusServerContext(slaves=store, single=True), address=("127.0.0.1", int(sys.argv[1])))
`;
const PY_CLIENT = `
import sys
from pymodbus.client import ModbusTcpClient
c = ModbusTcpClient("127.0.0.1", port=int(sys.argv[1])); c.connect()
print(c.read_holding_registers(0, 4, slave=1).registers)
print(c.read_input_registers(0, 2, slave=1).registers)
print(c.read_coils(0, 8, slave=1).bits)
print(c.read_holding_registers(190, 20, slave=1).exception_code)
c.close()
`;

function pythonWithPymodbus(): string | undefined {
  for (const py of ['/usr/bin/python3', 'python3']) {
    // pymodbus.client needs pyserial too (a Recommends that minimal installs skip): a half install is skipped, not failed.
    const r = spawnSync(py, ['-c', 'import pymodbus.client, pymodbus.server'], { stdio: 'ignore' });
    if (r.status === 0) return py;
  }
  return undefined;
}
const python = pythonWithPymodbus();
if (!python) console.log('  [modbus] pymodbus tests skipped: no python3 with pymodbus.client and pymodbus.server (Debian: apt-get install -y python3-pymodbus python3-serial python3-serial-asyncio)');
const pyTest = python ? test : test.skip;

pyTest('an independent Modbus server (pymodbus) is polled and decoded right', async () => {
  const port = await freePort();
  const child: ChildProcess = spawn(python!, ['-c', PY_SERVER, String(port)], { stdio: ['ignore', 'pipe', 'pipe'] });
  try {
    await new Promise<void>((resolve, reject) => {
      child.stdout!.on('data', (d) => String(d).includes('ready') && resolve());
      child.once('exit', (code) => reject(new Error(`pymodbus server exited with ${code}`)));
    });
    const id = await addDevice('MB-PYMODBUS', { host: '127.0.0.1', port, pollIntervalMs: 100 },
      [['COUNT', 'holding:0:uint32:CDAB'], ['TEMPERATURE', 'holding:2:int16', 0.1], ['PRESSURE', 'input:0:float32'], ['SPEED', 'coil:1']]);
    const p = poller();
    await p.start();
    await waitFor(async () => (await count(id)) >= 8, 8000, 'readings from pymodbus');
    await p.stop();
    await sink.flush();
    const rows = (await db.pool.query(`select sensor_type, min(value) lo, max(value) hi from iot_private.sensor_readings where device_id = $1 group by 1`, [id])).rows;
    const by = Object.fromEntries(rows.map((r) => [r.sensor_type, [r.lo, r.hi]]));
    assert.equal(by, { COUNT: [0x12345678, 0x12345678], TEMPERATURE: [-20, -20], PRESSURE: [Math.fround(123.456), Math.fround(123.456)], SPEED: [1, 1] });
    await retire(id);
  } finally {
    child.kill('SIGTERM');
  }
});

pyTest('an independent Modbus client (pymodbus) reads the simulator as the poller does, exception 02 included', async () => {
  const s = await server();
  s.set('holding:0:uint32:ABCD', 0x12345678);
  s.set('holding:2:int16', -200);
  s.set('input:0:float32:CDAB', 123.456);
  s.set('coil:2', 1);
  // Not spawnSync: the simulator answers from this process's event loop.
  const r = await execFileAsync(python!, ['-c', PY_CLIENT, String(s.port)], { encoding: 'utf8', timeout: 20_000 });
  const lines = r.stdout.trim().split('\n');
  assert.is(lines[0], '[4660, 22136, 65336, 0]');
  assert.is(lines[1], '[59769, 17142]');
  assert.is(lines[2], '[False, False, True, False, False, False, False, False]');
  assert.is(lines[3], '2');
});

test.run();

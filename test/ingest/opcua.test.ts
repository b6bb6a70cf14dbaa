// The OPC UA ingestor against the OPC UA simulator (a real node-opcua server on loopback), storing
// through the real sink into the suite's database. Counts are exact: the simulator keeps every value
// it set, with whether a monitored item was watching its node then.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { OpcuaIngestor } from '../../src/ingest/opcua/ingestor';
import { ownCertificate, rejectedCertificates, trustCertificate } from '../../src/ingest/opcua/pki';
import { applyQuickOpcuaSetup } from '../../src/ingest/opcua/quick-setup';
import { RegistryCache } from '../../src/ingest/registry';
import { ReadingSink } from '../../src/ingest/sink';
import { freePort } from '../../src/lib/embedded/ports';
import { OpcuaSimServer, simNodeId } from '../../src/sim/opcua-server';
import { createTestDatabase, seedSmallPlant, TestDatabase } from '../helpers/db';
import { sleep, waitFor } from '../helpers/wait';

const test = suite('ingest: OPC UA from the simulator server');
let db: TestDatabase;
let plant: Awaited<ReturnType<typeof seedSmallPlant>>;
let sim: OpcuaSimServer;
let secureSim: OpcuaSimServer;
let registry: RegistryCache;
let sink: ReadingSink;
let ingestor: OpcuaIngestor;
let dir: string;
const env: NodeJS.ProcessEnv = { OPCUA_PW_GOOD: 'press-secret', OPCUA_PW_WRONG: 'not-the-password' };

const SENS1 = 'CHI-PRES-01-SENS';
const SENS2 = 'CHI-PRES-02-SENS';
const CNT1 = 'CHI-PRES-01-CNT';
const devices: Record<string, string> = {};

async function addDevice(code: string, config: Record<string, unknown>, channels: [string, string, string][]): Promise<string> {
  const d = await db.pool.query<{ id: string }>(
    `insert into iot.iot_devices (tenant_id, work_center_id, device_code, device_type, connection_type, connection_config)
     values ($1, $2, $3, 'SENSOR', 'OPC_UA', $4) returning id`, [plant.tenantId, plant.workCenterId, code, config]);
  for (const [type, unit, address] of channels) {
    await db.pool.query(`insert into iot.device_channels (tenant_id, device_id, sensor_type, unit, protocol_address) values ($1, $2, $3, $4, $5)`,
      [plant.tenantId, d.rows[0].id, type, unit, address]);
  }
  devices[code] = d.rows[0].id;
  return d.rows[0].id;
}

const rows = async (deviceId: string, sinceMs = 0) => (await db.pool.query<{ sensor_type: string; time: Date; value: number; quality: string; metadata: Record<string, string> | null }>(
  `select sensor_type, time, value, quality, metadata from iot_private.sensor_readings where device_id = $1 and time >= $2 order by time`,
  [deviceId, new Date(sinceMs)])).rows;
const key = (sensor: string, t: Date) => `${sensor.toUpperCase()}@${t.toISOString()}`;
const events = async (deviceId: string, code: string) =>
  (await db.pool.query(`select event_type, severity, event_description from iot.equipment_events where iot_device_id = $1 and event_code = $2`, [deviceId, code])).rows;

test.before(async () => {
  db = await createTestDatabase('opcua');
  plant = await seedSmallPlant(db.pool);
  dir = mkdtempSync(join(tmpdir(), 'iot-opcua-'));
  sim = new OpcuaSimServer({ port: await freePort(), devices: 4, intervalMs: 100 });
  await sim.start();
  await addDevice('OPC-SENS-1', { endpointUrl: sim.endpointUrl, publishingIntervalMs: 100 }, [
    ['TEMPERATURE', '°F', simNodeId(SENS1, 'TEMPERATURE')], ['VIBRATION', 'mm/s', simNodeId(SENS1, 'VIBRATION')],
    ['PRESSURE', 'PSI', simNodeId(SENS1, 'PRESSURE')]]);
  registry = new RegistryCache(db.pool, 0);
  await registry.start();
  sink = new ReadingSink(db.pool, { batchSize: 1000, maxWaitMs: 20, bufferMax: 10_000 });
  ingestor = new OpcuaIngestor({ pkiDir: join(dir, 'opcua-pki'), reconnectMinMs: 200, reconnectMaxMs: 1000, env }, registry, sink, db.pool);
  await ingestor.start();
  console.log(`  [opcua] simulator ${sim.endpointUrl}, tier ${db.tier}`);
});

test.after(async () => {
  await ingestor?.stop();
  await sink?.close();
  await registry?.stop();
  await sim?.dispose();
  await secureSim?.dispose();
  await db?.drop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

test('values arrive with the server\'s source timestamps; Bad and Uncertain statuses are stored as BAD and UNCERTAIN', async () => {
  const id = devices['OPC-SENS-1'];
  await waitFor(async () => (await rows(id)).length >= 30, 15_000, '30 readings');
  const produced = new Map(sim.produced.filter((p) => p.deviceCode === SENS1).map((p) => [key(p.sensorType, p.sourceTimestamp), p]));
  const stored = await rows(id);
  for (const r of stored) {
    const p = produced.get(key(r.sensor_type, r.time));
    assert.ok(p, `stored ${key(r.sensor_type, r.time)} is a value the server produced, at its source timestamp`);
    assert.is(r.value, p!.value);
    assert.is(r.quality, 'GOOD');
    assert.is(r.metadata, null);
  }
  const since = Date.now();
  sim.inject(simNodeId(SENS1, 'PRESSURE'), { kind: 'status', status: 'BadSensorFailure' });
  sim.inject(simNodeId(SENS1, 'VIBRATION'), { kind: 'status', status: 'UncertainLastUsableValue' });
  await waitFor(async () => (await rows(id, since)).filter((r) => r.quality !== 'GOOD').length >= 6, 10_000, 'bad and uncertain readings');
  const faulty = (await rows(id, since)).filter((r) => r.quality !== 'GOOD');
  const bad = faulty.filter((r) => r.sensor_type === 'PRESSURE');
  const uncertain = faulty.filter((r) => r.sensor_type === 'VIBRATION');
  assert.ok(bad.length >= 2 && uncertain.length >= 2, `bad ${bad.length}, uncertain ${uncertain.length}`);
  for (const r of bad) assert.equal([r.quality, r.metadata], ['BAD', { opcuaStatus: 'BadSensorFailure' }]);
  for (const r of uncertain) assert.equal([r.quality, r.metadata], ['UNCERTAIN', { opcuaStatus: 'UncertainLastUsableValue' }]);
  assert.ok(faulty.every((r) => r.sensor_type !== 'TEMPERATURE'), 'TEMPERATURE stayed GOOD');
  sim.inject(simNodeId(SENS1, 'PRESSURE'), undefined);
  sim.inject(simNodeId(SENS1, 'VIBRATION'), undefined);
});

test('server restart mid-stream: every value produced while watched is stored once, the re-sent values are skipped as duplicates', async () => {
  try {
    await restartMidStream();
  } finally {
    sim.resume(); // the next tests need values whatever happened here
  }
});

async function restartMidStream() {
  const id = devices['OPC-SENS-1'];
  const since = Date.now() + 1;
  await sleep(1000);
  const duplicatesBefore = sink.stats.duplicates;
  const reconnectsBefore = ingestor.counters.reconnects;
  // Between two ticks (whatever was set was published), the server goes away for 1.5 s and comes back with its values.
  sim.pause();
  await sleep(400);
  await sim.stop();
  await sleep(1500);
  await sim.start({ tick: false }); // production resumes once the ingestor watches again, so nothing is produced unwatched
  await waitFor(() => sim.watchedCount() >= 3, 20_000, 'the ingestor to subscribe again');
  const downEvents = await events(id, 'OPCUA_CONNECTION_LOST');
  sim.resume();
  await sleep(1500);
  sim.pause();
  await sleep(500);
  const expected = sim.produced.filter((p) => p.deviceCode === SENS1 && p.sourceTimestamp.getTime() >= since);
  assert.ok(expected.every((p) => p.watched), 'every value in the window was produced while watched');
  await waitFor(async () => (await rows(id, since)).length >= expected.length, 10_000, 'all values stored');
  await sleep(300);
  const stored = await rows(id, since);
  console.log(`  [opcua] restart: ${expected.length} values produced in the window, ${stored.length} stored, ` +
    `${sink.stats.duplicates - duplicatesBefore} duplicates skipped, ${ingestor.counters.reconnects - reconnectsBefore} reconnect(s)`);
  assert.is(stored.length, expected.length);
  assert.equal(new Set(stored.map((r) => key(r.sensor_type, r.time))), new Set(expected.map((p) => key(p.sensorType, p.sourceTimestamp))));
  // The re-created subscription's initial values are the retained ones, already stored: one per item, skipped.
  assert.is(sink.stats.duplicates - duplicatesBefore, 3);
  assert.is(ingestor.counters.reconnects - reconnectsBefore, 1);
  assert.is(downEvents.length, 1, 'one OPCUA_CONNECTION_LOST event for the outage');
  assert.is(downEvents[0].event_type, 'ERROR');
  assert.ok((await events(id, 'OPCUA_CONNECTION_RESTORED')).length >= 1, 'a restored event');
}

test('Sign and SignAndEncrypt with certificates trusted both ways and a username/password; a wrong password is an event, not a crash', async () => {
  secureSim = new OpcuaSimServer({ port: await freePort(), devices: 4, intervalMs: 100, pkiDir: join(dir, 'sim-pki'),
    users: { operator: 'press-secret' } });
  await secureSim.start();
  const pki = await ingestor.openPki();
  await secureSim.certificateManager.trustCertificate(ownCertificate(pki));
  await trustCertificate(pki, secureSim.certificate());
  const base = { endpointUrl: secureSim.endpointUrl, publishingIntervalMs: 100, username: 'operator' };
  const sign = await addDevice('OPC-SIGN', { ...base, securityMode: 'Sign', securityPolicy: 'Basic256Sha256', passwordEnv: 'OPCUA_PW_GOOD' },
    [['TEMPERATURE', '°F', simNodeId(SENS2, 'TEMPERATURE')]]);
  const enc = await addDevice('OPC-ENC', { ...base, securityMode: 'SignAndEncrypt', securityPolicy: 'Aes128_Sha256_RsaOaep', passwordEnv: 'OPCUA_PW_GOOD' },
    [['SPEED', 'sheets/h', simNodeId(CNT1, 'SPEED')]]);
  const wrong = await addDevice('OPC-WRONG', { ...base, securityMode: 'SignAndEncrypt', securityPolicy: 'Basic256Sha256', passwordEnv: 'OPCUA_PW_WRONG' },
    [['PRESSURE', 'PSI', simNodeId(SENS2, 'PRESSURE')]]);
  await waitFor(async () => (await rows(sign)).length >= 5 && (await rows(enc)).length >= 5, 30_000, 'readings over Sign and SignAndEncrypt');
  const produced = new Set(secureSim.produced.map((p) => `${p.deviceCode}.${key(p.sensorType, p.sourceTimestamp)}`));
  for (const r of await rows(sign)) assert.ok(produced.has(`${SENS2}.${key(r.sensor_type, r.time)}`));
  for (const r of await rows(enc)) assert.ok(produced.has(`${CNT1}.${key(r.sensor_type, r.time)}`));
  await waitFor(async () => (await events(wrong, 'OPCUA_AUTH_FAILED')).length > 0, 15_000, 'the wrong password event');
  await sleep(2500); // several retries
  const auth = await events(wrong, 'OPCUA_AUTH_FAILED');
  assert.is(auth.length, 1, 'one event for the outage, not one per retry');
  assert.is(auth[0].event_type, 'ERROR');
  assert.match(auth[0].event_description, /OPC-WRONG/);
  assert.match(auth[0].event_description, /passwordEnv/);
  assert.is((await rows(wrong)).length, 0);
  // The plain device went on meanwhile.
  const before = (await rows(devices['OPC-SENS-1'])).length;
  await waitFor(async () => (await rows(devices['OPC-SENS-1'])).length > before + 5, 5000, 'the other device to keep going');
  // Fixed in the registry: the ingestor reconnects with the new setting, without a restart.
  await db.pool.query(`update iot.iot_devices set connection_config = connection_config || '{"passwordEnv": "OPCUA_PW_GOOD"}' where id = $1`, [wrong]);
  await waitFor(async () => (await rows(wrong)).length >= 3, 20_000, 'readings once the password is right');
});

test('an unknown server certificate is refused (an event; the certificate waits in rejected/) until the explicit trust step', async () => {
  const other = new OpcuaSimServer({ port: await freePort(), devices: 1, intervalMs: 100, pkiDir: join(dir, 'other-pki') });
  try {
    await other.start();
    const pki = await ingestor.openPki();
    await other.certificateManager.trustCertificate(ownCertificate(pki)); // the server trusts us; we do not know it yet
    const id = await addDevice('OPC-UNTRUSTED', { endpointUrl: other.endpointUrl, publishingIntervalMs: 100, securityMode: 'SignAndEncrypt',
      securityPolicy: 'Aes128_Sha256_RsaOaep' }, [['TEMPERATURE', '°F', simNodeId(SENS1, 'TEMPERATURE')]]);
    await waitFor(async () => (await events(id, 'OPCUA_CERTIFICATE_UNTRUSTED')).length > 0, 15_000, 'the untrusted certificate event');
    assert.is((await rows(id)).length, 0);
    const rejected = await waitFor(() => rejectedCertificates(pki).length ? rejectedCertificates(pki) : undefined, 5000, 'the certificate in rejected/');
    // The trust step, from the file the refusal left: the device is read at its next attempt.
    for (const file of rejected!) await trustCertificate(pki, file);
    await waitFor(async () => (await rows(id)).length >= 3, 20_000, 'readings once trusted');
    await db.pool.query(`update iot.iot_devices set is_active = false where id = $1`, [id]);
  } finally {
    await sleep(500);
    await other.dispose();
  }
});

test('registry changes apply live: a channel re-addressed, a device added, a device disabled', async () => {
  const id = devices['OPC-SENS-1'];
  // Re-address TEMPERATURE to press 2's sensor.
  await db.pool.query(`update iot.device_channels set protocol_address = $2 where device_id = $1 and sensor_type = 'TEMPERATURE'`,
    [id, simNodeId(SENS2, 'TEMPERATURE')]);
  const changedAt = Date.now();
  await sleep(1500);
  const temps = (await rows(id, changedAt + 500)).filter((r) => r.sensor_type === 'TEMPERATURE');
  assert.ok(temps.length >= 3, `temperature readings after the change: ${temps.length}`);
  const press2 = new Set(sim.produced.filter((p) => p.deviceCode === SENS2 && p.sensorType === 'TEMPERATURE').map((p) => p.sourceTimestamp.toISOString()));
  const press2Values = new Map(sim.produced.filter((p) => p.deviceCode === SENS2 && p.sensorType === 'TEMPERATURE').map((p) => [p.sourceTimestamp.toISOString(), p.value]));
  for (const r of temps) {
    assert.ok(press2.has(r.time.toISOString()), 'read from the new NodeId');
    assert.is(r.value, press2Values.get(r.time.toISOString()));
  }
  // A device added.
  const added = await addDevice('OPC-CNT-1', { endpointUrl: sim.endpointUrl, publishingIntervalMs: 100 }, [['COUNT', 'units', simNodeId(CNT1, 'COUNT')]]);
  await waitFor(async () => (await rows(added)).length >= 3, 10_000, 'readings of the added device');
  // A device disabled: its session closes and nothing more is stored for it.
  const sessions = ingestor.devices;
  await db.pool.query(`update iot.iot_devices set is_active = false where id = $1`, [added]);
  await waitFor(() => ingestor.devices === sessions - 1, 5000, 'the disabled device\'s session to close');
  await sleep(300);
  const after = (await rows(added)).length;
  await sleep(1000);
  assert.is((await rows(added)).length, after, 'nothing stored for a disabled device');
});

test('the quick set-up (OPCUA_ENDPOINT_URL + OPCUA_NODE_IDS) becomes a registry device read like any other', async () => {
  const id = await applyQuickOpcuaSetup(db.pool, sim.endpointUrl, [simNodeId('CHI-PRES-02-CNT', 'SPEED'), 'ns=1;s=Unknown.NotASensor']);
  assert.type(id, 'string');
  devices.quick = id as string;
  const channels = (await db.pool.query(`select sensor_type, protocol_address from iot.device_channels where device_id = $1`, [id])).rows;
  assert.equal(channels, [{ sensor_type: 'SPEED', protocol_address: simNodeId('CHI-PRES-02-CNT', 'SPEED') }]);
  await waitFor(async () => (await rows(id as string)).length >= 3, 10_000, 'readings of the quick device');
  const produced = new Set(sim.produced.filter((p) => p.deviceCode === 'CHI-PRES-02-CNT' && p.sensorType === 'SPEED').map((p) => p.sourceTimestamp.toISOString()));
  for (const r of await rows(id as string)) assert.ok(produced.has(r.time.toISOString()));
  assert.is(await applyQuickOpcuaSetup(db.pool, sim.endpointUrl, [simNodeId('CHI-PRES-02-CNT', 'SPEED')]), id, 'the same device at the next start');
});

test('the registry refuses (IOT01) a channel address that is not a NodeId and a password in connection_config', async () => {
  const id = devices['OPC-SENS-1'];
  const refused = async (sql: string, params: unknown[], pattern: RegExp) => {
    try {
      await db.pool.query(sql, params);
    } catch (error) {
      assert.is((error as { code?: string }).code, 'IOT01');
      assert.match((error as Error).message, pattern);
      return;
    }
    assert.unreachable(`accepted: ${sql}`);
  };
  await refused(`insert into iot.device_channels (tenant_id, device_id, sensor_type, unit, protocol_address) values ($1, $2, 'HUMIDITY', '%RH', 'holding:40001')`,
    [plant.tenantId, id], /OPC-SENS-1: channel HUMIDITY: protocol_address 'holding:40001' is not an OPC UA NodeId/);
  await refused(`update iot.device_channels set protocol_address = 'ns=70000;i=1' where device_id = $1 and sensor_type = 'PRESSURE'`, [id], /namespace index/);
  await refused(`update iot.iot_devices set connection_config = connection_config || '{"password": "x"}' where id = $1`, [id], /connection_config.password is refused/);
  // The forms OPC UA allows are taken.
  for (const address of ['ns=2;s=Press1.Temperature', 'i=2258', 'ns=3;i=4294967295', 'nsu=urn:plc:press;s=A.B', 'ns=1;g=09087e75-8e5e-499b-954f-f2a9603db28a', 'ns=1;b=M/RbKBsRVkePCePcx24oRA==']) {
    await db.pool.query(`select 1 where iot_private.opcua_node_id_problem($1) is null`, [address]).then((r) => assert.is(r.rowCount, 1, address));
  }
  // A device of another protocol keeps its own address format.
  await db.pool.query(`insert into iot.device_channels (tenant_id, device_id, sensor_type, unit, protocol_address) values ($1, $2, 'HUMIDITY', '%RH', 'holding:40001')`,
    [plant.tenantId, plant.deviceId]);
});

test('stop (as on SIGTERM): every value received before the stop is stored or kept, none twice', async () => {
  await sleep(500);
  await ingestor.stop();
  await sink.close();
  const received = ingestor.counters.readings;
  const total = Number((await db.pool.query(`select count(*) from iot_private.sensor_readings where device_id = any ($1::uuid[])`,
    [Object.values(devices)])).rows[0].count);
  const distinct = Number((await db.pool.query(`select count(distinct (device_id, sensor_type, time)) from iot_private.sensor_readings`)).rows[0].count);
  // A value in flight when its device was disabled is kept as a dead letter by the database (not stored, not lost).
  const kept = (await db.pool.query<{ device: string }>(
    `select payload::json ->> 'deviceId' as device from iot_private.ingest_dead_letters where reason_class = 'registry'`)).rows;
  const disabled = new Set([devices['OPC-CNT-1'], devices['OPC-UNTRUSTED']]);
  console.log(`  [opcua] at stop: ${received} readings handed to the sink, ${sink.stats.stored} stored, ${sink.stats.duplicates} duplicates skipped, ` +
    `${kept.length} of disabled devices kept as dead letters`);
  assert.ok(kept.every((k) => disabled.has(k.device)), 'only readings of disabled devices are refused');
  assert.is(sink.stats.received, received);
  assert.is(sink.stats.stored + sink.stats.duplicates + kept.length, received, 'nothing lost between the ingestor and the database');
  assert.is(total, sink.stats.stored);
  assert.is(distinct, total);
});

test.run();

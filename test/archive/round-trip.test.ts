// iot export / iot import: a day of readings (stored through the ReadingSink) exported as Parquet
// to a real S3-compatible server (s3rver) and as CSV to a folder, then imported into a fresh
// database: the same readings (count and checksum of device, sensor, time, value, unit, quality,
// metadata); a second import finds only duplicates.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Pool } from 'pg';
import { exportCommand, importCommand } from '../../src/archive/commands';
import { listKeys, s3Client } from '../../src/archive/s3';
import type { Reading } from '../../src/ingest/reading';
import { ReadingSink } from '../../src/ingest/sink';
import { createTestDatabase, seedSmallPlant, TestDatabase } from '../helpers/db';
import { captured, fingerprint } from './helpers';
import { LocalS3, startLocalS3 } from './s3rver';

const test = suite('archive: export a day to S3 and a folder, import it into a fresh database');
const DAY_MS = 86_400_000;
// Three days ago (UTC midnight): historical, and within any clock's future bound.
const day = Math.floor(Date.now() / DAY_MS) * DAY_MS - 3 * DAY_MS;
const dayText = new Date(day).toISOString().slice(0, 10);
const nextDayText = new Date(day + DAY_MS).toISOString().slice(0, 10);
let source: TestDatabase;
let target: TestDatabase;
let s3: LocalS3;
let folder: string;
let inDay = 0;

async function seedPlants(pool: Pool) {
  const acme = await seedSmallPlant(pool, 'acme', 'F1');
  const beta = await seedSmallPlant(pool, 'beta', 'F2');
  return { acme, beta };
}

test.before(async () => {
  [source, target, s3] = await Promise.all([createTestDatabase('archive_src'), createTestDatabase('archive_dst'), startLocalS3()]);
  folder = mkdtempSync(join(tmpdir(), 'iot-export-test-'));
  const { acme, beta } = await seedPlants(source.pool);
  await seedPlants(target.pool);
  // A day of readings: two devices (two tenants) x three sensors every 30 s, with some metadata,
  // uncertain and bad qualities and awkward values; plus one reading either side of the day.
  const readings: Reading[] = [];
  const units: Record<string, string> = { TEMPERATURE: '°F', VIBRATION: 'mm/s', PRESSURE: 'PSI' };
  for (const plant of [acme, beta]) {
    for (let t = day; t < day + DAY_MS; t += 30_000) {
      for (const sensorType of Object.keys(units)) {
        const i = (t - day) / 30_000;
        readings.push({
          time: new Date(t + (i % 7)), tenantId: plant.tenantId, deviceId: plant.deviceId, sensorType, unit: units[sensorType],
          value: sensorType === 'PRESSURE' ? 0.1 + i / 3 : Math.sin(i) * 1e3, quality: i % 50 === 0 ? 'UNCERTAIN' : i % 97 === 0 ? 'BAD' : 'GOOD',
          metadata: i % 40 === 0 ? { quality: 'VERIFIED', operator: 'Zoë "night" shift', note: 'a,b\nc' } : null,
        });
      }
    }
    readings.push({ time: new Date(day - 1), tenantId: plant.tenantId, deviceId: plant.deviceId, sensorType: 'PRESSURE', unit: 'PSI', value: 1, quality: 'GOOD' });
    readings.push({ time: new Date(day + DAY_MS), tenantId: plant.tenantId, deviceId: plant.deviceId, sensorType: 'PRESSURE', unit: 'PSI', value: 2, quality: 'GOOD' });
  }
  inDay = readings.length - 4;
  const sink = new ReadingSink(source.pool, { batchSize: 5000, maxWaitMs: 20, bufferMax: 100_000 });
  for (let i = 0; i < readings.length; i += 5000) sink.add(readings.slice(i, i + 5000));
  await sink.close();
});

test.after(async () => {
  await Promise.all([source?.drop(), target?.drop(), s3?.stop()]);
  rmSync(folder, { recursive: true, force: true });
});

test('the source holds the day as ingested', async () => {
  const f = await fingerprint(source.pool, day, day + DAY_MS);
  assert.is(f.n, inDay);
  assert.is(inDay, 2 * 3 * 2880);
});

test('export of the day as Parquet to s3rver: one object per tenant and day, the readings of [from, to) only', async () => {
  const out = captured();
  const code = await exportCommand(source.pool, { from: dayText, to: nextDayText, format: 'parquet', toUrl: 's3://archive/plant-a' },
    { env: s3.env, out });
  assert.is(code, 0, out.text);
  const client = s3Client(s3.env);
  const keys = await listKeys(client, 'archive', 'plant-a/');
  client.destroy();
  const [y, m, d] = dayText.split('-');
  assert.equal(keys, [`plant-a/acme/${y}/${m}/${d}.parquet`, `plant-a/beta/${y}/${m}/${d}.parquet`]);
  assert.match(out.text, `Export finished: ${inDay} readings in 2 files`);
});

test('export of the day as CSV to a folder: <tenant>/<yyyy>/<mm>/<dd>.csv with the archive header', async () => {
  const out = captured();
  assert.is(await exportCommand(source.pool, { from: dayText, to: nextDayText, format: 'csv', toDir: folder }, { out }), 0, out.text);
  const [y, m, d] = dayText.split('-');
  assert.equal(readdirSync(join(folder, 'acme', y, m)), [`${d}.csv`]);
  const text = readFileSync(join(folder, 'acme', y, m, `${d}.csv`), 'utf8');
  assert.is(text.split('\n')[0], 'reading_timestamp,iot_device_id,device_code,sensor_type,reading_value,unit_of_measure,quality,production_run_id,metadata');
  assert.is(text.trim().split('\n').length, inDay / 2 + 1);
  assert.not.ok(readdirSync(join(folder, 'acme', y, m)).some((f) => f.endsWith('.partial')));
});

test('import of the Parquet archive from S3 into a fresh database: every reading identical', async () => {
  const out = captured();
  const code = await importCommand(target.pool, 's3://archive/plant-a', {}, { env: s3.env, out });
  assert.is(code, 0, out.text);
  assert.match(out.text, `rows read:    ${inDay}`);
  assert.match(out.text, `stored:       ${inDay}`);
  assert.match(out.text, 'refused:      0');
  assert.equal(await fingerprint(target.pool, day - DAY_MS, day + 2 * DAY_MS), await fingerprint(source.pool, day, day + DAY_MS));
});

test('importing the same archive again: all duplicates, none stored', async () => {
  const out = captured();
  assert.is(await importCommand(target.pool, 's3://archive/plant-a', {}, { env: s3.env, out }), 0, out.text);
  assert.match(out.text, 'stored:       0');
  assert.match(out.text, `duplicates:   ${inDay}`);
  assert.is((await fingerprint(target.pool, day - DAY_MS, day + 2 * DAY_MS)).n, inDay);
});

test('import of the CSV archive folder into an emptied database: every reading identical', async () => {
  await target.pool.query('delete from iot_private.sensor_readings');
  const out = captured();
  assert.is(await importCommand(target.pool, folder, {}, { out }), 0, out.text);
  assert.match(out.text, `stored:       ${inDay}`);
  assert.equal(await fingerprint(target.pool, day - DAY_MS, day + 2 * DAY_MS), await fingerprint(source.pool, day, day + DAY_MS));
});

test('export filters: one tenant, one device, one sensor type', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'iot-export-filter-'));
  try {
    const out = captured();
    assert.is(await exportCommand(source.pool, { from: dayText, to: nextDayText, format: 'csv', toDir: dir, tenant: 'beta', device: 'F2-DEV-1', sensor: 'vibration' }, { out }), 0, out.text);
    assert.match(out.text, `Export finished: ${inDay / 6} readings in 1 files`);
    assert.equal(readdirSync(dir), ['beta']);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('export usage errors exit 2', async () => {
  const out = captured();
  assert.is(await exportCommand(source.pool, { from: dayText, to: nextDayText, format: 'xlsx', toDir: folder }, { out }), 2);
  assert.is(await exportCommand(source.pool, { from: nextDayText, to: dayText, toDir: folder }, { out }), 2);
  assert.is(await exportCommand(source.pool, { from: dayText, to: nextDayText }, { out }), 2);
  assert.is(await exportCommand(source.pool, { from: dayText, to: nextDayText, toDir: folder, tenant: 'nobody' }, { out }), 2);
});

test.run();

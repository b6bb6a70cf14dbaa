// iot import of a hand-made CSV in the MQTT payload's columns: good rows stored, bad ones refused
// with their line numbers and reasons, grouped in the summary; exit 0 (1 with --strict); a dry
// run writes nothing; a device code found in two tenants needs --tenant.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { importCommand } from '../../src/archive/commands';
import { createTestDatabase, seedSmallPlant, TestDatabase } from '../helpers/db';
import { captured } from './helpers';

const test = suite('archive: import of a CSV with bad rows');
let db: TestDatabase;
let dir: string;
let file: string;
const t0 = Date.parse('2025-06-01T00:00:00Z');
const at = (s: number) => new Date(t0 + s * 1000).toISOString();

const count = async () => Number((await db.pool.query('select count(*) from iot_private.sensor_readings')).rows[0].count);

test.before(async () => {
  db = await createTestDatabase('archive_csv');
  const acme = await seedSmallPlant(db.pool, 'acme', 'F1');
  const beta = await seedSmallPlant(db.pool, 'beta', 'F2');
  // SHARED-1 exists in both tenants: its code alone does not say which.
  for (const p of [acme, beta]) {
    const d = await db.pool.query(`insert into iot.iot_devices (tenant_id, work_center_id, device_code, device_type) values ($1, $2, 'SHARED-1', 'SENSOR') returning id`,
      [p.tenantId, p.workCenterId]);
    await db.pool.query(`insert into iot.device_channels (tenant_id, device_id, sensor_type, unit) values ($1, $2, 'HUMIDITY', '%')`, [p.tenantId, d.rows[0].id]);
  }
  dir = mkdtempSync(join(tmpdir(), 'iot-import-csv-'));
  file = join(dir, 'backfill.csv');
  const lines = [
    'facility,workCenter,deviceId,sensorType,value,unit,timestamp,quality,operator',       // 1
    `F1,PRESS-1,F1-DEV-1,temperature,72.5,°F,${at(0)},GOOD,anna`,                           // 2 stored
    `F1,PRESS-1,F1-DEV-1,TEMPERATURE,22.5,°C,${at(1)},VERIFIED,`,                          // 3 stored, converted to 72.5 °F
    `F1,PRESS-1,F1-DEV-1,TEMPERATURE,abc,°F,${at(2)},GOOD,`,                               // 4 value not a number
    `F1,PRESS-1,NOPE-9,TEMPERATURE,70,°F,${at(3)},GOOD,`,                                  // 5 unknown device
    `F1,PRESS-1,F1-DEV-1,TEMPERATURE,70,°F,yesterday,GOOD,`,                               // 6 bad timestamp
    `F1,PRESS-1,F1-DEV-1,TEMPERATURE,70,kg,${at(4)},GOOD,`,                                // 7 unit not convertible
    `F1,PRESS-1,F1-DEV-1,PRESSURE,30,PSI,${at(5)},GOOD,too,many`,                          // 8 unreadable (cells)
    `F1,PRESS-1,,VIBRATION,1.5,mm/s,${at(6)},,`,                                           // 9 stored: the work center's one VIBRATION channel
    `,,F1-DEV-1,PRESSURE,31,PSI,${Math.floor((t0 + 7000) / 1000)},,`,                      // 10 stored: device code alone, epoch seconds
    `,,SHARED-1,HUMIDITY,40,%,${at(8)},,`,                                                 // 11 device code in two tenants
    `F1,PRESS-1,F1-DEV-1,TEMPERATURE,71,°F,,GOOD,`,                                        // 12 no timestamp
    `F1,PRESS-1,F1-DEV-1,TEMPERATURE,71,°F,2099-01-01T00:00:00Z,GOOD,`,                    // 13 future
    `F1,PRESS-1,F1-DEV-1,TEMPERATURE,"7""1",°F,${at(9)},GOOD,`,                           // 14 value not a number
    `F2,PRESS-1,F1-DEV-1,TEMPERATURE,71,°F,${at(10)},GOOD,`,                               // 15 F1-DEV-1 is not in F2's tenant
  ];
  writeFileSync(file, lines.join('\n') + '\n');
});
test.after(async () => {
  await db?.drop();
  rmSync(dir, { recursive: true, force: true });
});

test('a dry run checks every row and writes nothing', async () => {
  const out = captured();
  assert.is(await importCommand(db.pool, file, { dryRun: true }, { out }), 0, out.text);
  assert.match(out.text, 'dry run');
  assert.match(out.text, 'would store:  4');
  assert.is(await count(), 0);
});

test('good rows are stored, bad ones refused with lines and reasons; exit 0 with the summary', async () => {
  const out = captured();
  const code = await importCommand(db.pool, file, {}, { out });
  assert.is(code, 0, out.text);
  assert.match(out.text, 'rows read:    14');
  assert.match(out.text, 'stored:       4');
  assert.match(out.text, 'refused:      10');
  assert.match(out.text, 'value not a number: 2 (line 4, line 14)');
  assert.match(out.text, 'unknown device or channel: 2 (line 5, line 15)');
  assert.match(out.text, 'bad timestamp: 1 (line 6)');
  assert.match(out.text, 'unit not convertible: 1 (line 7)');
  assert.match(out.text, 'unreadable CSV record: 1 (line 8)');
  assert.match(out.text, 'device code in several tenants: 1 (line 11)');
  assert.match(out.text, 'exists in tenants acme, beta: name the tenant with --tenant');
  assert.match(out.text, 'no timestamp: 1 (line 12)');
  assert.match(out.text, 'timestamp out of range: 1 (line 13)');
  const { rows } = await db.pool.query(`select sensor_type, value, unit, quality, metadata from iot_private.sensor_readings order by time`);
  assert.equal(rows.map((r) => [r.sensor_type, r.value, r.unit, r.quality]), [
    ['TEMPERATURE', 72.5, '°F', 'GOOD'], ['TEMPERATURE', 72.5, '°F', 'GOOD'], ['VIBRATION', 1.5, 'mm/s', 'GOOD'], ['PRESSURE', 31, 'PSI', 'GOOD'],
  ]);
  assert.equal(rows[0].metadata, { operator: 'anna' });
  assert.equal(rows[1].metadata, { quality: 'VERIFIED', originalValue: 22.5, originalUnit: '°C' });
});

test('again: the stored rows are duplicates; --strict exits 1 because rows were refused', async () => {
  const out = captured();
  assert.is(await importCommand(db.pool, file, { strict: true }, { out }), 1, out.text);
  assert.match(out.text, 'stored:       0');
  assert.match(out.text, 'duplicates:   4');
  assert.is(await count(), 4);
});

test('--tenant decides a device code found in two tenants', async () => {
  const only = join(dir, 'shared.csv');
  writeFileSync(only, `deviceId,sensorType,value,unit,timestamp\nSHARED-1,HUMIDITY,40,%,${at(8)}\n`);
  const out = captured();
  assert.is(await importCommand(db.pool, only, { tenant: 'beta' }, { out }), 0, out.text);
  assert.match(out.text, 'stored:       1');
  const { rows } = await db.pool.query(`select t.tenant_code from iot_private.sensor_readings r join iot.tenants t on t.id = r.tenant_id where r.sensor_type = 'HUMIDITY'`);
  assert.equal(rows.map((r) => r.tenant_code), ['beta']);
});

test('a file that is not an import CSV, a missing file or an unknown tenant: exit 2, nothing stored', async () => {
  const bad = join(dir, 'bad.csv');
  writeFileSync(bad, 'a,b,c\n1,2,3\n');
  const out = captured();
  const before = await count();
  assert.is(await importCommand(db.pool, bad, {}, { out }), 2);
  assert.is(await importCommand(db.pool, join(dir, 'missing.csv'), {}, { out }), 2);
  assert.is(await importCommand(db.pool, file, { tenant: 'nobody' }, { out }), 2);
  assert.is(await count(), before);
});

test.run();

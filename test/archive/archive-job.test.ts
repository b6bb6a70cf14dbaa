// The export-before-retention job (workers/telemetry__archive.ts): the day retention is about to
// drop is exported to the archive (a real s3rver) before telemetry__apply_retention drops it, once;
// after the drop the archive restores it exactly. Retention can be held back to what is archived.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import type { JobHelpers } from 'graphile-worker';
import { ARCHIVED_THROUGH_KEY, archiveBeforeRetention, archivedCutoff } from '../../src/archive/before-retention';
import { importCommand } from '../../src/archive/commands';
import { s3Destination } from '../../src/archive/destination';
import { withPoolClient } from '../../src/archive/reading-cursor';
import { listKeys, s3Client } from '../../src/archive/s3';
import type { Reading } from '../../src/ingest/reading';
import { ReadingSink } from '../../src/ingest/sink';
import archiveTask from '../../workers/telemetry__archive';
import retentionTask from '../../workers/telemetry__apply_retention';
import { createTestDatabase, seedSmallPlant, TestDatabase } from '../helpers/db';
import { serverTier } from '../helpers/tier';
import { captured, fingerprint } from './helpers';
import { LocalS3, startLocalS3 } from './s3rver';

const test = suite('archive: export before retention');
const DAY_MS = 86_400_000;
const today = Math.floor(Date.now() / DAY_MS) * DAY_MS;
const oldDay = today - 40 * DAY_MS; // retention of 30 days drops it
const recentDay = today - 5 * DAY_MS; // kept
/** Where the job's archive reaches: 28 days before today, taken when asked (the job takes its own clock; a run may pass midnight). */
const archiveHorizon = () => Math.floor(Date.now() / DAY_MS) * DAY_MS - 28 * DAY_MS;
let db: TestDatabase;
let s3: LocalS3;

const quiet = { debug() {}, info() {}, warn() {}, error() {} };
const helpers = () => ({
  withPgClient: (fn: never) => withPoolClient(db.pool)(fn),
  query: (text: string, values?: unknown[]) => db.pool.query(text, values),
  logger: quiet,
}) as unknown as JobHelpers;

test.before(async () => {
  [db, s3] = await Promise.all([createTestDatabase('archive_job'), startLocalS3()]);
  Object.assign(process.env, s3.env); // the job reads S3_* from the environment, as in production
  const plant = await seedSmallPlant(db.pool);
  const readings: Reading[] = [];
  for (const start of [oldDay, recentDay]) {
    for (let t = start; t < start + DAY_MS; t += 300_000) {
      for (const [sensorType, unit] of [['TEMPERATURE', '°F'], ['VIBRATION', 'mm/s'], ['PRESSURE', 'PSI']]) {
        readings.push({ time: new Date(t), tenantId: plant.tenantId, deviceId: plant.deviceId, sensorType, unit, value: 50 + ((t / 300_000) % 40), quality: 'GOOD' });
      }
    }
  }
  const sink = new ReadingSink(db.pool, { batchSize: 2000, maxWaitMs: 20, bufferMax: 10_000 });
  sink.add(readings);
  await sink.close();
});
test.after(async () => {
  for (const k of Object.keys(s3?.env ?? {})) delete process.env[k];
  await Promise.all([db?.drop(), s3?.stop()]);
});

const keys = async () => {
  const client = s3Client(s3.env);
  try {
    return await listKeys(client, 'archive', 'nightly/');
  } finally {
    client.destroy();
  }
};
const dayKey = (ms: number) => `nightly/acme/${new Date(ms).toISOString().slice(0, 10).replace(/-/g, '/')}.parquet`;

test('without ARCHIVE_URL the job does nothing', async () => {
  delete process.env.ARCHIVE_URL;
  await archiveTask({ days: 30 }, helpers());
  const { rowCount } = await db.pool.query('select 1 from iot_private.settings where key = $1', [ARCHIVED_THROUGH_KEY]);
  assert.is(rowCount, 0);
});

let before: { n: number; sum: string };
test('the job exports the day retention drops next, and only that', async () => {
  before = await fingerprint(db.pool, oldDay, oldDay + DAY_MS);
  assert.is(before.n, 288 * 3);
  await archiveTask({ days: 30, url: 's3://archive/nightly', format: 'parquet' }, helpers());
  assert.equal(await keys(), [dayKey(oldDay)]);
  const { rows } = await db.pool.query('select value from iot_private.settings where key = $1', [ARCHIVED_THROUGH_KEY]);
  assert.is(new Date(rows[0].value).getTime(), archiveHorizon());
});

test('a second run exports nothing again', async () => {
  const destination = await s3Destination('s3://archive/nightly', s3.env);
  try {
    const again = await archiveBeforeRetention(withPoolClient(db.pool), { destination, format: 'parquet', retentionDays: 30 });
    assert.is(again.summary, null);
  } finally {
    await destination.close();
  }
  assert.equal(await keys(), [dayKey(oldDay)]);
});

test('retention may drop the day (never beyond what is archived); the archive restores it exactly', async () => {
  const cutoff = new Date(Date.now() - 30 * DAY_MS);
  assert.is((await archivedCutoff(withPoolClient(db.pool), cutoff)).getTime(), cutoff.getTime(), 'the archive is ahead of the cutoff');
  assert.is((await archivedCutoff(withPoolClient(db.pool), new Date(today))).getTime(), archiveHorizon(), 'a later cutoff is held back');
  await retentionTask({ days: 30 }, helpers());
  const left = await fingerprint(db.pool, oldDay, oldDay + DAY_MS);
  // Tier 3 drops the day's partition; tiers 1-2 drop the chunk if it lies wholly before the cutoff.
  if (serverTier() === 3) assert.is(left.n, 0, 'tier 3: the day partition was dropped');
  assert.ok(left.n === 0 || left.n === before.n, `whole chunks only: ${left.n}`);
  assert.is((await fingerprint(db.pool, recentDay, recentDay + DAY_MS)).n, 288 * 3, 'the recent day is kept');
  const out = captured();
  assert.is(await importCommand(db.pool, 's3://archive/nightly/', {}, { env: s3.env, out }), 0, out.text);
  assert.equal(await fingerprint(db.pool, oldDay, oldDay + DAY_MS), before);
});

test.run();

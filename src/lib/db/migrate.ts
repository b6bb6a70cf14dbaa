// Forward-only migrations (db/migrations/NNNNNN_name.sql, each once, in its own transaction) then
// the idempotent logic in sql/*.sql (re-applied every time, in one transaction). A session-level
// advisory lock makes concurrent migrators wait for each other.
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Client } from 'pg';
import { logger } from '../log';
import { detectTier, Tier } from './tier';

const log = logger('migrate');
export const projectRoot = join(__dirname, __dirname.includes(`${join('dist', 'src')}`) ? '../../../..' : '../../..');

export interface MigrateOptions {
  connectionString: string;
  requestedTier?: 'auto' | '1' | '2' | '3';
  /** Folder holding db/migrations and sql (default: this checkout); the upgrade test points it at an older release. */
  root?: string;
  sensorDefaults?: {
    temperatureMin: number;
    temperatureMax: number;
    vibrationMax: number;
    pressureMin: number;
    pressureMax: number;
  };
  /** LIVE_READING_INTERVAL_MS: written to iot_private.settings (live_reading_interval_ms); unset keeps the stored value. */
  liveReadingIntervalMs?: number;
  /** Further iot_private.settings written at every migrate (ROLLUP_*_RETENTION_DAYS, TELEMETRY_COMPRESS_AFTER_DAYS); each checked by the settings trigger. */
  settings?: Record<string, string>;
}

export interface MigrateResult {
  tier: Tier;
  applied: string[];
}

function sqlFiles(root: string, folder: string): { name: string; text: string }[] {
  const dir = join(root, folder);
  return readdirSync(dir)
    .filter((f) => f.endsWith('.sql'))
    .sort()
    .map((name) => ({ name, text: readFileSync(join(dir, name), 'utf8') }));
}

const sha = (text: string) => createHash('sha256').update(text).digest('hex');

export async function migrate(options: MigrateOptions): Promise<MigrateResult> {
  const client = new Client({ connectionString: options.connectionString });
  client.on('notice', (n) => log.debug('notice', { message: n.message }));
  await client.connect();
  try {
    await client.query(`select pg_advisory_lock(hashtext('iot.migrate'))`);
    await client.query(`set client_min_messages = warning`);
    await client.query(`create schema if not exists iot_private`);
    await client.query(`create table if not exists iot_private.migrations (
      filename text primary key, checksum text not null, applied_at timestamptz not null default now())`);

    const stored = await client.query<{ value: string }>(
      `select value from iot_private.settings where key = 'timescale_tier'`,
    ).catch(() => ({ rows: [] as { value: string }[] }));
    let tier: Tier;
    if (stored.rows.length) {
      tier = Number(stored.rows[0].value) as Tier;
      const offered = await detectTier(client);
      if (offered.tier > tier) {
        throw new Error(`database was set up for tier ${tier} but the server now offers tier ${offered.tier}: ${offered.reason}`);
      }
    } else {
      const detected = await detectTier(client, options.requestedTier ?? 'auto');
      tier = detected.tier;
      log.info('storage tier chosen', { tier, reason: detected.reason });
    }

    const done = new Map(
      (await client.query<{ filename: string; checksum: string }>(`select filename, checksum from iot_private.migrations`)).rows.map(
        (r) => [r.filename, r.checksum],
      ),
    );
    const applied: string[] = [];
    for (const m of sqlFiles(options.root ?? projectRoot, 'db/migrations')) {
      const checksum = sha(m.text);
      if (done.has(m.name)) {
        if (done.get(m.name) !== checksum) log.warn('applied migration was edited since; not re-run', { migration: m.name });
        continue;
      }
      await client.query('begin');
      try {
        await client.query(`select set_config('iot.tier', $1, true)`, [String(tier)]);
        await client.query(m.text);
        await client.query(`insert into iot_private.migrations (filename, checksum) values ($1, $2)`, [m.name, checksum]);
        await client.query('commit');
      } catch (error) {
        await client.query('rollback');
        throw new Error(`migration ${m.name} failed: ${(error as Error).message}`);
      }
      applied.push(m.name);
      log.info('applied migration', { migration: m.name });
    }

    await client.query('begin');
    try {
      await client.query(`select set_config('iot.tier', $1, true)`, [String(tier)]);
      for (const f of sqlFiles(options.root ?? projectRoot, 'sql')) {
        try {
          await client.query(f.text);
        } catch (error) {
          throw new Error(`sql/${f.name} failed: ${(error as Error).message}`);
        }
      }
      const d = options.sensorDefaults;
      if (d) {
        await client.query(
          `update iot.sensor_types set normal_min = case sensor_type
             when 'TEMPERATURE' then $1::float8 when 'VIBRATION' then 0 when 'PRESSURE' then $4::float8 else normal_min end,
             normal_max = case sensor_type
             when 'TEMPERATURE' then $2::float8 when 'VIBRATION' then $3::float8 when 'PRESSURE' then $5::float8 else normal_max end
           where sensor_type in ('TEMPERATURE', 'VIBRATION', 'PRESSURE')`,
          [d.temperatureMin, d.temperatureMax, d.vibrationMax, d.pressureMin, d.pressureMax],
        );
      }
      const settings: Record<string, string> = { ...options.settings };
      if (options.liveReadingIntervalMs !== undefined) settings.live_reading_interval_ms = String(options.liveReadingIntervalMs);
      for (const [key, value] of Object.entries(settings)) {
        await client.query(
          `insert into iot_private.settings (key, value) values ($1, $2)
           on conflict (key) do update set value = excluded.value, updated_at = now()`,
          [key, value],
        );
      }
      await client.query('commit');
    } catch (error) {
      await client.query('rollback');
      throw error;
    }
    return { tier, applied };
  } finally {
    await client.query(`select pg_advisory_unlock(hashtext('iot.migrate'))`).catch(() => undefined);
    await client.end();
  }
}

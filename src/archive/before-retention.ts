// Export before retention: the days the raw-readings retention (telemetry__apply_retention, daily
// 03:15 UTC, TELEMETRY_RETENTION_DAYS) will drop within the next `lookaheadDays` are exported to
// ARCHIVE_URL (a folder or s3://bucket/prefix) as one file per tenant and day, once each. How far
// the archive reaches is kept in iot_private.settings ('archive_exported_through'), so a day is
// exported once and a failed run is picked up by the next one where it stopped (days before the
// setting were complete when it was written; a day file written again is replaced, never doubled).
import { logger } from '../lib/log';
import type { Destination } from './destination';
import { exportReadings, ExportSummary } from './export';
import { ArchiveFormat, DAY_MS } from './format';
import type { WithClient } from './reading-cursor';

const log = logger('archive');
export const ARCHIVED_THROUGH_KEY = 'archive_exported_through';

export interface BeforeRetentionOptions {
  destination: Destination;
  format: ArchiveFormat;
  /** TELEMETRY_RETENTION_DAYS; 0 means nothing is ever dropped, so nothing is exported. */
  retentionDays: number;
  /** Export days this many days before retention reaches them (default 2: a failed night is retried the next). */
  lookaheadDays?: number;
  now?: Date;
}

export interface BeforeRetentionResult {
  from: Date | null;
  through: Date | null;
  summary: ExportSummary | null;
}

export async function archiveBeforeRetention(withClient: WithClient, options: BeforeRetentionOptions): Promise<BeforeRetentionResult> {
  if (options.retentionDays <= 0) return { from: null, through: null, summary: null };
  const now = (options.now ?? new Date()).getTime();
  // Retention drops chunks wholly before now - days; by then + lookahead, these whole UTC days are at risk.
  const horizon = Math.floor((now - (options.retentionDays - (options.lookaheadDays ?? 2)) * DAY_MS) / DAY_MS) * DAY_MS;
  const from = await withClient(async (client) => {
    const setting = await client.query<{ value: string }>('select value from iot_private.settings where key = $1', [ARCHIVED_THROUGH_KEY]);
    if (setting.rows.length) return new Date(setting.rows[0].value).getTime();
    // First run: from the oldest reading (per tenant: the (tenant_id, time) index answers each at once).
    const { rows } = await client.query<{ oldest: Date | null }>(`select min(m.oldest) as oldest from iot.tenants t
      cross join lateral (select min(r.time) as oldest from iot_private.sensor_readings r where r.tenant_id = t.id) m`);
    return rows[0].oldest ? Math.floor(rows[0].oldest.getTime() / DAY_MS) * DAY_MS : undefined;
  });
  if (from === undefined || from >= horizon) {
    log.debug('nothing to archive before retention', { horizon: new Date(horizon).toISOString() });
    return { from: from === undefined ? null : new Date(from), through: null, summary: null };
  }
  const summary = await exportReadings(withClient, { from: new Date(from), to: new Date(horizon), format: options.format, destination: options.destination });
  await withClient((client) => client.query(`insert into iot_private.settings as s (key, value) values ($1, $2)
    on conflict (key) do update set value = greatest(s.value::timestamptz, excluded.value::timestamptz)::text, updated_at = now()`,
  [ARCHIVED_THROUGH_KEY, new Date(horizon).toISOString()]));
  log.info('archived the days retention drops next', {
    from: new Date(from).toISOString(), through: new Date(horizon).toISOString(), readings: summary.rows, files: summary.files.length });
  return { from: new Date(from), through: new Date(horizon), summary };
}

/**
 * For telemetry__apply_retention when ARCHIVE_URL is set: the retention cutoff no later than what
 * the archive holds, so a day is never dropped before it is exported (a failing archive stops
 * retention, and says so, rather than losing data).
 */
export async function archivedCutoff(withClient: WithClient, cutoff: Date): Promise<Date> {
  const through = await withClient((client) =>
    client.query<{ value: string }>('select value from iot_private.settings where key = $1', [ARCHIVED_THROUGH_KEY]));
  const archived = through.rows.length ? new Date(through.rows[0].value) : new Date(0);
  if (archived < cutoff) log.warn('retention held back to what the archive holds: the archive job is behind', { cutoff: cutoff.toISOString(), archivedThrough: archived.toISOString() });
  return archived < cutoff ? archived : cutoff;
}

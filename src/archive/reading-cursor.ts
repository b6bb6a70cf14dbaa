// Streams the readings of a time range out of the database in the archive's row shape, 10,000 rows
// per round trip, with a server-side cursor (DECLARE ... CURSOR / FETCH) in a read-only
// transaction: memory stays bounded however many readings the range holds. Ordered by tenant,
// then time, so each tenant's day is one contiguous run of rows (one file).
import type { ClientBase, Pool } from 'pg';
import type { ArchiveRow } from './format';

export interface ExportFilter {
  from: Date;
  to: Date;
  tenantId?: string;
  facilityCode?: string;
  deviceCode?: string;
  sensorType?: string;
}

export interface CursorRow extends ArchiveRow {
  tenant_id: string;
  tenant_code: string;
}

export const FETCH_ROWS = 10_000;

function query(filter: ExportFilter): { text: string; values: unknown[] } {
  const values: unknown[] = [filter.from, filter.to];
  const where = ['r.time >= $1', 'r.time < $2'];
  const add = (sql: (n: string) => string, v: unknown) => {
    values.push(v);
    where.push(sql(`$${values.length}`));
  };
  if (filter.tenantId) add((n) => `r.tenant_id = ${n}::uuid`, filter.tenantId);
  if (filter.deviceCode) add((n) => `d.device_code = ${n}`, filter.deviceCode);
  if (filter.sensorType) add((n) => `r.sensor_type = upper(${n})`, filter.sensorType);
  if (filter.facilityCode) {
    add((n) => `d.work_center_id in (select w.id from iot.work_centers w join iot.facilities f on f.id = w.facility_id
                                     where f.facility_code = ${n})`, filter.facilityCode);
  }
  return {
    text: `select r.time as reading_timestamp, r.device_id::text as iot_device_id, d.device_code, r.sensor_type,
                  r.value as reading_value, r.unit as unit_of_measure, r.quality, r.production_run_id::text as production_run_id,
                  r.metadata, r.tenant_id::text as tenant_id, t.tenant_code
           from iot_private.sensor_readings r
           join iot.iot_devices d on d.tenant_id = r.tenant_id and d.id = r.device_id
           join iot.tenants t on t.id = r.tenant_id
           where ${where.join(' and ')}
           order by r.tenant_id, r.time, d.device_code, r.sensor_type`,
    values,
  };
}

/** Runs `fn` with one connection of its own (a pool's, or graphile-worker's withPgClient). */
export type WithClient = <T>(fn: (client: ClientBase) => Promise<T>) => Promise<T>;

export const withPoolClient = (pool: Pool): WithClient => async (fn) => {
  const client = await pool.connect();
  let broken = false;
  try {
    return await fn(client);
  } catch (error) {
    broken = true; // never hand a connection in an unknown transaction state back to the pool
    throw error;
  } finally {
    client.release(broken ? true : undefined);
  }
};

/**
 * Yields the range's readings in pages of FETCH_ROWS, in a transaction on `client` (which must
 * not be in one already). A consumer that stops early leaves the transaction rolled back.
 */
export async function* readingPages(client: ClientBase, filter: ExportFilter): AsyncGenerator<CursorRow[]> {
  let done = false;
  // Repeatable read: one snapshot for the whole export, however long it takes.
  await client.query('begin transaction isolation level repeatable read read only');
  try {
    const { text, values } = query(filter);
    await client.query(`declare archive_export no scroll cursor for ${text}`, values);
    for (;;) {
      const { rows } = await client.query<CursorRow>(`fetch ${FETCH_ROWS} from archive_export`);
      if (rows.length === 0) break;
      yield rows;
    }
    await client.query('commit');
    done = true;
  } finally {
    if (!done) await client.query('rollback').catch(() => undefined);
  }
}

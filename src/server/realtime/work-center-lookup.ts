// Does the caller see this work center? Asked as the caller (role and claims as transaction
// settings, as PostGraphile does), so row-level security answers, not this code.
import type { Pool } from 'pg';
import { type Caller, settingsFor } from '../auth';

export async function findWorkCenter(pool: Pool, caller: Caller, workCenterId: string, statementTimeoutMs: number):
  Promise<{ facilityId: string } | undefined> {
  const client = await pool.connect();
  try {
    await client.query('begin');
    const settings = { ...settingsFor(caller), statement_timeout: String(statementTimeoutMs) };
    await client.query('select set_config(s.key, s.value, true) from json_each_text($1::json) s', [JSON.stringify(settings)]);
    const { rows } = await client.query<{ facility_id: string }>('select facility_id from iot.work_centers where id = $1', [workCenterId]);
    await client.query('commit');
    return rows[0] ? { facilityId: rows[0].facility_id } : undefined;
  } catch (error) {
    await client.query('rollback').catch(() => undefined);
    throw error;
  } finally {
    client.release();
  }
}

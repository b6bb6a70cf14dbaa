// Shared by the archive suites: a stream that keeps what a command printed, and a fingerprint of
// stored readings that does not depend on the database's device ids.
import { Writable } from 'node:stream';
import type { Pool } from 'pg';

export function captured(): Writable & { text: string } {
  const w = new Writable({ write(chunk, _enc, done) { w.text += String(chunk); done(); } }) as Writable & { text: string };
  w.text = '';
  return w;
}

/** Count and checksum of the readings of [from, to), by device code (device ids differ between databases). */
export async function fingerprint(pool: Pool, from: number, to: number): Promise<{ n: number; sum: string }> {
  const { rows } = await pool.query(`
    select count(*)::int as n, coalesce(md5(string_agg(concat_ws('|', t.tenant_code, d.device_code, r.sensor_type,
             (extract(epoch from r.time) * 1000)::bigint, r.value::text, r.unit, r.quality, r.metadata::text), ','
             order by t.tenant_code, d.device_code, r.sensor_type, r.time)), '') as sum
    from iot_private.sensor_readings r join iot.iot_devices d on d.id = r.device_id join iot.tenants t on t.id = r.tenant_id
    where r.time >= $1 and r.time < $2`, [new Date(from), new Date(to)]);
  return rows[0];
}


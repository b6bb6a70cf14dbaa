// Device API keys (db/migrations/000013_device_credentials.sql): checking a key on each request,
// and making, listing and revoking keys for `iot device-key`.
// A key is `iotk_<key id: 32 hex>_<secret: 43 base64url = 32 bytes>`; the database keeps the key id,
// a salt and sha256(salt || secret). Lookups by key id are cached for `cacheMs` (a revoked key is
// refused within that time), unknown key ids too, so a flood of made-up keys costs one query per
// key id and cache period, and a request never waits for the database while its key is cached.
import { createHash, timingSafeEqual } from 'node:crypto';
import type { Pool } from 'pg';
import type { KeyDevice } from './readings';

export const KEY_PATTERN = /^iotk_([0-9a-f]{32})_([A-Za-z0-9_-]{43})$/;

interface KeyRow {
  keyId: string;
  tenantId: string;
  deviceId: string;
  deviceCode: string;
  connectionType: string;
  deviceActive: boolean;
  revoked: boolean;
  salt: Buffer;
  hash: Buffer;
}

export type KeyCheck =
  | { ok: true; device: KeyDevice }
  | { ok: false; status: 401 | 403 | 503; reason: string };

const uuidOf = (hex: string) => `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;

/** The key in `Authorization: Bearer <key>` or `X-API-Key: <key>`, or undefined. */
export function keyFromHeaders(headers: Record<string, string | string[] | undefined>): string | undefined {
  const auth = headers.authorization;
  if (typeof auth === 'string') {
    const m = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(auth);
    if (m) return m[1];
  }
  const key = headers['x-api-key'];
  return typeof key === 'string' && key.trim() !== '' ? key.trim() : undefined;
}

export class DeviceKeyCache {
  private readonly entries = new Map<string, { row: KeyRow | null; at: number }>();
  private readonly loading = new Map<string, Promise<KeyRow | null>>();

  constructor(private readonly pool: Pool, private readonly cacheMs = 5000, private readonly maxEntries = 10_000) {}

  async check(key: string | undefined): Promise<KeyCheck> {
    if (!key) return { ok: false, status: 401, reason: 'no API key: send it as Authorization: Bearer <key> (or X-API-Key)' };
    const m = KEY_PATTERN.exec(key);
    if (!m) return { ok: false, status: 401, reason: 'the API key is not one this server issues (iotk_<key id>_<secret>)' };
    const keyId = uuidOf(m[1]);
    let row: KeyRow | null;
    try {
      row = await this.lookup(keyId);
    } catch {
      return { ok: false, status: 503, reason: 'the database cannot be reached to check the API key; try again shortly' };
    }
    const secret = Buffer.from(m[2], 'base64url');
    const good = row !== null && secret.length === 32 &&
      timingSafeEqual(createHash('sha256').update(row.salt).update(secret).digest(), row.hash);
    if (!row || !good) return { ok: false, status: 401, reason: 'the API key is not valid' };
    if (row.revoked) return { ok: false, status: 401, reason: `the API key ${keyId} has been revoked` };
    if (!row.deviceActive) return { ok: false, status: 403, reason: `device ${row.deviceCode} is not active` };
    if (row.connectionType !== 'REST_API') {
      return { ok: false, status: 403, reason: `device ${row.deviceCode} has connection type ${row.connectionType}, not REST_API` };
    }
    return { ok: true, device: { keyId, tenantId: row.tenantId, deviceId: row.deviceId, deviceCode: row.deviceCode } };
  }

  private async lookup(keyId: string): Promise<KeyRow | null> {
    const now = Date.now();
    const cached = this.entries.get(keyId);
    if (cached && now - cached.at < this.cacheMs) return cached.row;
    let pending = this.loading.get(keyId);
    if (!pending) {
      pending = this.load(keyId).finally(() => this.loading.delete(keyId));
      this.loading.set(keyId, pending);
    }
    try {
      const row = await pending;
      if (this.entries.size >= this.maxEntries) this.entries.delete(this.entries.keys().next().value!);
      this.entries.delete(keyId); // re-inserted last: the map is in age order
      this.entries.set(keyId, { row, at: Date.now() });
      return row;
    } catch (error) {
      // The database is away: a key known before keeps working (revocation waits for it to return).
      if (cached) return cached.row;
      throw error;
    }
  }

  private async load(keyId: string): Promise<KeyRow | null> {
    const { rows } = await this.pool.query(
      `select k.id::text as key_id, k.tenant_id::text, k.device_id::text, d.device_code, d.connection_type, d.is_active,
              k.revoked_at is not null as revoked, k.salt, k.key_hash
       from iot_private.device_api_keys k
       join iot.iot_devices d on d.tenant_id = k.tenant_id and d.id = k.device_id
       where k.id = $1`, [keyId]);
    const r = rows[0];
    if (!r) return null;
    return { keyId: r.key_id, tenantId: r.tenant_id, deviceId: r.device_id, deviceCode: r.device_code, connectionType: r.connection_type,
      deviceActive: r.is_active, revoked: r.revoked, salt: r.salt, hash: r.key_hash };
  }
}

// For `iot device-key create|list|revoke` (owner connection).

/** The device named by id or by code (codes are unique per tenant; a code used by two tenants must be given as id). */
async function deviceIdOf(pool: Pool, device: string): Promise<string> {
  const byId = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(device);
  const { rows } = await pool.query<{ id: string }>(
    byId ? 'select id::text from iot.iot_devices where id = $1' : 'select id::text from iot.iot_devices where device_code = $1', [device]);
  if (rows.length === 0) throw new Error(`no device ${JSON.stringify(device)}`);
  if (rows.length > 1) throw new Error(`device code ${JSON.stringify(device)} is used by ${rows.length} tenants: give the device id instead`);
  return rows[0].id;
}

export async function createDeviceKey(pool: Pool, device: string, label?: string): Promise<{ keyId: string; apiKey: string; deviceId: string }> {
  const deviceId = await deviceIdOf(pool, device);
  const { rows } = await pool.query<{ key_id: string; api_key: string }>(
    'select key_id::text, api_key from iot_private.create_device_api_key($1, $2)', [deviceId, label ?? null]);
  return { keyId: rows[0].key_id, apiKey: rows[0].api_key, deviceId };
}

export async function revokeDeviceKey(pool: Pool, keyId: string): Promise<boolean> {
  const { rows } = await pool.query<{ revoked: boolean }>('select iot_private.revoke_device_api_key($1) as revoked', [keyId]);
  return rows[0].revoked;
}

export async function listDeviceKeys(pool: Pool, device?: string) {
  const deviceId = device ? await deviceIdOf(pool, device) : null;
  const { rows } = await pool.query<{ key_id: string; device_code: string; label: string | null; created_at: Date; revoked_at: Date | null }>(
    `select k.id::text as key_id, d.device_code, k.label, k.created_at, k.revoked_at
     from iot_private.device_api_keys k join iot.iot_devices d on d.id = k.device_id
     where $1::uuid is null or k.device_id = $1 order by d.device_code, k.created_at`, [deviceId]);
  return rows;
}

// The arguments of a subscription name things of the caller's tenant, checked once when it
// subscribes (one query at most, as the API's owner, so filtered by the caller's tenant here): a
// work center, facility, device, tenant or control chart of another tenant, or one that does not
// exist, is refused with errcode IOT04 and a message naming the argument, never an empty stream.
// Ids are never reused (UUIDs) and the registry's rows move tenant never, so a positive answer may be remembered.
import { logger } from '../../../lib/log';
import { throttled } from '../../log-throttle';
import type { OwnerQuery } from '../../notify-channels';

const log = logger('api');
const note = throttled(log);
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export type ArgumentKind = 'workCenter' | 'facility' | 'device' | 'tenant' | 'parameterCode';

/** An error whose JSON carries errcode: in extensions, and at top level through PostGraphile's extendedErrors (`code`). */
export function subscriptionError(message: string, errcode: string): Error {
  return Object.assign(new Error(message), { code: errcode, extensions: { errcode } });
}

// Owner queries: the base tables, not the tenant-filtered views (no caller settings here).
const OWNED: Record<Exclude<ArgumentKind, 'tenant'>, { sql: string; what: string }> = {
  workCenter: { sql: 'select exists (select 1 from iot.work_centers where id = $1 and tenant_id = $2) as ok', what: 'a work center' },
  facility: { sql: 'select exists (select 1 from iot.facilities where id = $1 and tenant_id = $2) as ok', what: 'a facility' },
  device: { sql: 'select exists (select 1 from iot.iot_devices where id = $1 and tenant_id = $2) as ok', what: 'a device' },
  parameterCode: {
    sql: 'select exists (select 1 from iot.spc_control_limits where parameter_code = $1 and tenant_id = $2) as ok',
    what: 'an SPC control chart (parameter code)',
  },
};

/**
 * Checks one argument against the caller's tenant and returns its value as payloads spell it
 * (UUIDs in lower case). Throws an error with errcode 22P02 (not a UUID) or IOT04 (not yours).
 */
export async function checkArgument(query: OwnerQuery, tenantId: string, name: string, value: unknown, kind: ArgumentKind): Promise<string> {
  const text = String(value);
  if (kind !== 'parameterCode' && !UUID.test(text)) {
    throw subscriptionError(`${name} ${JSON.stringify(text)} is not a UUID`, '22P02');
  }
  const normal = kind === 'parameterCode' ? text : text.toLowerCase();
  if (kind === 'tenant') {
    if (normal !== tenantId.toLowerCase()) refuse(name, normal, 'your tenant (the tenant_id of your token)', tenantId);
    return normal;
  }
  const { sql, what } = OWNED[kind];
  const key = `${kind}/${tenantId}/${normal}`;
  if (!recentlyOwned(key)) {
    const rows = await query(sql, [normal, tenantId]);
    if (!rows[0]?.ok) refuse(name, normal, `${what} of your tenant`, tenantId);
    owned.set(key, Date.now());
    while (owned.size > OWNED_REMEMBERED) owned.delete(owned.keys().next().value as string);
  }
  return normal;
}

// A plant's dashboards reconnect together (an API restart, a network blip): thousands of subscribes
// naming the same few work centers. A confirmed owner is remembered for a minute, so that storm
// costs one query per distinct id, not one per subscriber. Refusals are not remembered.
const OWNED_FOR_MS = 60_000;
const OWNED_REMEMBERED = 10_000;
const owned = new Map<string, number>();
function recentlyOwned(key: string): boolean {
  const at = owned.get(key);
  if (at === undefined) return false;
  if (Date.now() - at < OWNED_FOR_MS) return true;
  owned.delete(key);
  return false;
}

function refuse(name: string, value: string, what: string, tenantId: string): never {
  note('info', 'subscription refused: its argument names something outside the caller\'s tenant', { argument: name, value, tenant: tenantId });
  throw subscriptionError(`${name} ${value} is not ${what}`, 'IOT04');
}

// One import row -> one Reading, by the MQTT contract's rules (README "Sending readings"): the
// device by code (within the tenant), sensor types in any case, units converted to the channel's
// unit, quality words mapped (unknown words stored as UNCERTAIN and kept in metadata), extra
// columns kept as metadata. Unlike a live message, a row must carry its timestamp: a backfill
// stamped with the time of the import would be wrong data. A row that breaks a rule is refused
// with a short kind (what the summary groups by) and a reason naming the value as written.
import { EARLIEST_TIME, MAX_METADATA_BYTES, inValueRange } from '../ingest/mqtt-payload';
import { QUALITIES, Quality, Reading } from '../ingest/reading';
import type { ChannelInfo, RegistryCache } from '../ingest/registry';
import type { DeviceDirectory } from './device-directory';
import type { ImportRow } from './import-row';

export interface Refusal {
  kind: string;
  reason: string;
}
export type Refused = { refused: Refusal };
export type Resolved = { reading: Reading } | Refused;

export interface ResolveContext {
  registry: RegistryCache;
  directory: DeviceDirectory;
  /** --tenant: every row belongs to it. */
  tenantId?: string;
  /** Readings later than now plus this are refused (the sink's INGEST_MAX_FUTURE_SECONDS). */
  maxFutureMs: number;
  now: number;
}

const NUMBER = /^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$/;
const ISO = /^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}/;
const VALUE_RANGE_TEXT = '0, or a magnitude from 1e-15 to 1e15';
const show = (v: unknown) => {
  const text = typeof v === 'string' ? JSON.stringify(v) : String(v);
  return text.length > 120 ? text.slice(0, 120) + '…' : text;
};
const refuse = (kind: string, reason: string): Refused => ({ refused: { kind, reason } });

function tenantOf(row: ImportRow, ctx: ResolveContext): string | Refused {
  if (ctx.tenantId) return ctx.tenantId;
  if (row.facility) {
    const f = ctx.registry.facility(row.facility);
    if (f) return f.tenantId;
  }
  const hinted = row.tenantHint && ctx.directory.tenantId(row.tenantHint);
  if (hinted) return hinted;
  if (!row.deviceCode) return refuse('unknown facility', `facility ${show(row.facility)} is not registered`);
  const tenants = ctx.directory.tenantsWithDevice(row.deviceCode);
  if (tenants.length === 1) return tenants[0];
  if (tenants.length === 0) return refuse('unknown device', `device ${show(row.deviceCode)} is not registered in any tenant`);
  const codes = tenants.map((t) => ctx.directory.tenantCode(t)).sort().join(', ');
  return refuse('device code in several tenants', `device ${show(row.deviceCode)} exists in tenants ${codes}: name the tenant with --tenant`);
}

function channelOf(row: ImportRow, tenantId: string, sensorType: string, ctx: ResolveContext): ChannelInfo | Refused {
  let workCenterId: string | undefined;
  if (row.facility) {
    const f = ctx.registry.facility(row.facility);
    if (!f) return refuse('unknown facility', `facility ${show(row.facility)} is not registered`);
    if (f.tenantId !== tenantId) return refuse('facility of another tenant', `facility ${show(row.facility)} does not belong to the tenant imported into`);
    if (row.workCenter) {
      workCenterId = ctx.registry.workCenterId(f.facilityId, row.workCenter);
      if (!workCenterId) return refuse('unknown work center', `work center ${show(row.workCenter)} is not an active work center of facility ${show(row.facility)}`);
    }
  }
  const type = sensorType.toUpperCase();
  if (row.deviceCode) {
    const channel = ctx.registry.channel(tenantId, row.deviceCode, sensorType);
    if (!channel) return refuse('unknown device or channel', `device ${show(row.deviceCode)} has no active ${type} channel in this tenant`);
    if (workCenterId && channel.workCenterId !== workCenterId) {
      return refuse('device not on that work center', `device ${show(row.deviceCode)} is not on work center ${show(row.workCenter)}`);
    }
    return channel;
  }
  if (!workCenterId) return refuse('no device', 'deviceId is empty, and facility and workCenter do not name a work center');
  const candidates = ctx.registry.channelsOf(workCenterId, sensorType);
  if (candidates.length === 1) return candidates[0];
  return refuse('no device', candidates.length === 0
    ? `deviceId is empty and work center ${show(row.workCenter)} has no active ${type} channel`
    : `deviceId is empty and work center ${show(row.workCenter)} has ${candidates.length} ${type} channels; name the device`);
}

function timeOf(raw: ImportRow['timestamp'], ctx: ResolveContext): Date | Refused {
  if (raw === undefined) return refuse('no timestamp', 'timestamp is empty: an imported reading needs its time');
  let ms: number;
  if (raw instanceof Date) ms = raw.getTime();
  else if (typeof raw === 'number' || NUMBER.test(String(raw))) {
    const n = Number(raw);
    ms = n < 1e11 ? n * 1000 : n; // epoch seconds below 1e11 (the year 5138), else milliseconds
  } else if (ISO.test(raw)) ms = Date.parse(raw);
  else return refuse('bad timestamp', `timestamp ${show(raw)} is not an ISO 8601 date-time or epoch seconds or milliseconds`);
  if (!Number.isFinite(ms) || Number.isNaN(new Date(ms).getTime())) return refuse('bad timestamp', `timestamp ${show(raw)} is not a valid date-time`);
  if (ms < EARLIEST_TIME) return refuse('timestamp out of range', `timestamp ${show(raw)} is before the year 2000`);
  if (ms > ctx.now + ctx.maxFutureMs) return refuse('timestamp out of range', `timestamp ${show(raw)} is more than ${ctx.maxFutureMs / 1000} s in the future`);
  return new Date(ms);
}

function metadataOf(row: ImportRow): { metadata: Record<string, unknown> } | Refused {
  if (row.metadata === undefined) return { metadata: {} };
  if (typeof row.metadata !== 'string') return { metadata: { ...row.metadata } };
  let parsed: unknown;
  try {
    parsed = JSON.parse(row.metadata);
  } catch {
    return refuse('bad metadata', `metadata ${show(row.metadata)} is not JSON`);
  }
  if (parsed === null) return { metadata: {} };
  if (typeof parsed !== 'object' || Array.isArray(parsed)) return refuse('bad metadata', `metadata ${show(row.metadata)} is not a JSON object`);
  return { metadata: parsed as Record<string, unknown> };
}

export function resolveRow(row: ImportRow, ctx: ResolveContext): Resolved {
  if (typeof row.sensorType !== 'string' || row.sensorType === '') return refuse('no sensor type', 'sensorType is empty');
  const tenant = tenantOf(row, ctx);
  if (typeof tenant !== 'string') return tenant;
  const found = channelOf(row, tenant, row.sensorType, ctx);
  if ('refused' in found) return found;
  const channel: ChannelInfo = found;

  if (row.value === undefined) return refuse('no value', 'value is empty');
  if (typeof row.value === 'string' && !NUMBER.test(row.value)) return refuse('value not a number', `value ${show(row.value)} is not a number`);
  const sent = Number(row.value);
  if (!Number.isFinite(sent)) return refuse('value out of range', `value ${show(row.value)} is beyond what a 64-bit float holds`);

  const parsed = metadataOf(row);
  if ('refused' in parsed) return parsed;
  const metadata = parsed.metadata;
  const extra = row.layout === 'contract';
  if (extra && ('originalValue' in metadata || 'originalUnit' in metadata)) {
    return refuse('reserved column', 'columns originalValue and originalUnit are reserved: ingest writes them when it converts a unit');
  }

  let value = sent;
  if (row.unit !== undefined) {
    const converted = ctx.registry.convert(sent, row.unit, channel.unit);
    if (typeof converted === 'string') return refuse('unit not convertible', converted);
    if (converted.converted) {
      value = converted.value;
      // An archived reading converted once already keeps its first original.
      if (!('originalValue' in metadata)) Object.assign(metadata, { originalValue: sent, originalUnit: row.unit });
    }
  }
  if (!inValueRange(value)) return refuse('value out of range', `value ${show(row.value)} is outside the accepted range: ${VALUE_RANGE_TEXT}`);

  const time = timeOf(row.timestamp, ctx);
  if (!(time instanceof Date)) return time;

  let quality: Quality = 'GOOD';
  if (row.quality !== undefined) {
    const word = row.quality.trim().toUpperCase();
    quality = (QUALITIES as readonly string[]).includes(word) ? (word as Quality) : ctx.registry.quality(row.quality) ?? 'UNCERTAIN';
    if (word !== quality && !('quality' in metadata)) metadata.quality = row.quality;
  }
  const kept = Object.keys(metadata).length ? metadata : null;
  if (kept && extra) {
    const bytes = Buffer.byteLength(JSON.stringify(kept));
    if (bytes > MAX_METADATA_BYTES) return refuse('metadata too large', `the extra columns are ${bytes} bytes of JSON, more than the ${MAX_METADATA_BYTES} allowed`);
  }
  return { reading: { time, tenantId: channel.tenantId, deviceId: channel.deviceId, sensorType: channel.sensorType, value, unit: channel.unit, quality, metadata: kept } };
}

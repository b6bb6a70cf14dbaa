// One REST item -> one Reading of the key's device, by the MQTT contract's rules (README "Sending
// readings"): sensor types in any case, unit spellings converted to the channel's unit, quality
// words mapped (unknown ones stored as UNCERTAIN, the word kept in metadata), fields beyond the
// contract kept as metadata, the same accepted ranges for values and times. A reading that breaks
// a rule is refused with a reason naming the field and the value as sent.
import { EARLIEST_TIME, IngestLimits, MAX_METADATA_BYTES, inValueRange } from '../mqtt-payload';
import type { Quality, Reading } from '../reading';
import type { RegistryCache } from '../registry';

/** The device a key authenticates. */
export interface KeyDevice {
  keyId: string;
  tenantId: string;
  deviceId: string;
  deviceCode: string;
}

export type ItemOutcome =
  | { reading: Reading }
  | { refused: string; missed?: boolean }
  /** The item names another device than the key's: the whole request is refused (403). */
  | { forbidden: string };

const CONTRACT_FIELDS = new Set(['deviceId', 'sensorType', 'value', 'unit', 'timestamp', 'quality']);
const RESERVED_FIELDS = ['originalValue', 'originalUnit'];
const VALUE_RANGE_TEXT = '0, or a magnitude from 1e-15 to 1e15';
const show = (v: unknown) => {
  try {
    const text = typeof v === 'string' ? JSON.stringify(v) : String(JSON.stringify(v) ?? v);
    return text.length > 200 ? text.slice(0, 200) + '…' : text;
  } catch {
    return 'a value nested too deeply to show';
  }
};

function parseTime(raw: unknown, receivedAt: number, limits: IngestLimits): Date | string {
  let ms: number;
  if (typeof raw === 'number') {
    if (!Number.isFinite(raw)) return 'is not a finite number';
    ms = raw < 1e11 ? raw * 1000 : raw; // epoch seconds below 1e11 (the year 5138), else milliseconds
  } else if (typeof raw === 'string') {
    if (!/^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}/.test(raw)) return 'is not an ISO 8601 date-time';
    ms = Date.parse(raw);
    if (Number.isNaN(ms)) return 'is not a valid date-time';
  } else return 'must be an ISO 8601 string or epoch seconds or milliseconds';
  const time = new Date(ms);
  if (Number.isNaN(time.getTime())) return 'is beyond any time a clock can hold';
  if (ms - receivedAt > limits.maxFutureMs) {
    return `(${time.toISOString()}) is more than ${limits.maxFutureMs / 1000} s in the future (INGEST_MAX_FUTURE_SECONDS)`;
  }
  if (ms < EARLIEST_TIME) return `(${time.toISOString()}) is before the year 2000`;
  if (limits.maxAgeMs && receivedAt - ms > limits.maxAgeMs) {
    return `(${time.toISOString()}) is more than ${limits.maxAgeMs / 86_400_000} days old (INGEST_MAX_AGE_DAYS)`;
  }
  return time;
}

export function readingOf(o: Record<string, unknown>, device: KeyDevice, registry: RegistryCache, limits: IngestLimits,
  receivedAt: number): ItemOutcome {
  if (o.deviceId !== undefined && o.deviceId !== null && o.deviceId !== device.deviceCode && o.deviceId !== device.deviceId) {
    return { forbidden: `deviceId ${show(o.deviceId)} is not the device this API key belongs to (${device.deviceCode})` };
  }
  const sensorType = o.sensorType;
  if (typeof sensorType !== 'string' || sensorType.trim() === '') return { refused: `sensorType ${show(sensorType)} must be a non-empty string` };
  const channel = registry.channel(device.tenantId, device.deviceCode, sensorType);
  if (!channel) return { refused: `device ${show(device.deviceCode)} has no active channel ${show(sensorType)}`, missed: true };
  if (channel.connectionType !== 'REST_API') {
    return { refused: `device ${show(device.deviceCode)} has connection type ${channel.connectionType}, not REST_API` };
  }

  if (!('value' in o) || o.value === null) return { refused: 'value is missing' };
  if (typeof o.value !== 'number') return { refused: `value ${show(o.value)} must be a number` };
  if (!Number.isFinite(o.value)) return { refused: `value ${show(o.value)} is beyond what a 64-bit float holds (accepted: ${VALUE_RANGE_TEXT})` };

  // Own properties only: a field named "__proto__" is data.
  const metadata: Record<string, unknown> = Object.fromEntries(Object.entries(o).filter(([key]) => !CONTRACT_FIELDS.has(key)));
  const reserved = RESERVED_FIELDS.find((key) => Object.hasOwn(metadata, key));
  if (reserved) return { refused: `field ${show(reserved)} is reserved: ingest writes it when it converts a unit` };

  let value = o.value;
  if (o.unit !== undefined && o.unit !== null) {
    if (typeof o.unit !== 'string') return { refused: `unit ${show(o.unit)} must be a string` };
    if (o.unit.trim() !== '') {
      const converted = registry.convert(o.value, o.unit, channel.unit);
      if (typeof converted === 'string') return { refused: converted };
      if (converted.converted) {
        value = converted.value;
        metadata.originalValue = o.value;
        metadata.originalUnit = o.unit;
      }
    }
  }
  if (!inValueRange(value)) return { refused: `value ${show(o.value)} is outside the accepted range: ${VALUE_RANGE_TEXT}` };

  let time = new Date(receivedAt);
  if (o.timestamp !== undefined && o.timestamp !== null) {
    const parsed = parseTime(o.timestamp, receivedAt, limits);
    if (typeof parsed === 'string') return { refused: `timestamp ${show(o.timestamp)} ${parsed}` };
    time = parsed;
  }

  let quality: Quality = 'GOOD';
  if (o.quality !== undefined && o.quality !== null) {
    quality = (typeof o.quality === 'string' && registry.quality(o.quality)) || 'UNCERTAIN';
    if (typeof o.quality !== 'string' || o.quality.trim().toUpperCase() !== quality) metadata.quality = o.quality;
  }

  const kept = Object.keys(metadata).length ? metadata : null;
  if (kept) {
    let bytes: number;
    try {
      bytes = Buffer.byteLength(JSON.stringify(kept));
    } catch {
      return { refused: 'metadata (the fields beyond the contract) is nested too deeply to be stored' };
    }
    if (bytes > MAX_METADATA_BYTES) {
      return { refused: `metadata (the fields beyond the contract and the quality word) is ${bytes} bytes, more than the ${MAX_METADATA_BYTES} allowed` };
    }
  }
  return {
    reading: { time, tenantId: channel.tenantId, deviceId: channel.deviceId, sensorType: channel.sensorType, value, unit: channel.unit, quality, metadata: kept },
  };
}

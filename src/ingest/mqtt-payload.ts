// The MQTT ingest contract (DESIGN.md): topic facility/{facility}/workcenter/{workCenter}/sensor/{sensorType},
// JSON payload {"deviceId","sensorType","value","unit","timestamp","quality"} or an array of them.
// Every rejected reading gets a reason naming the field and the value; good readings beside it
// in the same message are kept. Sensor types match in any case; quality words and unit spellings
// are read with the registry's tables (iot.quality_words, iot.units, iot.unit_aliases), and a value
// in another unit of the channel's quantity is converted to the channel's unit.
// A reading's metadata holds what the payload carried beyond the contract's fields, the quality
// word when it was another word than the stored quality, and originalValue/originalUnit when the
// value was converted; null when nothing.
import type { DeadLetter, Quality, Reading } from './reading';
import type { RegistryCache } from './registry';

export interface ParseContext {
  registry: RegistryCache;
  receivedAt: Date;
  maxFutureMs: number;
}

export interface ParseResult {
  readings: Reading[];
  deadLetters: DeadLetter[];
  /** True when a lookup missed: a registry reload may resolve it. */
  missed: boolean;
}

const TOPIC = /^facility\/([^/]+)\/workcenter\/([^/]+)\/sensor\/([^/]+)$/;
const MAX_PAYLOAD_TEXT = 4096; // dead letters keep at most this much of a payload
const CONTRACT_FIELDS = new Set(['deviceId', 'sensorType', 'value', 'unit', 'timestamp', 'quality']);
/** Metadata keys ingest writes when it converts a unit; a payload may not bring its own. */
const RESERVED_FIELDS = ['originalValue', 'originalUnit'];
/** A reading keeps at most this much metadata (UTF-8 bytes of its JSON); more is a dead letter. */
export const MAX_METADATA_BYTES = 2048;
// jsonb refuses U+0000 and unpaired surrogates: refuse them here rather than fail the whole batch.
const NOT_JSONB = /\u0000|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

const clip = (text: string) => (text.length > MAX_PAYLOAD_TEXT ? text.slice(0, MAX_PAYLOAD_TEXT) + '…' : text);
const show = (v: unknown) => (typeof v === 'string' ? JSON.stringify(v) : String(JSON.stringify(v) ?? v));

/** Why a reading's metadata cannot be kept, if it cannot. */
function metadataProblem(metadata: Record<string, unknown>): string | undefined {
  let bad: string | undefined;
  const text = JSON.stringify(metadata, (key, value) => {
    if (bad === undefined && (NOT_JSONB.test(key) || (typeof value === 'string' && NOT_JSONB.test(value)))) bad = key;
    return value;
  });
  if (bad !== undefined) return `field ${show(bad)} holds U+0000 or an unpaired surrogate, which cannot be stored`;
  const bytes = Buffer.byteLength(text);
  if (bytes > MAX_METADATA_BYTES) {
    return `metadata (the fields beyond the contract and the quality word) is ${bytes} bytes, more than the ${MAX_METADATA_BYTES} allowed`;
  }
  return undefined;
}

function parseTime(raw: unknown): Date | string {
  if (typeof raw === 'number') {
    if (!Number.isFinite(raw)) return `timestamp ${show(raw)} is not a finite number`;
    // Seconds or milliseconds since the epoch: anything below 1e11 is taken as seconds.
    return new Date(raw < 1e11 ? raw * 1000 : raw);
  }
  if (typeof raw === 'string') {
    if (!/^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}/.test(raw)) return `timestamp ${show(raw)} is not an ISO 8601 date-time`;
    const d = new Date(raw);
    return Number.isNaN(d.getTime()) ? `timestamp ${show(raw)} is not a valid date-time` : d;
  }
  return `timestamp ${show(raw)} must be an ISO 8601 string or epoch milliseconds`;
}

export function parseMqttMessage(topic: string, payload: Buffer, ctx: ParseContext): ParseResult {
  const result: ParseResult = { readings: [], deadLetters: [], missed: false };
  const text = payload.toString('utf8');
  const reject = (reason: string, tenantId?: string, item?: string) =>
    result.deadLetters.push({ source: 'MQTT', topic, payload: clip(item ?? text), reason, tenantId });

  const m = TOPIC.exec(topic);
  if (!m) {
    reject(`topic ${show(topic)} does not match facility/{facilityCode}/workcenter/{workCenterCode}/sensor/{sensorType}`);
    return result;
  }
  const [, facilityCode, workCenterCode, topicSensorType] = m;
  const facility = ctx.registry.facility(facilityCode);
  if (!facility) {
    result.missed = true;
    reject(`unknown facility ${show(facilityCode)} in topic`);
    return result;
  }
  const workCenterId = ctx.registry.workCenterId(facility.facilityId, workCenterCode);
  if (!workCenterId) {
    result.missed = true;
    reject(`unknown or inactive work center ${show(workCenterCode)} in facility ${show(facilityCode)}`, facility.tenantId);
    return result;
  }

  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch (error) {
    reject(`payload is not valid JSON: ${(error as Error).message}`, facility.tenantId);
    return result;
  }
  const items = Array.isArray(body) ? body : [body];
  if (items.length === 0) reject('payload is an empty array', facility.tenantId);

  items.forEach((item, index) => {
    const where = Array.isArray(body) ? `item ${index}: ` : '';
    const itemText = Array.isArray(body) ? JSON.stringify(item) : undefined;
    const bad = (reason: string) => reject(where + reason, facility.tenantId, itemText);
    if (typeof item !== 'object' || item === null || Array.isArray(item)) return bad('reading must be a JSON object');
    const o = item as Record<string, unknown>;

    const sensorType = o.sensorType ?? topicSensorType;
    if (typeof sensorType !== 'string') return bad(`sensorType ${show(o.sensorType)} must be a string`);
    if (sensorType.toUpperCase() !== topicSensorType.toUpperCase()) {
      return bad(`sensorType ${show(sensorType)} does not match topic sensor ${show(topicSensorType)}`);
    }

    if (!('value' in o) || o.value === null) return bad('value is missing');
    if (typeof o.value !== 'number') return bad(`value ${show(o.value)} must be a number`);
    if (!Number.isFinite(o.value)) return bad(`value ${show(o.value)} is not finite`);

    let channel;
    if (o.deviceId !== undefined) {
      if (typeof o.deviceId !== 'string' || o.deviceId === '') return bad(`deviceId ${show(o.deviceId)} must be a non-empty string`);
      channel = ctx.registry.channel(facility.tenantId, o.deviceId, sensorType);
      if (!channel) {
        result.missed = true;
        return bad(`unknown device ${show(o.deviceId)} or it has no active ${sensorType.toUpperCase()} channel`);
      }
      if (channel.workCenterId !== workCenterId) {
        return bad(`device ${show(o.deviceId)} is not on work center ${show(workCenterCode)}`);
      }
    } else {
      const candidates = ctx.registry.channelsOf(workCenterId, sensorType);
      if (candidates.length !== 1) {
        if (candidates.length === 0) result.missed = true;
        const type = sensorType.toUpperCase();
        return bad(candidates.length === 0
          ? `deviceId is missing and work center ${show(workCenterCode)} has no active ${type} channel`
          : `deviceId is missing and work center ${show(workCenterCode)} has ${candidates.length} ${type} channels; name the device`);
      }
      channel = candidates[0];
    }

    // fromEntries defines own properties, so a field named "__proto__" is kept as data.
    const metadata: Record<string, unknown> = Object.fromEntries(Object.entries(o).filter(([key]) => !CONTRACT_FIELDS.has(key)));
    const reserved = RESERVED_FIELDS.find((key) => Object.hasOwn(metadata, key));
    if (reserved) return bad(`field ${show(reserved)} is reserved: ingest writes it when it converts a unit`);

    let value = o.value;
    if (o.unit !== undefined && o.unit !== null) {
      if (typeof o.unit !== 'string') return bad(`unit ${show(o.unit)} must be a string`);
      if (o.unit.trim() !== '') {
        const converted = ctx.registry.convert(o.value, o.unit, channel.unit);
        if (typeof converted === 'string') return bad(converted);
        if (converted.converted) {
          value = converted.value;
          metadata.originalValue = o.value;
          metadata.originalUnit = o.unit;
        }
      }
    }

    let time = ctx.receivedAt;
    if (o.timestamp !== undefined && o.timestamp !== null) {
      const parsed = parseTime(o.timestamp);
      if (typeof parsed === 'string') return bad(parsed);
      if (parsed.getTime() - ctx.receivedAt.getTime() > ctx.maxFutureMs) {
        return bad(`timestamp ${show(o.timestamp)} is more than ${ctx.maxFutureMs / 1000} s in the future`);
      }
      if (parsed.getFullYear() < 2000) return bad(`timestamp ${show(o.timestamp)} is before the year 2000`);
      time = parsed;
    }

    // A known word maps to its quality; an unknown one (or a number, or anything else) is stored as
    // UNCERTAIN. Either way a word other than the stored quality is kept in metadata.quality.
    let quality: Quality = 'GOOD';
    if (o.quality !== undefined && o.quality !== null) {
      quality = (typeof o.quality === 'string' && ctx.registry.quality(o.quality)) || 'UNCERTAIN';
      if (typeof o.quality !== 'string' || o.quality.trim().toUpperCase() !== quality) metadata.quality = o.quality;
    }

    const kept = Object.keys(metadata).length ? metadata : null;
    const problem = kept && metadataProblem(kept);
    if (problem) return bad(problem);

    result.readings.push({
      time, tenantId: channel.tenantId, deviceId: channel.deviceId, sensorType: channel.sensorType, value, unit: channel.unit,
      quality, metadata: kept,
    });
  });
  return result;
}

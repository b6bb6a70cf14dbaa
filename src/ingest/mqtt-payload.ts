// The MQTT ingest contract (DESIGN.md): topic facility/{facility}/workcenter/{workCenter}/sensor/{sensorType},
// JSON payload {"deviceId","sensorType","value","unit","timestamp","quality"} or an array of them.
// Every rejected reading gets a reason naming the field and the value; good readings beside it
// in the same message are kept.
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
const QUALITIES: Quality[] = ['GOOD', 'UNCERTAIN', 'BAD'];
const MAX_PAYLOAD_TEXT = 4096; // dead letters keep at most this much of a payload

const clip = (text: string) => (text.length > MAX_PAYLOAD_TEXT ? text.slice(0, MAX_PAYLOAD_TEXT) + '…' : text);
const show = (v: unknown) => (typeof v === 'string' ? JSON.stringify(v) : String(JSON.stringify(v) ?? v));

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
    if (sensorType !== topicSensorType) return bad(`sensorType ${show(sensorType)} does not match topic sensor ${show(topicSensorType)}`);

    if (!('value' in o) || o.value === null) return bad('value is missing');
    if (typeof o.value !== 'number') return bad(`value ${show(o.value)} must be a number`);
    if (!Number.isFinite(o.value)) return bad(`value ${show(o.value)} is not finite`);

    let channel;
    if (o.deviceId !== undefined) {
      if (typeof o.deviceId !== 'string' || o.deviceId === '') return bad(`deviceId ${show(o.deviceId)} must be a non-empty string`);
      channel = ctx.registry.channel(facility.tenantId, o.deviceId, sensorType);
      if (!channel) {
        result.missed = true;
        return bad(`unknown device ${show(o.deviceId)} or it has no active ${sensorType} channel`);
      }
      if (channel.workCenterId !== workCenterId) {
        return bad(`device ${show(o.deviceId)} is not on work center ${show(workCenterCode)}`);
      }
    } else {
      const candidates = ctx.registry.channelsOf(workCenterId, sensorType);
      if (candidates.length !== 1) {
        if (candidates.length === 0) result.missed = true;
        return bad(candidates.length === 0
          ? `deviceId is missing and work center ${show(workCenterCode)} has no active ${sensorType} channel`
          : `deviceId is missing and work center ${show(workCenterCode)} has ${candidates.length} ${sensorType} channels; name the device`);
      }
      channel = candidates[0];
    }

    if (o.unit !== undefined && o.unit !== null && o.unit !== channel.unit) {
      return bad(`unit ${show(o.unit)} does not match the channel's unit ${show(channel.unit)}`);
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

    let quality: Quality = 'GOOD';
    if (o.quality !== undefined && o.quality !== null) {
      const q = typeof o.quality === 'string' ? o.quality.toUpperCase() : undefined;
      if (!q || !QUALITIES.includes(q as Quality)) return bad(`quality ${show(o.quality)} must be GOOD, UNCERTAIN or BAD`);
      quality = q as Quality;
    }

    result.readings.push({
      time, tenantId: channel.tenantId, deviceId: channel.deviceId, sensorType, value: o.value, unit: channel.unit, quality,
    });
  });
  return result;
}

// The MQTT ingest contract (DESIGN.md): topic facility/{facility}/workcenter/{workCenter}/sensor/{sensorType},
// JSON payload {"deviceId","sensorType","value","unit","timestamp","quality"} or an array of them.
// Every rejected reading gets a reason naming the field and the value as sent; good readings beside it
// in the same message are kept. Sensor types match in any case; quality words and unit spellings
// are read with the registry's tables (iot.quality_words, iot.units, iot.unit_aliases), and a value
// in another unit of the channel's quantity is converted to the channel's unit.
// A reading's metadata holds what the payload carried beyond the contract's fields, the quality
// word when it was another word than the stored quality, and originalValue/originalUnit when the
// value was converted; null when nothing.
// Bounds (README "Sending readings"): a message is at most maxMessageBytes (checked before it is
// decoded, so a huge message costs only its own buffer) and maxReadingsPerMessage readings; a value
// is 0 or of magnitude VALUE_MIN_MAGNITUDE..VALUE_MAX_MAGNITUDE; a time is from EARLIEST_TIME (or
// maxAgeMs before arrival) to maxFutureMs after arrival. Outside them: a dead letter, never an exception.
import { specs } from '../lib/config';
import type { DeadLetter, Quality, Reading } from './reading';
import type { RegistryCache } from './registry';

/** What one message may hold; the defaults are the configuration's (src/lib/config.ts). */
export interface IngestLimits {
  /** Readings stamped later than arrival plus this are refused (INGEST_MAX_FUTURE_SECONDS). */
  maxFutureMs: number;
  /** Readings stamped earlier than arrival minus this are refused; 0: no age limit (INGEST_MAX_AGE_DAYS). */
  maxAgeMs: number;
  /** A larger payload is refused before it is decoded or parsed (INGEST_MAX_MESSAGE_BYTES). */
  maxMessageBytes: number;
  /** A message (JSON array) with more readings is refused whole (INGEST_MAX_READINGS_PER_MESSAGE). */
  maxReadingsPerMessage: number;
}

const configured = (name: keyof typeof specs) => Number(specs[name].default);
export const DEFAULT_LIMITS: Readonly<IngestLimits> = Object.freeze({
  maxFutureMs: configured('INGEST_MAX_FUTURE_SECONDS') * 1000,
  maxAgeMs: configured('INGEST_MAX_AGE_DAYS') * 86_400_000,
  maxMessageBytes: configured('INGEST_MAX_MESSAGE_BYTES'),
  maxReadingsPerMessage: configured('INGEST_MAX_READINGS_PER_MESSAGE'),
});

export interface ParseContext extends IngestLimits {
  registry: RegistryCache;
  receivedAt: Date;
}

export interface ParseResult {
  readings: Reading[];
  deadLetters: DeadLetter[];
  /** True when a lookup missed: a registry reload may resolve it. */
  missed: boolean;
}

// The value range, here and in the database (constraint sensor_readings_value_range, migration
// 000008). 1e15 is below 2^53, so counters up to it are exact integers, and covers every plant
// quantity in SI units (energy of a 100 MW plant over a year is 3e15 J, but 9e11 Wh); 1e-15 is a
// femto-unit. Within it a square is 1e-30..1e30, so the rollups' float8 sums of squares cannot
// overflow (a day bucket holds at most 8.64e10 readings per channel, microsecond times: 8.64e40)
// nor underflow (PostgreSQL raises an error when a product of non-zero floats rounds to 0).
export const VALUE_MAX_MAGNITUDE = 1e15;
export const VALUE_MIN_MAGNITUDE = 1e-15;
export const inValueRange = (v: number) =>
  v === 0 || (Math.abs(v) >= VALUE_MIN_MAGNITUDE && Math.abs(v) <= VALUE_MAX_MAGNITUDE);
const VALUE_RANGE_TEXT = '0, or a magnitude from 1e-15 to 1e15';
/** No reading is older than this: the rollups' bucket origin, and far before any plant's sensors here. */
export const EARLIEST_TIME = Date.UTC(2000, 0, 1);

const TOPIC = /^facility\/([^/]+)\/workcenter\/([^/]+)\/sensor\/([^/]+)$/;
const MAX_PAYLOAD_TEXT = 4096; // dead letters keep at most this much of a payload
const CONTRACT_FIELDS = new Set(['deviceId', 'sensorType', 'value', 'unit', 'timestamp', 'quality']);
/** Metadata keys ingest writes when it converts a unit; a payload may not bring its own. */
const RESERVED_FIELDS = ['originalValue', 'originalUnit'];
const NO_FIELDS: Readonly<Record<string, unknown>> = Object.freeze({});

/**
 * The reading's fields beyond the contract (its metadata). Most readings have none: they share one
 * empty object, and only a reading with some gets its own (filled by defineProperty, so a field named
 * "__proto__" is kept as data). The shared empty one is frozen: replace it before adding a field.
 */
function fieldsBeyondContract(o: Record<string, unknown>): Record<string, unknown> {
  let extra: Record<string, unknown> | undefined;
  for (const key of Object.keys(o)) {
    if (CONTRACT_FIELDS.has(key)) continue;
    extra ??= {};
    Object.defineProperty(extra, key, { value: o[key], enumerable: true, writable: true, configurable: true });
  }
  return extra ?? NO_FIELDS;
}
/** A reading keeps at most this much metadata (UTF-8 bytes of its JSON); more is a dead letter. */
export const MAX_METADATA_BYTES = 2048;
// jsonb refuses U+0000 and unpaired surrogates: refuse them here rather than fail the whole batch.
const NOT_JSONB = /\u0000|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

const MAX_SHOWN = 200; // a reason quotes at most this much of what was sent

const clip = (text: string, max = MAX_PAYLOAD_TEXT) => (text.length > max ? text.slice(0, max) + '…' : text);
/** The start of a payload that is not decoded whole (too large): at most MAX_PAYLOAD_TEXT characters. */
const head = (payload: Buffer) => clip(payload.subarray(0, MAX_PAYLOAD_TEXT * 4).toString('utf8'));
/** A JSON value as a reason quotes it: short, and never throwing (a value nested 100,000 deep cannot be stringified). */
function show(v: unknown): string {
  try {
    return clip(typeof v === 'string' ? JSON.stringify(v) : String(JSON.stringify(v) ?? v), MAX_SHOWN);
  } catch {
    return Array.isArray(v) ? 'an array nested too deeply to show' : 'an object nested too deeply to show';
  }
}
const stringifyOrNull = (v: unknown) => {
  try {
    return JSON.stringify(v);
  } catch {
    return undefined;
  }
};

// JSON.parse turns 1e400 into Infinity and 1e-400 into 0. To name what was sent, and to refuse a
// non-zero value that would be stored as 0, the number literals of each reading's own fields are
// read from the text (which JSON.parse has accepted, so this lexer only has to find tokens).
const TOKEN = /[ \t\n\r]*(?:("(?:[^"\\]|\\.)*")|(-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)|([{}[\]:,])|true|false|null)/y;
/** Per reading (the top-level object, or each element of a top-level array): field name -> number literal. */
function numberLiterals(text: string): Map<string, string>[] {
  const items: Map<string, string>[] = [];
  const open: string[] = [];
  let topArray = false;
  let element = 0;
  let key: string | undefined;
  let expectKey = false;
  TOKEN.lastIndex = 0;
  for (let m = TOKEN.exec(text); m && m[0] !== ''; m = TOKEN.exec(text)) {
    const [, str, num, punct] = m;
    const inReading = open.length === (topArray ? 2 : 1) && open[open.length - 1] === '{';
    if (punct === '{' || punct === '[') {
      if (open.length === 0 && punct === '[') topArray = true;
      open.push(punct);
      expectKey = punct === '{';
      key = undefined;
    } else if (punct === '}' || punct === ']') {
      open.pop();
      key = undefined;
    } else if (punct === ',') {
      if (topArray && open.length === 1) element++;
      expectKey = inReading;
      key = undefined;
    } else if (punct !== ':' && inReading) {
      if (str !== undefined && expectKey) {
        key = JSON.parse(str) as string;
        expectKey = false;
      } else {
        if (num !== undefined && key !== undefined) (items[topArray ? element : 0] ??= new Map()).set(key, num);
        key = undefined;
      }
    }
  }
  return items;
}
/** A literal that JSON.parse may have rounded to 0 although it is not zero (1e-400). */
const MAY_UNDERFLOW = /[eE]-\d{3}|0{200}/;
const isNonZeroLiteral = (literal: string) => /[1-9]/.test(literal.split(/[eE]/)[0]);

/** A message's number literals, read from its text only when a reason or a zero needs them (rarely). */
class Literals {
  private items: Map<string, string>[] | undefined;
  private underflow: boolean | undefined;
  constructor(private readonly text: string) {}
  /** The field as sent: its number literal (1e400, not Infinity) or else its JSON. */
  sent(index: number, o: Record<string, unknown>, field: string): string {
    return (this.items ??= numberLiterals(this.text))[index]?.get(field) ?? show(o[field]);
  }
  /** True when a value JSON.parse read as 0 was sent as a non-zero number. */
  underflowed(index: number, o: Record<string, unknown>): boolean {
    return (this.underflow ??= MAY_UNDERFLOW.test(this.text)) && isNonZeroLiteral(this.sent(index, o, 'value'));
  }
}

/** Why a reading's metadata cannot be kept, if it cannot. */
function metadataProblem(metadata: Record<string, unknown>): string | undefined {
  let bad: string | undefined;
  let huge: string | undefined;
  let text: string;
  try {
    text = JSON.stringify(metadata, (key, value) => {
      if (bad === undefined && (NOT_JSONB.test(key) || (typeof value === 'string' && NOT_JSONB.test(value)))) bad = key;
      // JSON would write null: refuse rather than store something else than was sent.
      if (huge === undefined && typeof value === 'number' && !Number.isFinite(value)) huge = key;
      return value;
    });
  } catch {
    return 'metadata (the fields beyond the contract) is nested too deeply to be stored';
  }
  if (bad !== undefined) return `field ${show(bad)} holds U+0000 or an unpaired surrogate, which cannot be stored`;
  if (huge !== undefined) return `field ${show(huge)} holds a number beyond what a 64-bit float holds, which cannot be stored`;
  const bytes = Buffer.byteLength(text);
  if (bytes > MAX_METADATA_BYTES) {
    return `metadata (the fields beyond the contract and the quality word) is ${bytes} bytes, more than the ${MAX_METADATA_BYTES} allowed`;
  }
  return undefined;
}

const iso = (ms: number) => new Date(ms).toISOString();
const FLOOR_TEXT = iso(EARLIEST_TIME);

const acceptedTimes = (ctx: ParseContext) =>
  `accepted: ${ctx.maxAgeMs ? `${ctx.maxAgeMs / 86_400_000} days before arrival, and not before ${FLOOR_TEXT}` : `from ${FLOOR_TEXT}`}` +
  ` to ${ctx.maxFutureMs / 1000} s after arrival`;

/** The time a payload's timestamp names, or why it is refused (what follows "timestamp <as sent>"). */
function parseTime(raw: unknown, ctx: ParseContext): Date | string {
  let ms: number;
  if (typeof raw === 'number') {
    if (!Number.isFinite(raw)) return 'is not a finite number';
    // Seconds or milliseconds since the epoch: anything below 1e11 (the year 5138 in seconds) is seconds.
    ms = raw < 1e11 ? raw * 1000 : raw;
  } else if (typeof raw === 'string') {
    if (!/^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}/.test(raw)) return 'is not an ISO 8601 date-time';
    ms = Date.parse(raw);
    if (Number.isNaN(ms)) return 'is not a valid date-time';
  } else {
    return 'must be an ISO 8601 string or epoch seconds or milliseconds';
  }
  const time = new Date(ms);
  // A Date holds ±8.64e15 ms (the year 275760); beyond, it is invalid and has no ISO form to store.
  if (Number.isNaN(time.getTime())) return `is beyond any time a clock can hold (${acceptedTimes(ctx)})`;
  if (ms - ctx.receivedAt.getTime() > ctx.maxFutureMs) {
    return `(${time.toISOString()}) is more than ${ctx.maxFutureMs / 1000} s in the future (INGEST_MAX_FUTURE_SECONDS; ${acceptedTimes(ctx)})`;
  }
  if (ms < EARLIEST_TIME) return `(${time.toISOString()}) is before the year 2000 (${acceptedTimes(ctx)})`;
  if (ctx.maxAgeMs && ctx.receivedAt.getTime() - ms > ctx.maxAgeMs) {
    return `(${time.toISOString()}) is more than ${ctx.maxAgeMs / 86_400_000} days old (INGEST_MAX_AGE_DAYS; ${acceptedTimes(ctx)})`;
  }
  return time;
}

export function parseMqttMessage(topic: string, payload: Buffer, ctx: ParseContext): ParseResult {
  const result: ParseResult = { readings: [], deadLetters: [], missed: false };
  let text: string | undefined; // decoded only once the message is known to be within its size
  // A dead letter of the whole message carries its bytes too, so the sink keeps their true size and hash.
  const reject = (reason: string, tenantId?: string, item?: string) => result.deadLetters.push(item === undefined
    ? { source: 'MQTT', topic, payload: text === undefined ? head(payload) : clip(text), rawPayload: payload, reason, tenantId }
    : { source: 'MQTT', topic, payload: item, reason, tenantId });

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
  if (payload.length > ctx.maxMessageBytes) {
    reject(`payload is ${payload.length} bytes, more than the ${ctx.maxMessageBytes} allowed (INGEST_MAX_MESSAGE_BYTES): ` +
      'not read; send fewer readings per message', facility.tenantId);
    return result;
  }

  text = payload.toString('utf8');
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch (error) {
    reject(`payload is not valid JSON: ${(error as Error).message}`, facility.tenantId);
    return result;
  }
  const items = Array.isArray(body) ? body : [body];
  if (items.length === 0) {
    reject('payload is an empty array', facility.tenantId);
    return result;
  }
  if (items.length > ctx.maxReadingsPerMessage) {
    reject(`payload holds ${items.length} readings, more than the ${ctx.maxReadingsPerMessage} allowed per message ` +
      '(INGEST_MAX_READINGS_PER_MESSAGE): none stored; send fewer readings per message', facility.tenantId);
    return result;
  }
  const literals = new Literals(text);

  items.forEach((item, index) => {
    const where = Array.isArray(body) ? `item ${index}: ` : '';
    const bad = (reason: string) => {
      const itemText = Array.isArray(body) ? (stringifyOrNull(item) ?? show(item)) : undefined;
      reject(where + reason, facility.tenantId, itemText === undefined ? undefined : clip(itemText));
    };
    if (typeof item !== 'object' || item === null || Array.isArray(item)) return bad('reading must be a JSON object');
    const o = item as Record<string, unknown>;

    const sensorType = o.sensorType ?? topicSensorType;
    if (typeof sensorType !== 'string') return bad(`sensorType ${show(o.sensorType)} must be a string`);
    if (sensorType !== topicSensorType && sensorType.toUpperCase() !== topicSensorType.toUpperCase()) {
      return bad(`sensorType ${show(sensorType)} does not match topic sensor ${show(topicSensorType)}`);
    }

    if (!('value' in o) || o.value === null) return bad('value is missing');
    if (typeof o.value !== 'number') return bad(`value ${show(o.value)} must be a number`);
    if (!Number.isFinite(o.value)) {
      return bad(`value ${literals.sent(index, o, 'value')} is beyond what a 64-bit float holds (accepted: ${VALUE_RANGE_TEXT})`);
    }
    if (o.value === 0 && literals.underflowed(index, o)) {
      return bad(`value ${literals.sent(index, o, 'value')} is not 0 but too small to store (accepted: ${VALUE_RANGE_TEXT})`);
    }

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

    let metadata = fieldsBeyondContract(o);
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
          if (metadata === NO_FIELDS) metadata = {};
          metadata.originalValue = o.value;
          metadata.originalUnit = o.unit;
        }
      }
    }
    // The range holds for the stored value, in the channel's unit.
    if (!inValueRange(value)) {
      const stored = value === o.value ? '' : ` (${value} ${channel.unit} in the channel's unit)`;
      return bad(`value ${literals.sent(index, o, 'value')}${stored} is outside the accepted range: ${VALUE_RANGE_TEXT}`);
    }

    let time = ctx.receivedAt;
    if (o.timestamp !== undefined && o.timestamp !== null) {
      const parsed = parseTime(o.timestamp, ctx);
      if (typeof parsed === 'string') return bad(`timestamp ${literals.sent(index, o, 'timestamp')} ${parsed}`);
      time = parsed;
    }

    // A known word maps to its quality; an unknown one (or a number, or anything else) is stored as
    // UNCERTAIN. Either way a word other than the stored quality is kept in metadata.quality.
    let quality: Quality = 'GOOD';
    if (o.quality !== undefined && o.quality !== null) {
      quality = (typeof o.quality === 'string' && ctx.registry.quality(o.quality)) || 'UNCERTAIN';
      if (typeof o.quality !== 'string' || o.quality.trim().toUpperCase() !== quality) {
        if (metadata === NO_FIELDS) metadata = {};
        metadata.quality = o.quality;
      }
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

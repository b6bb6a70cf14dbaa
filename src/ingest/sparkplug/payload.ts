// Sparkplug B payloads, decoded with the protobuf code of the installed `sparkplug-payload` package
// (Eclipse Tahu). Not with its decodePayload(): that reads a metric's value by the datatype the
// metric carries, and Sparkplug says DATA metrics should not carry one (the birth certificate gave
// it), so alias-only DATA from a compliant edge node would decode as null. Here the value is read
// from whichever protobuf value field is set, and typed with the birth's datatype when the metric
// has none.
import { org } from 'sparkplug-payload/lib/sparkplugPayloadProto';

const Payload = org.eclipse.tahu.protobuf.Payload;
type ProtoMetric = org.eclipse.tahu.protobuf.Payload.IMetric;
type ProtoProperty = org.eclipse.tahu.protobuf.Payload.IPropertyValue;

/** Sparkplug datatype codes (Sparkplug B 3.0, section 6.4.16). */
export const DataType = {
  Int8: 1, Int16: 2, Int32: 3, Int64: 4, UInt8: 5, UInt16: 6, UInt32: 7, UInt64: 8, Float: 9, Double: 10,
  Boolean: 11, String: 12, DateTime: 13, Text: 14, UUID: 15, DataSet: 16, Bytes: 17, File: 18, Template: 19,
} as const;
const TYPE_NAMES: Record<number, string> = Object.fromEntries(Object.entries(DataType).map(([k, v]) => [v, k]));
export const dataTypeName = (code: number | undefined) => (code ? TYPE_NAMES[code] ?? `datatype ${code}` : 'no datatype');

export interface SparkplugMetric {
  name?: string;
  alias?: number;
  /** As the metric carries it (births always; DATA usually not). */
  datatype?: number;
  /** Milliseconds since the epoch. */
  timestamp?: number;
  isNull: boolean;
  isHistorical: boolean;
  proto: ProtoMetric;
}

export interface SparkplugPayload {
  timestamp?: number;
  seq?: number;
  metrics: SparkplugMetric[];
}

interface LongLike { toNumber(): number; toSigned?(): LongLike; low: number; high: number; unsigned?: boolean }

/** A protobuf uint64 (a Long, or a number when small) as a number. */
export function toNumber(v: number | LongLike | null | undefined, signed = false): number | undefined {
  if (v === null || v === undefined) return undefined;
  if (typeof v === 'number') return v;
  if (signed && v.toSigned) return v.toSigned().toNumber();
  if (typeof v.toNumber === 'function') return v.toNumber();
  return v.high * 4294967296 + (v.low >>> 0);
}

const has = (o: object, key: string) => Object.prototype.hasOwnProperty.call(o, key);

export function decodeSparkplugPayload(bytes: Uint8Array): SparkplugPayload | { problem: string } {
  let p: org.eclipse.tahu.protobuf.Payload;
  try {
    p = Payload.decode(bytes);
  } catch (error) {
    return { problem: `payload is not a Sparkplug B protobuf payload (${(error as Error).message})` };
  }
  const metrics: SparkplugMetric[] = [];
  for (const m of p.metrics ?? []) {
    metrics.push({
      name: has(m, 'name') ? (m.name ?? undefined) : undefined,
      alias: has(m, 'alias') ? toNumber(m.alias as number | LongLike) : undefined,
      datatype: has(m, 'datatype') && m.datatype ? m.datatype : undefined,
      timestamp: has(m, 'timestamp') ? toNumber(m.timestamp as number | LongLike) : undefined,
      isNull: m.isNull === true,
      isHistorical: m.isHistorical === true,
      proto: m,
    });
  }
  return {
    timestamp: has(p, 'timestamp') ? toNumber(p.timestamp as number | LongLike) : undefined,
    seq: has(p, 'seq') ? toNumber(p.seq as number | LongLike) : undefined,
    metrics,
  };
}

const signExtend = (v: number, bits: number) => (v << (32 - bits)) >> (32 - bits);

/**
 * The metric's value as a number for a reading (booleans 1 and 0), or why it is not one.
 * `datatype` is the metric's own or its birth's.
 */
export function numericValue(m: ProtoMetric & { value?: string }, datatype: number | undefined): number | string {
  const field = m.value; // the protobuf oneof: which value field is set
  switch (field) {
    case 'intValue': {
      const v = m.intValue ?? 0;
      if (datatype === DataType.Int8) return signExtend(v, 8);
      if (datatype === DataType.Int16) return signExtend(v, 16);
      if (datatype === DataType.Int32) return v | 0;
      return v >>> 0;
    }
    case 'longValue': {
      if (datatype === DataType.DateTime) return 'it is a DateTime, not a measured value';
      return toNumber(m.longValue as number | LongLike, datatype === DataType.Int64)!;
    }
    case 'floatValue': return m.floatValue!;
    case 'doubleValue': return m.doubleValue!;
    case 'booleanValue': return m.booleanValue ? 1 : 0;
    case 'stringValue': return `it is text (${dataTypeName(datatype ?? DataType.String)}), not a number`;
    case undefined: return 'it carries no value';
    default: return `it is a ${dataTypeName(datatype)} value, not a number`;
  }
}

/** A property's value (number, boolean or text), or undefined when absent or not simple. */
function propertyValue(p: ProtoProperty & { value?: string }): number | boolean | string | undefined {
  if (p.isNull) return undefined;
  switch (p.value) {
    case 'intValue': return p.type === DataType.Int32 || p.type === DataType.Int16 || p.type === DataType.Int8 ? (p.intValue ?? 0) | 0 : (p.intValue ?? 0) >>> 0;
    case 'longValue': return toNumber(p.longValue as number | LongLike);
    case 'floatValue': return p.floatValue ?? undefined;
    case 'doubleValue': return p.doubleValue ?? undefined;
    case 'booleanValue': return p.booleanValue ?? undefined;
    case 'stringValue': return p.stringValue ?? undefined;
    default: return undefined;
  }
}

/** A metric property by name, any case (Ignition sends "Quality", others "quality"). */
export function metricProperty(m: ProtoMetric, name: string): number | boolean | string | undefined {
  const keys = m.properties?.keys;
  if (!keys) return undefined;
  const wanted = name.toLowerCase();
  const i = keys.findIndex((k) => k.toLowerCase() === wanted);
  return i < 0 ? undefined : propertyValue((m.properties!.values ?? [])[i] ?? {});
}

/** The bdSeq metric of an NBIRTH or NDEATH (which MQTT session of the edge node it belongs to). */
export function bdSeqOf(p: SparkplugPayload): number | undefined {
  const m = p.metrics.find((x) => x.name === 'bdSeq');
  if (!m) return undefined;
  const v = numericValue(m.proto, m.datatype ?? DataType.UInt64);
  return typeof v === 'number' ? v : undefined;
}

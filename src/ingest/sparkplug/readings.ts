// Metrics of a BIRTH or DATA message -> Readings for the registry device the message is from.
// A metric is a reading when a channel of the device has its name as protocol_address: the value
// (numbers; booleans as 1 and 0) times the channel's scale plus its offset, at the metric's
// timestamp (else the payload's, else arrival), with the channel's sensor type and unit. Metrics
// with is_null are not readings. A Sparkplug "Quality" property maps to the stored quality.
import type { Quality, Reading } from '../reading';
import type { RegistryCache } from '../registry';
import type { MappedDevice } from './directory';
import type { BirthCertificate } from './node-state';
import { metricProperty, numericValue, SparkplugMetric } from './payload';

/** Metrics every edge node has that are not measurements: never reported as unmapped. */
const CONTROL_METRIC = /^(bdSeq$|Node Control\/|Device Control\/|Properties\/|Node Info\/|Device Info\/)/;

export interface MetricsOutcome {
  readings: Reading[];
  /** Aliases neither the message nor the birth certificate names (a rebirth is due). */
  unknownAliases: number[];
  /** Metric names no channel of the device has (control metrics excluded). */
  unmapped: string[];
  /** Mapped metrics that cannot be readings, with why. */
  refused: string[];
  nulls: number;
}

/**
 * The stored quality of a Sparkplug quality code: OPC DA codes below 256 (192 and above good,
 * 64-191 uncertain, below 64 bad), larger ones read as OPC UA / Ignition 8 codes by their top two
 * bits (00 good, 01 uncertain, 1x bad); a text word through iot.quality_words.
 */
export function sparkplugQuality(code: number | boolean | string | undefined, registry: RegistryCache): Quality | undefined {
  if (code === undefined || typeof code === 'boolean') return undefined;
  if (typeof code === 'string') return registry.quality(code);
  if (!Number.isFinite(code) || code < 0) return undefined;
  if (code < 256) return code >= 192 ? 'GOOD' : code >= 64 ? 'UNCERTAIN' : 'BAD';
  const level = Math.floor(code / 2 ** 30) % 4;
  return level === 0 ? 'GOOD' : level === 1 ? 'UNCERTAIN' : 'BAD';
}

export function metricsToReadings(metrics: SparkplugMetric[], certificate: BirthCertificate | undefined,
                                  device: MappedDevice, payloadTime: number | undefined, receivedAt: number,
                                  registry: RegistryCache): MetricsOutcome {
  const out: MetricsOutcome = { readings: [], unknownAliases: [], unmapped: [], refused: [], nulls: 0 };
  for (const m of metrics) {
    const definition = certificate ? certificate.resolve(m) : m.name !== undefined ? { name: m.name, datatype: m.datatype } : undefined;
    if (!definition) {
      if (m.alias !== undefined) out.unknownAliases.push(m.alias);
      continue;
    }
    const datatype = m.datatype ?? definition.datatype;
    const channel = device.channels.get(definition.name);
    if (!channel) {
      if (!CONTROL_METRIC.test(definition.name)) out.unmapped.push(definition.name);
      continue;
    }
    if (m.isNull) {
      out.nulls++;
      continue;
    }
    const value = numericValue(m.proto, datatype);
    if (typeof value === 'string') {
      out.refused.push(`metric ${JSON.stringify(definition.name)} (channel ${channel.sensorType}): ${value}`);
      continue;
    }
    const qualityCode = metricProperty(m.proto, 'Quality');
    const quality = sparkplugQuality(qualityCode, registry) ?? 'GOOD';
    const metadata: Record<string, unknown> = {};
    if (qualityCode !== undefined && qualityCode !== 192) metadata.sparkplugQuality = qualityCode;
    if (m.isHistorical) metadata.sparkplugHistorical = true;
    out.readings.push({
      time: new Date(m.timestamp ?? payloadTime ?? receivedAt),
      tenantId: channel.tenantId, deviceId: channel.deviceId, sensorType: channel.sensorType,
      value: value * channel.scale + channel.valueOffset, unit: channel.unit, quality,
      metadata: Object.keys(metadata).length ? metadata : null,
    });
  }
  return out;
}

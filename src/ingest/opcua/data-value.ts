// One monitored-item notification (a DataValue) -> one Reading, or a dead letter saying why not.
//  - time: the server's source timestamp (when the value was measured); without one, the server
//    timestamp; without either, the moment it arrived. metadata.timestamp says which when not the source.
//  - quality: from the status code's severity (Good -> GOOD, Uncertain -> UNCERTAIN, Bad -> BAD);
//    a Bad or Uncertain value is stored as such, its status name in metadata.opcuaStatus.
//  - value: numbers and booleans (1/0), Int64/UInt64 as numbers, then value * scale + value_offset.
import type { DataValue } from 'node-opcua-client';
import type { ChannelInfo } from '../registry';
import type { DeadLetter, Quality, Reading } from '../reading';

export function qualityOf(statusValue: number): Quality {
  const severity = statusValue >>> 30; // OPC UA status codes: top two bits, 00 good, 01 uncertain, 1x bad
  return severity === 0 ? 'GOOD' : severity === 1 ? 'UNCERTAIN' : 'BAD';
}

function numberOf(v: unknown): number | undefined {
  if (typeof v === 'number') return v;
  if (typeof v === 'boolean') return v ? 1 : 0;
  if (typeof v === 'bigint') return Number(v);
  // node-opcua gives Int64/UInt64 as [high, low] 32-bit words.
  if (Array.isArray(v) && v.length === 2 && v.every((x) => typeof x === 'number')) return v[0] * 2 ** 32 + v[1];
  return undefined;
}

export function readingFromDataValue(dv: DataValue, channel: ChannelInfo, receivedAt: Date): Reading | DeadLetter {
  const status = dv.statusCode;
  const quality = qualityOf(status.value);
  const raw = dv.value?.value;
  const n = numberOf(raw);
  const where = `device ${channel.deviceCode} ${channel.sensorType} (${channel.protocolAddress})`;
  if (n === undefined || !Number.isFinite(n)) {
    return {
      source: 'OPC_UA', tenantId: channel.tenantId, sourceKey: `opcua/${channel.deviceCode}`, reasonClass: 'value',
      topic: `opcua/${channel.deviceCode}/${channel.protocolAddress}`,
      payload: JSON.stringify({ status: status.name, value: raw === undefined || raw === null ? null : String(raw).slice(0, 200),
        sourceTimestamp: dv.sourceTimestamp?.toISOString() ?? null }),
      reason: `${where}: status ${status.name} with ${raw === null || raw === undefined ? 'no value' : `a value that is not a finite number (${typeof raw})`}`,
    };
  }
  const metadata: Record<string, unknown> = {};
  if (quality !== 'GOOD' || status.name !== 'Good') metadata.opcuaStatus = status.name;
  let time = dv.sourceTimestamp;
  if (!time) {
    time = dv.serverTimestamp ?? receivedAt;
    metadata.timestamp = dv.serverTimestamp ? 'server' : 'receipt';
  }
  return {
    time, tenantId: channel.tenantId, deviceId: channel.deviceId, sensorType: channel.sensorType.toUpperCase(),
    value: n * channel.scale + channel.valueOffset, unit: channel.unit, quality,
    metadata: Object.keys(metadata).length ? metadata : null,
  };
}

export const isReading = (r: Reading | DeadLetter): r is Reading => (r as Reading).deviceId !== undefined;

// What each subscription listens to and sends: its channel kind, the arguments checked at subscribe,
// which notices it wants (by the payload's routing keys, no query) and the GraphQL objects a notice
// becomes (payload shapes: /work/briefs/s3/live-events-contract.md, sql/600_live_events.sql).
import type { ChannelKind } from '../../notify-channels';
import type { ArgumentKind } from './arguments';
import { graphqlRow, num, str, type RowShape } from './payloads';
import type { Notice } from './topics';

export type Args = Record<string, string | undefined>;

/** One subscription field: its channel, the arguments to check, which notices it wants, and their payloads. */
export interface LiveField {
  kind: ChannelKind;
  args?: Record<string, { kind: ArgumentKind; optional?: boolean }>;
  wants?(notice: Notice, args: Args): boolean;
  /** The GraphQL payloads of one notice; computed once per notice whatever the number of subscribers. */
  payloads(notice: Notice): unknown[];
}

/** The row types served from payloads, by GraphQL type name -> iot relation. */
export const ROW_TYPES = {
  EquipmentHealthScore: 'equipment_health_scores',
  PredictiveMaintenanceAlert: 'predictive_maintenance_alerts',
  SensorReading: 'sensor_readings',
  EquipmentEvent: 'equipment_events',
} as const;
export type RowTypeName = keyof typeof ROW_TYPES;

const obj = (v: unknown): Record<string, unknown> => (v && typeof v === 'object' ? (v as Record<string, unknown>) : {});
const same = (a: unknown, b: string | undefined) => b !== undefined && a != null && String(a).toLowerCase() === b;

export function liveFields(shapes: Record<RowTypeName, RowShape>): Record<string, LiveField> {
  const row = (type: RowTypeName, value: unknown) => graphqlRow(shapes[type], value);
  const isCritical = (n: Notice) => n.becameCritical === true || (n.becameCritical === undefined && n.critical === true && n.change === 'CREATED');
  return {
    telemetryIngested: { kind: 'iot_readings', payloads: (n) => [n] },
    equipmentEventRaised: {
      kind: 'iot_events',
      payloads: (n) => {
        // The old flat shape (eventTimestamp at top level) or the live-events shape ({event: row}).
        if (!n.event) return [n];
        const e = row('EquipmentEvent', n.event);
        return [{ ...e, tenantId: e.tenantId ?? n.tenantId }];
      },
    },
    equipmentHealthScoreUpdated: {
      kind: 'iot_health',
      args: { workCenterId: { kind: 'workCenter' } },
      wants: (n, a) => same(n.workCenterId, a.workCenterId),
      payloads: (n) => [row('EquipmentHealthScore', n.score)],
    },
    equipmentHealthStatusChanged: {
      kind: 'iot_health',
      args: { facilityId: { kind: 'facility' } },
      wants: (n, a) => n.statusChanged === true && same(n.facilityId, a.facilityId),
      payloads: (n) => {
        const s = obj(n.score);
        return [{
          healthScoreId: s.id, workCenterId: n.workCenterId ?? s.work_center_id, facilityId: n.facilityId ?? null,
          previousStatus: str(n.previousStatus), newStatus: s.health_status, overallHealthScore: num(s.overall_health_score),
          scoreTimestamp: s.score_timestamp, trendDirection: str(s.trend_direction), recommendedAction: str(s.recommended_action),
          score: row('EquipmentHealthScore', n.score),
        }];
      },
    },
    equipmentAnomalyDetected: {
      kind: 'iot_events',
      args: { facilityId: { kind: 'facility' } },
      wants: (n, a) => obj(n.event).event_type === 'ANOMALY_DETECTED' && same(n.facilityId, a.facilityId),
      payloads: (n) => {
        const e = obj(n.event);
        const meta = obj(e.metadata);
        return [{
          eventId: e.id, eventTimestamp: e.event_timestamp, facilityId: n.facilityId ?? null, workCenterId: e.work_center_id,
          iotDeviceId: e.iot_device_id ?? null, sensorType: str(e.sensor_type), severity: e.severity, eventCode: str(e.event_code),
          description: str(e.event_description), value: num(meta.value), zScore: num(meta.zScore), metadata: e.metadata ?? null,
        }];
      },
    },
    predictiveMaintenanceAlertCreated: {
      kind: 'iot_alerts',
      args: { facilityId: { kind: 'facility' } },
      wants: (n, a) => n.change === 'CREATED' && same(n.facilityId, a.facilityId),
      payloads: (n) => [row('PredictiveMaintenanceAlert', n.alert)],
    },
    criticalAlertTriggered: {
      kind: 'iot_alerts',
      args: { tenantId: { kind: 'tenant' } },
      wants: (n) => isCritical(n),
      payloads: (n) => [row('PredictiveMaintenanceAlert', n.alert)],
    },
    predictiveMaintenanceAlertChanged: {
      kind: 'iot_alerts',
      args: { facilityId: { kind: 'facility', optional: true } },
      wants: (n, a) => a.facilityId === undefined || same(n.facilityId, a.facilityId),
      payloads: (n) => {
        const alert = row('PredictiveMaintenanceAlert', n.alert);
        return [{
          change: n.change, previousStatus: str(n.previousStatus), status: alert.status, critical: n.critical === true,
          becameCritical: isCritical(n), alertId: alert.id, workCenterId: n.workCenterId ?? alert.workCenterId,
          facilityId: n.facilityId ?? null, alert,
        }];
      },
    },
    sensorReadingUpdated: {
      kind: 'iot_live_readings',
      args: { iotDeviceId: { kind: 'device' } },
      wants: (n, a) => same(n.deviceId, a.iotDeviceId),
      payloads: (n) => (Array.isArray(n.readings) ? n.readings : []).map((r) => row('SensorReading', r)),
    },
    equipmentEventTriggered: {
      kind: 'iot_events',
      args: { workCenterId: { kind: 'workCenter' } },
      wants: (n, a) => n.event !== undefined && same(n.workCenterId, a.workCenterId),
      payloads: (n) => [row('EquipmentEvent', n.event)],
    },
    spcNewMeasurement: {
      kind: 'iot_spc',
      args: { parameterCode: { kind: 'parameterCode' } },
      wants: (n, a) => n.kind === 'measurement' && n.parameterCode === a.parameterCode,
      payloads: (n) => (Array.isArray(n.points) ? n.points : []).map((raw) => {
        const p = obj(raw);
        return {
          parameterCode: n.parameterCode, timestamp: p.timestamp, value: num(p.value), centerLine: num(p.centerLine),
          upperControlLimit: num(p.upperControlLimit), lowerControlLimit: num(p.lowerControlLimit), sigma: num(p.sigma),
          zone: str(p.zone), outOfControl: p.outOfControl === true, controlLimitId: n.controlLimitId ?? null,
          workCenterId: n.workCenterId ?? null, facilityId: n.facilityId ?? null, iotDeviceId: n.deviceId ?? null,
        };
      }),
    },
    spcNewAlert: {
      kind: 'iot_spc',
      args: { tenantId: { kind: 'tenant' }, facilityId: { kind: 'facility', optional: true } },
      wants: (n, a) => n.kind === 'alert' && (a.facilityId === undefined || same(n.facilityId, a.facilityId)),
      payloads: (n) => {
        const s = obj(n.alert);
        return [{
          id: s.id, rule: s.rule, severity: s.severity, detectedAt: s.detected_at, value: num(s.value), details: s.details ?? null,
          createdAt: s.created_at ?? null, parameterCode: n.parameterCode ?? null, workCenterId: n.workCenterId ?? s.work_center_id,
          facilityId: n.facilityId ?? null, iotDeviceId: n.deviceId ?? null, channelId: s.channel_id ?? null,
          controlLimitId: s.control_limit_id ?? n.controlLimitId ?? null,
        }];
      },
    },
  };
}


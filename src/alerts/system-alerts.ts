// The seed's system alerts raised from TypeScript (MQTT broker connection lost, health calculation
// failed). They are rows of iot.system_alerts, routed by SQL like every other alert; raising one
// that is open already only counts it again.
import type { Pool, PoolClient } from 'pg';

export type SystemAlertType = 'HEALTH_CRITICAL' | 'MQTT_BROKER_CONNECTION_LOST' | 'HEALTH_CALCULATION_FAILED' | 'HEARTBEAT_TIMEOUT';

export interface SystemAlertSubject {
  alertType: SystemAlertType;
  /** Omitted: every tenant concerned (with active MQTT devices, for the broker; with active work centers otherwise). */
  tenantId?: string | null;
  workCenterId?: string | null;
  deviceId?: string | null;
}

type Queryable = Pick<Pool | PoolClient, 'query'>;

/** Raises (or counts again) the open alert for the subject; returns how many tenants' alerts were raised or counted. */
export async function raiseSystemAlert(db: Queryable, alert: SystemAlertSubject & { message: string; details?: Record<string, unknown> }): Promise<number> {
  const { rows } = await db.query<{ n: number }>(
    `select iot_private.raise_system_alert($1, $2, $3, $4, $5, $6) as n`,
    [alert.alertType, alert.tenantId ?? null, alert.workCenterId ?? null, alert.deviceId ?? null, alert.message,
      JSON.stringify(alert.details ?? {})]);
  return rows[0].n;
}

/** Resolves the open alerts of the subject (tenantId omitted: of every tenant); returns how many. */
export async function resolveSystemAlerts(db: Queryable, subject: SystemAlertSubject): Promise<number> {
  const { rows } = await db.query<{ n: number }>(`select iot_private.resolve_system_alerts($1, $2, $3, $4) as n`,
    [subject.alertType, subject.tenantId ?? null, subject.workCenterId ?? null, subject.deviceId ?? null]);
  return rows[0].n;
}

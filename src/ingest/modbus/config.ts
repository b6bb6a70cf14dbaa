// A MODBUS device's connection_config (iot.iot_devices). host, port, unitId and pollIntervalMs are
// checked by the database when the device is saved (iot_private.connection_config_problem); the
// poller's own keys (timeoutMs, faultThreshold, maxGap) are checked here and by
// sql/142_modbus_addresses.sql.

export interface ModbusDeviceConfig {
  host: string;
  port: number;
  unitId: number;
  pollIntervalMs: number;
  /** How long one request (and a connection attempt) may wait for its answer. */
  timeoutMs: number;
  /** Failed polls in a row before an equipment event is raised. */
  faultThreshold: number;
  /** Unread registers/bits one request may span to merge two reads (0: only adjacent ones). */
  maxGap: number;
}

export interface ModbusDefaults {
  pollIntervalMs: number;
  timeoutMs: number;
  faultThreshold: number;
}

export const MODBUS_DEFAULTS: ModbusDefaults = { pollIntervalMs: 1000, timeoutMs: 1000, faultThreshold: 3 };

const isInt = (v: unknown, lo: number, hi: number) => typeof v === 'number' && Number.isInteger(v) && v >= lo && v <= hi;

/** The device's settings with defaults filled in, or a sentence naming the field that is wrong. */
export function modbusDeviceConfig(raw: Record<string, unknown> | null | undefined, defaults: ModbusDefaults = MODBUS_DEFAULTS): ModbusDeviceConfig | string {
  const c = raw ?? {};
  if (typeof c.host !== 'string' || c.host.trim() === '') return 'MODBUS connection_config.host must be a non-empty string';
  if (c.port !== undefined && !isInt(c.port, 1, 65535)) return 'MODBUS connection_config.port must be an integer from 1 to 65535';
  if (c.unitId !== undefined && !isInt(c.unitId, 0, 255)) return 'MODBUS connection_config.unitId must be an integer from 0 to 255';
  for (const key of ['pollIntervalMs', 'timeoutMs'] as const) {
    const v = c[key];
    if (v !== undefined && !(typeof v === 'number' && v > 0 && v <= 86_400_000)) return `MODBUS connection_config.${key} must be a positive number of milliseconds`;
  }
  if (c.faultThreshold !== undefined && !isInt(c.faultThreshold, 1, 1000)) return 'MODBUS connection_config.faultThreshold must be an integer from 1 to 1000';
  if (c.maxGap !== undefined && !isInt(c.maxGap, 0, 124)) return 'MODBUS connection_config.maxGap must be an integer from 0 to 124';
  return {
    host: c.host.trim(),
    port: (c.port as number | undefined) ?? 502,
    unitId: (c.unitId as number | undefined) ?? 1,
    pollIntervalMs: (c.pollIntervalMs as number | undefined) ?? defaults.pollIntervalMs,
    timeoutMs: (c.timeoutMs as number | undefined) ?? defaults.timeoutMs,
    faultThreshold: (c.faultThreshold as number | undefined) ?? defaults.faultThreshold,
    maxGap: (c.maxGap as number | undefined) ?? 0,
  };
}

// A device's OPC UA settings, read from iot.iot_devices.connection_config (the database checks
// endpointUrl, securityMode and samplingIntervalMs: iot_private.connection_config_problem; the rest
// is checked here and a problem is reported as the device's equipment event, not a crash).
// Passwords are never in the database: connection_config names the environment variable that holds
// one (passwordEnv), because the registry is readable through the API by every operator and analyst
// of the tenant, and backups and logs copy it. The ingestor reads the variable when it connects.
import { MessageSecurityMode, SecurityPolicy } from 'node-opcua-client';

export type SecurityModeName = 'None' | 'Sign' | 'SignAndEncrypt';

export interface OpcuaDeviceConfig {
  endpointUrl: string;
  securityMode: SecurityModeName;
  /** A node-opcua SecurityPolicy name: None, Basic256Sha256, Aes128_Sha256_RsaOaep, Aes256_Sha256_RsaPss. */
  securityPolicy: string;
  /** 0 asks the server for every change (exception-based where it supports it; it revises to what it can do). */
  samplingIntervalMs: number;
  publishingIntervalMs: number;
  queueSize: number;
  deadband: { type: 'None' | 'Absolute' | 'Percent'; value: number };
  username?: string;
  passwordEnv?: string;
}

/** Policies that need RSA PKCS#1 v1.5 (Basic128Rsa15, Basic256) fail on Node 20 (CVE-2023-46809): not offered. */
const POLICIES = ['None', 'Basic256Sha256', 'Aes128_Sha256_RsaOaep', 'Aes256_Sha256_RsaPss'] as const;

const DEFAULTS = { samplingIntervalMs: 0, publishingIntervalMs: 250, queueSize: 100 };

/** The settings, or what is wrong with them (naming the field, as the database's IOT01 does). */
export function parseDeviceConfig(raw: Record<string, unknown>): OpcuaDeviceConfig | string {
  const c = raw ?? {};
  if (typeof c.endpointUrl !== 'string' || !/^opc\.tcp:\/\/[^/\s]+/.test(c.endpointUrl)) {
    return 'connection_config.endpointUrl must be a string like opc.tcp://host:4840/path';
  }
  const mode = (c.securityMode ?? 'None') as SecurityModeName;
  if (!['None', 'Sign', 'SignAndEncrypt'].includes(mode)) return 'connection_config.securityMode must be None, Sign or SignAndEncrypt';
  const policy = String(c.securityPolicy ?? (mode === 'None' ? 'None' : 'Basic256Sha256'));
  if (!(POLICIES as readonly string[]).includes(policy)) {
    return `connection_config.securityPolicy must be one of ${POLICIES.join(', ')} (Basic128Rsa15 and Basic256 need RSA PKCS#1 v1.5, refused by Node 20)`;
  }
  if (mode === 'None' && policy !== 'None') return 'connection_config.securityPolicy must be None when securityMode is None';
  if (mode !== 'None' && policy === 'None') return `connection_config.securityPolicy must name a policy when securityMode is ${mode}`;
  const num = (field: string, min: number, fallback: number): number | string => {
    const v = c[field];
    if (v === undefined) return fallback;
    return typeof v === 'number' && Number.isFinite(v) && v >= min ? v : `connection_config.${field} must be a number >= ${min}`;
  };
  const sampling = num('samplingIntervalMs', 0, DEFAULTS.samplingIntervalMs);
  const publishing = num('publishingIntervalMs', 10, DEFAULTS.publishingIntervalMs);
  const queue = num('queueSize', 1, DEFAULTS.queueSize);
  for (const v of [sampling, publishing, queue]) if (typeof v === 'string') return v;
  let deadband: OpcuaDeviceConfig['deadband'] = { type: 'None', value: 0 };
  if (c.deadband !== undefined) {
    const d = c.deadband as { type?: unknown; value?: unknown };
    const type = typeof d?.type === 'string' ? d.type.toLowerCase() : '';
    if (!['absolute', 'percent'].includes(type) || typeof d.value !== 'number' || !(d.value >= 0) || (type === 'percent' && d.value > 100)) {
      return 'connection_config.deadband must be {"type": "absolute" | "percent", "value": a number >= 0 (percent: at most 100)}';
    }
    deadband = { type: type === 'absolute' ? 'Absolute' : 'Percent', value: d.value };
  }
  if ('password' in c) return 'connection_config.password is refused: put the password in an environment variable and name it in connection_config.passwordEnv';
  if (c.username !== undefined && (typeof c.username !== 'string' || !c.username)) return 'connection_config.username must be a non-empty string';
  if (c.passwordEnv !== undefined && (typeof c.passwordEnv !== 'string' || !/^[A-Za-z_][A-Za-z0-9_]*$/.test(c.passwordEnv))) {
    return 'connection_config.passwordEnv must be an environment variable name such as OPCUA_PASSWORD_PRESS1';
  }
  if (c.username && !c.passwordEnv) return 'connection_config.passwordEnv must name the environment variable holding the password of connection_config.username';
  return {
    endpointUrl: c.endpointUrl, securityMode: mode, securityPolicy: policy,
    samplingIntervalMs: sampling as number, publishingIntervalMs: publishing as number, queueSize: queue as number, deadband,
    username: c.username as string | undefined, passwordEnv: c.passwordEnv as string | undefined,
  };
}

export function messageSecurityMode(mode: SecurityModeName): MessageSecurityMode {
  return MessageSecurityMode[mode];
}

export function securityPolicy(name: string): SecurityPolicy {
  return (SecurityPolicy as unknown as Record<string, SecurityPolicy>)[name];
}

/** What needs a new session when it changes (the rest only needs new monitored items). */
export const sessionKey = (c: OpcuaDeviceConfig) =>
  JSON.stringify([c.endpointUrl, c.securityMode, c.securityPolicy, c.username, c.passwordEnv, c.publishingIntervalMs]);
export const itemKey = (c: OpcuaDeviceConfig) => JSON.stringify([c.samplingIntervalMs, c.queueSize, c.deadband]);

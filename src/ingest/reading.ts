// What every protocol hands to the sink: a resolved, validated reading, or a dead letter.

export type Quality = 'GOOD' | 'UNCERTAIN' | 'BAD';
export type Source = 'MQTT' | 'OPC_UA' | 'MODBUS' | 'REST_API' | 'SINK';
export const SOURCES: readonly Source[] = ['MQTT', 'OPC_UA', 'MODBUS', 'REST_API', 'SINK'];
export const QUALITIES: readonly Quality[] = ['GOOD', 'UNCERTAIN', 'BAD'];

export interface Reading {
  time: Date;
  tenantId: string;
  deviceId: string;
  sensorType: string;
  value: number;
  unit: string;
  quality: Quality;
  /** What the payload carried beyond the contract (and the raw quality word when it was mapped); null when nothing. */
  metadata?: Record<string, unknown> | null;
}

export interface DeadLetter {
  source: Source;
  topic?: string;
  /** The payload as text (a protocol may clip it; give rawPayload too so its size and hash are the original's). */
  payload?: string;
  /**
   * The payload's bytes as received, when the protocol has them. The sink keeps its size and SHA-256,
   * and a base64 copy of its first bytes when they are not valid text for PostgreSQL (U+0000,
   * invalid UTF-8); the sink clips it at once, so holding a large one here costs nothing later.
   */
  rawPayload?: Uint8Array;
  reason: string;
  tenantId?: string;
  /**
   * What the dead-letter rate limit counts by. Default: `facility/<code>` from a contract topic,
   * else the topic's first level, else the tenant, else the source.
   */
  sourceKey?: string;
  /** A short class for metrics (`timestamp`, `value`, `payload`...). Default: read from the reason. */
  reasonClass?: string;
}

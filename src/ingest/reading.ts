// What every protocol hands to the sink: a resolved, validated reading, or a dead letter.

export type Quality = 'GOOD' | 'UNCERTAIN' | 'BAD';
export type Source = 'MQTT' | 'OPC_UA' | 'MODBUS' | 'REST_API' | 'SINK';

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
  payload?: string;
  reason: string;
  tenantId?: string;
}

// The checks every hardening test makes after an attack: ingest is alive (a good reading published
// right after is stored) and the database still answers another tenant within a second.
import type { MqttClient } from 'mqtt';
import * as assert from 'uvu/assert';
import type { MqttIngestor } from '../../src/ingest/mqtt';
import { publishAsDevice } from './broker';
import type { TestDatabase } from './db';
import { waitFor } from './wait';

export interface Probes {
  goodReadingIsStored(): Promise<void>;
  otherTenantAnswers(): Promise<void>;
}

export function hardeningProbes(ctx: () => {
  db: TestDatabase; ingestor: MqttIngestor; brokerUrl: string; publisher: MqttClient; topic: string;
  deviceCode: string; deviceId: string; otherTenantId: string;
}): Probes {
  let seq = 0;
  return {
    /** Publishes a good reading (stamped now) and waits until it is stored: ingest is alive. */
    async goodReadingIsStored() {
      const c = ctx();
      assert.ok(c.ingestor.stats.connected, 'the ingestor is connected to the broker');
      const value = 60 + (++seq % 10) + seq / 1000;
      const timestamp = new Date(Date.now() - 1000).toISOString();
      await publishAsDevice(c.brokerUrl, c.publisher, c.topic, JSON.stringify({ deviceId: c.deviceCode, value, timestamp }));
      await waitFor(async () => (await c.db.pool.query(
        `select 1 from iot_private.sensor_readings where device_id = $1 and time = $2 and value = $3`, [c.deviceId, timestamp, value])).rowCount,
      5000, `the good reading ${value} published after the attack to be stored`);
    },
    async otherTenantAnswers() {
      const c = ctx();
      const started = Date.now();
      await c.db.asRole('iot_operator', { tenant_id: c.otherTenantId }, (cl) => cl.query('select count(*) from iot.sensor_readings'));
      const ms = Date.now() - started;
      assert.ok(ms < 1000, `another tenant's query took ${ms} ms`);
    },
  };
}

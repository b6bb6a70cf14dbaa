// HIGH system alert MQTT_BROKER_CONNECTION_LOST: raised when the ingestor has been cut off from the
// broker for `graceMs` (a reconnect within it is routine and raises nothing), resolved on reconnect.
// The broker is shared by every tenant, so the alert is raised for each tenant with active MQTT devices.
import type { Pool } from 'pg';
import { logger } from '../lib/log';
import { raiseSystemAlert, resolveSystemAlerts } from './system-alerts';

const log = logger('alerts');

interface BrokerClient {
  on(event: 'connect' | 'offline' | 'close', listener: () => void): unknown;
}

export interface BrokerWatch {
  stop(): void;
}

export function watchBrokerConnection(client: BrokerClient, pool: Pool, options: { brokerUrl: string; graceMs?: number }): BrokerWatch {
  const graceMs = options.graceMs ?? 30_000;
  let timer: NodeJS.Timeout | undefined;
  let raised = false;
  let lostAt: Date | undefined;
  const lost = () => {
    if (timer || raised) return;
    lostAt = new Date();
    timer = setTimeout(() => {
      timer = undefined;
      raised = true;
      raiseSystemAlert(pool, {
        alertType: 'MQTT_BROKER_CONNECTION_LOST',
        message: `MQTT broker ${options.brokerUrl} unreachable since ${lostAt!.toISOString()}: no readings are coming in`,
        details: { brokerUrl: options.brokerUrl, lostAt: lostAt!.toISOString(), graceMs },
      }).then((n) => log.error('MQTT broker connection lost: system alert raised', { broker: options.brokerUrl, tenants: n }),
        (error) => log.error('could not raise the MQTT broker system alert', { error }));
    }, graceMs);
    timer.unref();
  };
  const connected = () => {
    if (timer) clearTimeout(timer);
    timer = undefined;
    if (!raised) return;
    raised = false;
    resolveSystemAlerts(pool, { alertType: 'MQTT_BROKER_CONNECTION_LOST' })
      .then((n) => log.info('MQTT broker reachable again: system alert resolved', { broker: options.brokerUrl, tenants: n }),
        (error) => log.error('could not resolve the MQTT broker system alert', { error }));
  };
  client.on('offline', lost);
  client.on('close', lost);
  client.on('connect', connected);
  return { stop: () => { if (timer) clearTimeout(timer); timer = undefined; } };
}

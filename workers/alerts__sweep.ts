// Every minute: heartbeat system alerts for short device timeouts (and their resolution), and jobs
// for alert deliveries that have none (made before the worker's schema existed, or waiting for a
// channel that is now configured). See iot_private.sweep_alerts().
import type { Task } from 'graphile-worker';
import { configuredChannels, deliverySettings } from '../src/alerts/settings';

const task: Task = async (_payload, { query, logger }) => {
  const { rows } = await query<{ r: { heartbeatAlertsRaised: number; heartbeatAlertsResolved: number; deliveriesQueued: number } }>(
    `select iot_private.sweep_alerts($1::text[]) as r`, [configuredChannels(deliverySettings())]);
  const r = rows[0].r;
  if (r.heartbeatAlertsRaised || r.heartbeatAlertsResolved || r.deliveriesQueued) {
    logger.info(`heartbeat system alerts raised: ${r.heartbeatAlertsRaised}, resolved: ${r.heartbeatAlertsResolved}; deliveries queued: ${r.deliveriesQueued}`);
  }
};
export default task;

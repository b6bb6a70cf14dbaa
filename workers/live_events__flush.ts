// Sends the live-readings notices the interval held back, for devices that have not reported since
// (sql/600_live_events.sql flush_live_readings), so a dashboard sees a device's last value.
import type { Task } from 'graphile-worker';

const task: Task = async (_payload, { query, logger }) => {
  const { rows } = await query<{ n: number }>('select iot_private.flush_live_readings() as n');
  if (rows[0].n) logger.debug(`live events: sent ${rows[0].n} held-back live-readings notices`);
};
export default task;

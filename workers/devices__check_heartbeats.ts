// Raises one HEARTBEAT_TIMEOUT event per device that fell silent.
import type { Task } from 'graphile-worker';

const task: Task = async (_payload, { query, logger }) => {
  const { rows } = await query<{ raised: number }>('select iot_private.check_device_heartbeats() as raised');
  if (rows[0].raised) logger.warn(`${rows[0].raised} devices missed their heartbeat`);
};
export default task;

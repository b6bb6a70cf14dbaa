// Applies Western Electric rules 1-4 to new readings of every channel with active control limits.
import type { Task } from 'graphile-worker';

const task: Task = async (_payload, { query, logger }) => {
  const { rows } = await query<{ raised: number }>('select iot_private.evaluate_spc() as raised');
  if (rows[0].raised) logger.info(`${rows[0].raised} SPC out-of-control alerts raised`);
};
export default task;

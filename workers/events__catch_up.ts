// Judges stored readings the event detector never saw: a sink that died between a batch's commit
// and its detector transaction (sql/515_events_after_commit.sql). Normally finds nothing.
import type { Task } from 'graphile-worker';

const task: Task = async (_payload, { query, logger }) => {
  const { rows } = await query<{ channels: number; raised: number }>('select * from iot_private.catch_up_events()');
  if (rows[0].channels) {
    logger.warn(`judged readings of ${rows[0].channels} channels the detector had missed (a sink stopped between a batch's two transactions?); ${rows[0].raised} events raised`);
  }
};
export default task;

// Tier 3: keep native partitions a week ahead so no insert meets a missing partition.
import type { Task } from 'graphile-worker';

const task: Task = async (_payload, { query, logger }) => {
  const { rows } = await query<{ made: number }>('select iot_private.create_partitions_ahead(7) as made');
  if (rows[0].made) logger.info(`created ${rows[0].made} partitions`);
};
export default task;

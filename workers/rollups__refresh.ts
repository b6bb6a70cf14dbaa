// Tiers 2-3: fold settled raw readings into the 1m/1h/1d rollups and recompute late-data ranges.
import type { Task } from 'graphile-worker';

const task: Task = async (_payload, { query, logger }) => {
  const started = Date.now();
  const { rows } = await query<{ written: string }>('select iot_private.refresh_rollups() as written');
  logger.debug(`rollups refreshed: ${rows[0].written} rows in ${Date.now() - started} ms`);
};
export default task;

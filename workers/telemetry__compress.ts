// Tier 1: compresses raw chunks older than the setting telemetry_compress_after (default 7 days),
// through TimescaleDB's compress_chunk (sql/100_partitions.sql). Does nothing on tiers 2-3.
import type { Task } from 'graphile-worker';

const task: Task = async (_payload, { query, logger }) => {
  const started = Date.now();
  const { rows } = await query<{ n: number }>('select iot_private.compress_telemetry() as n');
  if (rows[0].n > 0) logger.info(`compression: compressed ${rows[0].n} chunks of raw readings in ${Date.now() - started} ms`);
};
export default task;

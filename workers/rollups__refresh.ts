// Every tier: fold settled raw readings into the 1m/1h/1d rollups, late and backfilled ones included
// (tier 1: TimescaleDB's refresh_continuous_aggregate over the retained range, sql/200_rollups.sql).
// A CALL outside a transaction block: the refresh commits as it goes. A failure throws, so
// graphile-worker records it (last_error) where /healthz and the metrics look.
// One refresh at a time across worker processes: TimescaleDB fails a refresh that overlaps one in
// progress, so a run that finds another still going (a slow minute) leaves it to that one. The lock
// is the session's, taken and released on this connection (a lost connection releases it too).
import type { Task } from 'graphile-worker';

const task: Task = async (_payload, { withPgClient, logger }) => {
  const started = Date.now();
  const ran = await withPgClient(async (client) => {
    const { rows } = await client.query<{ got: boolean }>(`select pg_try_advisory_lock(hashtext('iot_private.refresh_all_rollups')) as got`);
    if (!rows[0].got) return false;
    try {
      await client.query('call iot_private.refresh_all_rollups()');
    } finally {
      await client.query(`select pg_advisory_unlock(hashtext('iot_private.refresh_all_rollups'))`);
    }
    return true;
  });
  if (ran) logger.debug(`rollups refreshed in ${Date.now() - started} ms`);
  else logger.info('rollups: another refresh is still running; this run leaves it to that one');
};
export default task;

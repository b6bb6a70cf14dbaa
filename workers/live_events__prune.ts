// Deletes live-event payloads parked in iot_private.live_event_outbox (those too big for one
// NOTIFY) once no API instance can still be fetching them: older than an hour by default.
// Payload (optional): {"olderThanMinutes": 60}.
import type { Task } from 'graphile-worker';

const task: Task = async (payload, { query, logger }) => {
  const minutes = Number((payload as { olderThanMinutes?: number } | null)?.olderThanMinutes ?? 60);
  if (!(minutes >= 1)) {
    logger.warn(`live events: outbox not pruned, olderThanMinutes must be at least 1 (got ${JSON.stringify(minutes)})`);
    return;
  }
  const { rows } = await query<{ n: number }>(
    'select iot_private.prune_live_event_outbox(make_interval(mins => $1)) as n', [Math.floor(minutes)]);
  if (rows[0].n) logger.info(`live events: deleted ${rows[0].n} outbox payloads older than ${Math.floor(minutes)} minutes`);
};
export default task;

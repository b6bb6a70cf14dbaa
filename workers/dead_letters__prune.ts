// Deletes dead letters older than INGEST_DEAD_LETTER_RETENTION_DAYS, the oldest first, at most
// 10,000 rows per statement (each its own transaction) so no delete runs long. 0 keeps them all.
import type { Task } from 'graphile-worker';

const ROWS_PER_STATEMENT = 10_000;
const MAX_STATEMENTS = 100; // a million rows an hour at most; what is left waits for the next run

const task: Task = async (payload, { query, logger }) => {
  const days = Number((payload as { days?: number } | null)?.days ?? 0);
  if (!(days > 0)) return;
  let pruned = 0;
  for (let i = 0; i < MAX_STATEMENTS; i++) {
    const { rows } = await query<{ n: number }>(
      'select iot_private.prune_dead_letters(now() - make_interval(days => $1), $2) as n', [days, ROWS_PER_STATEMENT]);
    pruned += rows[0].n;
    if (rows[0].n < ROWS_PER_STATEMENT) break;
  }
  if (pruned) logger.info(`dead letters: deleted ${pruned} older than ${days} days`);
};
export default task;

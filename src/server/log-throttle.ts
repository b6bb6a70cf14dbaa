// An attack repeats itself: log the first few of a kind per minute, then one line with how many
// were not logged, so the log stays readable and the counters on /metrics carry the totals.
import type { Logger } from '../lib/log';

export function throttled(log: Logger, perMinute = 10) {
  const kinds = new Map<string, { start: number; seen: number }>();
  return (level: 'info' | 'warn', message: string, fields: Record<string, unknown>) => {
    const now = Date.now();
    let k = kinds.get(message);
    if (!k || now - k.start > 60_000) {
      if (k && k.seen > perMinute) log[level](`${message} (repeated)`, { notLogged: k.seen - perMinute, inLastMinute: k.seen });
      k = { start: now, seen: 0 };
      kinds.set(message, k);
    }
    if (++k.seen <= perMinute) log[level](message, fields);
  };
}

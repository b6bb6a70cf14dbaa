// Payloads of 7,900 bytes or more do not fit in a NOTIFY: the database keeps them in
// iot_private.live_event_outbox and NOTIFYs {"outbox": id, ...routing keys} instead. This instance
// fetches each id once, whatever the number of subscribers (one promise shared by all of them),
// and forgets the oldest ids beyond a bound so memory stays flat.
import type { OwnerQuery } from '../../notify-channels';

export interface OutboxFetcher {
  /** The stored payload of outbox row `id` (fetched once per id while it is remembered). */
  payload(id: number | string): Promise<Record<string, unknown>>;
  /** How many fetches reached the database (for tests and metrics). */
  readonly fetches: number;
}

export function outboxFetcher(query: OwnerQuery, remember = 1000): OutboxFetcher {
  const cache = new Map<string, Promise<Record<string, unknown>>>();
  let fetches = 0;
  return {
    get fetches() {
      return fetches;
    },
    payload(id) {
      const key = String(id);
      let found = cache.get(key);
      if (!found) {
        fetches++;
        found = query('select iot_private.live_event_payload($1) as payload', [key]).then((rows) => {
          const payload = rows[0]?.payload;
          if (!payload || typeof payload !== 'object') throw new Error(`live event outbox row ${key} is gone (pruned after an hour?)`);
          return payload as Record<string, unknown>;
        });
        cache.set(key, found);
        found.catch(() => cache.delete(key)); // a failed fetch is tried again by the next notice naming it
        // Map keeps insertion order: the first key is the oldest.
        while (cache.size > remember) cache.delete(cache.keys().next().value as string);
      }
      return found;
    },
  };
}

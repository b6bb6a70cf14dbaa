// The pool PostGraphile gets, wrapped so that the API's shutdown leaves no LISTEN session behind.
// @graphile/pg-pubsub checks one client out for good and LISTENs on it; PostGraphile's release()
// does not give it back, and the pool belongs to the caller of startApi (it may live on). At close
// every client still checked out through this wrapper is destroyed (not returned: a returned
// client would keep LISTENing in the pool), and `ending` reads true so pg-pubsub does not reconnect.
import type { Pool, PoolClient } from 'pg';

export interface ListenerPool {
  pool: Pool;
  /** Destroys the clients still checked out (the LISTEN connection), once their queries (UNLISTEN) are done; returns how many. */
  releaseHeld(waitMs?: number): Promise<number>;
}

export function listenerPool(inner: Pool): ListenerPool {
  const held = new Set<PoolClient>();
  const pending = new WeakMap<PoolClient, number>();
  let closed = false;
  async function connect(this: unknown, callback?: unknown) {
    if (typeof callback === 'function') return (inner.connect as (cb: unknown) => void)(callback); // not used by PostGraphile
    const client = await inner.connect();
    held.add(client);
    // Count its queries in flight (promise form only: what pg-pubsub and PostGraphile use).
    const query = client.query;
    client.query = ((...args: unknown[]) => {
      const result = (query as (...a: unknown[]) => unknown).apply(client, args);
      if (result && typeof (result as Promise<unknown>).finally === 'function') {
        pending.set(client, (pending.get(client) ?? 0) + 1);
        void (result as Promise<unknown>).finally(() => pending.set(client, (pending.get(client) ?? 1) - 1)).catch(() => undefined);
      }
      return result;
    }) as typeof client.query;
    const release = client.release;
    client.release = (error?: Error | boolean) => {
      held.delete(client);
      client.query = query; // the pool hands this client out again: no wrapper on wrapper
      return release.call(client, error);
    };
    return client;
  }
  const pool = new Proxy(inner, {
    get(target, prop) {
      if (prop === 'connect') return connect;
      if (prop === 'ending' && closed) return true;
      const value = Reflect.get(target, prop, target);
      return typeof value === 'function' ? value.bind(target) : value;
    },
  });
  return {
    pool,
    async releaseHeld(waitMs = 1000) {
      closed = true;
      // The subscriptions just ended send UNLISTEN on this client; cutting it mid-query logs errors.
      const busy = (c: PoolClient) => (pending.get(c) ?? 0) > 0;
      for (const deadline = Date.now() + waitMs; [...held].some(busy) && Date.now() < deadline;) await new Promise((r) => setTimeout(r, 10));
      const n = held.size;
      for (const client of [...held]) client.release(true);
      held.clear();
      return n;
    },
  };
}

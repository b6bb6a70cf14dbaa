// A GraphQL request whose client goes away stops its SQL (issue 7, finding 9: closing the
// connection left a 5-minute query running). Every HTTP request to /graphql runs in a scope
// (AsyncLocalStorage); the pool PostGraphile gets is wrapped so that a client checked out inside a
// scope is recorded there. When the response closes before it was finished, each recorded client
// still checked out gets pg_cancel_backend(its backend pid) over the control pool; its release back
// into the pool waits for that cancel, so a cancel can never reach the next request's query (and a
// cancel that arrives between statements is ignored by PostgreSQL). A request whose client left
// while it waited for a connection does not start at all.
// statement_timeout (pgSettings) bounds the rest: a client that stays connected, or a WebSocket.
import { AsyncLocalStorage } from 'node:async_hooks';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Pool, PoolClient } from 'pg';
import { logger } from '../lib/log';
import { apiCounters } from './api-metrics';
import { throttled } from './log-throttle';

const log = logger('api');
const note = throttled(log);

interface Scope {
  req: IncomingMessage;
  clients: Set<PoolClient>;
  gone: boolean;
  cancelling?: Promise<unknown>;
}

const scopes = new AsyncLocalStorage<Scope>();

export class ClientGone extends Error {
  readonly statusCode = 499;
  constructor() {
    super('the client closed the connection before its query started');
  }
}

/** Express middleware: run the rest of the request in a scope; cancel its SQL if the client leaves. */
export function requestScope(cancel: (pid: number) => Promise<unknown>) {
  return (req: IncomingMessage, res: ServerResponse, next: () => void) => {
    const scope: Scope = { req, clients: new Set(), gone: false };
    res.once('close', () => {
      if (res.writableFinished) return;
      scope.gone = true;
      const busy = [...scope.clients].map((c) => (c as unknown as { processID?: number }).processID).filter((pid): pid is number => !!pid);
      if (!busy.length) return;
      apiCounters.requestsCancelled++;
      note('info', 'client went away: cancelling its query', { backends: busy.join(','), from: req.socket?.remoteAddress });
      scope.cancelling = Promise.all(busy.map((pid) => cancel(pid).catch((error) => log.warn('could not cancel a query', { pid, error }))));
    });
    scopes.run(scope, next);
  };
}

/** The pool for PostGraphile: clients checked out inside a request scope are recorded in it. */
export function scopedPool(pool: Pool): Pool {
  async function connect(this: unknown, callback?: unknown) {
    if (typeof callback === 'function') return (pool.connect as (cb: unknown) => void)(callback); // not used by PostGraphile
    const scope = scopes.getStore();
    const client = await pool.connect();
    if (!scope) return client;
    if (scope.gone) {
      client.release();
      throw new ClientGone();
    }
    scope.clients.add(client);
    const release = client.release;
    let released = false;
    client.release = (error?: Error | boolean) => {
      // Once per checkout: a pool closed at shutdown may have released it already (lib/db/pool.ts).
      if (released) return;
      released = true;
      scope.clients.delete(client);
      if (scope.cancelling) void scope.cancelling.finally(() => release.call(client, error));
      else release.call(client, error);
    };
    return client;
  }
  return new Proxy(pool, {
    get(target, prop) {
      if (prop === 'connect') return connect;
      const value = Reflect.get(target, prop, target);
      return typeof value === 'function' ? value.bind(target) : value;
    },
  });
}

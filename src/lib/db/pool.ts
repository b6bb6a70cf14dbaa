// A pg Pool that can always be shut down: LISTEN connections (@graphile/pg-pubsub, the registry
// cache) stay checked out for good, and pool.end() would wait for them forever.
import { Pool } from 'pg';
import { logger } from '../log';

const log = logger('db');

export interface ClosablePool extends Pool {
  close(): Promise<void>;
}

export function createPool(connectionString: string, max = 10, name = 'iot'): ClosablePool {
  const pool = new Pool({ connectionString, max, application_name: name }) as ClosablePool;
  // An idle client losing its connection must not crash the process.
  pool.on('error', (error) => log.warn('idle database connection lost', { pool: name, error }));
  const checkedOut = new Set<{ release(destroy?: boolean): void }>();
  pool.on('acquire', (c) => checkedOut.add(c as never));
  pool.on('release', (_e, c) => checkedOut.delete(c as never));
  pool.close = async () => {
    const ending = pool.end();
    for (const c of checkedOut) c.release(true);
    checkedOut.clear();
    await ending;
  };
  return pool;
}

// Tests that only mean something on some storage tiers register as skipped on the others, with the
// reason printed, so an early return never counts as a pass. test/run.mjs sets TEST_SERVER_TIER.
import type { Test } from 'uvu';
import type { Tier } from '../../src/lib/db/tier';

export function serverTier(): Tier {
  const tier = Number(process.env.TEST_SERVER_TIER);
  if (tier !== 1 && tier !== 2 && tier !== 3) throw new Error('TEST_SERVER_TIER is not set: run the tests with `npm test`');
  return tier;
}

/** `test` on the given tiers, `test.skip` (with the reason printed) on the others. */
export function onTiers(test: Test, tiers: Tier[], why: string): Test | Test['skip'] {
  if (tiers.includes(serverTier())) return test;
  return ((name: string, _fn: unknown) => {
    console.log(`  [skip] ${name}: ${why} (this run is on tier ${serverTier()})`);
    test.skip(name, () => undefined);
  }) as Test['skip'];
}

interface Queryable {
  query<R = any>(text: string, values?: unknown[]): Promise<{ rows: R[] }>; // eslint-disable-line @typescript-eslint/no-explicit-any
}

/**
 * What the rollups__refresh job runs, on every tier (tier 1: TimescaleDB's refresh of the
 * continuous aggregates). Not inside a transaction: the refresh commits as it goes.
 */
export async function refreshRollups(db: Queryable): Promise<void> {
  await db.query('call iot_private.refresh_all_rollups()');
}

/**
 * Rows stored in a rollup (not computed live): tier 1 the continuous aggregate's materialization
 * hypertable, tiers 2-3 the rollup table.
 */
export async function materializedRollupRows(db: Queryable, rollup: '1m' | '1h' | '1d', tier: Tier): Promise<number> {
  if (tier > 1) {
    return Number((await db.query(`select count(*) as n from iot_private.sensor_readings_${rollup}_rollup`)).rows[0].n);
  }
  const { rows } = await db.query<{ s: string; t: string }>(`select materialization_hypertable_schema as s, materialization_hypertable_name as t
    from timescaledb_information.continuous_aggregates where view_schema = 'iot_private' and view_name = $1`, [`sensor_readings_${rollup}_cagg`]);
  return Number((await db.query(`select count(*) as n from "${rows[0].s}"."${rows[0].t}"`)).rows[0].n);
}

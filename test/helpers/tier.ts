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

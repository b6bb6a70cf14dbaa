// Which TimescaleDB tier the server offers (DESIGN.md, "TimescaleDB tiers"):
//   1 TimescaleDB with community (TSL) features, 2 TimescaleDB Apache-only, 3 plain PostgreSQL.
import type { ClientBase } from 'pg';

export type Tier = 1 | 2 | 3;

export interface TierDetection {
  tier: Tier;
  reason: string;
}

export async function detectTier(client: ClientBase, requested: 'auto' | '1' | '2' | '3' = 'auto'): Promise<TierDetection> {
  const { rows } = await client.query<{ available: boolean; preloaded: boolean; license: string | null }>(`
    select exists (select 1 from pg_available_extensions where name = 'timescaledb') as available,
           current_setting('shared_preload_libraries') ~ '(^|[ ,])timescaledb($|[ ,])' as preloaded,
           current_setting('timescaledb.license', true) as license`);
  const { available, preloaded, license } = rows[0];
  let offered: TierDetection;
  if (!available) offered = { tier: 3, reason: 'timescaledb extension is not installed on the server' };
  else if (!preloaded) offered = { tier: 3, reason: "timescaledb is installed but not in shared_preload_libraries" };
  else if (license === 'timescale') offered = { tier: 1, reason: 'TimescaleDB with community features (license=timescale)' };
  else offered = { tier: 2, reason: `TimescaleDB Apache-only build (license=${license ?? 'unknown'})` };

  if (requested === 'auto') return offered;
  const want = Number(requested) as Tier;
  if (want < offered.tier) {
    throw new Error(`TIMESCALE_TIER=${requested} was requested but the server only offers tier ${offered.tier}: ${offered.reason}`);
  }
  return { tier: want, reason: `TIMESCALE_TIER=${requested} (server offers tier ${offered.tier})` };
}

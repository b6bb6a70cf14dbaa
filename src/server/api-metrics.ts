// Counters of what the API refused or cut short, shown on /metrics, so an attack or a runaway
// dashboard is seen without reading logs.
import { registerMetrics } from '../lib/metrics';

export const apiCounters = {
  tokensRefused: 0,
  queriesRefused: 0,
  statementTimeouts: 0,
  requestsCancelled: 0,
};

let registered = false;

export function registerApiMetrics(): void {
  if (registered) return;
  registered = true;
  registerMetrics(() => [
    { name: 'iot_api_tokens_refused_total', help: 'API requests refused for their token (bad signature, expired, no exp, too long-lived, role or tenant not allowed).', type: 'counter', value: apiCounters.tokensRefused },
    { name: 'iot_api_queries_refused_total', help: 'GraphQL operations refused before execution for depth, cost or page size.', type: 'counter', value: apiCounters.queriesRefused },
    { name: 'iot_api_statement_timeouts_total', help: 'API requests whose SQL ran into API_STATEMENT_TIMEOUT_MS.', type: 'counter', value: apiCounters.statementTimeouts },
    { name: 'iot_api_requests_cancelled_total', help: 'API requests whose SQL was cancelled because the client went away.', type: 'counter', value: apiCounters.requestsCancelled },
  ]);
}

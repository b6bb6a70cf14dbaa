// Every refusal of the realtime API is counted (iot_ws_refusals_total{reason}) and logged, the log
// throttled per kind (an attack repeats itself) so the counter carries the totals.
import { logger } from '../../lib/log';
import { throttled } from '../log-throttle';
import { wsRefusals } from './ws-metrics';

const note = throttled(logger('realtime'));

export type RefusalReason =
  | 'origin' | 'per_ip_limit' | 'per_user_limit' | 'subscription_limit'
  | 'token_missing' | 'token_invalid' | 'token_expired' | 'tenant_mismatch'
  | 'init_timeout' | 'idle_timeout' | 'keepalive_timeout' | 'not_subscription' | 'invalid_operation' | 'bad_path'
  | 'work_center' | 'shutting_down' | 'slow_client' | 'duplicate_id';

const MESSAGES: Record<RefusalReason, string> = {
  origin: 'realtime connection refused: Origin not in WS_ALLOWED_ORIGINS',
  per_ip_limit: 'realtime connection refused: too many open connections from one address (WS_MAX_SOCKETS_PER_IP)',
  per_user_limit: 'realtime connection refused: too many open connections for one user (WS_MAX_SOCKETS_PER_USER)',
  subscription_limit: 'subscription refused: too many subscriptions on one socket (WS_MAX_SUBSCRIPTIONS_PER_SOCKET)',
  token_missing: 'realtime connection refused: no token',
  token_invalid: 'realtime connection refused: token refused',
  token_expired: 'realtime connection closed: its token expired',
  tenant_mismatch: "realtime connection refused: connectionParams.tenantId is not the token's tenant",
  init_timeout: 'WebSocket closed: no connection_init within WS_CONNECTION_INIT_TIMEOUT_MS',
  idle_timeout: 'WebSocket closed: no subscription for WS_IDLE_TIMEOUT_MS',
  keepalive_timeout: 'WebSocket terminated: two keep-alive pings unanswered',
  not_subscription: 'operation refused on a realtime connection: only subscriptions are served there',
  invalid_operation: 'subscription refused: invalid document or over the query limits',
  bad_path: 'WebSocket upgrade refused: not the GraphQL WebSocket path',
  work_center: 'SSE stream refused: work center not found for the caller',
  shutting_down: 'realtime connection refused: the API is shutting down',
  slow_client: 'realtime connection closed: the client does not read its events fast enough',
  duplicate_id: 'realtime connection closed: a subscribe reused the id of a subscription still starting or running',
};

export function refusal(reason: RefusalReason, fields: Record<string, unknown>): void {
  wsRefusals.inc({ reason });
  note(reason === 'idle_timeout' || reason === 'init_timeout' ? 'info' : 'warn', MESSAGES[reason], fields);
}

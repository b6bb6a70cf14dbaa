// Prometheus metrics of the realtime API (prom-client's default registry through lib/metrics.ts,
// which /metrics serves). Labels are tenants, subscription field names, reasons and transports: a
// bounded set, never a user, an address or a token.
import { counter, gauge } from '../../lib/metrics';

export const wsRefusals = counter<'reason'>({
  name: 'iot_ws_refusals_total',
  help: 'WebSocket/SSE connections or subscriptions refused or closed by the API, by reason (origin, per_ip_limit, per_user_limit, subscription_limit, token_missing, token_invalid, token_expired, tenant_mismatch, init_timeout, idle_timeout, keepalive_timeout, not_subscription, invalid_operation, work_center, ...).',
  labelNames: ['reason'],
});

export const wsConnections = gauge<'tenant' | 'transport'>({
  name: 'iot_ws_connections',
  help: 'Open, authenticated realtime connections by tenant and transport (websocket, sse).',
  labelNames: ['tenant', 'transport'],
});

export const wsSubscriptions = gauge<'tenant' | 'subscription'>({
  name: 'iot_ws_subscriptions',
  help: 'Active GraphQL subscriptions (WebSocket and SSE) by tenant and subscription field.',
  labelNames: ['tenant', 'subscription'],
});

export const wsMessagesSent = counter<'transport'>({
  name: 'iot_ws_events_delivered_total',
  help: 'Subscription events sent to clients (one per subscriber and event), by transport (websocket, sse).',
  labelNames: ['transport'],
});

// GraphQL subscriptions over WebSocket (graphql-ws protocol) on our own upgrade handler, so every
// socket is checked before and while it lives (issue 8, part 4):
//   at the upgrade: path, Origin (403), sockets per address (429);
//   at connection_init: the token (4401), connectionParams.tenantId (4403), sockets per user (4429);
//   at subscribe: subscriptions per socket, only subscriptions, the HTTP validation rules;
//   while open: token expiry (4401), idle without a subscription (4408), keep-alive pings.
// Subscriptions resolve from NOTIFY payloads (@graphile/pg-pubsub); the context is the verified
// caller only, no database connection is held per socket. Events are pushed to the socket as they
// come, their JSON shared by subscribers of one document (shared-execute.ts, push-sender.ts).
import type { IncomingMessage, Server } from 'node:http';
import type { Duplex } from 'node:stream';
import type { GraphQLSchema } from 'graphql';
import { useServer } from 'graphql-ws/lib/use/ws';
import { WebSocket, WebSocketServer } from 'ws';
import type { Caller, TokenRules } from '../auth';
import type { QueryLimits } from '../limits';
import { authenticateSocket } from './authenticate';
import { CLOSE, closeReason } from './close-codes';
import { type ConnectionLimits, userKey } from './connection-limits';
import { refuseUpgrade } from './http-refusal';
import { formatErrors, prepareSubscription, realtimeError } from './operation';
import { checkOrigin } from './origin';
import { MAX_BUFFERED_BYTES, pushSender } from './push-sender';
import { refusal } from './refusals';
import { shareExecution, sharedSubscribe } from './shared-execute';
import { wsConnections, wsMessagesSent, wsSubscriptions } from './ws-metrics';

export interface WsSettings {
  path: string;
  allowedOrigins: readonly string[];
  maxSubscriptionsPerSocket: number;
  keepaliveMs: number;
  idleTimeoutMs: number;
  connectionInitTimeoutMs: number;
}

export interface RealtimeDeps {
  getSchema(): Promise<GraphQLSchema>;
  tokens: TokenRules;
  limits: QueryLimits;
  connections: ConnectionLimits;
}

interface SocketState {
  ip: string;
  openedAt: number;
  releaseIp: () => void;
  releaseUser?: () => void;
  initReceived: boolean;
  caller?: Caller;
  /** Accepted subscriptions: id -> root field names (gauge labels). */
  subs: Map<string, string[]>;
  /**
   * Subscription ids from subscribe until their stream has ended (or was refused), ours rather than
   * graphql-ws's reservations: a client that completes a subscription still starting and subscribes
   * again with its id would otherwise run both under one id, the first beyond every limit.
   */
  ids: Map<string, object>;
  idleSince: number;
  missedPongs: number;
  closing: boolean;
  /** Closes the socket when the token expires. */
  expiryTimer?: NodeJS.Timeout;
  /** Its keep-alive slice. */
  slice: Set<WebSocket>;
}

/** Pings go out in this many slices per WS_KEEPALIVE_MS, so 10,000 sockets never cost one long pause. */
const KEEPALIVE_SLICES = 20;
const LONGEST_TIMER_MS = 2 ** 31 - 1;
/** How long a client closed as too slow has to read its way to the close frame before it is cut off. */
const SLOW_CLIENT_GRACE_MS = 5000;

export interface WsServer {
  /** Open sockets (for tests and the log at shutdown). */
  count(): number;
  close(): Promise<void>;
}


export function attachWsServer(server: Server, settings: WsSettings, deps: RealtimeDeps): WsServer {
  const wss = new WebSocketServer({ noServer: true, maxPayload: 1024 * 1024 });
  const states = new Map<WebSocket, SocketState>();
  /**
   * Sockets the sweep checks: waiting for connection_init, or without a subscription (idle). Added
   * at the upgrade and when a socket's last subscription completes; removed when a subscription is
   * accepted and at close. Sockets with a subscription are not visited at all.
   */
  const watched = new Set<WebSocket>();
  /** Keep-alive slices: a socket joins the smallest at connect (so churn cannot pile sockets into a few) and stays. */
  const slices = Array.from({ length: KEEPALIVE_SLICES }, () => new Set<WebSocket>());
  const smallestSlice = () => slices.reduce((a, b) => (b.size < a.size ? b : a));
  let stopping = false;

  const closeWith = (ws: WebSocket, code: number, reason: string) => {
    const state = states.get(ws);
    if (state) state.closing = true;
    if (ws.readyState === WebSocket.OPEN || ws.readyState === WebSocket.CONNECTING) ws.close(code, closeReason(reason));
  };
  const fieldsOf = (state: SocketState) => ({ from: state.ip, tenant: state.caller?.tenantId, sub: state.caller?.subject });

  const onUpgrade = (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    socket.on('error', () => socket.destroy()); // a client resetting mid-handshake must not crash the API
    const ip = req.socket.remoteAddress ?? 'unknown';
    const pathname = new URL(req.url ?? '/', 'http://localhost').pathname;
    if (pathname !== settings.path) {
      refusal('bad_path', { from: ip, path: pathname });
      return refuseUpgrade(socket, 404, `no WebSocket endpoint at ${pathname}; GraphQL subscriptions are at ${settings.path}`);
    }
    if (stopping) {
      refusal('shutting_down', { from: ip });
      return refuseUpgrade(socket, 503, 'the API is shutting down; reconnect shortly');
    }
    const origin = checkOrigin(req, settings.allowedOrigins);
    if (!origin.allowed) {
      refusal('origin', { from: ip, origin: origin.origin });
      return refuseUpgrade(socket, 403, origin.why);
    }
    const releaseIp = deps.connections.perIp.take(ip);
    if (!releaseIp) {
      refusal('per_ip_limit', { from: ip, limit: deps.connections.settings.maxPerIp });
      return refuseUpgrade(socket, 429, `too many open connections from ${ip} (WS_MAX_SOCKETS_PER_IP ${deps.connections.settings.maxPerIp})`);
    }
    let upgraded = false;
    wss.handleUpgrade(req, socket, head, (ws) => {
      upgraded = true;
      const now = Date.now();
      const slice = smallestSlice();
      states.set(ws, { ip, openedAt: now, releaseIp, initReceived: false, subs: new Map(), ids: new Map(), idleSince: now, missedPongs: 0, closing: false, slice });
      watched.add(ws);
      slice.add(ws);
      wss.emit('connection', ws, req);
    });
    if (!upgraded) releaseIp(); // ws answered the handshake itself (400: not a WebSocket request)
  };
  server.on('upgrade', onUpgrade);

  // Registered before useServer's listener, so our close handler runs first (gauges, limits).
  wss.on('connection', (ws) => {
    const state = states.get(ws)!;
    ws.on('pong', () => { state.missedPongs = 0; });
    ws.once('close', () => {
      states.delete(ws);
      watched.delete(ws);
      state.slice.delete(ws);
      clearTimeout(state.expiryTimer);
      state.releaseIp();
      state.releaseUser?.();
      if (state.caller) wsConnections.dec({ tenant: state.caller.tenantId ?? '', transport: 'websocket' });
      for (const fields of state.subs.values()) for (const f of fields) wsSubscriptions.dec({ tenant: state.caller?.tenantId ?? '', subscription: f });
      state.subs.clear();
    });
  });

  const graphqlWs = useServer({
    connectionInitWaitTimeout: 0, // ours, with a reason that says what to send (sweep below)
    subscribe: sharedSubscribe,
    onConnect: (ctx) => {
      const ws = ctx.extra.socket;
      const state = states.get(ws);
      if (!state) return false;
      state.initReceived = true;
      const auth = authenticateSocket(ctx.connectionParams, ctx.extra.request, deps.tokens);
      if (!auth.ok) {
        refusal(auth.reason, { ...fieldsOf(state), why: auth.message });
        closeWith(ws, auth.code, auth.message);
        return false;
      }
      const releaseUser = deps.connections.perUser.take(userKey(auth.caller));
      if (!releaseUser) {
        refusal('per_user_limit', { from: state.ip, tenant: auth.caller.tenantId, sub: auth.caller.subject, limit: deps.connections.settings.maxPerUser });
        closeWith(ws, CLOSE.tooMany, `too many connections for this user (WS_MAX_SOCKETS_PER_USER ${deps.connections.settings.maxPerUser})`);
        return false;
      }
      state.caller = auth.caller;
      state.releaseUser = releaseUser;
      state.idleSince = Date.now();
      if (auth.caller.expiresAt !== undefined) closeAtExpiry(ws, state, auth.caller.expiresAt * 1000);
      wsConnections.inc({ tenant: auth.caller.tenantId ?? '', transport: 'websocket' });
      return true;
    },
    onSubscribe: async (ctx, message) => {
      const state = states.get(ctx.extra.socket);
      const caller = state?.caller;
      if (!state || !caller) return [realtimeError('the connection is closing', 'IOT12')];
      if (caller.expiresAt !== undefined && caller.expiresAt <= Date.now() / 1000) {
        refusal('token_expired', fieldsOf(state));
        closeWith(ctx.extra.socket, CLOSE.unauthorized, 'token expired');
        return [realtimeError('token refused: jwt expired', 'IOT12')];
      }
      const ws = ctx.extra.socket;
      if (state.ids.has(message.id)) {
        refusal('duplicate_id', { ...fieldsOf(state), id: message.id });
        closeWith(ws, CLOSE.duplicateId, `Subscriber for ${message.id} already exists`);
        return [realtimeError(`subscription id ${message.id} is in use`)];
      }
      // Counted before any await, so a burst of subscribe messages cannot slip past the limit.
      if (state.ids.size >= settings.maxSubscriptionsPerSocket) {
        refusal('subscription_limit', { ...fieldsOf(state), limit: settings.maxSubscriptionsPerSocket });
        return [realtimeError(`too many subscriptions on this socket: at most ${settings.maxSubscriptionsPerSocket} (WS_MAX_SUBSCRIPTIONS_PER_SOCKET); complete one first or open another socket`, 'IOT11')];
      }
      const attempt = {};
      state.ids.set(message.id, attempt);
      const release = () => { if (state.ids.get(message.id) === attempt) state.ids.delete(message.id); };
      const prepared = prepareSubscription(await deps.getSchema(), message.payload, deps.limits);
      if (!prepared.ok) {
        release();
        refusal(prepared.kind, { ...fieldsOf(state), error: prepared.errors[0]?.message });
        return prepared.errors;
      }
      if (!(message.id in ctx.subscriptions)) {
        release();
        return [realtimeError('subscription completed by the client before it started')];
      }
      state.subs.set(message.id, prepared.fields);
      watched.delete(ctx.extra.socket);
      for (const f of prepared.fields) wsSubscriptions.inc({ tenant: caller.tenantId ?? '', subscription: f });
      const { query, variables, operationName } = message.payload;
      const tooSlow = (bufferedBytes: number) => {
        if (state.closing) return;
        refusal('slow_client', { ...fieldsOf(state), transport: 'websocket', bufferedBytes });
        closeWith(ws, CLOSE.slowClient, `the client does not read its events: over ${MAX_BUFFERED_BYTES} bytes unsent`);
        // The close frame waits behind the megabyte the client is not reading: one that still does not
        // read is cut off, so its buffers, subscriptions and connection slots go now, not at ws's 30 s.
        setTimeout(() => { if (ws.readyState !== WebSocket.CLOSED) ws.terminate(); }, SLOW_CLIENT_GRACE_MS).unref();
      };
      const sender = pushSender(ws, message.id, tooSlow);
      return shareExecution({ ...prepared.args, contextValue: { iotCaller: caller } },
        JSON.stringify([caller.tenantId, caller.role, query, variables ?? null, operationName ?? null]),
        { push: sender.push, stop: () => { sender.stop(); release(); } });
    },
    // Events of pushed subscriptions (push-sender.ts) do not pass here; a stream that cannot push does.
    onNext: (_ctx, _message, _args, result) => {
      wsMessagesSent.inc({ transport: 'websocket' });
      if (result.errors?.length) return { ...result, errors: formatErrors(result.errors) as never };
      return undefined;
    },
    onComplete: (ctx, message) => {
      const state = states.get(ctx.extra.socket);
      const fields = state?.subs.get(message.id);
      if (!state || !fields) return;
      state.subs.delete(message.id);
      for (const f of fields) wsSubscriptions.dec({ tenant: state.caller?.tenantId ?? '', subscription: f });
      if (state.subs.size === 0) {
        state.idleSince = Date.now();
        watched.add(ctx.extra.socket);
      }
    },
  }, wss, 0); // 0: no graphql-ws keep-alive; ours below allows one missed pong

  // Token expiry: one timer per socket (setTimeout holds at most ~24.8 days: re-armed until then).
  function closeAtExpiry(ws: WebSocket, state: SocketState, expiresAtMs: number) {
    const wait = expiresAtMs - Date.now();
    if (wait > LONGEST_TIMER_MS) {
      state.expiryTimer = setTimeout(() => closeAtExpiry(ws, state, expiresAtMs), LONGEST_TIMER_MS);
    } else {
      state.expiryTimer = setTimeout(() => {
        if (state.closing || !states.has(ws)) return;
        refusal('token_expired', fieldsOf(state));
        closeWith(ws, CLOSE.unauthorized, 'token expired');
      }, Math.max(0, wait));
    }
    state.expiryTimer.unref();
  }

  // Init and idle timeouts: one sweep over the watched sockets instead of timers per socket.
  const tick = Math.max(20, Math.min(1000, Math.floor(Math.min(settings.idleTimeoutMs, settings.connectionInitTimeoutMs) / 4)));
  const sweep = setInterval(() => {
    const now = Date.now();
    for (const ws of watched) {
      const state = states.get(ws);
      if (!state) {
        watched.delete(ws);
        continue;
      }
      if (state.closing) continue;
      if (!state.initReceived) {
        if (now - state.openedAt >= settings.connectionInitTimeoutMs) {
          refusal('init_timeout', fieldsOf(state));
          closeWith(ws, CLOSE.timeout, `no connection_init within ${settings.connectionInitTimeoutMs} ms: send connection_init with the token`);
        }
        continue;
      }
      if (!state.caller) continue;
      if (state.subs.size > 0) {
        watched.delete(ws);
      } else if (now - state.idleSince >= settings.idleTimeoutMs) {
        refusal('idle_timeout', fieldsOf(state));
        closeWith(ws, CLOSE.timeout, `no subscription for ${settings.idleTimeoutMs} ms (WS_IDLE_TIMEOUT_MS)`);
      }
    }
  }, tick);
  sweep.unref();

  // Keep-alive: every socket is pinged once per WS_KEEPALIVE_MS, a slice at a time (10,000 pings
  // at once held the event loop ~200 ms, and an alert arriving then waited for them). A socket keeps
  // the slice it was given at connect, so its pings are exactly one interval apart.
  let nextSlice = 0;
  const keepalive = setInterval(() => {
    const slice = slices[nextSlice++ % KEEPALIVE_SLICES];
    for (const ws of slice) {
      const state = states.get(ws);
      if (!state || ws.readyState !== WebSocket.OPEN) continue;
      if (state.missedPongs >= 2) {
        refusal('keepalive_timeout', fieldsOf(state));
        ws.terminate();
        continue;
      }
      state.missedPongs++;
      ws.ping();
    }
  }, Math.max(1, Math.floor(settings.keepaliveMs / KEEPALIVE_SLICES)));
  keepalive.unref();

  return {
    count: () => states.size,
    async close() {
      stopping = true;
      clearInterval(sweep);
      clearInterval(keepalive);
      server.off('upgrade', onUpgrade);
      const open = [...states.keys()];
      const closed = Promise.all(open.map((ws) => new Promise<void>((resolve) => {
        if (ws.readyState === WebSocket.CLOSED) return resolve();
        ws.once('close', () => resolve());
        closeWith(ws, CLOSE.goingAway, 'server shutting down');
      })));
      // Clients answer the close frame within milliseconds; one that does not is cut off.
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([closed, new Promise<void>((resolve) => { timer = setTimeout(resolve, 2000); })]);
      clearTimeout(timer);
      for (const ws of open) if (ws.readyState !== WebSocket.CLOSED) ws.terminate();
      await graphqlWs.dispose();
    },
  };
}

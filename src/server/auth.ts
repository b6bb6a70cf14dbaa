// API tokens, verified here and nowhere else (issue 7, finding 12). PostGraphile's own jwtSecret
// option would take any role claim as is (`role: postgres` on a superuser login bypassed RLS) and
// accept tokens that never expire; so PostGraphile gets no secret, and pgSettings(req) gets its
// role and jwt.claims.* from verifyRequest() below, which allows only the API's own roles, requires
// `exp` and bounds a token's lifetime. SQL reads the same settings as before (jwt.claims.tenant_id
// via iot.current_tenant_ids(), jwt.claims.sub via iot.current_actor()).
import { createSecretKey, type KeyObject } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { GraphQLError } from 'graphql';
import jwt from 'jsonwebtoken';
import { logger } from '../lib/log';
import { apiCounters } from './api-metrics';
import { throttled } from './log-throttle';

const log = logger('api');

/** The roles a token may claim; anything else is refused (never SET ROLE to it). */
export const API_ROLES = ['iot_operator', 'iot_analyst'] as const;
export type ApiRole = (typeof API_ROLES)[number];
const ANONYMOUS_ROLE = 'iot_anonymous';
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export interface Caller {
  role: ApiRole | typeof ANONYMOUS_ROLE;
  tenantId?: string;
  subject?: string;
  /** Seconds since the epoch; the caller is re-checked against it on every use (a WebSocket lives long). */
  expiresAt?: number;
  issuedAt?: number;
}

/** A refused token: HTTP 401, errcode IOT12, a message that says what was wrong with it. */
export class TokenRefused extends GraphQLError {
  readonly statusCode = 401;
  constructor(reason: string) {
    const message = `token refused: ${reason}`;
    // PostGraphile's extendedErrors take errcode from the original error's `code`.
    super(message, undefined, undefined, undefined, undefined, Object.assign(new Error(message), { code: 'IOT12' }));
  }
}

export interface TokenRules {
  secret: string;
  /** Longest accepted lifetime (exp - iat, and exp - now), in seconds. */
  maxLifetimeSeconds: number;
}

const note = throttled(log);
function logRefusal(reason: string, req: IncomingMessage, claims: Record<string, unknown> | undefined) {
  apiCounters.tokensRefused++;
  note('warn', 'API token refused', {
    reason, role: claims?.role, tenant: claims?.tenant_id, sub: claims?.sub, from: req.socket?.remoteAddress,
  });
}

/** The bearer token of an HTTP request or of a WebSocket's connection parameters. */
function tokenOf(req: IncomingMessage): string | undefined {
  // PostGraphile copies connectionParams.authorization onto the upgrade request's headers; the
  // seed system's clients send connectionParams.authToken (the contract), taken here too.
  const params = (req as { normalizedConnectionParams?: Record<string, unknown> }).normalizedConnectionParams;
  return bearerToken(req.headers.authorization ?? (typeof params?.authtoken === 'string' ? params.authtoken : undefined));
}

/** The token of an Authorization value: "Bearer <token>" or the bare token; undefined when empty. */
export function bearerToken(raw: string | undefined, where = 'the Authorization header'): string | undefined {
  if (raw === undefined || raw === '') return undefined;
  const m = /^\s*(?:bearer\s+)?(\S+)\s*$/i.exec(raw);
  if (!m) throw new TokenRefused(`${where} is not "Bearer <token>"`);
  return m[1];
}

// jsonwebtoken turns a string secret into a key object on every verify (createPublicKey tried
// first, about 0.5 ms): 10,000 dashboards reconnecting after a restart spent seconds there.
const secretKeys = new Map<string, KeyObject>();
function secretKey(secret: string): KeyObject {
  let key = secretKeys.get(secret);
  if (!key) secretKeys.set(secret, (key = createSecretKey(Buffer.from(secret))));
  return key;
}

/** Checks a token's signature and claims; returns the caller or throws TokenRefused. */
export function verifyToken(token: string, rules: TokenRules, nowSeconds = Math.floor(Date.now() / 1000)): Caller {
  let claims: jwt.JwtPayload;
  try {
    const decoded = jwt.verify(token, secretKey(rules.secret), { algorithms: ['HS256'], audience: 'postgraphile' });
    if (typeof decoded === 'string') throw new TokenRefused('the payload is not a JSON object');
    claims = decoded;
  } catch (error) {
    if (error instanceof TokenRefused) throw error;
    throw new TokenRefused((error as Error).message); // "invalid signature", "jwt expired", "jwt audience invalid..."
  }
  const refuse = (reason: string): never => {
    throw Object.assign(new TokenRefused(reason), { claims });
  };
  if (typeof claims.exp !== 'number') refuse('it has no exp (expiry) claim; every token must expire');
  const exp = claims.exp as number;
  const lifetime = exp - (typeof claims.iat === 'number' ? claims.iat : nowSeconds);
  const days = (s: number) => `${Math.round((s / 86400) * 10) / 10} days`;
  if (lifetime > rules.maxLifetimeSeconds || exp - nowSeconds > rules.maxLifetimeSeconds) {
    refuse(`its lifetime (${days(Math.max(lifetime, exp - nowSeconds))}) is longer than API_TOKEN_MAX_LIFETIME_DAYS (${days(rules.maxLifetimeSeconds)})`);
  }
  if (!API_ROLES.includes(claims.role as ApiRole)) {
    refuse(`role ${JSON.stringify(claims.role ?? null)} is not an API role (${API_ROLES.join(' or ')})`);
  }
  if (typeof claims.tenant_id !== 'string' || !UUID.test(claims.tenant_id)) {
    refuse(`tenant_id ${JSON.stringify(claims.tenant_id ?? null)} is not a tenant id (a UUID)`);
  }
  if (claims.sub !== undefined && typeof claims.sub !== 'string') refuse('sub is not a string');
  return {
    role: claims.role as ApiRole, tenantId: (claims.tenant_id as string).toLowerCase(), subject: claims.sub,
    expiresAt: exp, issuedAt: typeof claims.iat === 'number' ? claims.iat : undefined,
  };
}

const verified = new WeakMap<IncomingMessage, Caller>();

/**
 * The caller of a request: anonymous without a token, else the verified token's role and claims.
 * Memoised per request object (PostGraphile asks twice per request, and once per operation on a
 * WebSocket, whose upgrade request it reuses); the expiry is checked again on every call.
 */
export function verifyRequest(req: IncomingMessage, rules: TokenRules): Caller {
  let caller = verified.get(req);
  if (!caller) {
    let token: string | undefined;
    try {
      token = tokenOf(req);
      caller = token === undefined ? { role: ANONYMOUS_ROLE } : verifyToken(token, rules);
    } catch (error) {
      if (error instanceof TokenRefused) logRefusal(error.message, req, (error as { claims?: Record<string, unknown> }).claims ?? safeDecode(token));
      throw error;
    }
    verified.set(req, caller);
  }
  if (caller.expiresAt !== undefined && caller.expiresAt <= Date.now() / 1000) {
    throw new TokenRefused('jwt expired');
  }
  return caller;
}

function safeDecode(token: string | undefined): Record<string, unknown> | undefined {
  if (!token) return undefined;
  const d = jwt.decode(token);
  return d && typeof d === 'object' ? (d as Record<string, unknown>) : undefined;
}

/** The transaction settings of a request: its role and the claims SQL reads. */
export function settingsFor(caller: Caller): Record<string, string> {
  const s: Record<string, string> = { role: caller.role };
  if (caller.tenantId) s['jwt.claims.tenant_id'] = caller.tenantId;
  if (caller.subject !== undefined) s['jwt.claims.sub'] = caller.subject;
  if (caller.role !== ANONYMOUS_ROLE) s['jwt.claims.role'] = caller.role;
  if (caller.expiresAt !== undefined) s['jwt.claims.exp'] = String(caller.expiresAt);
  if (caller.issuedAt !== undefined) s['jwt.claims.iat'] = String(caller.issuedAt);
  return s;
}

// Who is on the other end of a realtime connection: the token is checked when the connection opens
// (connection_init for WebSocket, the request for SSE), never first at subscribe. Sources, first
// found wins: connectionParams.authToken (the seed's front end), connectionParams.Authorization /
// authorization ("Bearer x" or bare), then the request's Authorization header (non-browser clients),
// and for SSE only `?token=` (EventSource cannot set headers).
import type { IncomingMessage } from 'node:http';
import { apiCounters } from '../api-metrics';
import { bearerToken, type Caller, TokenRefused, type TokenRules, verifyToken } from '../auth';
import { CLOSE } from './close-codes';
import type { RefusalReason } from './refusals';

export type AuthResult =
  | { ok: true; caller: Caller }
  | { ok: false; code: number; status: number; reason: RefusalReason; message: string };

interface Source {
  value: unknown;
  where: string;
}

function firstToken(sources: Source[]): string | undefined {
  for (const { value, where } of sources) {
    if (value === undefined || value === null || value === '') continue;
    if (typeof value !== 'string') throw new TokenRefused(`${where} is not a string`);
    const token = bearerToken(value, where);
    if (token !== undefined) return token;
  }
  return undefined;
}

function check(sources: Source[], tokens: TokenRules, claimedTenant: unknown, hint: string): AuthResult {
  let token: string | undefined;
  try {
    token = firstToken(sources);
    if (token === undefined) {
      return { ok: false, code: CLOSE.unauthorized, status: 401, reason: 'token_missing', message: `token missing: ${hint}` };
    }
    const caller = verifyToken(token, tokens);
    if (claimedTenant !== undefined && claimedTenant !== null && claimedTenant !== '') {
      if (typeof claimedTenant !== 'string' || claimedTenant.toLowerCase() !== caller.tenantId) {
        return { ok: false, code: CLOSE.forbidden, status: 403, reason: 'tenant_mismatch',
          message: `tenantId ${JSON.stringify(claimedTenant)} is not the token's tenant` };
      }
    }
    return { ok: true, caller };
  } catch (error) {
    if (!(error instanceof TokenRefused)) throw error;
    apiCounters.tokensRefused++;
    const expired = /jwt expired/.test(error.message);
    return { ok: false, code: CLOSE.unauthorized, status: 401, reason: expired ? 'token_expired' : 'token_invalid', message: error.message };
  }
}

/** A WebSocket's caller, from connection_init's payload and the upgrade request. */
export function authenticateSocket(params: Readonly<Record<string, unknown>> | undefined, req: IncomingMessage, tokens: TokenRules): AuthResult {
  return check([
    { value: params?.authToken, where: 'connectionParams.authToken' },
    { value: params?.Authorization, where: 'connectionParams.Authorization' },
    { value: params?.authorization, where: 'connectionParams.authorization' },
    { value: req.headers.authorization, where: 'the Authorization header' },
  ], tokens, params?.tenantId, 'send connectionParams { authToken } (or Authorization: Bearer <token>)');
}

/** An SSE request's caller: the Authorization header, else ?token= (logged by proxies: see README). */
export function authenticateStream(req: IncomingMessage, query: URLSearchParams, tokens: TokenRules): AuthResult {
  return check([
    { value: req.headers.authorization, where: 'the Authorization header' },
    { value: query.get('token') ?? undefined, where: 'the token parameter' },
  ], tokens, query.get('tenantId') ?? undefined, 'send Authorization: Bearer <token> (or ?token=<token> from EventSource)');
}

/** Seconds until the caller's token expires (Infinity without exp, which verifyToken never lets through). */
export function secondsLeft(caller: Caller, now = Date.now() / 1000): number {
  return caller.expiresAt === undefined ? Infinity : caller.expiresAt - now;
}

// PostGraphile plugin hooks of the API: the per-request validation rules (src/server/limits.ts, and
// a refused token on a WebSocket), and what a statement timeout tells the client and the log.
import type { GraphQLFormattedError, ValidationContext } from 'graphql';
import type { IncomingMessage } from 'node:http';
import type { PostGraphilePlugin } from 'postgraphile';
import { logger } from '../lib/log';
import { apiCounters } from './api-metrics';
import { TokenRefused, type TokenRules, verifyRequest } from './auth';
import { queryLimitRules, type QueryLimits } from './limits';
import { throttled } from './log-throttle';

const note = throttled(logger('api'));

export function limitsHook({ limits, tokens, statementTimeoutMs }: { limits: QueryLimits; tokens: TokenRules; statementTimeoutMs: number }): PostGraphilePlugin {
  return {
    'postgraphile:validationRules': (rules, { req, variables, operationName }) => {
      // On a WebSocket a refused token must reach the client as an error message of the operation
      // (thrown later, while PostGraphile builds the context, it only closes the socket with 4500).
      // Over HTTP pgSettings refuses it, with status 401.
      const request = req as IncomingMessage | undefined;
      if (request?.headers?.upgrade?.toLowerCase() === 'websocket') {
        try {
          verifyRequest(request, tokens);
        } catch (error) {
          if (!(error instanceof TokenRefused)) throw error;
          return [...rules, (context: ValidationContext) => {
            context.reportError(error);
            return {};
          }];
        }
      }
      return [...rules, ...queryLimitRules(limits, variables as Record<string, unknown> | undefined, operationName as string | undefined)];
    },
    // Say what to do about a statement timeout, and count it.
    'postgraphile:http:result': (result, { req }) => {
      const errors = (result as { errors?: (GraphQLFormattedError & { errcode?: string })[] }).errors;
      const timedOut = errors?.filter((e) => e.errcode === '57014' && /statement timeout/.test(e.message));
      if (timedOut?.length) {
        apiCounters.statementTimeouts++;
        for (const e of timedOut) {
          (e as { message: string }).message = `${e.message}: the query ran longer than API_STATEMENT_TIMEOUT_MS (${statementTimeoutMs} ms); ask for less (smaller first/last, a shorter time range, a rollup)`;
        }
        let caller;
        try {
          caller = verifyRequest(req as IncomingMessage, tokens);
        } catch {
          caller = undefined;
        }
        note('warn', 'API query stopped by statement_timeout', { ms: statementTimeoutMs, role: caller?.role, tenant: caller?.tenantId, sub: caller?.subject });
      }
      return result;
    },
  };
}

// What a realtime connection may run: subscriptions only (queries and mutations go over HTTP, where
// statement_timeout, cancellation and the per-request transaction apply), checked by the same
// validation rules as HTTP (the specification's, then depth, page size and cost: ../limits.ts).
import {
  type DocumentNode, type ExecutionArgs, getOperationAST, GraphQLError, type GraphQLFormattedError, type GraphQLSchema,
  parse, specifiedRules, validate,
} from 'graphql';
import { queryLimitRules, type QueryLimits } from '../limits';

export interface OperationRequest {
  query: string;
  variables?: Record<string, unknown> | null;
  operationName?: string | null;
}

export type Prepared =
  | { ok: true; args: ExecutionArgs; fields: string[] }
  | { ok: false; kind: 'not_subscription' | 'invalid_operation'; errors: GraphQLError[] };

/** Gives the error's JSON an errcode at the top level, as PostGraphile's HTTP errors have it. */
function serializeWithErrcode(error: GraphQLError, errcode: string): GraphQLError {
  Object.defineProperty(error, 'errcode', { value: errcode, enumerable: false });
  Object.defineProperty(error, 'toJSON', { value: () => ({ ...GraphQLError.prototype.toJSON.call(error), errcode }), enumerable: false });
  return error;
}

/** A GraphQL error for a realtime client, with errcode (IOT11 limits, IOT12 token) when given. */
export function realtimeError(message: string, errcode?: string): GraphQLError {
  const error = new GraphQLError(message);
  return errcode ? serializeWithErrcode(error, errcode) : error;
}

/** Parses and validates; the execution arguments (without context) or the errors to send back. */
export function prepareSubscription(schema: GraphQLSchema, request: OperationRequest, limits: QueryLimits): Prepared {
  let document: DocumentNode;
  try {
    document = parse(request.query);
  } catch (error) {
    return { ok: false, kind: 'invalid_operation', errors: [error instanceof GraphQLError ? error : realtimeError(String(error))] };
  }
  const variables = request.variables ?? undefined;
  const operationName = request.operationName ?? undefined;
  const errors = validate(schema, document, [...specifiedRules, ...queryLimitRules(limits, variables, operationName)]);
  if (errors.length) return { ok: false, kind: 'invalid_operation', errors: errors.map(withErrcode) };
  const operation = getOperationAST(document, operationName);
  if (!operation) return { ok: false, kind: 'invalid_operation', errors: [realtimeError('unable to identify the operation: name it with operationName')] };
  if (operation.operation !== 'subscription') {
    return { ok: false, kind: 'not_subscription', errors: [realtimeError(
      `${operation.operation === 'query' ? 'queries' : 'mutations'} are not served over WebSocket/SSE: send them as HTTP POST to the GraphQL endpoint; only subscriptions run here`, 'IOT11')] };
  }
  const fields = operation.selectionSet.selections.map((s) => (s.kind === 'Field' ? s.name.value : '(fragment)'));
  return { ok: true, args: { schema, document, variableValues: variables, operationName }, fields };
}

/** The error as a client sees it: errcode (from the SQL error or our code) at the top level. */
export function withErrcode(error: GraphQLError): GraphQLError {
  const code = (error.originalError as { code?: unknown } | undefined)?.code;
  return typeof code === 'string' && !('errcode' in error) ? serializeWithErrcode(error, code) : error;
}

/** Execution results' errors with errcode, for graphql-ws's onNext and for SSE. */
export function formatErrors(errors: readonly GraphQLError[] | undefined): (GraphQLFormattedError & { errcode?: string })[] | undefined {
  if (!errors) return undefined;
  return errors.map((e) => {
    const code = (e.originalError as { code?: unknown } | undefined)?.code ?? (e as { errcode?: unknown }).errcode;
    return { message: e.message, locations: e.locations, path: e.path, ...(typeof code === 'string' ? { errcode: code } : {}), ...(e.extensions ? { extensions: e.extensions } : {}) };
  });
}

// One execution per event for all subscribers that asked the same thing. graphql's subscribe()
// runs `execute` once per subscriber per event; with 10,000 dashboards on one document that was
// most of the fan-out's CPU. Here subscribers of one tenant and role with the same query text,
// variables and operation name share the result of an event (the NOTIFY payload object, which
// pg-pubsub and plugins/subscriptions.ts hand to every subscriber as the same object). The source
// stream (topic, argument checks, filters) stays per subscriber, as graphql's subscribe() has it.
import { createSourceEventStream, execute, type ExecutionArgs, type ExecutionResult, GraphQLError } from 'graphql';
import mapAsyncIterator from 'graphql/subscription/mapAsyncIterator';

const keys = new WeakMap<ExecutionArgs, string>();
/** Results per payload object, per key; dropped with the payload. */
const results = new WeakMap<object, Map<string, ExecutionResult | Promise<ExecutionResult>>>();

/** Marks execution arguments as shareable under `key` (same query, variables, operation and tenant/role). */
export function shareExecution(args: ExecutionArgs, key: string): ExecutionArgs {
  keys.set(args, key);
  return args;
}

function reportGraphQLError(error: unknown): ExecutionResult {
  if (error instanceof GraphQLError) return { errors: [error] };
  throw error;
}

/** graphql's subscribe(), with the per-event execution shared between subscribers of one key. */
export async function sharedSubscribe(args: ExecutionArgs): Promise<AsyncIterableIterator<ExecutionResult> | ExecutionResult> {
  const stream = await createSourceEventStream(args.schema, args.document, args.rootValue, args.contextValue, args.variableValues ?? undefined, args.operationName);
  if (!(Symbol.asyncIterator in (stream as object))) return stream as ExecutionResult;
  const key = keys.get(args);
  const run = (payload: unknown) => execute({ ...args, rootValue: payload });
  const map = (payload: unknown) => {
    if (key === undefined || payload === null || typeof payload !== 'object') return run(payload);
    let perKey = results.get(payload);
    if (!perKey) results.set(payload, (perKey = new Map()));
    let result = perKey.get(key);
    if (!result) perKey.set(key, (result = run(payload)));
    return result;
  };
  return mapAsyncIterator(stream as AsyncIterable<unknown>, map, reportGraphQLError) as AsyncIterableIterator<ExecutionResult>;
}

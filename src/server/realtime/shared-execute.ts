// One execution per event for all subscribers that asked the same thing. graphql's subscribe()
// runs `execute` once per subscriber per event; with 10,000 dashboards on one document that was
// most of the fan-out's CPU. Here subscribers of one tenant and role with the same query text,
// variables and operation name share the result of an event (the NOTIFY payload object, which
// pg-pubsub and plugins/subscriptions.ts hand to every subscriber as the same object). The source
// stream (topic, argument checks, filters) stays per subscriber, as graphql's subscribe() has it.
//
// A subscriber with a push function (the WebSocket server's) also shares the result's JSON: its
// stream hands each event to it directly (live/topics.ts PushStream), and graphql-ws's per-event
// loop (for-await, onNext, stringify, send: a chain of promises per subscriber) waits only for the end.
import { createSourceEventStream, execute, type ExecutionArgs, type ExecutionResult, GraphQLError } from 'graphql';
import mapAsyncIterator from 'graphql/subscription/mapAsyncIterator';
import { isPushStream } from '../plugins/live/topics';
import { formatErrors } from './operation';

/** Where a pushed subscriber's results go (push-sender.ts). */
export interface Pusher {
  /** The JSON of one execution result (a graphql-ws `next` payload), or a promise of it. */
  push(json: string | Promise<string>): void;
  /** The subscription has ended, or never started (refused, failed): nothing more is sent for it. */
  stop(): void;
}

const keys = new WeakMap<ExecutionArgs, string>();
const pushers = new WeakMap<ExecutionArgs, Pusher>();
/** Results (and their JSON) per payload object, per key; dropped with the payload. */
const results = new WeakMap<object, Map<string, ExecutionResult | Promise<ExecutionResult>>>();
const serialized = new WeakMap<object, Map<string, string | Promise<string>>>();

/**
 * Marks execution arguments as shareable under `key` (same query, variables, operation and
 * tenant/role); with `push`, events go to it as JSON instead of through the returned iterator.
 */
export function shareExecution(args: ExecutionArgs, key: string, push?: Pusher): ExecutionArgs {
  keys.set(args, key);
  if (push) pushers.set(args, push);
  return args;
}

function reportGraphQLError(error: unknown): ExecutionResult {
  if (error instanceof GraphQLError) return { errors: [error] };
  throw error;
}

/** Per payload object and key, computed once. */
function memo<V>(cache: WeakMap<object, Map<string, V>>, payload: object, key: string, compute: () => V): V {
  let perKey = cache.get(payload);
  if (!perKey) cache.set(payload, (perKey = new Map()));
  let value = perKey.get(key);
  if (value === undefined) perKey.set(key, (value = compute()));
  return value;
}

const toJson = (result: ExecutionResult) => JSON.stringify(result.errors?.length ? { ...result, errors: formatErrors(result.errors as GraphQLError[]) } : result);
const serialize = (result: ExecutionResult | Promise<ExecutionResult>) =>
  (typeof (result as Promise<ExecutionResult>).then === 'function' ? (result as Promise<ExecutionResult>).then(toJson) : toJson(result as ExecutionResult));

/** graphql's subscribe(), with the per-event execution shared between subscribers of one key. */
export async function sharedSubscribe(args: ExecutionArgs): Promise<AsyncIterableIterator<ExecutionResult> | ExecutionResult> {
  const push = pushers.get(args);
  let stream: Awaited<ReturnType<typeof createSourceEventStream>>;
  try {
    stream = await createSourceEventStream(args.schema, args.document, args.rootValue, args.contextValue, args.variableValues ?? undefined, args.operationName);
  } catch (error) {
    push?.stop();
    throw error;
  }
  if (!(Symbol.asyncIterator in (stream as object))) {
    push?.stop(); // refused (argument checks): it never starts
    return stream as ExecutionResult;
  }
  const key = keys.get(args);
  const run = (payload: unknown) => execute({ ...args, rootValue: payload });
  // Not shareable: no key, or a payload that is not one object handed to every subscriber.
  const alone = (payload: unknown) => key === undefined || payload === null || typeof payload !== 'object';
  if (push && isPushStream(stream)) {
    stream.pushTo((payload) => push.push(alone(payload) ? serialize(run(payload)) : memo(serialized, payload as object, key!, () => serialize(run(payload)))),
      () => push.stop());
    return stream as unknown as AsyncIterableIterator<ExecutionResult>; // yields nothing; ends when the subscription does
  }
  const map = (payload: unknown) => (alone(payload) ? run(payload) : memo(results, payload as object, key!, () => run(payload)));
  const mapped = mapAsyncIterator(stream as AsyncIterable<unknown>, map, reportGraphQLError) as AsyncIterableIterator<ExecutionResult>;
  return push ? whenDone(mapped, () => push.stop()) : mapped;
}

/** The iterator, telling `done` once when it finishes or is returned (a pusher whose stream cannot push). */
function whenDone<T>(it: AsyncIterableIterator<T>, done: () => void): AsyncIterableIterator<T> {
  let told = false;
  const tell = <R extends IteratorResult<T>>(r: R) => {
    if (r.done && !told) { told = true; done(); }
    return r;
  };
  return {
    next: () => it.next().then(tell),
    return: (value?: unknown) => (it.return ? it.return(value) : Promise.resolve({ value: undefined, done: true as const })).then(tell),
    throw: (error?: unknown) => { if (!told) { told = true; done(); } return it.throw ? it.throw(error) : Promise.reject(error); },
    [Symbol.asyncIterator]() { return this; },
  };
}

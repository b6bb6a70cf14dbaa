// Live events for dashboards: the seed's subscriptions (contract graphql.subscription) and the
// project's own two. Every event is a NOTIFY from the database (sql/600_live_events.sql,
// sql/110_ingest.sql, sql/300_telemetry_api.sql), never published from TypeScript.
//  - Tenancy: a subscriber LISTENs only on its own tenant's channel, whose name carries that
//    tenant's random key (notify-channels.ts); the tenant is the verified token's (auth.ts).
//  - Arguments: checked once at subscribe (live/arguments.ts): another tenant's or an unknown id is
//    refused with IOT04, never an empty stream. Then events are filtered in process by the
//    payload's routing keys: no query per event.
//  - Cost: one LISTEN per channel per instance shared by all subscribers (live/topics.ts); payloads
//    come in the NOTIFY, outbox payloads are fetched once per id per instance (live/outbox.ts); a
//    notice is mapped to GraphQL objects once for all its subscribers (perNotice below).
//  - Payloads are served without SQL, so fields that need SQL are refused at subscribe (live/selection.ts).
//  - Live readings held back by the interval reach dashboards within ~1.5 intervals when their
//    device falls silent (live/flush.ts), not at the minute job.
import type { Build } from 'graphile-build';
import type { GraphQLResolveInfo } from 'graphql';
import { makeExtendSchemaPlugin } from 'postgraphile';
import type { Caller } from '../auth';
import type { NotifyChannels, OwnerQuery } from '../notify-channels';
import { checkArgument, subscriptionError } from './live/arguments';
import { liveFields, ROW_TYPES, type Args, type LiveField, type RowTypeName } from './live/fields';
import { liveFlush, type LiveFlush } from './live/flush';
import { outboxFetcher } from './live/outbox';
import { rowShape, type RowShape } from './live/payloads';
import { refuseUnservableFields } from './live/selection';
import { liveHub, type LiveHub, type Notice, type PubSubLike } from './live/topics';
import { typeDefs } from './live/type-defs';

export interface SubscriptionDeps {
  channels: NotifyChannels;
  /** Runs as the API's owner login: the argument checks and outbox fetches filter by tenant themselves. */
  query: OwnerQuery;
}

interface Context {
  iotCaller?: Caller;
}

/** Memoises a notice's payloads, so 10,000 subscribers of one event cost one mapping. */
function perNotice(payloads: (n: Notice) => unknown[]) {
  const memo = new WeakMap<Notice, unknown[]>();
  return (n: Notice) => {
    let found = memo.get(n);
    if (!found) {
      found = payloads(n);
      memo.set(n, found);
    }
    return found;
  };
}

function subscribeFor(name: string, field: LiveField, deps: SubscriptionDeps, hub: LiveHub, flush: LiveFlush,
  servable: (t: string) => ReadonlySet<string> | undefined) {
  const payloads = perNotice(field.payloads);
  return async (_parent: unknown, rawArgs: Record<string, unknown>, context: Context, info: GraphQLResolveInfo) => {
    const caller = context.iotCaller;
    if (!caller?.tenantId) throw subscriptionError('subscriptions need a bearer token with a tenant_id claim', 'IOT12');
    if (caller.expiresAt !== undefined && caller.expiresAt <= Date.now() / 1000) throw subscriptionError('token refused: jwt expired', 'IOT12');
    refuseUnservableFields(info, servable);
    const args: Args = {};
    for (const [arg, spec] of Object.entries(field.args ?? {})) {
      const value = rawArgs[arg];
      if (value === undefined || value === null) {
        if (spec.optional) continue;
        throw subscriptionError(`${arg} is required`, '22023');
      }
      args[arg] = await checkArgument(deps.query, caller.tenantId, arg, value, spec.kind);
    }
    const channel = await deps.channels.channel(field.kind, caller.tenantId);
    const wants = field.wants;
    // Live readings: held-back values of devices that fell silent are flushed while someone watches (live/flush.ts).
    const release = field.kind === 'iot_live_readings' ? flush.watch(caller.tenantId) : undefined;
    return hub.subscribe(channel, (n) => (!wants || wants(n, args) ? payloads(n) : undefined), {
      label: name,
      endsAt: caller.expiresAt === undefined ? undefined : caller.expiresAt * 1000,
      onEnd: release,
    });
  };
}


/**
 * The subscriptions plugin. `deps` may also be the NotifyChannels alone (their owner query is then
 * used), which is how app.ts called it before the live events.
 */
export const subscriptionsPlugin = (deps: SubscriptionDeps | NotifyChannels) => {
  const resolved: SubscriptionDeps = 'channels' in deps ? deps : { channels: deps, query: deps.query };
  return makeExtendSchemaPlugin((build: Build, options) => {
    const pubsub = (options as { pubsub?: PubSubLike }).pubsub;
    const shapes = Object.fromEntries(Object.entries(ROW_TYPES).map(([type, rel]) => [type, rowShape(build, rel)])) as Record<RowTypeName, RowShape>;
    const servable = (typeName: string) => (typeName in shapes ? shapes[typeName as RowTypeName].servable : undefined);
    const fields = liveFields(shapes);
    const Subscription: Record<string, { subscribe: ReturnType<typeof subscribeFor>; resolve: (event: unknown) => unknown }> = {};
    if (pubsub) {
      const hub = liveHub(pubsub, outboxFetcher(resolved.query));
      const flush = liveFlush(hub, resolved.channels, resolved.query);
      for (const [name, field] of Object.entries(fields)) {
        Subscription[name] = { subscribe: subscribeFor(name, field, resolved, hub, flush, servable), resolve: (event: unknown) => event };
      }
    }
    // Without pubsub (no subscriptions) the fields exist but have no subscribe: PostGraphile refuses them.
    return { typeDefs, resolvers: { Subscription } };
  });
};

// Live events for dashboards. Every event is a NOTIFY from the database (sql/110_ingest.sql,
// sql/300_telemetry_api.sql); @graphile/pg-pubsub LISTENs on the topic verbatim. The topic is the
// channel of the tenant named by the verified token (src/server/auth.ts), which carries that
// tenant's random key (sql/060_notify_channels.sql): a subscriber only ever hears its own tenant,
// and no SQL login can name another tenant's channel.
import { embed, gql, makeExtendSchemaPlugin } from 'postgraphile';
import type { Caller } from '../auth';
import type { ChannelKind, NotifyChannels } from '../notify-channels';

interface Context {
  iotCaller?: Caller;
}

const tenantTopic = (channels: NotifyChannels, kind: ChannelKind) => async (_args: unknown, context: Context) => {
  const tenant = context.iotCaller?.tenantId;
  if (!tenant) throw new Error('subscriptions need a bearer token with a tenant_id claim');
  return channels.channel(kind, tenant);
};

// A subscription outlives the request that opened it: once its token has expired, it hears nothing more.
const tokenStillValid = (_payload: unknown, _args: unknown, context: Context) =>
  context.iotCaller?.expiresAt === undefined || context.iotCaller.expiresAt > Date.now() / 1000;

export const subscriptionsPlugin = (channels: NotifyChannels) => makeExtendSchemaPlugin(() => ({
  typeDefs: gql`
    """One stored batch of readings for the subscriber's tenant (one notice per batch, not per reading)."""
    type TelemetryBatch {
      tenantId: UUID!
      readingCount: Int!
      deviceCount: Int!
      firstTime: Datetime
      lastTime: Datetime
    }

    """A newly raised equipment event."""
    type EquipmentEventNotice {
      id: UUID!
      eventTimestamp: Datetime!
      tenantId: UUID!
      workCenterId: UUID!
      iotDeviceId: UUID
      sensorType: String
      eventType: String!
      eventCode: String
      severity: String!
      eventDescription: String!
      productionRunId: UUID
    }

    extend type Subscription {
      """Fires after each stored batch of readings of your tenant."""
      telemetryIngested: TelemetryBatch @pgSubscription(topic: ${embed(tenantTopic(channels, 'iot_readings'))}, filter: ${embed(tokenStillValid)})
      """Fires for each new equipment event of your tenant."""
      equipmentEventRaised: EquipmentEventNotice @pgSubscription(topic: ${embed(tenantTopic(channels, 'iot_events'))}, filter: ${embed(tokenStillValid)})
    }
  `,
  resolvers: {
    Subscription: {
      telemetryIngested: (event: unknown) => event,
      equipmentEventRaised: (event: unknown) => event,
    },
  },
}));

// Live events for dashboards. Every event is a NOTIFY from the database (sql/110_ingest.sql,
// sql/300_telemetry_api.sql); @graphile/pg-pubsub LISTENs on the topic verbatim. Topics carry the
// tenant id from the verified JWT, so a subscriber only ever hears its own tenant.
import { embed, gql, makeExtendSchemaPlugin } from 'postgraphile';

interface Context {
  jwtClaims?: { tenant_id?: string } | null;
}

const tenantTopic = (prefix: string) => (_args: unknown, context: Context) => {
  const tenant = context.jwtClaims?.tenant_id;
  if (!tenant || !/^[0-9a-f-]{36}$/i.test(tenant)) {
    throw new Error('subscriptions need a bearer token with a tenant_id claim');
  }
  return `${prefix}:${tenant.toLowerCase()}`;
};

export const SubscriptionsPlugin = makeExtendSchemaPlugin(() => ({
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
      telemetryIngested: TelemetryBatch @pgSubscription(topic: ${embed(tenantTopic('iot_readings'))})
      """Fires for each new equipment event of your tenant."""
      equipmentEventRaised: EquipmentEventNotice @pgSubscription(topic: ${embed(tenantTopic('iot_events'))})
    }
  `,
  resolvers: {
    Subscription: {
      telemetryIngested: (event: unknown) => event,
      equipmentEventRaised: (event: unknown) => event,
    },
  },
}));

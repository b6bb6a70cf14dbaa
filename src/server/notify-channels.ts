// The NOTIFY channels of a tenant carry a random key held in iot_private (sql/060_notify_channels.sql),
// so that SQL logins cannot LISTEN to another tenant. The API asks the database once per tenant and
// kind and keeps the answer for the life of the process.

/** The channel prefixes the database NOTIFYs on (see /work/briefs/s3/live-events-contract.md, sql/600_live_events.sql). */
export const CHANNEL_KINDS = ['iot_readings', 'iot_events', 'iot_live_readings', 'iot_health', 'iot_alerts', 'iot_spc'] as const;
export type ChannelKind = (typeof CHANNEL_KINDS)[number];

/** A query run as the API's owner login (no RLS, no caller settings): callers filter by tenant themselves. */
export type OwnerQuery = (text: string, values: unknown[]) => Promise<any[]>;

export interface NotifyChannels {
  channel(kind: ChannelKind, tenantId: string): Promise<string>;
  /**
   * The owner query these channels are looked up with. The subscriptions plugin falls back on it
   * when it is given only the channels (see plugins/subscriptions.ts).
   */
  readonly query: OwnerQuery;
}

export function notifyChannels(query: OwnerQuery): NotifyChannels {
  const cache = new Map<string, Promise<string>>();
  return {
    query,
    channel(kind, tenantId) {
      const key = `${kind}/${tenantId}`;
      let found = cache.get(key);
      if (!found) {
        found = query('select iot_private.notify_channel($1, $2) as channel', [kind, tenantId]).then((rows) => rows[0].channel as string);
        cache.set(key, found);
        found.catch(() => cache.delete(key)); // a failed lookup (database down) is retried next time
      }
      return found;
    },
  };
}

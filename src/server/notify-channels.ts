// The NOTIFY channels of a tenant carry a random key held in iot_private (sql/060_notify_channels.sql),
// so that SQL logins cannot LISTEN to another tenant. The API asks the database once per tenant and
// kind and keeps the answer for the life of the process.

export type ChannelKind = 'iot_readings' | 'iot_events';

export interface NotifyChannels {
  channel(kind: ChannelKind, tenantId: string): Promise<string>;
}

type Query = (text: string, values: unknown[]) => Promise<{ channel: string }[]>;

export function notifyChannels(query: Query): NotifyChannels {
  const cache = new Map<string, Promise<string>>();
  return {
    channel(kind, tenantId) {
      const key = `${kind}/${tenantId}`;
      let found = cache.get(key);
      if (!found) {
        found = query('select iot_private.notify_channel($1, $2) as channel', [kind, tenantId]).then((rows) => rows[0].channel);
        cache.set(key, found);
        found.catch(() => cache.delete(key)); // a failed lookup (database down) is retried next time
      }
      return found;
    },
  };
}

// Sends one alert delivery {deliveryId} (src/alerts/deliver.ts). A failed attempt throws, so
// graphile-worker retries it with its exponential backoff; the last one marks it FAILED.
import type { Task } from 'graphile-worker';
import { deliverAlert } from '../src/alerts/deliver';
import { deliverySettings } from '../src/alerts/settings';

const task: Task = async (payload, { withPgClient }) => {
  const { deliveryId } = (payload ?? {}) as { deliveryId?: string };
  if (typeof deliveryId !== 'string') throw new Error('alerts__deliver needs a payload {deliveryId}');
  const settings = deliverySettings();
  await withPgClient((client) => deliverAlert(client, deliveryId, settings));
};
export default task;

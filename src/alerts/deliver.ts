// Sends one alert delivery (a row of iot.alert_deliveries), exactly as the job alerts__deliver does.
// The row is locked for the send, so two jobs never send the same delivery at once, and its status
// is checked first, so a job re-run after a crash never sends a SENT delivery again. (A crash
// between the send and the commit can still send one copy twice: e-mail carries a stable
// Message-ID and webhooks an Idempotency-Key, both the delivery id, to let receivers drop it.)
import type { PoolClient } from 'pg';
import { logger } from '../lib/log';
import { sendAlertEmail } from './email';
import { postAlertWebhook } from './webhook';

const log = logger('alerts');

export interface DeliverySettings {
  smtpUrl?: string;
  emailFrom: string;
  smsWebhookUrl?: string;
  timeoutMs: number;
  maxAttempts: number;
}

export type DeliveryOutcome = 'SENT' | 'FAILED' | 'SUPPRESSED' | 'ALREADY_DONE' | 'BUSY' | 'MISSING';

interface Rendered {
  delivery: { id: string; channel: 'EMAIL' | 'SMS' | 'WEBHOOK'; recipient: string; source: string; source_id: string };
  alert: Record<string, unknown> | null;
  subject: string;
  text: string;
  sms: string;
}

/** A channel that cannot be used until a setting is given: waits (retried), never FAILED for it. */
export class ChannelNotConfigured extends Error {}

async function send(r: Rendered, s: DeliverySettings): Promise<void> {
  const d = r.delivery;
  if (d.channel === 'EMAIL') {
    if (!s.smtpUrl) throw new ChannelNotConfigured('SMTP_URL is not set');
    await sendAlertEmail({ smtpUrl: s.smtpUrl, from: s.emailFrom, to: d.recipient, subject: r.subject, text: r.text,
      messageId: `<${d.id}@plant-telemetry.alerts>`, timeoutMs: s.timeoutMs });
  } else if (d.channel === 'SMS') {
    if (!s.smsWebhookUrl) throw new ChannelNotConfigured('ALERT_SMS_WEBHOOK_URL is not set');
    await postAlertWebhook({ url: s.smsWebhookUrl, body: { to: d.recipient, text: r.sms, alertId: d.source_id },
      timeoutMs: s.timeoutMs, idempotencyKey: d.id });
  } else {
    await postAlertWebhook({ url: d.recipient, body: { deliveryId: d.id, subject: r.subject, text: r.text, alert: r.alert },
      timeoutMs: s.timeoutMs, idempotencyKey: d.id });
  }
}

/**
 * Delivers once. Throws when the attempt failed and should be retried (graphile-worker's backoff);
 * returns the outcome otherwise, FAILED included (after `maxAttempts` attempts, logged).
 */
export async function deliverAlert(client: PoolClient, deliveryId: string, s: DeliverySettings): Promise<DeliveryOutcome> {
  await client.query('begin');
  try {
    const { rows } = await client.query<{ status: string; attempts: number; rule_enabled: boolean | null }>(
      `select d.status, d.attempts, r.is_enabled as rule_enabled
       from iot.alert_deliveries d left join iot.alert_routing_rules r on r.id = d.rule_id
       where d.id = $1 for update of d skip locked`, [deliveryId]);
    if (!rows.length) {
      const exists = await client.query(`select 1 from iot.alert_deliveries where id = $1`, [deliveryId]);
      await client.query('commit');
      return exists.rowCount ? 'BUSY' : 'MISSING';
    }
    const row = rows[0];
    if (row.status !== 'PENDING') {
      await client.query('commit');
      return 'ALREADY_DONE';
    }
    const rendered = (await client.query<{ m: Rendered }>(`select iot_private.render_alert_delivery($1) as m`, [deliveryId])).rows[0].m;
    const suppressed = !row.rule_enabled ? 'its rule was disabled or deleted before it was sent'
      : !rendered.alert ? 'its alert no longer exists' : null;
    if (suppressed) {
      await client.query(`update iot.alert_deliveries set status = 'SUPPRESSED', last_error = $2 where id = $1`, [deliveryId, suppressed]);
      await client.query('commit');
      log.info('alert delivery suppressed', { delivery: deliveryId, reason: suppressed });
      return 'SUPPRESSED';
    }
    try {
      await send(rendered, s);
    } catch (error) {
      const message = (error as Error).message;
      if (error instanceof ChannelNotConfigured) {
        // Not an attempt: nothing was sent. Kept PENDING; retried by the job and by alerts__sweep once configured.
        await client.query(`update iot.alert_deliveries set last_error = $2, last_attempt_at = now() where id = $1`, [deliveryId, message]);
        await client.query('commit');
        log.warn('alert delivery waits: its channel is not configured', { delivery: deliveryId, channel: rendered.delivery.channel, reason: message });
        throw error;
      }
      const attempts = row.attempts + 1;
      const failed = attempts >= s.maxAttempts;
      await client.query(
        `update iot.alert_deliveries set attempts = $2, last_error = $3, last_attempt_at = now(),
                status = case when $4 then 'FAILED' else status end where id = $1`, [deliveryId, attempts, message.slice(0, 2000), failed]);
      await client.query('commit');
      const fields = { delivery: deliveryId, channel: rendered.delivery.channel, recipient: rendered.delivery.recipient,
        attempt: attempts, maxAttempts: s.maxAttempts, error: message };
      if (failed) {
        log.error('alert delivery FAILED: giving up after the last attempt; the alert was not delivered to this recipient', fields);
        return 'FAILED';
      }
      log.warn('alert delivery attempt failed; it will be retried', fields);
      throw error;
    }
    await client.query(
      `update iot.alert_deliveries set status = 'SENT', sent_at = now(), attempts = attempts + 1, last_error = null, last_attempt_at = now()
       where id = $1`, [deliveryId]);
    await client.query('commit');
    log.info('alert delivered', { delivery: deliveryId, channel: rendered.delivery.channel, recipient: rendered.delivery.recipient });
    return 'SENT';
  } catch (error) {
    await client.query('rollback').catch(() => undefined);
    throw error;
  }
}

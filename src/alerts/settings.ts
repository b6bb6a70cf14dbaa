// Delivery settings from the environment (src/lib/config.ts), read per job so tests and operators
// can change them without rebuilding the task list.
import { loadConfig } from '../lib/config';
import type { DeliverySettings } from './deliver';

export function deliverySettings(env: NodeJS.ProcessEnv = process.env): DeliverySettings {
  const c = loadConfig(env);
  return { smtpUrl: c.SMTP_URL, emailFrom: c.ALERT_EMAIL_FROM, smsWebhookUrl: c.ALERT_SMS_WEBHOOK_URL,
    timeoutMs: c.ALERT_WEBHOOK_TIMEOUT_MS, maxAttempts: c.ALERT_DELIVERY_MAX_ATTEMPTS };
}

/** Channels that can send now (the others' deliveries wait). */
export function configuredChannels(s: DeliverySettings): string[] {
  return ['WEBHOOK', ...(s.smtpUrl ? ['EMAIL'] : []), ...(s.smsWebhookUrl ? ['SMS'] : [])];
}

// Alert e-mail over SMTP (nodemailer). One transport per SMTP_URL, reused by every delivery.
import nodemailer, { Transporter } from 'nodemailer';

const transports = new Map<string, Transporter>();

function transportFor(smtpUrl: string, timeoutMs: number): Transporter {
  const key = `${smtpUrl}#${timeoutMs}`;
  let t = transports.get(key);
  if (!t) {
    // Every phase is bounded, so a mail server that hangs counts as a failed attempt and is retried.
    t = nodemailer.createTransport({ url: smtpUrl, connectionTimeout: timeoutMs, greetingTimeout: timeoutMs, socketTimeout: timeoutMs } as never);
    transports.set(key, t);
  }
  return t;
}

export interface AlertEmail {
  smtpUrl: string;
  from: string;
  to: string;
  subject: string;
  text: string;
  /** Stable per delivery, so a copy sent twice after a crash is recognisable as the same message. */
  messageId: string;
  timeoutMs: number;
}

export async function sendAlertEmail(mail: AlertEmail): Promise<void> {
  await transportFor(mail.smtpUrl, mail.timeoutMs).sendMail({
    from: mail.from, to: mail.to, subject: mail.subject, text: mail.text, messageId: mail.messageId,
  });
}

/** Closes the cached transports (tests, shutdown). */
export function closeAlertEmailTransports(): void {
  for (const t of transports.values()) t.close();
  transports.clear();
}

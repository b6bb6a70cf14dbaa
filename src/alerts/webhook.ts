// Alert webhooks and the SMS gateway: one JSON POST, answered 2xx within the timeout, or it failed.
export interface WebhookCall {
  url: string;
  body: unknown;
  timeoutMs: number;
  /** The delivery id: a receiver that sees it twice (a retry after a lost answer) can drop the copy. */
  idempotencyKey: string;
}

export async function postAlertWebhook(call: WebhookCall): Promise<void> {
  let response: Response;
  try {
    response = await fetch(call.url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'idempotency-key': call.idempotencyKey, 'user-agent': 'plant-telemetry-alerts' },
      body: JSON.stringify(call.body),
      signal: AbortSignal.timeout(call.timeoutMs),
      redirect: 'error',
    });
  } catch (error) {
    const e = error as Error & { cause?: Error };
    if (e.name === 'TimeoutError') throw new Error(`no answer from ${safeUrl(call.url)} within ${call.timeoutMs} ms`);
    throw new Error(`could not reach ${safeUrl(call.url)}: ${e.cause?.message ?? e.message}`);
  }
  const text = await response.text().catch(() => '');
  if (!response.ok) throw new Error(`${safeUrl(call.url)} answered HTTP ${response.status}${text ? `: ${text.slice(0, 200)}` : ''}`);
}

/** The URL without credentials or query (which may hold a gateway's API key), for logs and last_error. */
export function safeUrl(url: string): string {
  try {
    const u = new URL(url);
    return `${u.protocol}//${u.host}${u.pathname}`;
  } catch {
    return '(invalid URL)';
  }
}

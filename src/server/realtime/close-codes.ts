// WebSocket close codes of the realtime API, one per kind of refusal, so a dashboard (and the
// operator reading its console) can tell "log in again" from "open fewer tabs". 4400-4499 follow
// graphql-ws's convention (HTTP status + 4000); graphql-ws clients do not retry 4401.
export const CLOSE = {
  /** No token, a bad token, or a token that expired while the socket was open: log in again. */
  unauthorized: 4401,
  /** A valid token that may not do this (connectionParams.tenantId names another tenant). */
  forbidden: 4403,
  /** No connection_init in time, or no subscription for WS_IDLE_TIMEOUT_MS. */
  timeout: 4408,
  /** A subscribe with the id of a subscription still starting or running (graphql-ws's own code for it). */
  duplicateId: 4409,
  /** More sockets for this user than WS_MAX_SOCKETS_PER_USER. */
  tooMany: 4429,
  /** The client did not read its events: more than 1 MiB waited unsent on its socket. Reconnect. */
  slowClient: 1013,
  /** The API is stopping; reconnect (to another instance) later. */
  goingAway: 1001,
} as const;

/** A close reason is at most 123 bytes (RFC 6455: 125 bytes of close frame less the code). */
export function closeReason(text: string): string {
  const buf = Buffer.from(text);
  if (buf.length <= 123) return text;
  let end = 120;
  while (end > 0 && (buf[end] & 0xc0) === 0x80) end--; // never cut a UTF-8 character in two
  return buf.subarray(0, end).toString() + '...';
}

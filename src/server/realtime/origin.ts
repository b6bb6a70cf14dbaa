// Which browser pages may open a realtime connection (WS_ALLOWED_ORIGINS). A browser always sends
// Origin on a WebSocket upgrade and on a cross-origin EventSource; without this check any web page
// a plant user visits could open a socket with the user's token in it (cross-site WebSocket
// hijacking). Clients that send no Origin are services and scripts, not browsers: allowed.
import type { IncomingMessage } from 'node:http';

export type OriginVerdict = { allowed: true } | { allowed: false; origin: string; why: string };

/** allowList: lower-case origins, ['*'] for any, [] for the API's own origin only. */
export function checkOrigin(req: IncomingMessage, allowList: readonly string[]): OriginVerdict {
  const origin = req.headers.origin;
  if (origin === undefined || origin === '') return { allowed: true };
  if (allowList.length === 1 && allowList[0] === '*') return { allowed: true };
  const normalized = origin.trim().toLowerCase().replace(/\/+$/, '');
  if (allowList.length === 0) {
    let host: string | undefined;
    try {
      host = new URL(normalized).host;
    } catch {
      host = undefined;
    }
    const own = (req.headers.host ?? '').toLowerCase();
    if (host !== undefined && host === own) return { allowed: true };
    return { allowed: false, origin, why: `Origin ${origin} is not this API's own origin (host ${own}) and WS_ALLOWED_ORIGINS is empty` };
  }
  if (allowList.includes(normalized)) return { allowed: true };
  return { allowed: false, origin, why: `Origin ${origin} is not in WS_ALLOWED_ORIGINS` };
}

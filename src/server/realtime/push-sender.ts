// The WebSocket end of the push fan-out (shared-execute.ts): each event's graphql-ws `next`
// message is the subscriber's id around the result JSON shared by every subscriber of the same
// document, written to the socket as it comes. Results still being computed (a promise) hold back
// the events after them, so a subscriber's events stay in order.
import { WebSocket } from 'ws';
import { logger } from '../../lib/log';
import type { PushResult } from './shared-execute';
import { wsMessagesSent } from './ws-metrics';

const log = logger('realtime');
/** Unsent bytes a socket may hold before its client is closed as too slow (as SSE does). */
export const MAX_BUFFERED_BYTES = 1024 * 1024;

export function pushSender(ws: WebSocket, id: string, tooSlow: (bufferedBytes: number) => void): PushResult {
  const prefix = `{"id":${JSON.stringify(id)},"type":"next","payload":`;
  let pending: Promise<void> | undefined;
  const send = (json: string) => {
    if (ws.readyState !== WebSocket.OPEN) return;
    if (ws.bufferedAmount > MAX_BUFFERED_BYTES) return tooSlow(ws.bufferedAmount);
    wsMessagesSent.inc({ transport: 'websocket' });
    ws.send(`${prefix}${json}}`);
  };
  const failed = (error: unknown) => log.warn('a live event could not be executed for a subscriber; it was skipped', { error });
  return (json) => {
    if (typeof json === 'string' && !pending) return send(json);
    const step: Promise<void> = (pending ?? Promise.resolve()).then(() => json).then(send, failed).then(() => {
      if (pending === step) pending = undefined;
    });
    pending = step;
  };
}

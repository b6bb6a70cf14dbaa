// The WebSocket end of the push fan-out (shared-execute.ts): each event's graphql-ws `next`
// message is the subscriber's id around the result JSON shared by every subscriber of the same
// document, written to the socket as it comes. Results still being computed (a promise) hold back
// the events after them, so a subscriber's events stay in order. Once its subscription has ended
// (client complete, token expiry, socket closed) nothing more is sent under its id: a `next`
// after `complete` breaks the protocol, and a client reusing the id would get the old query's data.
import { WebSocket } from 'ws';
import { logger } from '../../lib/log';
import { throttled } from '../log-throttle';
import type { Pusher } from './shared-execute';
import { wsMessagesSent } from './ws-metrics';

const note = throttled(logger('realtime'));
/** Unsent bytes a socket may hold before its client is closed as too slow (as SSE does). */
export const MAX_BUFFERED_BYTES = 1024 * 1024;
/** Results a subscriber may have waiting to be computed; later events are dropped (logged), as a pulled stream's are. */
const MAX_PENDING_RESULTS = 1000;

export function pushSender(ws: WebSocket, id: string, tooSlow: (bufferedBytes: number) => void): Pusher {
  const prefix = `{"id":${JSON.stringify(id)},"type":"next","payload":`;
  let pending: Promise<void> | undefined;
  let waiting = 0;
  let stopped = false;
  const send = (json: string | undefined) => {
    if (stopped || json === undefined || ws.readyState !== WebSocket.OPEN) return;
    if (ws.bufferedAmount > MAX_BUFFERED_BYTES) return tooSlow(ws.bufferedAmount);
    wsMessagesSent.inc({ transport: 'websocket' });
    ws.send(`${prefix}${json}}`);
  };
  // One result failing fails it for every subscriber of the document: throttled, not a line each.
  const failed = (error: unknown) => {
    note('warn', 'a live event could not be executed for a subscriber; it was skipped', { error });
    return undefined;
  };
  return {
    push(json) {
      if (stopped) return;
      if (typeof json === 'string' && !pending) return send(json);
      if (waiting >= MAX_PENDING_RESULTS) {
        note('warn', 'a subscriber is too slow: a live event was dropped', { waiting });
        return;
      }
      // Handled now, not when its turn comes: a result failing behind a slow one is no unhandled rejection.
      const ready = Promise.resolve(json).catch(failed);
      waiting++;
      const step: Promise<void> = (pending ?? Promise.resolve()).then(() => ready).then(send).catch(failed).finally(() => {
        waiting--;
        if (pending === step) pending = undefined;
      });
      pending = step;
    },
    stop() {
      stopped = true;
    },
  };
}

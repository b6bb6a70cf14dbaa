// Refusing a WebSocket upgrade before it happens: a plain HTTP response on the raw socket (the
// browser shows the status; scripts see the JSON body), then the socket is closed.
import type { Duplex } from 'node:stream';
import { STATUS_CODES } from 'node:http';

export function refuseUpgrade(socket: Duplex, status: number, message: string): void {
  if (!socket.writable) {
    socket.destroy();
    return;
  }
  const body = JSON.stringify({ error: message });
  socket.once('finish', () => socket.destroy());
  socket.end(
    `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? 'Refused'}\r\n` +
    'Connection: close\r\nContent-Type: application/json; charset=utf-8\r\n' +
    `Content-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
  );
}

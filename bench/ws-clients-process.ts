// Many GraphQL-over-WebSocket subscribers in one process, speaking the graphql-transport-ws
// protocol on raw `ws` sockets (a full client per socket would cost more than the server under
// test). The parent sends a job, gets {ready} once every socket is subscribed, then {report} with
// the receipt time of every event each socket saw.
import WebSocket from 'ws';

interface Job {
  url: string;
  sockets: { token: string; variables: Record<string, unknown> }[];
  query: string;
  /** Field of `data` holding the event. */
  field: string;
  /** Field(s) of the event that name it, comma-separated (the key receipts are grouped by; values joined by '|'). */
  key: string;
}

type Receipt = [key: string, receivedAt: number];

const receipts: Receipt[] = [];
const open: WebSocket[] = [];

function subscribe(job: Job, index: number): Promise<void> {
  const { token, variables } = job.sockets[index];
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(job.url, 'graphql-transport-ws');
    let subscribed = false;
    ws.on('open', () => ws.send(JSON.stringify({ type: 'connection_init', payload: { authToken: token } })));
    ws.on('message', (raw) => {
      const receivedAt = Date.now();
      const m = JSON.parse(String(raw));
      if (m.type === 'connection_ack') {
        ws.send(JSON.stringify({ id: '1', type: 'subscribe', payload: { query: job.query, variables } }));
        // graphql-ws sends nothing on a successful subscribe; give the server a moment to LISTEN.
        setTimeout(() => {
          subscribed = true;
          resolve();
        }, 20);
      } else if (m.type === 'next') {
        const event = m.payload?.data?.[job.field];
        if (event) receipts.push([job.key.split(',').map((k) => String(event[k])).join('|'), receivedAt]);
      } else if (m.type === 'ping') {
        ws.send(JSON.stringify({ type: 'pong' }));
      } else if (m.type === 'error') {
        reject(new Error(`subscription refused: ${JSON.stringify(m.payload)}`));
      }
    });
    ws.on('close', (code, reason) => {
      if (!subscribed) reject(new Error(`socket ${index} closed ${code} ${reason}`));
    });
    ws.on('error', (e) => {
      if (!subscribed) reject(e);
    });
    open.push(ws);
  });
}

process.on('message', async (m: { job?: Job; report?: true; close?: true }) => {
  if (m.job) {
    const job = m.job;
    try {
      // 100 handshakes at a time: a burst of 10,000 at once only measures the accept queue.
      for (let i = 0; i < job.sockets.length; i += 100) {
        await Promise.all(job.sockets.slice(i, i + 100).map((_s, k) => subscribe(job, i + k)));
      }
      process.send?.({ ready: job.sockets.length });
    } catch (error) {
      process.send?.({ failed: (error as Error).message });
    }
  } else if (m.report) {
    process.send?.({ receipts: receipts.splice(0) });
  } else if (m.close) {
    for (const ws of open) ws.terminate();
    process.exit(0);
  }
});

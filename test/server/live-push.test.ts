// The live hub (plugins/live/topics.ts) and the WebSocket push sender (realtime/push-sender.ts) at
// their edges, with the real parts they run on: a graphql-subscriptions PubSub (what
// @graphile/pg-pubsub hands the hub, fed here without PostgreSQL) and a real ws socket pair on
// loopback. What is checked: a token that expired while its subscription was being checked
// (argument queries) ends the stream cleanly and closes the channel's feed; an ended subscription
// sends nothing more, not even results still being computed; a result failing behind a slow one is
// logged and skipped, never an unhandled rejection, and the events after it still arrive in order.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { PubSub } from 'graphql-subscriptions';
import WebSocket, { WebSocketServer } from 'ws';
import { liveHub } from '../../src/server/plugins/live/topics';
import { outboxFetcher } from '../../src/server/plugins/live/outbox';
import { pushSender } from '../../src/server/realtime/push-sender';
import { sleep, waitFor } from '../helpers/wait';

const test = suite('server: live hub and push sender (expiry during subscribe, nothing after the end, failed results)');
const noOutbox = outboxFetcher(async () => { throw new Error('no outbox in this test'); });

let wss: WebSocketServer;
let serverSide: WebSocket;
let client: WebSocket;
const received: string[] = [];
const unhandled: unknown[] = [];
const onUnhandled = (reason: unknown) => unhandled.push(reason);

test.before(async () => {
  process.on('unhandledRejection', onUnhandled);
  wss = new WebSocketServer({ host: '127.0.0.1', port: 0 });
  await once(wss, 'listening');
  const connected = once(wss, 'connection');
  client = new WebSocket(`ws://127.0.0.1:${(wss.address() as AddressInfo).port}`);
  client.on('message', (data) => received.push(JSON.parse(String(data)).payload.n));
  [serverSide] = (await connected) as [WebSocket];
  await once(client, 'open');
});
test.after(async () => {
  process.off('unhandledRejection', onUnhandled);
  client?.close();
  await new Promise((resolve) => wss?.close(resolve));
});
test.before.each(() => { received.length = 0; });

test('a token that expired while the subscription was checked: the stream ends at once, onEnd runs, the feed closes', async () => {
  const pubsub = new PubSub();
  const hub = liveHub(pubsub, noOutbox);
  let ended = 0;
  // The resolver checked the token, then awaited its argument checks; it has expired since.
  const stream = hub.subscribe('iot_test:tenant', (n) => [n], { label: 'test', endsAt: Date.now() - 1, onEnd: () => { ended++; } });
  assert.equal(await stream.next(), { value: undefined, done: true }, 'the stream is over');
  assert.is(ended, 1, 'onEnd (e.g. the live-readings flush watch) released once');
  assert.is(hub.subscriberCount(), 0, 'no subscriber left');
  assert.is(hub.subscriberCount('iot_test:tenant'), 0, 'the feed is gone (its LISTEN ended)');
  // A later subscriber of the same channel gets a fresh feed and its events.
  const live = hub.subscribe<Record<string, unknown>>('iot_test:tenant', (n) => [n], { label: 'test', endsAt: Date.now() + 60_000 });
  const next = live.next();
  await sleep(10); // the feed's pump subscribes to the PubSub asynchronously
  await pubsub.publish('iot_test:tenant', { n: 1 });
  assert.equal((await next).value, { n: 1 });
  await live.return!();
});

test('a pushed subscription that ended sends nothing more, not even a result still being computed', async () => {
  const pubsub = new PubSub();
  const hub = liveHub(pubsub, noOutbox);
  const stream = hub.subscribe<Record<string, unknown>>('iot_test:push', (n) => [n], { label: 'test' }) as any;
  const sender = pushSender(serverSide, '1', () => assert.unreachable('not slow'));
  let release!: (json: string) => void;
  stream.pushTo((event: { n: number }) => sender.push(event.n === 2 ? new Promise<string>((r) => { release = r; }) : JSON.stringify(event)),
    () => sender.stop());
  await sleep(10);
  await pubsub.publish('iot_test:push', { n: 1 });
  await pubsub.publish('iot_test:push', { n: 2 }); // its result is still being computed...
  await pubsub.publish('iot_test:push', { n: 3 }); // ...so this one waits behind it
  await waitFor(() => received.length === 1, 2000, 'the first event');
  await stream.return(); // the client completes the subscription (graphql-ws then sends complete)
  release(JSON.stringify({ n: 2 }));
  await pubsub.publish('iot_test:push', { n: 4 });
  await sleep(100);
  assert.equal(received, [1], 'nothing after the end: a next after complete breaks graphql-ws, and a reused id would get it');
  let told = 0;
  stream.pushTo(() => assert.unreachable('an ended stream delivers nothing'), () => { told++; });
  assert.is(told, 1, 'pushTo on an ended stream tells its end at once');
});

test('a result that fails behind a slow one is skipped and logged, never an unhandled rejection; order holds', async () => {
  const sender = pushSender(serverSide, '2', () => assert.unreachable('not slow'));
  let release!: (json: string) => void;
  sender.push(new Promise<string>((r) => { release = r; }));
  sender.push(Promise.reject(new Error('execution failed')));
  sender.push(JSON.stringify({ n: 3 }));
  sender.push(Promise.resolve(JSON.stringify({ n: 4 })));
  await sleep(50); // the rejection has happened while the first result is still pending
  release(JSON.stringify({ n: 1 }));
  await waitFor(() => received.length === 3, 2000, 'the three good events');
  assert.equal(received, [1, 3, 4], 'the failed one skipped, the rest in order');
  await sleep(50);
  assert.equal(unhandled, [], 'no unhandled rejection (it would end the process)');
});

test.run();

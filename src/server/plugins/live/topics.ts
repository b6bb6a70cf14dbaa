// One LISTEN per channel per API instance, shared by every subscriber of that channel: the first
// subscriber opens a feed (one @graphile/pg-pubsub async iterator, hence one LISTEN), the last one
// to leave closes it (UNLISTEN). Each notice is resolved once (outbox payloads fetched once) and
// offered to every subscriber of the channel, which picks its own events from it in process.
import { logger } from '../../../lib/log';
import { throttled } from '../../log-throttle';
import type { OutboxFetcher } from './outbox';

const log = logger('api');
const note = throttled(log);

export type Notice = Record<string, unknown>;

/** What @graphile/pg-pubsub puts in the schema build options (a graphql-subscriptions PubSub). */
export interface PubSubLike {
  asyncIterator<T = unknown>(channel: string): AsyncIterator<T>;
}

/** A subscriber's events in a notice: [] or undefined when the notice is not for it. */
export type Select<T> = (notice: Notice) => readonly T[] | undefined;

export interface SubscribeOptions {
  /** Epoch milliseconds after which the stream ends (the token's expiry). */
  endsAt?: number;
  /** Names the subscription in log lines. */
  label: string;
  /** Called once when the stream ends (client gone, token expired, shutdown). */
  onEnd?: () => void;
}

/**
 * A subscriber stream that can hand its events to a function as they come instead of through
 * next() (the WebSocket fan-out, realtime/shared-execute.ts): one call per subscriber and event
 * where the iterator costs a chain of promises each.
 */
export interface PushStream<T> {
  pushTo(deliver: (event: T) => void, ended?: () => void): void;
}

export function isPushStream(stream: unknown): stream is PushStream<unknown> {
  return typeof (stream as Partial<PushStream<unknown>> | null)?.pushTo === 'function';
}

export interface LiveHub {
  subscribe<T>(channel: string, select: Select<T>, options: SubscribeOptions): AsyncIterableIterator<T>;
  /** Subscribers per channel (for tests and metrics). */
  subscriberCount(channel?: string): number;
}

/** A subscriber more than this many events behind loses the oldest ones (logged), so memory stays bounded. */
const MAX_QUEUED_EVENTS = 1000;
const LONGEST_TIMER_MS = 2 ** 31 - 1;

class Subscriber<T> implements AsyncIterableIterator<T>, PushStream<T> {
  private queue: T[] = [];
  private deliver?: (event: T) => void;
  private onPushEnd?: () => void;
  private waiting: ((result: IteratorResult<T>) => void)[] = [];
  private ended = false;
  private timer?: NodeJS.Timeout;

  constructor(private readonly select: Select<T>, private readonly options: SubscribeOptions, private readonly onEnd: () => void) {}

  /** Arms the token's expiry; called once the subscriber is in its feed (an expiry already past ends it at once). */
  start() {
    if (this.options.endsAt !== undefined) this.scheduleEnd(this.options.endsAt);
    return this;
  }

  // setTimeout holds at most ~24.8 days: re-arm until the expiry is reached.
  private scheduleEnd(endsAt: number) {
    const wait = endsAt - Date.now();
    if (wait <= 0) return void this.end();
    this.timer = setTimeout(() => this.scheduleEnd(endsAt), Math.min(wait, LONGEST_TIMER_MS));
    this.timer.unref();
  }

  offer(notice: Notice) {
    if (this.ended) return;
    let events: readonly T[] | undefined;
    try {
      events = this.select(notice);
    } catch (error) {
      note('warn', 'a live event could not be read for a subscription; it was skipped', { subscription: this.options.label, error });
      return;
    }
    for (const event of events ?? []) this.push(event);
  }

  /** Push mode: queued and later events go to `deliver`, `ended` is told the end; next() then only waits for the end. */
  pushTo(deliver: (event: T) => void, ended?: () => void) {
    if (this.ended) return void ended?.();
    this.deliver = deliver;
    this.onPushEnd = ended;
    for (const value of this.queue.splice(0)) this.push(value);
  }

  private push(value: T) {
    if (this.deliver) {
      try {
        this.deliver(value);
      } catch (error) {
        note('warn', 'a live event could not be sent to a subscriber; it was skipped', { subscription: this.options.label, error });
      }
      return;
    }
    const waiter = this.waiting.shift();
    if (waiter) return waiter({ value, done: false });
    this.queue.push(value);
    if (this.queue.length > MAX_QUEUED_EVENTS) {
      this.queue.shift();
      note('warn', 'a subscriber is too slow: its oldest live event was dropped', { subscription: this.options.label, queued: MAX_QUEUED_EVENTS });
    }
  }

  next(): Promise<IteratorResult<T>> {
    if (this.queue.length) return Promise.resolve({ value: this.queue.shift() as T, done: false });
    if (this.ended) return Promise.resolve({ value: undefined, done: true });
    return new Promise((resolve) => this.waiting.push(resolve));
  }

  return(): Promise<IteratorResult<T>> {
    this.end();
    return Promise.resolve({ value: undefined, done: true });
  }

  throw(error?: unknown): Promise<IteratorResult<T>> {
    this.end();
    return Promise.reject(error);
  }

  end() {
    if (this.ended) return;
    this.ended = true;
    clearTimeout(this.timer);
    this.queue = [];
    this.deliver = undefined;
    this.onPushEnd?.();
    for (const waiter of this.waiting.splice(0)) waiter({ value: undefined, done: true });
    this.onEnd();
    this.options.onEnd?.();
  }

  [Symbol.asyncIterator]() {
    return this;
  }
}

class ChannelFeed {
  readonly subscribers = new Set<Subscriber<any>>();
  private readonly iterator: AsyncIterator<unknown>;

  constructor(pubsub: PubSubLike, private readonly channel: string, private readonly outbox: OutboxFetcher) {
    this.iterator = pubsub.asyncIterator(channel);
    void this.pump();
  }

  private async pump() {
    for (;;) {
      let next: IteratorResult<unknown>;
      try {
        next = await this.iterator.next();
      } catch (error) {
        log.error('live events stopped on a channel: its LISTEN failed', { channel: this.kind(), error });
        return;
      }
      if (next.done) return;
      const notice = await this.resolve(next.value);
      if (notice) for (const s of [...this.subscribers]) s.offer(notice);
    }
  }

  /** The notice itself, or the outbox row it names (fetched once for all subscribers). */
  private async resolve(value: unknown): Promise<Notice | undefined> {
    if (!value || typeof value !== 'object') {
      note('warn', 'a live event notice was not a JSON object; it was skipped', { channel: this.kind() });
      return undefined;
    }
    const notice = value as Notice;
    if (notice.outbox === undefined || notice.outbox === null) return notice;
    try {
      return { ...notice, ...(await this.outbox.payload(notice.outbox as number)) };
    } catch (error) {
      note('warn', 'a large live event could not be fetched from the outbox; subscribers miss it', { channel: this.kind(), outbox: notice.outbox, error });
      return undefined;
    }
  }

  /** The channel's prefix only: the rest is the tenant's secret key, kept out of logs. */
  private kind() {
    return this.channel.split(':')[0];
  }

  close() {
    void this.iterator.return?.();
  }
}

export function liveHub(pubsub: PubSubLike, outbox: OutboxFetcher): LiveHub {
  const feeds = new Map<string, ChannelFeed>();
  return {
    subscribe(channel, select, options) {
      let feed = feeds.get(channel);
      if (!feed) {
        feed = new ChannelFeed(pubsub, channel, outbox);
        feeds.set(channel, feed);
      }
      const own = feed;
      const subscriber = new Subscriber(select, options, () => {
        own.subscribers.delete(subscriber);
        if (own.subscribers.size === 0 && feeds.get(channel) === own) {
          feeds.delete(channel);
          own.close();
        }
      });
      own.subscribers.add(subscriber);
      return subscriber.start();
    },
    subscriberCount(channel) {
      if (channel !== undefined) return feeds.get(channel)?.subscribers.size ?? 0;
      let n = 0;
      for (const f of feeds.values()) n += f.subscribers.size;
      return n;
    },
  };
}

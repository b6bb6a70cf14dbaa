// Where the time of a live reading goes, hop by hop (bench/realtime.ts). One clock (one machine):
//   publish      the publisher's stamp, sent as the reading's timestamp (paced-publisher-process.ts)
//   arrived      the ingestor handed it to the sink (sink.add)
//   batchStart   a writer started the batch holding it (the sink's writeOnce)
//   fnStart      its COPY is done, ingest_staged_readings() starts
//   commitStart  the function returned, COMMIT is sent
//   committed    its batch committed (the NOTIFY is sent at commit)
//   notified     a LISTEN connection of this process got the notice carrying it (like the API's)
//   received     the graphql-ws client got sensorReadingUpdated (child process)
// Only readings a notice carried are measured: the latency is that of the readings delivered.
import { AsyncLocalStorage } from 'node:async_hooks';
import type { Pool, PoolClient } from 'pg';
import { Client } from 'pg';
import type { Reading } from '../src/ingest/reading';
import type { ReadingSink } from '../src/ingest/sink';

interface Stamps { arrived?: number; batchStart?: number; fnStart?: number; commitStart?: number; committed?: number; batchSize?: number; notified?: number }

export const readingKey = (deviceId: string, sensorType: string, timeMs: number) => `${deviceId.toLowerCase()}/${sensorType}/${timeMs}`;

export interface BatchFigure { size: number; ms: number; fnMs: number; commitMs: number; startedAt: number }

export class HopRecorder {
  private readonly stamps = new Map<string, Stamps>();
  readonly batches: BatchFigure[] = [];
  notices = 0;
  coalesced = 0;
  private listener?: Client;

  /**
   * @param flushedAfterMs a notice this long after its reading's commit is a flush: a batch's own
   *   notice comes at its commit, a flush only once the device was quiet for the interval (give half of it).
   */
  constructor(private readonly flushedAfterMs: number) {}

  private stamp(key: string): Stamps {
    let s = this.stamps.get(key);
    if (!s) this.stamps.set(key, (s = {}));
    return s;
  }

  /** Wraps the sink (add, writeOnce) and its pool (the function's start) to stamp every reading. */
  watchSink(sink: ReadingSink, pool: Pool): void {
    const add = sink.add.bind(sink);
    sink.add = (readings: Reading[]) => {
      const now = Date.now();
      for (const r of readings) this.stamp(readingKey(r.deviceId, r.sensorType, r.time.getTime())).arrived = now;
      return add(readings);
    };
    // The batch a query belongs to: writeOnce runs inside its own async context.
    const batchContext = new AsyncLocalStorage<{ fnStart?: number; commitStart?: number; committed?: number }>();
    const connect = pool.connect.bind(pool) as () => Promise<PoolClient>;
    (pool as { connect: unknown }).connect = async () => {
      const client = await connect();
      const tagged = client as PoolClient & { hopsWrapped?: true };
      if (!tagged.hopsWrapped) {
        tagged.hopsWrapped = true;
        const query = client.query.bind(client) as (...a: unknown[]) => unknown;
        (client as { query: unknown }).query = (...args: unknown[]) => {
          const context = batchContext.getStore();
          if (context && typeof args[0] === 'string') {
            if (args[0].includes('ingest_staged_readings')) context.fnStart = Date.now();
            else if (args[0] === 'commit' && context.commitStart === undefined) {
              // The readings' commit; the event detector's transaction follows it (not on the live path).
              context.commitStart = Date.now();
              const done = query(...args) as Promise<unknown>;
              done.then(() => (context.committed = Date.now()), () => undefined);
              return done;
            }
          }
          return query(...args);
        };
      }
      return client;
    };
    const target = sink as unknown as { writeOnce(b: Reading[], l: unknown[]): Promise<void> };
    const writeOnce = target.writeOnce.bind(sink);
    target.writeOnce = async (batch, letters) => {
      const started = Date.now();
      const context: { fnStart?: number; commitStart?: number; committed?: number } = {};
      await batchContext.run(context, () => writeOnce(batch, letters));
      const committed = context.committed ?? Date.now();
      const fnStart = context.fnStart ?? started;
      const commitStart = context.commitStart ?? committed;
      if (batch.length) {
        this.batches.push({ size: batch.length, ms: committed - started, fnMs: commitStart - fnStart, commitMs: committed - commitStart, startedAt: started });
      }
      for (const r of batch) {
        const s = this.stamp(readingKey(r.deviceId, r.sensorType, r.time.getTime()));
        s.batchStart = started;
        s.fnStart = fnStart;
        s.commitStart = commitStart;
        s.committed = committed;
        s.batchSize = batch.length;
      }
    };
  }

  /** LISTENs on the tenant's live-readings channel on a connection of its own, stamping each notice's readings. */
  async listen(url: string, channel: string): Promise<void> {
    this.listener = new Client({ connectionString: url, application_name: 'bench-hops' });
    await this.listener.connect();
    this.listener.on('notification', (m) => {
      const now = Date.now();
      if (!m.payload) return;
      const n = JSON.parse(m.payload) as { deviceId: string; count: number; readings: { sensor_type: string; reading_timestamp: string }[] };
      this.notices++;
      this.coalesced += Number(n.count ?? 0);
      for (const r of n.readings ?? []) this.stamp(readingKey(n.deviceId, r.sensor_type, Date.parse(r.reading_timestamp))).notified = now;
    });
    await this.listener.query(`listen ${this.listener.escapeIdentifier(channel)}`);
  }

  async stop(): Promise<void> {
    await this.listener?.end();
  }

  /** Clears what one run recorded (the next rate starts afresh). */
  reset(): void {
    this.stamps.clear();
    this.batches.length = 0;
    this.notices = 0;
    this.coalesced = 0;
  }

  /**
   * Whether this delivered reading came in a trailing notice (flush_live_readings, its device silent
   * for an interval) rather than in the notice of its own batch: its notice came long after its commit.
   */
  flushed(key: string): boolean {
    const s = this.stamps.get(key);
    return s?.notified !== undefined && s.committed !== undefined && s.notified - s.committed > this.flushedAfterMs;
  }

  /** Per hop, p50/p99/max over the delivered readings sent by their own batch (key -> receipt time). */
  table(receipts: [key: string, receivedAt: number][], label: string): string[] {
    const hops: Record<string, number[]> = {
      'publish -> sink.add (broker, MQTT parse)': [],
      'sink.add -> batch start (buffer wait)': [],
      'batch start -> function start (connect, begin, COPY)': [],
      'function start -> COMMIT sent (ingest_staged_readings)': [],
      'COMMIT sent -> committed': [],
      'commit -> NOTIFY received (LISTEN in this process)': [],
      'NOTIFY received -> client receipt (API, graphql-ws, client)': [],
      'publish -> client receipt (total)': [],
    };
    const sizes: number[] = [];
    let complete = 0;
    let flushed = 0;
    for (const [key, received] of receipts) {
      const s = this.stamps.get(key);
      if (this.flushed(key)) {
        flushed++;
        continue;
      }
      const publish = Number(key.split('/')[2]);
      hops['publish -> client receipt (total)'].push(received - publish);
      if (!s || s.arrived === undefined || s.committed === undefined || s.notified === undefined) continue;
      complete++;
      sizes.push(s.batchSize ?? 0);
      const v = Object.values(hops);
      v[0].push(s.arrived - publish);
      v[1].push(s.batchStart! - s.arrived);
      v[2].push(s.fnStart! - s.batchStart!);
      v[3].push(s.commitStart! - s.fnStart!);
      v[4].push(s.committed - s.commitStart!);
      v[5].push(s.notified - s.committed);
      v[6].push(received - s.notified);
    }
    const q = (a: number[], p: number) => (a.length ? a[Math.min(a.length - 1, Math.floor((p / 100) * a.length))] : NaN);
    const lines = [`hops at ${label} (${complete} of ${receipts.length - flushed} readings delivered by their own batch's notice with every stamp; ${flushed} trailing values left out; ms):`,
      '| hop | p50 | p90 | p99 | max |', '|---|---:|---:|---:|---:|'];
    for (const [name, values] of Object.entries(hops)) {
      values.sort((a, b) => a - b);
      lines.push(`| ${name} | ${q(values, 50)} | ${q(values, 90)} | ${q(values, 99)} | ${values[values.length - 1] ?? NaN} |`);
    }
    const b = [...this.batches].sort((x, y) => x.ms - y.ms);
    const fn = [...this.batches].sort((x, y) => x.fnMs - y.fnMs);
    const size = [...this.batches].sort((x, y) => x.size - y.size);
    const commit = [...this.batches].sort((x, y) => x.commitMs - y.commitMs);
    lines.push('', `batches: ${b.length}; size p50 ${q(size.map((x) => x.size), 50)} p99 ${q(size.map((x) => x.size), 99)} max ${size[size.length - 1]?.size}; ` +
      `writeOnce ms p50 ${q(b.map((x) => x.ms), 50)} p99 ${q(b.map((x) => x.ms), 99)} max ${b[b.length - 1]?.ms}; ` +
      `function ms p50 ${q(fn.map((x) => x.fnMs), 50)} p99 ${q(fn.map((x) => x.fnMs), 99)}; ` +
      `commit ms p50 ${q(commit.map((x) => x.commitMs), 50)} p99 ${q(commit.map((x) => x.commitMs), 99)}; ` +
      `notices ${this.notices} carrying ${this.coalesced} readings counted (coalesced)`);
    return lines;
  }
}

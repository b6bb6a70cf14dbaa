// The one ReadingSink every protocol writes through (DESIGN.md, "Data flow").
// Readings are buffered, COPYed in batches into the session's staging table and stored by
// iot_private.ingest_staged_readings() (dedup, heartbeats, NOTIFY) in one transaction per batch.
//  - Batches close at `batchSize` readings or after `maxWaitMs`, whichever comes first.
//  - While the database is down a batch is retried with backoff and the buffer holds up to
//    `bufferMax` readings; `wait()` then blocks producers (the MQTT ingestor stops reading).
//  - A batch the database rejects for its data (not for being down) is split in halves until the
//    bad readings are isolated; they become dead letters and the good ones beside them are stored.
import { EventEmitter } from 'node:events';
import type { Pool, PoolClient } from 'pg';
import { from as copyFrom } from 'pg-copy-streams';
import { logger } from '../lib/log';
import type { DeadLetter, Reading } from './reading';

const log = logger('sink');

export interface SinkOptions {
  batchSize: number;
  maxWaitMs: number;
  bufferMax: number;
  writers?: number;
}

export interface SinkStats {
  received: number;
  stored: number;
  duplicates: number;
  deadLetters: number;
  batches: number;
  failedAttempts: number;
  buffered: number;
  databaseUp: boolean;
}

/** Errors that mean "the database is unreachable or going away", worth retrying as they are. */
export function isConnectionError(error: unknown): boolean {
  const code = (error as { code?: string })?.code ?? '';
  const message = (error as Error)?.message ?? '';
  return (
    code.startsWith('08') || code.startsWith('57P') || code === '53300' || code === '40001' || code === '40P01' ||
    ['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'ENOTFOUND', 'EHOSTUNREACH'].includes(code) ||
    /Connection terminated|connection timeout|Client has encountered a connection error|not queryable/i.test(message)
  );
}

const copyText = (s: string) => s.replace(/[\\\t\n\r]/g, (c) => (c === '\\' ? '\\\\' : c === '\t' ? '\\t' : c === '\n' ? '\\n' : '\\r'));

function toCopyRows(batch: Reading[]): string {
  let out = '';
  for (const r of batch) {
    const metadata = r.metadata ? copyText(JSON.stringify(r.metadata)) : '\\N';
    out += `${r.time.toISOString()}\t${r.tenantId}\t${r.deviceId}\t${copyText(r.sensorType)}\t${r.value}\t${copyText(r.unit)}\t${r.quality}\t${metadata}\n`;
  }
  return out;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export class ReadingSink extends EventEmitter {
  private buffer: Reading[] = [];
  private deadLetters: DeadLetter[] = [];
  private timer: NodeJS.Timeout | undefined;
  private activeWriters = 0;
  private closed = false;
  private waiters: (() => void)[] = [];
  private readonly writers: number;
  readonly stats: SinkStats = {
    received: 0, stored: 0, duplicates: 0, deadLetters: 0, batches: 0, failedAttempts: 0, buffered: 0, databaseUp: true,
  };

  constructor(private readonly pool: Pool, private readonly options: SinkOptions) {
    super();
    this.writers = Math.max(1, options.writers ?? 2);
  }

  /** Queue readings. Returns false when the buffer is full: call `wait()` before adding more. */
  add(readings: Reading[]): boolean {
    if (this.closed) throw new Error('ReadingSink is closed');
    for (const r of readings) this.buffer.push(r);
    this.stats.received += readings.length;
    this.stats.buffered = this.buffer.length;
    this.schedule();
    return this.buffer.length < this.options.bufferMax;
  }

  /** Queue dead letters; they are written with the next batch. */
  reject(letters: DeadLetter[]): void {
    if (!letters.length) return;
    this.deadLetters.push(...letters);
    this.schedule();
  }

  /** Resolves once the buffer is below its bound again. */
  wait(): Promise<void> {
    if (this.buffer.length < this.options.bufferMax) return Promise.resolve();
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  get buffered(): number {
    return this.buffer.length;
  }

  /** Writes everything queued so far. */
  async flush(): Promise<void> {
    this.kick();
    while (this.buffer.length || this.deadLetters.length || this.activeWriters) {
      await new Promise<void>((resolve) => this.once('written', resolve));
      this.kick();
    }
  }

  async close(): Promise<void> {
    await this.flush();
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
  }

  private schedule(): void {
    if (this.buffer.length >= this.options.batchSize || this.deadLetters.length >= this.options.batchSize) {
      this.kick();
    } else if (!this.timer) {
      this.timer = setTimeout(() => {
        this.timer = undefined;
        this.kick();
      }, this.options.maxWaitMs);
    }
  }

  private kick(): void {
    while (this.activeWriters < this.writers && (this.buffer.length || this.deadLetters.length)) {
      const batch = this.buffer.splice(0, this.options.batchSize);
      const letters = this.deadLetters.splice(0, this.options.batchSize);
      this.activeWriters++;
      this.write(batch, letters)
        .catch((error) => log.error('batch lost to an unexpected error', { error, readings: batch.length }))
        .finally(() => {
          this.activeWriters--;
          this.stats.buffered = this.buffer.length;
          this.release();
          this.emit('written');
          if (this.buffer.length || this.deadLetters.length) this.schedule();
        });
      if (!this.stats.databaseUp) break; // one writer probes while the database is down
    }
  }

  private release(): void {
    if (this.buffer.length < this.options.bufferMax) {
      const waiting = this.waiters.splice(0);
      for (const resolve of waiting) resolve();
    }
  }

  /** Writes one batch, retrying while the database is unreachable. */
  private async write(batch: Reading[], letters: DeadLetter[]): Promise<void> {
    let delay = 100;
    for (;;) {
      try {
        await this.writeOnce(batch, letters);
        if (!this.stats.databaseUp) {
          log.info('database is back; writing buffered readings', { buffered: this.buffer.length + batch.length });
          this.stats.databaseUp = true;
          this.emit('database', true);
        }
        return;
      } catch (error) {
        if (!isConnectionError(error)) {
          await this.isolateBadReadings(batch, letters, error as Error);
          return;
        }
        this.stats.failedAttempts++;
        if (this.stats.databaseUp) {
          log.warn('database unavailable; holding readings and retrying', { error, buffered: this.buffer.length + batch.length });
          this.stats.databaseUp = false;
          this.emit('database', false);
        }
        await sleep(delay);
        delay = Math.min(delay * 2, 5000);
      }
    }
  }

  private async writeOnce(batch: Reading[], letters: DeadLetter[]): Promise<void> {
    const client: PoolClient = await this.pool.connect();
    let broken: Error | undefined;
    // A connection that dies while checked out emits 'error' on the client; the running query
    // rejects as well, which is where it is handled. Without a listener the process would crash.
    const onError = (error: Error) => (broken = error);
    client.on('error', onError);
    try {
      await client.query('begin');
      if (letters.length) {
        await client.query(
          'select iot_private.record_dead_letters($1, $2, $3, $4, $5)',
          [letters.map((l) => l.source), letters.map((l) => l.topic ?? null), letters.map((l) => l.payload ?? null),
           letters.map((l) => l.reason), letters.map((l) => l.tenantId ?? null)],
        );
      }
      if (batch.length) {
        await client.query('select iot_private.create_reading_staging()');
        await new Promise<void>((resolve, reject) => {
          const stream = client.query(copyFrom(
            'copy pg_temp.reading_staging (time, tenant_id, device_id, sensor_type, value, unit, quality, metadata) from stdin'));
          stream.on('error', reject);
          stream.on('finish', resolve);
          stream.end(toCopyRows(batch));
        });
        const { rows } = await client.query<{ inserted: string; duplicates: string; rejected: string }>(
          'select * from iot_private.ingest_staged_readings()');
        await client.query('commit');
        this.stats.stored += Number(rows[0].inserted);
        this.stats.duplicates += Number(rows[0].duplicates);
        this.stats.deadLetters += Number(rows[0].rejected);
      } else {
        await client.query('commit');
      }
      this.stats.deadLetters += letters.length;
      this.stats.batches++;
      this.emit('batch', { readings: batch.length, deadLetters: letters.length });
    } catch (error) {
      broken = error as Error;
      await client.query('rollback').catch(() => undefined);
      throw error;
    } finally {
      client.removeListener('error', onError);
      client.release(broken && isConnectionError(broken) ? broken : undefined);
    }
  }

  /** The database refused this batch's data: find the bad readings by halving, keep the rest. */
  private async isolateBadReadings(batch: Reading[], letters: DeadLetter[], error: Error): Promise<void> {
    if (letters.length && batch.length) {
      // Write the dead letters alone first, then bisect the readings.
      await this.write([], letters);
      return this.write(batch, []);
    }
    if (batch.length <= 1) {
      const r = batch[0];
      const reason = `database refused the reading: ${error.message}`;
      log.warn('reading refused by the database; kept as a dead letter', { reason });
      const letter: DeadLetter = r
        ? { source: 'SINK', reason, tenantId: r.tenantId,
            payload: JSON.stringify({ deviceId: r.deviceId, sensorType: r.sensorType, value: r.value, timestamp: r.time }) }
        : { source: 'SINK', reason: `dead letters refused: ${error.message}` };
      if (!r) {
        log.error('dead letters refused by the database', { error, count: letters.length });
        return;
      }
      return this.write([], [letter]);
    }
    const half = Math.ceil(batch.length / 2);
    await this.write(batch.slice(0, half), []);
    await this.write(batch.slice(half), []);
  }
}

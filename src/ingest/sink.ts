// The one ReadingSink every protocol writes through (DESIGN.md, "Data flow").
// Readings are buffered, COPYed in batches into the session's staging table and stored by
// iot_private.ingest_staged_readings() (dedup, heartbeats, NOTIFY) in one transaction per batch;
// the threshold and anomaly detector then runs over them in a second transaction, so the live
// NOTIFYs never wait for it (sql/515_events_after_commit.sql says why nothing is missed).
//  - Natural batching: a free writer starts a batch at once with what is buffered (up to
//    `batchSize`), so at low rates a reading waits about one batch's cost, and at high rates
//    batches grow to what arrived while the writers were busy. A further writer (another is busy)
//    starts only for a full batch, or for readings that have waited `maxWaitMs`: tiny concurrent
//    transactions would only queue on the same channel and device locks.
//  - Every reading is checked when it is added (a valid time in the accepted range, uuids, a finite
//    value, a known quality, text and metadata PostgreSQL can hold); one that fails becomes a dead
//    letter at once, so a COPY is only ever started with its whole data serialised beforehand and
//    cannot be left waiting for data that never comes.
//  - Nothing holds a writer forever: each transaction has statement, lock and idle timeouts, and a
//    watchdog cuts the connection (the server rolls back) if the transaction outlives them.
//  - A connection lost while its COMMIT runs leaves the batch in doubt: before retrying, the sink
//    asks the database whether that transaction (its txid) committed, so a batch is never counted,
//    receipted or dead-lettered twice (the dedup would keep its readings once in any case).
//  - While the database is down a batch is retried with backoff and the buffer holds up to
//    `bufferMax` readings; `wait()` then blocks producers (the MQTT ingestor stops reading).
//  - A batch the database rejects for its data (not for being down) is split in halves until the
//    bad readings are isolated; they become dead letters and the good ones beside them are stored.
//    Dead letters are isolated the same way; one the database refuses even in its plainest form is
//    kept and retried, never dropped.
//  - Dead letters are clipped, hashed and rate-limited per source as they come in (dead-letters.ts).
//  - close() writes what it can within its deadline, then spills the rest to a file in `spillDir`
//    that replaySpills() stores at the next start (spill.ts).
import { EventEmitter } from 'node:events';
import type { Pool, PoolClient } from 'pg';
import { from as copyFrom } from 'pg-copy-streams';
import { binaryCopyRows } from './copy-binary';
import { logger } from '../lib/log';
import { addSource, counter, histogram, pulled } from '../lib/metrics';
import {
  DEFAULT_DEAD_LETTER_LIMITS, DeadLetterLimiter, DeadLetterLimits, PreparedDeadLetter, pgSafeText, plainDeadLetter, prepareDeadLetter,
} from './dead-letters';
import type { DeadLetter, Reading } from './reading';
import { QUALITIES } from './reading';
import { claimSpills, readSpill, removeSpill, unclaimSpill, writeSpill } from './spill';

const log = logger('sink');

export interface SinkOptions {
  batchSize: number;
  maxWaitMs: number;
  bufferMax: number;
  writers?: number;
  /** Readings older than this are dead letters (INGEST_MAX_AGE_DAYS; 0 or unset: only the year-2000 floor). */
  maxAgeMs?: number;
  /** Readings further ahead than this are dead letters (INGEST_MAX_FUTURE_SECONDS; default 300 s). */
  maxFutureMs?: number;
  /** Longest a batch transaction may take (INGEST_TRANSACTION_TIMEOUT_MS; default 30 s). */
  transactionTimeoutMs?: number;
  deadLetters?: Partial<DeadLetterLimits>;
  /** How often the rate limit's summaries are written (default 60 s). */
  summaryIntervalMs?: number;
  /** Dead letters held in memory at most (beyond it they are counted into summaries; default 10,000). */
  deadLetterQueueMax?: number;
  /** Where close() spills what it could not write and replaySpills() finds it (DATA_DIR/ingest-spill). */
  spillDir?: string;
  /** Largest spill file (INGEST_SPILL_MAX_MB; default 256 MiB). */
  spillMaxBytes?: number;
}

export interface SinkStats {
  received: number;
  stored: number;
  duplicates: number;
  /** Dead letters written one by one (including readings the database moved to dead letters). */
  deadLetters: number;
  /** Dead letters over the rate limit (or beyond the queue's bound), counted into summary rows. */
  deadLettersSuppressed: number;
  deadLetterSummaries: number;
  /** Dead letters the database refused even in their plainest form, held and retried. */
  deadLettersRetrying: number;
  batches: number;
  failedAttempts: number;
  /** Transactions cut by the watchdog. */
  transactionTimeouts: number;
  /** Batches whose connection was lost while their COMMIT ran, resolved by asking txid_status(). */
  commitsInDoubt: number;
  /** Stored batches whose event detection (the transaction after their commit) failed; judged later. */
  eventDetectionFailures: number;
  buffered: number;
  databaseUp: boolean;
  spilledReadings: number;
  spilledDeadLetters: number;
  replayedReadings: number;
  replayedDeadLetters: number;
  /** Readings and dead letters not written and not spilled at shutdown (no spill folder, or the spill bound). */
  lostAtShutdown: number;
}

/** A transaction's statement timeout, and lock waits of a third of it (at least 1 s). */
const transactionLimits = (ms: number) => `set local statement_timeout = ${ms}; set local lock_timeout = ${Math.max(1000, Math.floor(ms / 3))}`;

/** Errors that mean "the database is unreachable or going away", worth retrying as they are. */
export function isConnectionError(error: unknown): boolean {
  const code = (error as { code?: string })?.code ?? '';
  const message = (error as Error)?.message ?? '';
  return (
    code.startsWith('08') || code.startsWith('57P') || code === '53300' || code === '40001' || code === '40P01' ||
    ['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'ENOTFOUND', 'EHOSTUNREACH'].includes(code) ||
    /Connection terminated|connection timeout|Client has encountered a connection error|not queryable|after calling end on the pool/i.test(message)
  );
}

/**
 * Errors about this batch's data, worth splitting the batch for: data exceptions (22), constraint
 * violations (23), errors raised by our functions (P0), internal errors (XX), program limits (54),
 * statement timeouts, and errors without an SQLSTATE (while preparing the batch here). Everything
 * else (locks, resources, a missing function during an upgrade, permissions) is the database's
 * state, not the data's: retried with backoff like an outage, never turned into dead letters.
 */
export function isDataError(error: unknown): boolean {
  if (isConnectionError(error)) return false;
  const code = sqlState(error);
  if (!code) return true;
  // 53200 (out of memory, e.g. the lock table) can be this batch's own doing: a smaller one may pass.
  return /^(22|23|P0|XX|54)/.test(code) || code === '57014' || code === '53200';
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

const MIN_TIME = Date.UTC(2000, 0, 1);
const DAY_MS = 86_400_000;
const dayOf = (r: Reading) => {
  try {
    return Math.floor(r.time.getTime() / DAY_MS);
  } catch {
    return Number.NaN; // its COPY line will fail too, and the reading become a dead letter
  }
};
/** Distinct UTC days one batch may hold (see nextBatch). */
export const MAX_DAYS_PER_BATCH = 16;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const NOT_PG_TEXT = /\u0000|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;
const MAX_NAME_CHARS = 200;
const MAX_METADATA_BYTES = 65536;
const show = (v: unknown) => {
  if (v instanceof Date) return String(v); // "Invalid Date"
  try {
    return (typeof v === 'string' ? JSON.stringify(v) : String(JSON.stringify(v) ?? v)).slice(0, 200);
  } catch {
    return String(v).slice(0, 200);
  }
};

// Ids and names repeat from reading to reading: one that passed its check once is not checked
// again (one set for uuids, one for names: a name is no uuid).
const goodUuids = new Set<string>();
const goodNames = new Set<string>();
function remember(set: Set<string>, v: string): true {
  if (set.size >= 50_000) set.clear();
  set.add(v);
  return true;
}
const isUuid = (v: unknown): boolean => typeof v === 'string' && (goodUuids.has(v) || (UUID.test(v) && remember(goodUuids, v)));
const isName = (v: unknown, emptyAllowed: boolean): boolean => typeof v === 'string' &&
  (v === '' ? emptyAllowed : goodNames.has(v) || (v.length <= MAX_NAME_CHARS && !NOT_PG_TEXT.test(v) && remember(goodNames, v)));
const nameProblem = (field: string, v: unknown) =>
  `${field} ${show(v)} must be text of at most ${MAX_NAME_CHARS} characters without U+0000 or unpaired surrogates`;

/** Why a reading cannot be written, or undefined. Its COPY row is then made without a throw. */
export function readingProblem(r: Reading, now: number, maxAgeMs: number, maxFutureMs: number): string | undefined {
  if (!r || typeof r !== 'object') return 'reading is not an object';
  const time = r.time;
  const t = time instanceof Date ? time.getTime() : NaN;
  if (!Number.isFinite(t)) return `timestamp ${show(time)} is not a valid date-time`;
  if (t < MIN_TIME) return `timestamp ${new Date(t).toISOString()} is before the year 2000`;
  if (maxAgeMs > 0 && t < now - maxAgeMs) return `timestamp ${new Date(t).toISOString()} is more than ${Math.round(maxAgeMs / 86_400_000)} days old (INGEST_MAX_AGE_DAYS)`;
  if (t > now + maxFutureMs) return `timestamp ${new Date(t).toISOString()} is more than ${maxFutureMs / 1000} s in the future`;
  if (!isUuid(r.tenantId)) return `tenantId ${show(r.tenantId)} is not a uuid`;
  if (!isUuid(r.deviceId)) return `deviceId ${show(r.deviceId)} is not a uuid`;
  if (!isName(r.sensorType, false)) return nameProblem('sensorType', r.sensorType);
  if (!isName(r.unit, true)) return nameProblem('unit', r.unit);
  if (typeof r.value !== 'number' || !Number.isFinite(r.value)) return `value ${show(r.value)} is not a finite number`;
  if (!QUALITIES.includes(r.quality)) return `quality ${show(r.quality)} is not one of ${QUALITIES.join(', ')}`;
  if (r.metadata !== undefined && r.metadata !== null) {
    if (typeof r.metadata !== 'object' || Array.isArray(r.metadata)) return 'metadata must be a JSON object';
    let bad = false;
    let text: string;
    try {
      text = JSON.stringify(r.metadata, (key, value) => {
        if (NOT_PG_TEXT.test(key) || (typeof value === 'string' && NOT_PG_TEXT.test(value))) bad = true;
        return value;
      });
    } catch (error) {
      return `metadata cannot be written as JSON: ${(error as Error).message}`;
    }
    if (bad) return 'metadata holds U+0000 or an unpaired surrogate, which jsonb cannot store';
    if (Buffer.byteLength(text) > MAX_METADATA_BYTES) return `metadata is more than ${MAX_METADATA_BYTES} bytes of JSON`;
  }
  return undefined;
}


/** What a refused reading keeps in its dead letter: never throws. */
function readingJson(r: Reading): string {
  try {
    const t = r?.time instanceof Date && Number.isFinite(r.time.getTime()) ? r.time.toISOString() : String(r?.time);
    return JSON.stringify({ deviceId: r?.deviceId, sensorType: r?.sensorType, value: r?.value, unit: r?.unit, quality: r?.quality,
      timestamp: t, metadata: r?.metadata ?? null }, (_k, v) => (typeof v === 'bigint' ? v.toString() : typeof v === 'number' && !Number.isFinite(v) ? String(v) : v));
  } catch {
    return String(r);
  }
}

/** The SQLSTATE of an error the server sent, or undefined (an error of the socket or of this process). */
function sqlState(error: unknown): string | undefined {
  const code = (error as { code?: unknown })?.code;
  return typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code) ? code : undefined;
}

/** Cuts a client's socket: its pending query fails at once and the server rolls the transaction back. */
function cutConnection(client: PoolClient): void {
  const stream = (client as unknown as { connection?: { stream?: { destroy(): void } } }).connection?.stream;
  if (stream) stream.destroy();
  else void (client as unknown as { end(): Promise<void> }).end().catch(() => undefined);
}

// Which spill file a replayed reading or dead letter came from: the file is deleted once all are written.
const ORIGIN = Symbol('spill file');
interface SpillOrigin {
  file: string;
  pending: number;
  loaded: boolean;
}
type Tagged = { [ORIGIN]?: SpillOrigin };

type BatchResult = { inserted: string; duplicates: string; rejected: string };
/** Per receipted reading of a batch (receiptKey), whether its transaction inserted it. */
type ReceiptOutcomes = Map<string, { inserted: boolean }>;
/** A batch whose connection was lost while its COMMIT ran: its txid and what it would have counted. */
interface InDoubt {
  txid: string;
  /** pg_postmaster_start_time() as the batch began: a txid is only asked of the server that gave it. */
  serverStart: string;
  result: BatchResult;
  outcomes: ReceiptOutcomes | undefined;
}

/** What store() answers once every reading handed in is committed or dead-lettered. Indexes are positions in the array given. */
export interface StoreResult {
  stored: number;
  duplicates: number;
  /** Readings already stored (same device, sensor type and time), not stored again. */
  duplicateIndexes: number[];
  /** Readings kept as dead letters instead, with the dead letter's reason; in index order. */
  refused: { index: number; reason: string }[];
}
// store(): each reading it buffers carries its receipt, so the batch that commits it can say how it went.
const RECEIPT = Symbol('store receipt');
interface Receipt {
  pending: number;
  result: StoreResult;
  resolve(result: StoreResult): void;
  reject(error: Error): void;
}
type Receipted = { [RECEIPT]?: { receipt: Receipt; index: number } };
/** Longest store()'s readings wait for their batch to close (add()'s wait for maxWaitMs). */
const STORE_MAX_WAIT_MS = 20;
const receiptKey = (deviceId: string, sensorType: string, ms: number) => `${deviceId}|${sensorType}|${ms}`;

interface Attempt {
  batch: Reading[];
  letters: PreparedDeadLetter[];
}

export class ReadingSink extends EventEmitter {
  private buffer: Reading[] = [];
  private deadLetters: PreparedDeadLetter[] = [];
  private stuck: PreparedDeadLetter[] = [];
  private stuckTimer: NodeJS.Timeout | undefined;
  private stuckDelay = 1000;
  private timer: NodeJS.Timeout | undefined;
  /** When the oldest reading still buffered arrived (roughly: leftovers of a batch keep the earlier time). */
  private bufferSince: number | undefined;
  private summaryTimer: NodeJS.Timeout | undefined;
  private activeWriters = 0;
  private closing = false;
  private closed = false;
  private abandoning = false;
  private abandon: () => void = () => undefined;
  private readonly abandoned = new Promise<void>((resolve) => (this.abandon = resolve));
  private spilled = false;
  private waiters: (() => void)[] = [];
  private readonly inFlight = new Set<Attempt>();
  private readonly unwritten: Attempt[] = [];
  private readonly settled = new WeakSet<object>();
  /** Batches being bisected to find what the database refuses (see isolate). */
  private isolating = 0;
  /** Dead letters in their plainest form (plainDeadLetter): if the database refuses one, it is held and retried. */
  private readonly plain = new WeakSet<PreparedDeadLetter>();
  private readonly claims = new Map<string, SpillOrigin>();
  private readonly receipts = new Set<Receipt>();
  private replaying: Promise<void> | undefined;
  private lastDownLog = 0;
  private readonly writers: number;
  private readonly maxAgeMs: number;
  private readonly maxFutureMs: number;
  private readonly txTimeoutMs: number;
  private readonly limits: DeadLetterLimits;
  private readonly limiter: DeadLetterLimiter;
  private readonly byClass = new Map<string, { written: number; suppressed: number }>();
  readonly stats: SinkStats = {
    received: 0, stored: 0, duplicates: 0, deadLetters: 0, deadLettersSuppressed: 0, deadLetterSummaries: 0, deadLettersRetrying: 0,
    batches: 0, failedAttempts: 0, transactionTimeouts: 0, commitsInDoubt: 0, eventDetectionFailures: 0, buffered: 0, databaseUp: true,
    spilledReadings: 0, spilledDeadLetters: 0, replayedReadings: 0, replayedDeadLetters: 0, lostAtShutdown: 0,
  };

  constructor(private readonly pool: Pool, private readonly options: SinkOptions) {
    super();
    this.writers = Math.max(1, options.writers ?? 2);
    this.maxAgeMs = options.maxAgeMs ?? 0;
    this.maxFutureMs = options.maxFutureMs ?? 300_000;
    this.txTimeoutMs = options.transactionTimeoutMs ?? 30_000;
    this.limits = { ...DEFAULT_DEAD_LETTER_LIMITS, ...options.deadLetters };
    this.limiter = new DeadLetterLimiter(this.limits);
    this.summaryTimer = setInterval(() => this.queueSummaries(), options.summaryIntervalMs ?? 60_000);
    this.summaryTimer.unref();
  }

  /** Queue readings. Returns false when the buffer is full: call `wait()` before adding more. */
  add(readings: Reading[]): boolean {
    if (this.closed) throw new Error('ReadingSink is closed');
    const now = Date.now();
    const refused: DeadLetter[] = [];
    for (const r of readings) {
      const problem = readingProblem(r, now, this.maxAgeMs, this.maxFutureMs);
      if (problem) refused.push(this.refusedLetter(r, `reading refused before writing: ${problem}`));
      else this.buffer.push(r);
    }
    this.stats.received += readings.length;
    this.stats.buffered = this.buffer.length;
    if (refused.length) {
      log.warn('readings refused before writing; kept as dead letters', { count: refused.length, first: refused[0].reason });
      this.reject(refused);
    }
    this.schedule();
    return this.buffer.length < this.options.bufferMax;
  }

  /** Queue dead letters (clipped, hashed and rate-limited here); they are written with the next batch. */
  reject(letters: DeadLetter[]): void {
    if (!letters.length) return;
    if (this.closed) {
      log.error('dead letters handed to a closed sink: not written', { count: letters.length, first: String(letters[0]?.reason).slice(0, 200) });
      this.stats.lostAtShutdown += letters.length;
      return;
    }
    const queueMax = this.options.deadLetterQueueMax ?? 10_000;
    for (const letter of letters) {
      let prepared: PreparedDeadLetter;
      try {
        prepared = prepareDeadLetter(letter, this.limits);
      } catch (error) {
        prepared = prepareDeadLetter({ source: 'SINK', reason: `dead letter could not be prepared (${(error as Error).message}): ${String(letter?.reason)}` }, this.limits);
      }
      if (this.deadLetters.length < queueMax && this.limiter.admit(prepared)) {
        this.deadLetters.push(prepared);
      } else {
        if (this.deadLetters.length >= queueMax) this.limiter.count(prepared);
        this.stats.deadLettersSuppressed++;
        this.classCount(prepared.reasonClass).suppressed++;
      }
    }
    this.schedule();
  }

  /** Resolves once the buffer is below its bound again. */
  wait(): Promise<void> {
    if (this.buffer.length < this.options.bufferMax || this.closing) return Promise.resolve();
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  get buffered(): number {
    return this.buffer.length;
  }

  /** True while the buffer is at its bound (add() would return false). */
  get bufferFull(): boolean {
    return this.buffer.length >= this.options.bufferMax;
  }

  /**
   * Like add(), for callers that must answer for each reading (REST ingest): resolves once every
   * reading is committed (stored, or skipped as a duplicate) or kept as a dead letter, saying which.
   * Rejects if the sink closes first (what was not written is in the spill file; sending it again
   * is safe, duplicates are skipped). Costs add() nothing: only batches holding such readings ask the
   * database which of their rows it inserted.
   */
  store(readings: Reading[]): Promise<StoreResult> {
    if (this.closed || this.closing) return Promise.reject(new Error('ReadingSink is closing; nothing was stored'));
    return new Promise<StoreResult>((resolve, reject) => {
      const receipt: Receipt = { pending: 0, result: { stored: 0, duplicates: 0, duplicateIndexes: [], refused: [] }, resolve, reject };
      const now = Date.now();
      const refused: DeadLetter[] = [];
      readings.forEach((r, index) => {
        const problem = readingProblem(r, now, this.maxAgeMs, this.maxFutureMs);
        if (problem) {
          const reason = `reading refused before writing: ${problem}`;
          refused.push(this.refusedLetter(r, reason));
          receipt.result.refused.push({ index, reason });
          return;
        }
        receipt.pending++;
        // A copy carries the receipt: the caller's object may be handed in again.
        this.buffer.push({ ...r, [RECEIPT]: { receipt, index } } as Reading);
      });
      this.stats.received += readings.length;
      this.stats.buffered = this.buffer.length;
      if (refused.length) this.reject(refused);
      if (receipt.pending === 0) resolve(receipt.result);
      else this.receipts.add(receipt);
      this.schedule();
      // A caller waits for the answer: its batch closes within STORE_MAX_WAIT_MS, not INGEST_BATCH_MAX_WAIT_MS.
      if (receipt.pending && this.timer && this.options.maxWaitMs > STORE_MAX_WAIT_MS) {
        clearTimeout(this.timer);
        this.timer = setTimeout(() => {
          this.timer = undefined;
          this.kick();
        }, STORE_MAX_WAIT_MS);
      }
    });
  }

  /** In a batch transaction, after ingest_staged_readings(): per (device, sensor type, time) still staged, whether this transaction inserted it. */
  private async receiptOutcomes(client: PoolClient, batch: Reading[]): Promise<ReceiptOutcomes | undefined> {
    const devices: string[] = [];
    const types: string[] = [];
    const times: Date[] = [];
    for (const r of batch) {
      if (!(r as Receipted)[RECEIPT]) continue;
      devices.push(r.deviceId);
      types.push(r.sensorType);
      times.push(r.time);
    }
    if (!devices.length) return undefined;
    // After ingest_staged_readings the staging table holds exactly the readings it stored (orphans
    // went to dead letters, duplicates were taken out); a reading not staged but in the table was
    // stored before (a duplicate); neither: an orphan.
    const { rows } = await client.query<{ device_id: string; sensor_type: string; time: Date; inserted: boolean; stored: boolean }>(
      `select k.device_id::text as device_id, k.sensor_type, k.time, s.device_id is not null as inserted,
              s.device_id is null and exists (select 1 from iot_private.sensor_readings r
                                              where r.device_id = k.device_id and r.time = k.time and r.sensor_type = k.sensor_type) as stored
       from unnest($1::uuid[], $2::text[], $3::timestamptz[]) as k (device_id, sensor_type, time)
       left join pg_temp.reading_staging s on s.device_id = k.device_id and s.sensor_type = k.sensor_type and s.time = k.time`,
      [devices, types, times]);
    const out: ReceiptOutcomes = new Map();
    for (const row of rows) {
      if (row.inserted || row.stored) out.set(receiptKey(row.device_id, row.sensor_type, row.time.getTime()), { inserted: row.inserted });
    }
    return out;
  }

  /** After the commit: each receipted reading of the batch was stored, a duplicate, or moved to dead letters by the database. */
  private settleReceipts(batch: Reading[], outcomes: ReceiptOutcomes): void {
    for (const r of batch) {
      if (!(r as Receipted)[RECEIPT]) continue;
      const o = outcomes.get(receiptKey(r.deviceId.toLowerCase(), r.sensorType, r.time.getTime()));
      if (!o) this.receiptOutcome(r, `channel ${r.sensorType} of device ${r.deviceId} is not registered or not active`);
      else if (o.inserted) {
        o.inserted = false; // two readings with one key in a batch: the first is stored, the next a duplicate
        this.receiptOutcome(r, 'stored');
      } else this.receiptOutcome(r, 'duplicate');
    }
  }

  private receiptOutcome(r: Reading, outcome: string): void {
    const tag = (r as Receipted)[RECEIPT];
    if (!tag) return;
    delete (r as Receipted)[RECEIPT];
    const { receipt, index } = tag;
    if (outcome === 'stored') receipt.result.stored++;
    else if (outcome === 'duplicate') {
      receipt.result.duplicates++;
      receipt.result.duplicateIndexes.push(index);
    } else receipt.result.refused.push({ index, reason: outcome });
    if (--receipt.pending > 0) return;
    this.receipts.delete(receipt);
    receipt.result.refused.sort((a, b) => a.index - b.index);
    receipt.result.duplicateIndexes.sort((a, b) => a - b);
    receipt.resolve(receipt.result);
  }

  /** Writes everything queued so far (dead letters held for a retry excepted). */
  async flush(): Promise<void> {
    this.kick();
    while (this.buffer.length || this.deadLetters.length || this.activeWriters) {
      await new Promise<void>((resolve) => this.once('written', resolve));
      this.kick();
    }
  }

  /**
   * Writes what it can within `deadlineMs`, then spills whatever is still unwritten (readings,
   * dead letters, rate-limit summaries) to a file in spillDir for the next start.
   */
  async close(options: { deadlineMs?: number } = {}): Promise<void> {
    if (this.closed || this.closing) return;
    this.closing = true;
    if (this.summaryTimer) clearInterval(this.summaryTimer);
    this.queueSummaries();
    for (const resolve of this.waiters.splice(0)) resolve();
    // A replay under way loads the rest of its file now (wait() no longer blocks) and starts no other.
    await this.replaying?.catch(() => undefined);
    const deadline = options.deadlineMs;
    const flushed = deadline === undefined
      ? await this.flush().then(() => true)
      : await Promise.race([this.flush().then(() => true), sleep(deadline).then(() => false)]);
    if (!flushed || this.stuck.length) await this.spillUnwritten();
    for (const [file, origin] of this.claims) {
      if (!origin.loaded) await unclaimSpill(file); // the next start replays it
      else if (this.spilled) await removeSpill(file); // its unwritten part is in the new spill file
    }
    this.closed = true;
    for (const receipt of this.receipts) {
      receipt.reject(new Error(`the sink closed before ${receipt.pending} of these readings were committed; ` +
        'they are in the spill file for the next start, and sending them again is safe (duplicates are skipped)'));
    }
    this.receipts.clear();
    if (this.timer) clearTimeout(this.timer);
    if (this.stuckTimer) clearTimeout(this.stuckTimer);
  }

  /**
   * Stores what earlier runs spilled (DATA_DIR/ingest-spill), one file at a time within the
   * buffer's bound. Runs in the background: start it and carry on.
   */
  replaySpills(): Promise<void> {
    this.replaying ??= this.replay().catch((error) => log.error('replaying spilled readings failed; the files are kept for the next start', { error }));
    return this.replaying;
  }

  private async replay(): Promise<void> {
    const dir = this.options.spillDir;
    if (!dir) return;
    const files = await claimSpills(dir);
    for (const file of files) this.claims.set(file, { file, pending: 0, loaded: false });
    for (const file of files) {
      if (this.closing) return;
      const origin = this.claims.get(file)!;
      const content = await readSpill(file);
      log.info('replaying readings spilled at an earlier shutdown', {
        file, readings: content.readings.length, deadLetters: content.deadLetters.length, badLines: content.badLines });
      if (content.badLines) log.warn('spill file has lines that cannot be read (a crash while it was written); they are skipped', { file, badLines: content.badLines });
      origin.pending = content.readings.length + content.deadLetters.length;
      origin.loaded = true;
      for (const d of content.deadLetters) {
        (d as Tagged)[ORIGIN] = origin;
        this.deadLetters.push(d);
      }
      this.stats.replayedDeadLetters += content.deadLetters.length;
      const now = Date.now();
      for (let i = 0; i < content.readings.length; i += this.options.batchSize) {
        const refused: PreparedDeadLetter[] = [];
        for (const r of content.readings.slice(i, i + this.options.batchSize)) {
          const problem = readingProblem(r, now, this.maxAgeMs, Number.POSITIVE_INFINITY);
          if (problem) {
            const letter = prepareDeadLetter(this.refusedLetter(r, `replayed reading refused: ${problem}`), this.limits);
            (letter as Tagged)[ORIGIN] = origin; // the reading is done once its dead letter is written
            refused.push(letter);
          } else {
            (r as Tagged)[ORIGIN] = origin;
            this.buffer.push(r);
          }
        }
        this.deadLetters.push(...refused);
        this.stats.replayedReadings += Math.min(this.options.batchSize, content.readings.length - i);
        this.stats.buffered = this.buffer.length;
        this.schedule();
        await this.wait();
      }
      if (origin.pending === 0) await this.finishSpill(origin);
    }
  }

  private async finishSpill(origin: SpillOrigin): Promise<void> {
    this.claims.delete(origin.file);
    await removeSpill(origin.file);
    log.info('spilled readings are all stored; file removed', { file: origin.file });
  }

  /** Marks readings and dead letters as written; a spill file whose content is all written is removed. */
  private settle(items: readonly object[]): void {
    // Only a batch being isolated has parts written while the whole is still in flight: only then
    // must a shutdown know which of its readings are written (a WeakSet entry per reading costs).
    const mark = this.isolating > 0;
    for (const item of items) {
      if (mark) this.settled.add(item);
      const origin = (item as Tagged)[ORIGIN];
      if (origin && --origin.pending === 0 && origin.loaded && !this.spilled) void this.finishSpill(origin).catch(() => undefined);
    }
  }

  /** Dead letters by reason class: written one by one, or counted into rate-limit summaries (for /metrics). */
  deadLettersByClass(): ReadonlyMap<string, { written: number; suppressed: number }> {
    return this.byClass;
  }

  private classCount(reasonClass: string): { written: number; suppressed: number } {
    let c = this.byClass.get(reasonClass);
    if (!c) this.byClass.set(reasonClass, (c = { written: 0, suppressed: 0 }));
    return c;
  }

  private refusedLetter(r: Reading, reason: string): DeadLetter {
    const device = typeof r?.deviceId === 'string' ? r.deviceId.slice(0, 64) : 'unknown';
    return { source: 'SINK', reason, tenantId: typeof r?.tenantId === 'string' && UUID.test(r.tenantId) ? r.tenantId : undefined,
      payload: readingJson(r), sourceKey: `device/${device}` };
  }

  private queueSummaries(): void {
    const summaries = this.limiter.takeSummaries();
    if (!summaries.length) return;
    this.deadLetters.push(...summaries);
    this.schedule();
  }

  private schedule(): void {
    if (this.buffer.length && this.bufferSince === undefined) this.bufferSince = Date.now();
    this.kick();
    // Still waiting with a writer free: a further writer starts once the oldest reading has waited
    // maxWaitMs (a busy writer that finishes first takes it at once). While the database is down
    // the one writer probing it carries on alone.
    if (this.timer || this.abandoning || this.activeWriters >= this.writers || !(this.buffer.length || this.deadLetters.length)) return;
    if (!this.stats.databaseUp && this.activeWriters) return;
    const wait = Math.max(1, (this.bufferSince ?? Date.now()) + this.options.maxWaitMs - Date.now());
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.schedule();
    }, wait);
  }

  /** Whether a further writer (another one is busy) should start a batch now. */
  private batchDue(): boolean {
    const size = this.options.batchSize;
    return this.buffer.length >= size || this.deadLetters.length >= size || this.closing || this.receipts.size > 0 ||
      (this.buffer.length > 0 && Date.now() - (this.bufferSince ?? 0) >= this.options.maxWaitMs);
  }

  /**
   * The next batch: up to batchSize readings from the front of the buffer, from at most
   * MAX_DAYS_PER_BATCH distinct UTC days. Each new day is a new chunk (tiers 1-2) or possibly a
   * partition (tier 3), each with its locks: readings spread over thousands of days (a clock reset,
   * a replayed archive) are written a few days at a time, never in one transaction that exhausts
   * the lock table under every other session.
   */
  private nextBatch(): Reading[] {
    const size = this.options.batchSize;
    const first = this.buffer.length ? dayOf(this.buffer[0]) : 0;
    let i = 0;
    while (i < this.buffer.length && i < size && dayOf(this.buffer[i]) === first) i++;
    if (i === this.buffer.length || i === size) return this.buffer.splice(0, i); // one day: the usual case
    const days = new Set<number>([first]);
    const batch = this.buffer.slice(0, i);
    const rest: Reading[] = [];
    const scan = Math.min(this.buffer.length, size * 4);
    for (; i < scan && batch.length < size; i++) {
      const r = this.buffer[i];
      const day = dayOf(r);
      if (days.has(day) || days.size < MAX_DAYS_PER_BATCH) {
        days.add(day);
        batch.push(r);
      } else {
        rest.push(r);
      }
    }
    this.buffer.splice(0, i, ...rest);
    return batch;
  }

  private kick(): void {
    if (this.abandoning) return;
    while (this.activeWriters < this.writers && (this.buffer.length || this.deadLetters.length)) {
      if (this.activeWriters > 0 && !this.batchDue()) break; // natural batching (see the header)
      const batch = this.nextBatch();
      if (!this.buffer.length) this.bufferSince = undefined;
      const letters = this.deadLetters.splice(0, this.options.batchSize);
      const attempt: Attempt = { batch, letters };
      this.inFlight.add(attempt);
      this.activeWriters++;
      this.write(batch, letters)
        .catch((error) => {
          // write() handles every database error itself; this is a bug here. Keep the data for the spill.
          log.error('unexpected error while writing a batch; it is kept for a retry', { error, readings: batch.length });
          this.unwritten.push(attempt);
        })
        .finally(() => {
          this.inFlight.delete(attempt);
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

  /** Writes one batch, retrying while the database cannot take it. */
  private async write(batch: Reading[], letters: PreparedDeadLetter[]): Promise<void> {
    let delay = 100;
    let timeouts = 0;
    for (;;) {
      try {
        await this.writeOnce(batch, letters);
        this.markUp(batch);
        return;
      } catch (error) {
        const doubt = (error as { inDoubt?: InDoubt }).inDoubt;
        if (doubt && (await this.resolveDoubt(batch, letters, doubt, error as Error)) === 'committed') {
          this.markUp(batch);
          return;
        }
        const timedOut = (error as { watchdog?: boolean }).watchdog === true;
        if (timedOut) timeouts++;
        // A batch whose transaction keeps hanging although the database answers is treated as bad data
        // (a commit cut off is the connection's fault, whatever the error looked like).
        if ((!doubt && isDataError(error)) || timeouts >= 3) {
          await this.isolate(batch, letters, error as Error);
          return;
        }
        this.stats.failedAttempts++;
        if (this.abandoning) {
          this.unwritten.push({ batch, letters });
          return;
        }
        this.markDown(error as Error, batch, letters);
        await Promise.race([sleep(delay), this.abandoned]);
        delay = Math.min(delay * 2, 5000);
      }
    }
  }

  private markDown(error: Error, batch: Reading[], letters: PreparedDeadLetter[]): void {
    const now = Date.now();
    if (this.stats.databaseUp || now - this.lastDownLog > 60_000) {
      log.warn(this.stats.databaseUp ? 'database unavailable; holding readings and retrying' : 'database still unavailable; holding readings',
        { error, buffered: this.buffer.length + batch.length, deadLetters: this.deadLetters.length + letters.length });
      this.lastDownLog = now;
    }
    if (this.stats.databaseUp) {
      this.stats.databaseUp = false;
      this.emit('database', false);
    }
  }

  private markUp(batch: Reading[]): void {
    if (this.stats.databaseUp) return;
    log.info('database is back; writing buffered readings', { buffered: this.buffer.length + batch.length });
    this.stats.databaseUp = true;
    this.emit('database', true);
  }

  /**
   * The connection went while the batch's COMMIT ran: asks txid_status() until the database says
   * whether it committed (then the batch is done, as if the answer had come) or not (retried).
   * "in progress" lasts until the server notices the lost connection (at most its idle timeout).
   * A server started since the batch began (a restart, or a standby promoted in a failover, whose
   * transaction ids may name other transactions), or any answer but those, leaves the batch to the
   * retry: its readings are still stored once (the dedup), only its counts and dead letters may repeat.
   */
  private async resolveDoubt(batch: Reading[], letters: PreparedDeadLetter[], doubt: InDoubt, error: Error): Promise<'committed' | 'aborted' | 'unknown'> {
    this.stats.commitsInDoubt++;
    log.warn('connection lost while a batch committed; asking the database whether it did', { error, txid: doubt.txid, readings: batch.length, deadLetters: letters.length });
    let delay = 100;
    for (;;) {
      if (this.abandoning) return 'unknown';
      let answer: { status: string | null; same_server: boolean } | undefined;
      try {
        answer = await this.askCommitStatus(doubt);
      } catch (askError) {
        if (!isConnectionError(askError)) {
          log.warn('could not learn whether the batch in doubt committed; writing it again (its readings are stored once)', { error: askError, txid: doubt.txid });
          return 'unknown';
        }
        this.markDown(askError as Error, batch, letters); // still unreachable: ask again
      }
      if (answer && !answer.same_server) {
        log.warn('the database server restarted or changed since the batch in doubt began; writing it again (its readings are stored once)', { txid: doubt.txid });
        return 'unknown';
      }
      if (answer?.status === 'committed') {
        log.info('the batch in doubt had committed; not written again', { txid: doubt.txid, readings: batch.length });
        this.settleCommitted(batch, letters, doubt.result, doubt.outcomes);
        return 'committed';
      }
      if (answer && answer.status !== 'in progress') {
        log.info('the batch in doubt had not committed; writing it again', { txid: doubt.txid, status: answer.status, readings: batch.length });
        return answer.status === 'aborted' ? 'aborted' : 'unknown';
      }
      await Promise.race([sleep(delay), this.abandoned]);
      delay = Math.min(delay * 2, 5000);
    }
  }

  /** One txid_status() question on a connection of its own, cut (as a connection error) if it takes longer than a batch may. */
  private async askCommitStatus(doubt: InDoubt): Promise<{ status: string | null; same_server: boolean }> {
    const ms = Math.min(this.txTimeoutMs, 10_000);
    const client = await this.connect(ms);
    let broken: Error | undefined;
    const onError = (e: Error) => (broken = e); // a socket lost while checked out must not become an uncaught 'error'
    client.on('error', onError);
    const watchdog = setTimeout(() => {
      broken = Object.assign(new Error('no answer to txid_status in time'), { code: 'ETIMEDOUT' });
      cutConnection(client);
    }, ms);
    try {
      const { rows: [row] } = await client.query<{ status: string | null; same_server: boolean }>(
        'select txid_status($1::bigint) as status, pg_postmaster_start_time() = $2::timestamptz as same_server', [doubt.txid, doubt.serverStart]);
      return row;
    } catch (error) {
      throw broken ?? error;
    } finally {
      clearTimeout(watchdog);
      client.removeListener('error', onError);
      client.release(broken);
    }
  }

  /** A connection from the pool, or a connection error after `ms` (a pool waiting on a dead host never answers). */
  private connect(ms: number): Promise<PoolClient> {
    return new Promise((resolve, reject) => {
      let done = false;
      const timer = setTimeout(() => {
        done = true;
        reject(Object.assign(new Error(`no database connection within ${ms} ms`), { code: 'ETIMEDOUT' }));
      }, ms);
      this.pool.connect().then(
        (client) => {
          if (done) client.release();
          else {
            done = true;
            clearTimeout(timer);
            resolve(client);
          }
        },
        (error) => {
          if (done) return;
          done = true;
          clearTimeout(timer);
          reject(error);
        },
      );
    });
  }

  private async writeOnce(batch: Reading[], letters: PreparedDeadLetter[]): Promise<void> {
    // Everything the COPY sends is made before it starts, so a COPY never waits for data.
    const rows = batch.length ? binaryCopyRows(batch) : undefined;
    const lettersJson = letters.length ? JSON.stringify(letters) : '';
    const ms = this.txTimeoutMs;
    const client: PoolClient = await this.connect(Math.min(ms, 10_000));
    let broken: Error | undefined;
    let cut = false;
    let txid = '';
    let serverStart = '';
    let committing = false;
    let result: BatchResult = { inserted: '0', duplicates: '0', rejected: '0' };
    let outcomes: ReceiptOutcomes | undefined;
    // A connection that dies while checked out emits 'error' on the client; the running query
    // rejects as well, which is where it is handled. Without a listener the process would crash.
    const onError = (error: Error) => (broken = error);
    client.on('error', onError);
    // The server's timeouts end a slow statement or a wait for a lock; this ends everything else
    // (a network that stops answering, a COPY the server waits on).
    const cutAfter = ms + Math.min(5000, ms);
    const watchdog = setTimeout(() => {
      cut = true;
      this.stats.transactionTimeouts++;
      log.warn('batch transaction outlived its timeout; cutting its connection (the database rolls it back)',
        { timeoutMs: cutAfter, readings: batch.length, deadLetters: letters.length });
      cutConnection(client);
    }, cutAfter);
    try {
      // Four round trips per batch: begin (with the staging table), COPY, the function, commit. The
      // commit stays a message of its own: a connection lost while it runs leaves the batch in doubt,
      // and txid_current() is what resolveDoubt() then asks txid_status() about. The detector's
      // transaction follows the commit (detectEvents).
      const opened = await client.query(`begin; ${transactionLimits(ms)}; set local idle_in_transaction_session_timeout = ${ms}` + (batch.length ? '; select iot_private.create_reading_staging()' : '') +
        '; select txid_current()::text as txid, pg_postmaster_start_time()::text as server_start') as unknown as { rows: { txid: string; server_start: string }[] }[];
      ({ txid, server_start: serverStart } = opened[opened.length - 1].rows[0]);
      if (letters.length) await client.query('select iot_private.record_dead_letters($1::jsonb)', [lettersJson]);
      if (batch.length) {
        await new Promise<void>((resolve, reject) => {
          const stream = client.query(copyFrom(
            'copy pg_temp.reading_staging (time, tenant_id, device_id, sensor_type, value, unit, quality, metadata) from stdin (format binary)'));
          stream.on('error', reject);
          stream.on('finish', resolve);
          try {
            stream.end(rows);
          } catch (error) {
            stream.destroy(error as Error); // CopyFail: the server ends the COPY and the transaction rolls back
            reject(error);
          }
        });
        ({ rows: [result] } = await client.query<BatchResult>(
          'select * from iot_private.ingest_staged_readings(detect_events => false)'));
        if (this.receipts.size) outcomes = await this.receiptOutcomes(client, batch); // only while store() waits
      }
      committing = true;
      await client.query('commit');
      committing = false;
      // Stored: counted and receipted now; the batch's writer stays busy until its events are judged.
      this.settleCommitted(batch, letters, result, outcomes);
      if (Number(result.inserted) > 0) await this.detectEvents(client, batch, ms);
    } catch (error) {
      broken = cut ? Object.assign(new Error(`batch transaction cut after ${cutAfter} ms`), { code: 'ETIMEDOUT', watchdog: true }) : (error as Error);
      // An error the server sent for the COMMIT means it did not commit; anything else (the socket, a
      // cut, a server going down) leaves it open.
      const code = sqlState(error);
      if (committing && (cut || !code || /^(08|57P)/.test(code))) {
        throw Object.assign(broken, { inDoubt: { txid, serverStart, result, outcomes } satisfies InDoubt });
      }
      if (!cut && !isConnectionError(error)) await client.query('rollback').catch(() => undefined);
      throw broken;
    } finally {
      clearTimeout(watchdog);
      client.removeListener('error', onError);
      // A cut or broken connection is destroyed, never handed back to the pool.
      client.release(cut || (broken && isConnectionError(broken)) ? (broken ?? new Error('connection cut')) : undefined);
    }
  }

  /**
   * After the batch's commit (its readings and live NOTIFYs are out), in a transaction of its own:
   * threshold and anomaly events over the batch's channels as stored (sql/515_events_after_commit.sql).
   * Never throws: the batch is stored whatever happens here. A failure is logged and counted; the
   * channel's next batch, or the events__catch_up job within a minute, judges those readings.
   */
  private async detectEvents(client: PoolClient, batch: Reading[], ms: number): Promise<void> {
    const channels = new Map<string, { from: number; to: number; deviceId: string; sensorType: string }>();
    for (const r of batch) {
      const key = `${r.deviceId.toLowerCase()}/${r.sensorType}`;
      const t = r.time.getTime();
      const c = channels.get(key);
      if (!c) channels.set(key, { from: t, to: t, deviceId: r.deviceId, sensorType: r.sensorType });
      else if (t < c.from) c.from = t;
      else if (t > c.to) c.to = t;
    }
    const list = [...channels.values()];
    try {
      await client.query(`begin; ${transactionLimits(ms)}`);
      await client.query('select iot_private.detect_stored_events($1::uuid[], $2::text[], $3::timestamptz[], $4::timestamptz[])', [
        list.map((c) => c.deviceId), list.map((c) => c.sensorType), list.map((c) => new Date(c.from)), list.map((c) => new Date(c.to))]);
      await client.query('commit');
    } catch (error) {
      this.stats.eventDetectionFailures++;
      log.warn('event detection after a stored batch failed; the readings are stored and are judged by the next batch or the events__catch_up job',
        { error, readings: batch.length, channels: list.length });
      if (!isConnectionError(error)) await client.query('rollback').catch(() => undefined);
    }
  }

  /**
   * The bookkeeping of a committed batch: counters, receipts, spill files, events. A failure here (a
   * listener's) is logged: it must not make the stored batch look unwritten.
   */
  private settleCommitted(batch: Reading[], letters: PreparedDeadLetter[], result: BatchResult, outcomes: ReceiptOutcomes | undefined): void {
    try {
      this.countCommitted(batch, letters, result, outcomes);
    } catch (error) {
      log.error('bookkeeping after a committed batch failed; the batch is stored', { error, readings: batch.length });
    }
  }

  private countCommitted(batch: Reading[], letters: PreparedDeadLetter[], result: BatchResult, outcomes: ReceiptOutcomes | undefined): void {
    if (outcomes) this.settleReceipts(batch, outcomes);
    batchCommitted(batch, Number(result.inserted), letters.length);
    this.stats.stored += Number(result.inserted);
    this.stats.duplicates += Number(result.duplicates);
    const rejected = Number(result.rejected);
    this.stats.deadLetters += rejected + letters.filter((l) => !l.suppressedCount).length;
    if (rejected) this.classCount('registry').written += rejected;
    for (const l of letters) {
      if (l.suppressedCount) this.stats.deadLetterSummaries++;
      else this.classCount(l.reasonClass).written++;
    }
    this.stats.batches++;
    this.settle(batch);
    this.settle(letters);
    this.emit('batch', { readings: batch.length, deadLetters: letters.length });
  }

  /** The database refused this batch's data: find what it refuses by halving, keep the rest. */
  private async isolate(batch: Reading[], letters: PreparedDeadLetter[], error: Error): Promise<void> {
    this.isolating++;
    try {
      await this.isolateParts(batch, letters, error);
    } finally {
      this.isolating--;
    }
  }

  private async isolateParts(batch: Reading[], letters: PreparedDeadLetter[], error: Error): Promise<void> {
    if (letters.length && batch.length) {
      // Write the dead letters alone first, then the readings; each is bisected on its own.
      await this.write([], letters);
      return this.write(batch, []);
    }
    if (letters.length > 1) {
      const half = Math.ceil(letters.length / 2);
      await this.write([], letters.slice(0, half));
      return this.write([], letters.slice(half));
    }
    if (letters.length === 1) {
      const [letter] = letters;
      if (!this.plain.has(letter)) {
        log.warn('dead letter refused by the database as prepared; writing it in plain form', { error, reason: letter.reason.slice(0, 200) });
        const plain = plainDeadLetter(letter, error.message, this.limits);
        this.plain.add(plain);
        (plain as Tagged)[ORIGIN] = (letter as Tagged)[ORIGIN]; // it stands for the letter from now on
        this.settled.add(letter);
        return this.write([], [plain]);
      }
      // Even the plain form was refused: keep it and try again later. Never dropped.
      log.error('dead letter refused by the database even in plain form; held and retried', { error });
      this.stuck.push(letter);
      this.stats.deadLettersRetrying = this.stuck.length;
      this.retryStuckLater();
      return;
    }
    if (batch.length === 1) {
      const r = batch[0];
      const sqlState = typeof (error as { code?: unknown }).code === 'string';
      const reason = `${sqlState ? 'database refused the reading' : 'the reading could not be written'}: ${pgSafeText(String(error.message)).text}`;
      log.warn('reading refused by the database; kept as a dead letter', { reason });
      const letter = prepareDeadLetter(this.refusedLetter(r, reason), this.limits);
      (letter as Tagged)[ORIGIN] = (r as Tagged)[ORIGIN];
      this.settled.add(r);
      await this.write([], [letter]);
      this.receiptOutcome(r, reason);
      return;
    }
    const half = Math.ceil(batch.length / 2);
    await this.write(batch.slice(0, half), []);
    await this.write(batch.slice(half), []);
  }

  private retryStuckLater(): void {
    if (this.stuckTimer || this.closing) return;
    this.stuckTimer = setTimeout(() => {
      this.stuckTimer = undefined;
      const letters = this.stuck.splice(0);
      this.stats.deadLettersRetrying = 0;
      // Back in the queue as they are: the next failure brings them back here, a little later.
      this.deadLetters.push(...letters);
      this.stuckDelay = Math.min(this.stuckDelay * 2, 300_000);
      this.schedule();
    }, this.stuckDelay);
    this.stuckTimer.unref();
  }

  /** At shutdown: everything not written goes to a spill file (or, without a spill folder, is reported lost). */
  private async spillUnwritten(): Promise<void> {
    this.abandoning = true;
    this.abandon();
    // Writers give up at their next failure; let the ones in the middle of an attempt finish it.
    const settleBy = Date.now() + 2000;
    while (this.activeWriters && Date.now() < settleBy) await sleep(20);
    const readings = new Set<Reading>();
    const letters = new Set<PreparedDeadLetter>();
    const take = (a: Attempt) => {
      for (const r of a.batch) if (!this.settled.has(r)) readings.add(r);
      for (const l of a.letters) if (!this.settled.has(l)) letters.add(l);
    };
    for (const a of this.unwritten) take(a);
    for (const a of this.inFlight) take(a);
    take({ batch: this.buffer, letters: [...this.deadLetters, ...this.stuck, ...this.limiter.takeSummaries()] });
    this.buffer = [];
    this.deadLetters = [];
    this.stuck = [];
    this.spilled = true;
    if (!readings.size && !letters.size) return;
    const dir = this.options.spillDir;
    if (!dir) {
      this.stats.lostAtShutdown += readings.size + letters.size;
      log.error('database unreachable at shutdown and no spill folder: readings and dead letters lost',
        { readings: readings.size, deadLetters: letters.size });
      return;
    }
    try {
      const w = await writeSpill(dir, { readings: [...readings], deadLetters: [...letters] }, this.options.spillMaxBytes ?? 256 * 1024 * 1024);
      this.stats.spilledReadings += w.readings;
      this.stats.spilledDeadLetters += w.deadLetters;
      log.warn('database unreachable at shutdown: unwritten readings and dead letters kept in a spill file; the next start stores them',
        { file: w.file, readings: w.readings, deadLetters: w.deadLetters, bytes: w.bytes });
      if (w.readingsLeftOut || w.deadLettersLeftOut) {
        this.stats.lostAtShutdown += w.readingsLeftOut + w.deadLettersLeftOut;
        log.error('spill file reached its bound (INGEST_SPILL_MAX_MB): the rest is lost',
          { readingsLost: w.readingsLeftOut, deadLettersLost: w.deadLettersLeftOut });
      }
    } catch (error) {
      this.stats.lostAtShutdown += readings.size + letters.size;
      log.error('could not write the spill file: unwritten readings and dead letters lost', { error, dir, readings: readings.size, deadLetters: letters.size });
    }
  }
}

// Metrics (src/lib/metrics.ts). Counted as batches commit, for every sink of the process:
const rowsStored = counter<'table'>({
  name: 'iot_ingest_rows_stored_total',
  help: 'Rows the sinks wrote to the database, by table (sensor_readings, ingest_dead_letters); rate() gives rows/s.',
  labelNames: ['table'],
});
const ingestLatency = histogram({
  name: 'iot_ingest_latency_seconds',
  help: 'From a reading\'s timestamp (the device\'s publish time, else its arrival) to the commit of its batch, in seconds.',
  buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300],
});

function batchCommitted(batch: readonly Reading[], inserted: number, letters: number): void {
  if (inserted) rowsStored.inc({ table: 'sensor_readings' }, inserted);
  if (letters) rowsStored.inc({ table: 'ingest_dead_letters' }, letters);
  const now = Date.now();
  for (const r of batch) ingestLatency.observe(Math.max(0, now - r.time.getTime()) / 1000);
}

// Read from each registered sink's stats at scrape time.
const stat = (name: string, help: string, type: 'counter' | 'gauge', read: (s: ReadingSink) => number) =>
  pulled<ReadingSink>(type, { name, help }, read);
const sinkMetrics = [
  stat('iot_ingest_readings_received_total', 'Readings handed to the sink', 'counter', (s) => s.stats.received),
  stat('iot_ingest_readings_stored_total', 'Readings stored', 'counter', (s) => s.stats.stored),
  stat('iot_ingest_readings_duplicate_total', 'Readings skipped as duplicates', 'counter', (s) => s.stats.duplicates),
  stat('iot_ingest_dead_letters_total', 'Dead letters written one by one', 'counter', (s) => s.stats.deadLetters),
  stat('iot_ingest_dead_letters_suppressed_total', 'Dead letters over the rate limit, counted in summary rows instead of written one by one', 'counter', (s) => s.stats.deadLettersSuppressed),
  stat('iot_ingest_dead_letter_summaries_total', 'Rate-limit summary rows written', 'counter', (s) => s.stats.deadLetterSummaries),
  stat('iot_ingest_dead_letters_retrying', 'Dead letters the database refused, held and retried', 'gauge', (s) => s.stats.deadLettersRetrying),
  stat('iot_ingest_batches_total', 'Batches written', 'counter', (s) => s.stats.batches),
  stat('iot_ingest_failed_attempts_total', 'Batch attempts that failed and were retried', 'counter', (s) => s.stats.failedAttempts),
  stat('iot_ingest_transaction_timeouts_total', 'Batch transactions cut by the watchdog', 'counter', (s) => s.stats.transactionTimeouts),
  stat('iot_ingest_commits_in_doubt_total', 'Batches whose connection was lost while they committed (asked of txid_status before any retry)', 'counter', (s) => s.stats.commitsInDoubt),
  stat('iot_ingest_event_detection_failures_total', 'Stored batches whose event detection failed after the commit (their readings are judged by the next batch or the events__catch_up job)', 'counter', (s) => s.stats.eventDetectionFailures),
  stat('iot_ingest_buffered_readings', 'Readings waiting to be written', 'gauge', (s) => s.buffered),
  stat('iot_ingest_database_up', '0 while the sink cannot write to the database', 'gauge', (s) => (s.stats.databaseUp ? 1 : 0)),
  stat('iot_ingest_spilled_readings_total', 'Readings written to the spill file at shutdown', 'counter', (s) => s.stats.spilledReadings),
  stat('iot_ingest_replayed_readings_total', 'Readings replayed from spill files at start', 'counter', (s) => s.stats.replayedReadings),
  pulled<ReadingSink>('counter', {
    name: 'iot_ingest_dead_letters_by_class_total',
    help: 'Dead letters by reason class and outcome (written one by one, or suppressed by the rate limit)',
    labelNames: ['class', 'outcome'],
  }, (s) => [...s.deadLettersByClass()].sort().flatMap(([reasonClass, c]) => [
    [{ class: reasonClass, outcome: 'written' }, c.written] as [Record<string, string>, number],
    [{ class: reasonClass, outcome: 'suppressed' }, c.suppressed] as [Record<string, string>, number],
  ])),
];

/** Shows this sink's figures on /metrics (summed with the process's other sinks); returns the removal. */
export function registerSinkMetrics(sink: ReadingSink): () => void {
  return addSource(sinkMetrics, sink);
}

// Dead letters are data, and bounded (DESIGN.md, "Ingest contract"):
//  - prepared at once when handed to the sink: topic and payload clipped to a byte limit, their
//    original size and SHA-256 kept, text made safe for PostgreSQL (U+0000 and unpaired surrogates
//    written visibly as \u0000, \udXXX; invalid UTF-8 decoded as U+FFFD), and a base64 copy of the
//    payload's first bytes when its text had to be changed, so nothing a device sent is lost to
//    escaping;
//  - rate-limited by a token bucket per source key (a facility, a topic prefix, a device) and one
//    for all sources: what is over the limit is counted into one summary row per source key and
//    interval (suppressed_count), never dropped without a trace.
import { createHash } from 'node:crypto';
import { isUtf8 } from 'node:buffer';
import type { DeadLetter, Source } from './reading';
import { SOURCES } from './reading';

export interface DeadLetterLimits {
  maxTopicBytes: number;
  maxPayloadBytes: number;
  /** Dead letters a second each source key may write individually, and its burst. */
  ratePerSource: number;
  burstPerSource: number;
  /** Dead letters a second all sources together may write individually (burst: 30 s of it). */
  rateTotal: number;
}

export const DEFAULT_DEAD_LETTER_LIMITS: DeadLetterLimits = {
  maxTopicBytes: 512, maxPayloadBytes: 4096, ratePerSource: 2, burstPerSource: 60, rateTotal: 10,
};

/** A dead letter as it is written: every field safe for PostgreSQL text and jsonb. */
export interface PreparedDeadLetter {
  receivedAt: string;
  source: Source;
  tenantId: string | null;
  topic: string | null;
  topicBytes: number | null;
  topicSha256: string | null;
  payload: string | null;
  payloadBytes: number | null;
  payloadSha256: string | null;
  payloadBase64: string | null;
  reason: string;
  reasonClass: string;
  sourceKey: string;
  suppressedCount: number;
}

const MAX_REASON_CHARS = 2000;
const MAX_KEY_CHARS = 200;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
// U+0000 (PostgreSQL text cannot hold it) and unpaired UTF-16 surrogates (not encodable as UTF-8).
const NOT_PG_TEXT = /\u0000|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g;

/** `text` with what PostgreSQL text cannot hold written visibly as \uXXXX; `changed` says whether anything was. */
export function pgSafeText(text: string): { text: string; changed: boolean } {
  let changed = false;
  const out = text.replace(NOT_PG_TEXT, (c) => {
    changed = true;
    return '\\u' + c.charCodeAt(0).toString(16).padStart(4, '0');
  });
  return { text: out, changed };
}

/** The longest prefix of `text` whose UTF-8 encoding fits in `maxBytes`, never splitting a character. */
export function clipUtf8(text: string, maxBytes: number): string {
  if (text.length * 3 <= maxBytes || Buffer.byteLength(text) <= maxBytes) return text;
  const bytes = Buffer.from(text).subarray(0, maxBytes);
  // Drop a character cut in half at the end (continuation bytes 10xxxxxx and their lead byte).
  let end = bytes.length;
  let i = end - 1;
  while (i >= 0 && (bytes[i] & 0xc0) === 0x80) i--;
  if (i >= 0) {
    const lead = bytes[i];
    const need = lead >= 0xf0 ? 4 : lead >= 0xe0 ? 3 : lead >= 0xc0 ? 2 : 1;
    if (end - i < need) end = i;
  }
  return bytes.subarray(0, end).toString('utf8');
}

const sha256 = (data: Uint8Array | string) => createHash('sha256').update(data).digest('hex');

/** Reason classes for metrics: a small fixed set, read from the reason's wording. */
const CLASSES: [string, RegExp][] = [
  ['rate_limited', /^rate limit:/],
  ['topic', /^topic |does not match facility\//],
  ['size', /payload is \d+ bytes|readings, more than|too large|more than the \d+ (readings|bytes)/i],
  ['registry', /unknown facility|unknown or inactive work center|unknown device|has no active|channels; name the device|is not on work center|not registered or not active/],
  ['payload', /not valid JSON|empty array|must be a JSON object|not valid UTF-8/],
  ['timestamp', /timestamp/],
  ['value', /\bvalue\b/],
  ['unit', /\bunit\b/],
  ['metadata', /metadata|is reserved|U\+0000|surrogate/],
  ['sensor_type', /sensorType/],
  ['refused', /database refused|refused before writing|could not be written/],
  ['ingestor', /ingestor error/],
];

export function reasonClass(reason: string): string {
  const r = reason.replace(/^item \d+: /, '');
  for (const [name, pattern] of CLASSES) if (pattern.test(r)) return name;
  return 'other';
}

/** What the rate limit counts by: the facility of a contract topic, else the topic's first level, tenant, source. */
export function sourceKeyOf(letter: DeadLetter): string {
  if (letter.sourceKey) return letter.sourceKey;
  if (letter.topic !== undefined) {
    const m = /^facility\/([^/]*)/.exec(letter.topic);
    return m ? `facility/${m[1]}` : `topic/${letter.topic.split('/', 1)[0]}`;
  }
  if (letter.tenantId) return `tenant/${letter.tenantId}`;
  return `source/${letter.source}`;
}

const safeKey = (key: string) => pgSafeText(clipUtf8(key, MAX_KEY_CHARS)).text;

export function prepareDeadLetter(letter: DeadLetter, limits: DeadLetterLimits, receivedAt = new Date()): PreparedDeadLetter {
  let reason = pgSafeText(String(letter.reason ?? '')).text;
  const source: Source = SOURCES.includes(letter.source) ? letter.source : 'SINK';
  if (source !== letter.source) reason = `(sent as source ${JSON.stringify(String(letter.source))}) ${reason}`;
  let tenantId: string | null = null;
  if (letter.tenantId) {
    if (UUID.test(letter.tenantId)) tenantId = letter.tenantId;
    else reason += ` (tenant ${JSON.stringify(pgSafeText(clipUtf8(String(letter.tenantId), 100)).text)} is not a uuid)`;
  }
  if (reason.length > MAX_REASON_CHARS) reason = reason.slice(0, MAX_REASON_CHARS) + '…';

  let topic: string | null = null;
  let topicBytes: number | null = null;
  let topicSha256: string | null = null;
  if (letter.topic !== undefined && letter.topic !== null) {
    const t = String(letter.topic);
    topicBytes = Buffer.byteLength(t);
    topicSha256 = sha256(t);
    topic = pgSafeText(clipUtf8(t, limits.maxTopicBytes)).text;
  }

  let payload: string | null = null;
  let payloadBytes: number | null = null;
  let payloadSha256: string | null = null;
  let payloadBase64: string | null = null;
  const raw = letter.rawPayload;
  if (raw) {
    const bytes = Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength);
    payloadBytes = bytes.length;
    payloadSha256 = sha256(bytes);
    const head = bytes.subarray(0, limits.maxPayloadBytes);
    const safe = pgSafeText(clipUtf8(head.toString('utf8'), limits.maxPayloadBytes));
    payload = safe.text;
    // Invalid UTF-8 (other than a character cut at the clip) or U+0000: keep the bytes themselves too.
    const valid = isUtf8(bytes.length > head.length ? trimPartial(head) : head);
    if (safe.changed || !valid) payloadBase64 = head.toString('base64');
  } else if (letter.payload !== undefined && letter.payload !== null) {
    const p = String(letter.payload);
    payloadBytes = Buffer.byteLength(p);
    payloadSha256 = sha256(p);
    const clipped = clipUtf8(p, limits.maxPayloadBytes);
    const safe = pgSafeText(clipped);
    payload = safe.text;
    if (safe.changed) payloadBase64 = Buffer.from(clipped).toString('base64');
  }

  return {
    receivedAt: receivedAt.toISOString(), source, tenantId, topic, topicBytes, topicSha256,
    payload, payloadBytes, payloadSha256, payloadBase64, reason,
    reasonClass: letter.reasonClass ? safeKey(letter.reasonClass).slice(0, 40) : reasonClass(reason),
    sourceKey: safeKey(sourceKeyOf(letter)), suppressedCount: 0,
  };
}

/** `bytes` without an incomplete UTF-8 sequence at its end (a character cut by clipping is not invalid UTF-8). */
function trimPartial(bytes: Buffer): Buffer {
  let i = bytes.length - 1;
  let back = 0;
  while (i >= 0 && back < 3 && (bytes[i] & 0xc0) === 0x80) {
    i--;
    back++;
  }
  if (i < 0) return bytes;
  const lead = bytes[i];
  const need = lead >= 0xf0 ? 4 : lead >= 0xe0 ? 3 : lead >= 0xc0 ? 2 : 1;
  return need > 1 && bytes.length - i < need ? bytes.subarray(0, i) : bytes;
}

/**
 * The last resort for a dead letter the database refused as prepared: plain ASCII, everything
 * that was in it kept as base64 of its JSON, so it can still be read back.
 */
export function plainDeadLetter(letter: PreparedDeadLetter, error: string, limits: DeadLetterLimits): PreparedDeadLetter {
  const json = Buffer.from(JSON.stringify(letter));
  return {
    ...letter, source: 'SINK', tenantId: null, topic: null,
    payload: null, payloadBase64: json.subarray(0, limits.maxPayloadBytes * 2).toString('base64'),
    reason: `dead letter refused by the database as prepared (${error.replace(/[^\x20-\x7e]/g, '?').slice(0, 300)}); ` +
      'payload_base64 holds it as JSON',
    reasonClass: 'refused',
  };
}

interface Bucket {
  tokens: number;
  at: number;
}

interface Summary {
  source: Source;
  tenantId: string | null;
  count: number;
  first: number;
  last: number;
  classes: Map<string, number>;
  lastReason: string;
  lastTopic: string | null;
}

const MAX_BUCKETS = 10_000;
const MAX_SUMMARY_KEYS = 100;
const OTHER_KEY = '(other sources)';

/** Token buckets per source key and for all sources; what they refuse is summed per key. */
export class DeadLetterLimiter {
  private buckets = new Map<string, Bucket>();
  private total: Bucket;
  private summaries = new Map<string, Summary>();

  constructor(private readonly limits: DeadLetterLimits, private readonly now: () => number = Date.now) {
    this.total = { tokens: this.totalBurst, at: now() };
  }

  private get totalBurst(): number {
    return Math.max(this.limits.rateTotal * 30, this.limits.burstPerSource);
  }

  private refill(b: Bucket, rate: number, burst: number, t: number): void {
    b.tokens = Math.min(burst, b.tokens + ((t - b.at) / 1000) * rate);
    b.at = t;
  }

  /** True: write it. False: it was counted into its source's summary instead. */
  admit(letter: PreparedDeadLetter): boolean {
    const t = this.now();
    const { ratePerSource, burstPerSource, rateTotal } = this.limits;
    let b = this.buckets.get(letter.sourceKey);
    if (!b) {
      if (this.buckets.size >= MAX_BUCKETS) this.evictFullBuckets(t);
      b = { tokens: burstPerSource, at: t };
      if (this.buckets.size < MAX_BUCKETS) this.buckets.set(letter.sourceKey, b);
    }
    this.refill(b, ratePerSource, burstPerSource, t);
    this.refill(this.total, rateTotal, this.totalBurst, t);
    if (b.tokens >= 1 && this.total.tokens >= 1) {
      b.tokens -= 1;
      this.total.tokens -= 1;
      return true;
    }
    this.count(letter, t);
    return false;
  }

  /** Counts a dead letter that is not written one by one (over the rate, or no room to hold it). */
  count(letter: PreparedDeadLetter, t = this.now()): void {
    let key = letter.sourceKey;
    if (!this.summaries.has(key) && this.summaries.size >= MAX_SUMMARY_KEYS) key = OTHER_KEY;
    let s = this.summaries.get(key);
    if (!s) {
      s = { source: letter.source, tenantId: letter.tenantId, count: 0, first: t, last: t, classes: new Map(), lastReason: '', lastTopic: null };
      this.summaries.set(key, s);
    }
    s.count += Math.max(1, letter.suppressedCount);
    s.last = t;
    if (s.tenantId !== letter.tenantId) s.tenantId = null;
    s.classes.set(letter.reasonClass, (s.classes.get(letter.reasonClass) ?? 0) + Math.max(1, letter.suppressedCount));
    s.lastReason = letter.reason;
    s.lastTopic = letter.topic;
  }

  get pendingSuppressed(): number {
    let n = 0;
    for (const s of this.summaries.values()) n += s.count;
    return n;
  }

  /** One summary dead letter per source key with suppressed letters since the last call. */
  takeSummaries(): PreparedDeadLetter[] {
    const out: PreparedDeadLetter[] = [];
    const { ratePerSource, burstPerSource, rateTotal } = this.limits;
    for (const [key, s] of this.summaries) {
      const classes = [...s.classes].sort((a, b) => b[1] - a[1]).map(([c, n]) => `${c} ${n}`).join(', ');
      out.push({
        receivedAt: new Date(s.last).toISOString(), source: s.source, tenantId: s.tenantId,
        topic: s.lastTopic ? clipUtf8(s.lastTopic, 200) : null, topicBytes: null, topicSha256: null,
        payload: null, payloadBytes: null, payloadSha256: null, payloadBase64: null,
        reason: `rate limit: ${s.count} dead letters from ${key} were counted, not stored one by one, between ` +
          `${new Date(s.first).toISOString()} and ${new Date(s.last).toISOString()} (limit ${ratePerSource}/s, burst ${burstPerSource} ` +
          `per source; ${rateTotal}/s for all sources). Reasons: ${classes}. Last: ${s.lastReason.slice(0, 500)}`,
        reasonClass: 'rate_limited', sourceKey: key, suppressedCount: s.count,
      });
    }
    this.summaries.clear();
    return out;
  }

  private evictFullBuckets(t: number): void {
    const { ratePerSource, burstPerSource } = this.limits;
    for (const [key, b] of this.buckets) {
      this.refill(b, ratePerSource, burstPerSource, t);
      if (b.tokens >= burstPerSource) this.buckets.delete(key);
    }
  }
}

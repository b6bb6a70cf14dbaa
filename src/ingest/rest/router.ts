// REST ingest for REST_API devices (issue 9, part 4): POST /readings with a device API key.
// The answer says which readings were stored and which were refused and why:
//   200 {received, stored, duplicates, duplicateIndexes, refused: [{index, line?, reason}]} once every
//       reading is committed or kept as a dead letter (also when some were refused: a 207-style body)
//   400 body not JSON / CSV (the parse error and its line)     401 no key, or a bad or revoked key
//   403 the key's device is not the reading's device (nothing stored), or the device is not an active REST_API device
//   413 body over INGEST_MAX_MESSAGE_BYTES, or more than INGEST_MAX_READINGS_PER_MESSAGE readings (nothing stored)
//   415 a content type other than JSON or CSV                  429 over the key's request rate (Retry-After)
//   503 the database is down and the sink's buffer is full, or the commit took longer than commitTimeoutMs
//       (Retry-After; readings already buffered are still stored, and sending them again is safe:
//       a reading is stored once per device, sensor type and time)
// Bad input is answered, never thrown: it cannot stop the process or hold the database.
import express, { Request, Response, Router } from 'express';
import type { Pool } from 'pg';
import { logger } from '../../lib/log';
import { DEFAULT_LIMITS, IngestLimits } from '../mqtt-payload';
import type { DeadLetter, Reading } from '../reading';
import type { RegistryCache } from '../registry';
import type { ReadingSink } from '../sink';
import { BodyError, BodyItem, bodyKind, parseCsvBody, parseJsonBody } from './body';
import { DeviceKeyCache, keyFromHeaders } from './device-keys';
import { KeyDevice, readingOf } from './readings';

const log = logger('ingest-rest');

export interface RestIngestLimits extends IngestLimits {
  /** Longest a request waits for its readings to be committed before it is answered 503 (default 30 s). */
  commitTimeoutMs: number;
  /** Requests a second one key may make, after a burst of `burstPerKey` (0: no limit). */
  requestsPerSecondPerKey: number;
  burstPerKey: number;
  /** How long a key lookup is trusted: a revoked key is refused within this time (REST_INGEST_KEY_CACHE_MS). */
  keyCacheMs: number;
}

export const DEFAULT_REST_LIMITS: Readonly<RestIngestLimits> = Object.freeze({
  ...DEFAULT_LIMITS, commitTimeoutMs: 30_000, requestsPerSecondPerKey: 0, burstPerKey: 100, keyCacheMs: 5000,
});

export interface RestIngestDeps {
  sink: ReadingSink;
  registry: RegistryCache;
  pool: Pool;
  limits?: Partial<RestIngestLimits>;
}

export interface RestIngestStats {
  requests: number;
  stored: number;
  duplicates: number;
  refused: number;
  /** Requests answered with each status. */
  byStatus: Record<number, number>;
}

type Answer = { status: number; body: Record<string, unknown>; headers?: Record<string, string> };

class HttpAnswer extends Error {
  constructor(readonly answer: Answer) {
    super(String(answer.body.error ?? answer.status));
  }
}
const fail = (status: number, error: string, extra: Record<string, unknown> = {}, headers?: Record<string, string>) =>
  new HttpAnswer({ status, body: { error, ...extra }, headers });

/** The body, or a 413 before more than `max` bytes are held. */
function readBody(req: Request, max: number): Promise<Buffer> {
  const declared = Number(req.headers['content-length']);
  if (Number.isFinite(declared) && declared > max) {
    return Promise.reject(fail(413, `body is ${declared} bytes, more than the ${max} allowed (INGEST_MAX_MESSAGE_BYTES): not read; send fewer readings per request`));
  }
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size > max) {
        req.off('data', onData);
        reject(fail(413, `body is more than the ${max} bytes allowed (INGEST_MAX_MESSAGE_BYTES): not read; send fewer readings per request`));
        return;
      }
      chunks.push(chunk);
    };
    req.on('data', onData);
    req.once('end', () => resolve(Buffer.concat(chunks)));
    req.once('error', reject);
  });
}

/** A token bucket per key, for requestsPerSecondPerKey. */
class KeyRate {
  private readonly buckets = new Map<string, { tokens: number; at: number }>();
  constructor(private readonly rate: number, private readonly burst: number) {}
  /** 0 when admitted, else seconds until the next request would be. */
  take(key: string): number {
    if (this.rate <= 0) return 0;
    const now = Date.now();
    let b = this.buckets.get(key);
    if (!b) {
      if (this.buckets.size > 100_000) this.buckets.clear();
      this.buckets.set(key, (b = { tokens: this.burst, at: now }));
    }
    b.tokens = Math.min(this.burst, b.tokens + ((now - b.at) / 1000) * this.rate);
    b.at = now;
    if (b.tokens >= 1) {
      b.tokens -= 1;
      return 0;
    }
    return Math.max(1, Math.ceil((1 - b.tokens) / this.rate));
  }
}

/** The express router: mount it where the endpoint should be (`app.use('/ingest', router)` gives POST /ingest/readings). */
export function restIngestRouter(deps: RestIngestDeps): Router & { stats: RestIngestStats } {
  const limits: RestIngestLimits = { ...DEFAULT_REST_LIMITS, ...deps.limits };
  const { sink, registry } = deps;
  const keys = new DeviceKeyCache(deps.pool, limits.keyCacheMs);
  const rate = new KeyRate(limits.requestsPerSecondPerKey, limits.burstPerKey);
  const stats: RestIngestStats = { requests: 0, stored: 0, duplicates: 0, refused: 0, byStatus: {} };
  const lastWarned = new Map<string, number>();
  const warn = (message: string, fields: Record<string, unknown>) => {
    // At most once a minute per key and message: a misconfigured gateway must not flood the log.
    const k = `${fields.key ?? ''}|${message}`;
    const now = Date.now();
    if (now - (lastWarned.get(k) ?? 0) < 60_000) return;
    if (lastWarned.size > 10_000) lastWarned.clear();
    lastWarned.set(k, now);
    log.warn(message, fields);
  };

  async function handle(req: Request): Promise<Answer> {
    const check = await keys.check(keyFromHeaders(req.headers));
    if (!check.ok) {
      throw fail(check.status, check.reason, {}, check.status === 401 ? { 'WWW-Authenticate': 'Bearer realm="iot-ingest"' }
        : check.status === 503 ? { 'Retry-After': '5' } : undefined);
    }
    const device = check.device;
    const wait = rate.take(device.keyId);
    if (wait) throw fail(429, `more than ${limits.requestsPerSecondPerKey} requests a second with this key`, {}, { 'Retry-After': String(wait) });
    const kind = bodyKind(req.headers['content-type']);
    if (!kind) {
      throw fail(415, `content type ${JSON.stringify(req.headers['content-type'] ?? '(none)')} is not accepted: send application/json or text/csv`);
    }
    const raw = await readBody(req, limits.maxMessageBytes);
    if (sink.bufferFull) {
      if (!sink.stats.databaseUp) {
        throw fail(503, 'the database is unavailable and the ingest buffer is full: nothing was stored; send again later', {}, { 'Retry-After': '5' });
      }
      await Promise.race([sink.wait(), new Promise((resolve) => setTimeout(resolve, limits.commitTimeoutMs).unref())]);
      if (sink.bufferFull) throw fail(503, 'the ingest buffer is full: nothing was stored; send again later', {}, { 'Retry-After': '5' });
    }

    let items: BodyItem[];
    try {
      items = kind === 'json' ? parseJsonBody(raw.toString('utf8')) : parseCsvBody(raw.toString('utf8'));
    } catch (error) {
      if (error instanceof BodyError) throw fail(400, error.message, { line: error.line, column: error.column });
      throw error;
    }
    if (items.length === 0) throw fail(400, 'body holds no readings');
    if (items.length > limits.maxReadingsPerMessage) {
      throw fail(413, `body holds ${items.length} readings, more than the ${limits.maxReadingsPerMessage} allowed per request ` +
        '(INGEST_MAX_READINGS_PER_MESSAGE): none stored; send fewer readings per request');
    }
    return ingest(device, items);
  }

  async function ingest(device: KeyDevice, items: BodyItem[]): Promise<Answer> {
    const receivedAt = Date.now();
    const outcomes = items.map((item) => (item.problem ? { refused: item.problem } : readingOf(item.fields!, device, registry, limits, receivedAt)));
    // A channel added a moment ago: reload the registry once and look again.
    if (outcomes.some((o) => 'missed' in o && o.missed) && (await registry.reloadAfterMiss().catch(() => false))) {
      items.forEach((item, i) => {
        const o = outcomes[i];
        if ('missed' in o && o.missed) outcomes[i] = readingOf(item.fields!, device, registry, limits, receivedAt);
      });
    }
    const forbidden = outcomes.flatMap((o, index) => ('forbidden' in o ? [{ index, line: items[index].line, reason: o.forbidden }] : []));
    if (forbidden.length) {
      warn('REST readings refused: they name another device than their API key', { key: device.keyId, device: device.deviceCode, first: forbidden[0].reason });
      throw fail(403, `${forbidden.length} of ${items.length} readings name another device than the API key's (${device.deviceCode}): none stored`,
        { refused: forbidden.slice(0, 100) });
    }

    const refused: { index: number; line?: number; reason: string }[] = [];
    const letters: DeadLetter[] = [];
    const readings: Reading[] = [];
    const indexOf: number[] = []; // position in `readings` -> index in the body
    outcomes.forEach((o, index) => {
      if ('reading' in o) {
        indexOf.push(index);
        readings.push(o.reading);
      } else if ('refused' in o) {
        const reason = items.length > 1 ? `item ${index}: ${o.refused}` : o.refused;
        refused.push({ index, line: items[index].line, reason: o.refused });
        letters.push({ source: 'REST_API', payload: items[index].text, reason, tenantId: device.tenantId, sourceKey: `device/${device.deviceCode}` });
      }
    });
    if (letters.length) sink.reject(letters);

    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(fail(503,
        `the readings were not committed within ${limits.commitTimeoutMs} ms (the database is slow or unavailable); they are held and will be stored. ` +
        'Sending them again is safe: a reading is stored once per device, sensor type and time', {}, { 'Retry-After': '5' })), limits.commitTimeoutMs);
    });
    let result;
    try {
      result = readings.length ? await Promise.race([sink.store(readings), timeout]) : { stored: 0, duplicates: 0, duplicateIndexes: [], refused: [] };
    } catch (error) {
      if (error instanceof HttpAnswer) throw error;
      throw fail(503, (error as Error).message, {}, { 'Retry-After': '5' });
    } finally {
      clearTimeout(timer);
    }
    for (const r of result.refused) refused.push({ index: indexOf[r.index], line: items[indexOf[r.index]].line, reason: r.reason });
    refused.sort((a, b) => a.index - b.index);
    stats.stored += result.stored;
    stats.duplicates += result.duplicates;
    stats.refused += refused.length;
    if (refused.length) warn('REST readings refused; kept as dead letters', { key: device.keyId, device: device.deviceCode, count: refused.length, first: refused[0].reason });
    return {
      status: 200,
      body: {
        received: items.length, stored: result.stored, duplicates: result.duplicates,
        duplicateIndexes: result.duplicateIndexes.map((i) => indexOf[i]), refused,
      },
    };
  }

  const router = express.Router() as Router & { stats: RestIngestStats };
  router.stats = stats;
  router.post('/readings', (req: Request, res: Response) => {
    stats.requests++;
    handle(req).then(
      (answer) => send(req, res, answer),
      (error) => {
        if (error instanceof HttpAnswer) return send(req, res, error.answer);
        log.error('REST ingest request failed unexpectedly; answered 500', { error });
        send(req, res, { status: 500, body: { error: 'internal error; nothing may have been stored, sending again is safe' } });
      },
    );
  });
  router.all('/readings', (_req, res) => {
    res.set('Allow', 'POST').status(405).json({ error: 'POST readings here' });
  });

  function send(req: Request, res: Response, answer: Answer): void {
    stats.byStatus[answer.status] = (stats.byStatus[answer.status] ?? 0) + 1;
    if (res.headersSent) return;
    if (answer.headers) res.set(answer.headers);
    // An unread body (refused before it was read, or too large) cannot be skipped on a kept-alive
    // connection without reading it: close the connection instead.
    if (!req.complete) {
      res.set('Connection', 'close');
      res.once('finish', () => req.destroy());
    }
    res.status(answer.status).json(answer.body);
  }
  return router;
}

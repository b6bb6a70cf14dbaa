// Trailing live-readings notices, sent within about 1.5 intervals instead of the minute job's 60 s.
// A batch held back by LIVE_READING_INTERVAL_MS sends nothing; if its device then falls silent,
// only iot_private.flush_live_readings() (sql/600_live_events.sql) sends that last value. While
// this instance has sensorReadingUpdated subscribers of a tenant it also hears the tenant's
// iot_readings notices (one per ingest batch, on the LISTEN it may share with telemetryIngested),
// and calls the flush once a batch's devices can be quiet (an interval, plus a margin, after it),
// at most twice per interval while batches keep coming, and a last time an interval after the last
// batch: one query for a lone batch. Without subscribers or without readings it sends nothing.
// The flush sends only for devices quiet for an interval, so active devices keep their fresh
// leading-edge notices; several instances are safe (the function takes an advisory lock and marks
// what it sent).
import { logger } from '../../../lib/log';
import { throttled } from '../../log-throttle';
import type { NotifyChannels, OwnerQuery } from '../../notify-channels';
import type { LiveHub } from './topics';

const log = logger('api');
const note = throttled(log);

/** After the last batch seen, the flush runs this much later than the interval (the batch's commit and clocks). */
const MARGIN_MS = 50;
const DEFAULT_INTERVAL_MS = 1000;

export interface LiveFlush {
  /** Keeps the flush going for `tenantId` until the returned release is called (one per subscriber). */
  watch(tenantId: string): () => void;
  /** Flush queries run so far (tests). */
  readonly runs: number;
}

export function liveFlush(hub: LiveHub, channels: NotifyChannels, query: OwnerQuery): LiveFlush {
  const tenants = new Map<string, { watchers: number; stop?: () => void }>();
  let intervalMs = DEFAULT_INTERVAL_MS;
  /**
   * The earliest batch seen whose devices no run has yet found quiet (a run at R covers the batches
   * seen up to R - interval - margin): the next run is due when it is quiet, at most every half interval.
   */
  let uncoveredSince: number | undefined;
  let lastBatchAt = 0;
  let lastRunAt = -Infinity;
  let timer: NodeJS.Timeout | undefined;
  let timerAt = Infinity;
  let running = false;
  let runs = 0;

  function schedule() {
    if (running || !tenants.size || uncoveredSince === undefined) return;
    const at = Math.max(lastRunAt + intervalMs / 2, uncoveredSince + intervalMs + MARGIN_MS);
    if (at >= timerAt) return; // a run is already due by then
    clearTimeout(timer);
    timerAt = at;
    timer = setTimeout(run, Math.max(0, at - Date.now()));
    timer.unref();
  }

  function batchSeen() {
    lastBatchAt = Date.now();
    uncoveredSince ??= lastBatchAt;
    schedule();
  }

  async function run() {
    timer = undefined;
    timerAt = Infinity;
    if (!tenants.size) {
      uncoveredSince = undefined;
      return;
    }
    running = true;
    const startedAt = Date.now();
    lastRunAt = startedAt;
    runs++;
    try {
      const rows = await query(`select iot_private.flush_live_readings() as sent,
        (extract(epoch from iot_private.live_reading_interval()) * 1000)::integer as interval_ms`, []);
      // Learnt here (first run, or changed by a migrate): what "quiet" means for the next runs.
      intervalMs = Number(rows[0]?.interval_ms) || DEFAULT_INTERVAL_MS;
    } catch (error) {
      note('warn', 'held-back live readings could not be flushed; the minute job sends them', { error });
    } finally {
      running = false;
    }
    const covered = startedAt - intervalMs - MARGIN_MS;
    if (lastBatchAt <= covered) uncoveredSince = undefined;
    else if (uncoveredSince !== undefined) uncoveredSince = Math.max(uncoveredSince, covered);
    schedule();
  }

  async function listen(tenantId: string, entry: { watchers: number; stop?: () => void }) {
    try {
      const channel = await channels.channel('iot_readings', tenantId);
      if (!entry.watchers) return;
      const feed = hub.subscribe(channel, () => {
        batchSeen();
        return undefined;
      }, { label: 'live-readings flush' });
      entry.stop = () => void feed.return?.();
    } catch (error) {
      note('warn', 'cannot hear ingest batches for flushing held-back live readings; the minute job sends them', { error });
    }
  }

  return {
    get runs() {
      return runs;
    },
    watch(tenantId) {
      let entry = tenants.get(tenantId);
      if (!entry) {
        tenants.set(tenantId, (entry = { watchers: 0 }));
        void listen(tenantId, entry);
      }
      entry.watchers++;
      const own = entry;
      let released = false;
      return () => {
        if (released) return;
        released = true;
        if (--own.watchers > 0) return;
        own.stop?.();
        if (tenants.get(tenantId) === own) tenants.delete(tenantId);
        if (!tenants.size) {
          // Nobody watches: forget the batches seen, or the next watcher's first batch would find an
          // old one "uncovered" and run the flush at once and every half interval until it caught up.
          uncoveredSince = undefined;
          clearTimeout(timer);
          timer = undefined;
          timerAt = Infinity;
        }
      };
    },
  };
}

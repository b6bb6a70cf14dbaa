// Prometheus metrics of the process, through prom-client's default registry: every component
// declares its metrics with the helpers below (names prefixed iot_) and /metrics serves
// renderMetrics(). Rates (messages/s, rows/s, alerts/h) are PromQL's job: the counters here only
// count, `rate(iot_mqtt_messages_total[1m])` makes them per second.
//  - counter/gauge/histogram: get-or-create by name, so a module loaded twice (tests, tsx) or a
//    component started twice in one process shares one metric instead of throwing.
//  - pulled: a counter or gauge read at scrape time from every live source of a kind (each
//    ReadingSink, each MqttIngestor), summed; a source is added and removed with its component.
//  - collected on scrape from the database: see withTimeout; a scrape never waits longer than it.
import { collectDefaultMetrics, Counter, Gauge, Histogram, register } from 'prom-client';

export { register };
export type Labels = Record<string, string>;

/** Content-Type of renderMetrics()'s text (Prometheus exposition format 0.0.4). */
export const metricsContentType: string = register.contentType;

let defaultsStarted = false;
/**
 * Node's process metrics (process_cpu_seconds_total, process_resident_memory_bytes,
 * nodejs_eventloop_lag_seconds, ...), once per process. Their standard names are kept (no iot_
 * prefix) so the usual Node.js dashboards work unchanged.
 */
export function startDefaultMetrics(): void {
  if (defaultsStarted) return;
  defaultsStarted = true;
  collectDefaultMetrics();
}
startDefaultMetrics();

/** The text of every registered metric. */
export function renderMetrics(): Promise<string> {
  return register.metrics();
}

type Spec<L extends string> = { name: string; help: string; labelNames?: readonly L[] };

function existing<T>(name: string, kind: new (...args: never[]) => T): T | undefined {
  const m = register.getSingleMetric(name);
  if (!m) return undefined;
  if (!(m instanceof kind)) throw new Error(`metric ${name} is already registered as another type`);
  return m as T;
}

export function counter<L extends string = string>(spec: Spec<L> & { collect?: (this: Counter<L>) => void | Promise<void> }): Counter<L> {
  return existing<Counter<L>>(spec.name, Counter) ?? new Counter<L>({ ...spec, labelNames: spec.labelNames ?? [] });
}

export function gauge<L extends string = string>(spec: Spec<L> & { collect?: (this: Gauge<L>) => void | Promise<void> }): Gauge<L> {
  return existing<Gauge<L>>(spec.name, Gauge) ?? new Gauge<L>({ ...spec, labelNames: spec.labelNames ?? [] });
}

export function histogram<L extends string = string>(spec: Spec<L> & { buckets: number[] }): Histogram<L> {
  return existing<Histogram<L>>(spec.name, Histogram) ?? new Histogram<L>({ ...spec, labelNames: spec.labelNames ?? [] });
}

/** What a pulled metric reads from one source: a number, or values per label set. */
export type Reading = number | Array<[Labels, number]>;

export interface Pulled<S> {
  /** Adds a source (its values are summed with the others' at each scrape); returns its removal. */
  add(source: S): () => void;
}

const pulledSources = new Map<string, Set<unknown>>();

/**
 * A counter or gauge whose value is read at scrape time from every live source, summed. For
 * components that already keep their own figures (a sink's stats): no second bookkeeping.
 * A counter whose source goes away drops by that source's share: Prometheus treats it as a reset.
 */
export function pulled<S>(type: 'counter' | 'gauge', spec: Spec<string>, read: (source: S) => Reading): Pulled<S> {
  return {
    add(source: S) {
      // Created with the first source: a process without sinks shows no sink metrics (no
      // iot_ingest_database_up 0 on an API-only process).
      let live = pulledSources.get(spec.name) as Set<S> | undefined;
      if (!live) {
        const sources = new Set<S>();
        live = sources;
        pulledSources.set(spec.name, sources);
        const collect = function (this: Counter<string> | Gauge<string>) {
          this.reset();
          for (const s of sources) {
            const r = read(s);
            if (typeof r === 'number') this.inc(r);
            else for (const [labels, value] of r) this.inc(labels, value);
          }
        };
        const options = { ...spec, labelNames: spec.labelNames ?? [], collect };
        if (!register.getSingleMetric(spec.name)) {
          if (type === 'counter') new Counter(options);
          else new Gauge(options);
        }
      }
      const set = live;
      set.add(source);
      return () => void set.delete(source);
    },
  };
}

/** Adds a source to several pulled metrics at once; returns one removal for all. */
export function addSource<S>(metrics: Pulled<S>[], source: S): () => void {
  const removals = metrics.map((m) => m.add(source));
  return () => removals.forEach((remove) => remove());
}

export class CollectTimeout extends Error {
  constructor(what: string, ms: number) {
    super(`${what} did not answer within ${ms} ms`);
  }
}

/** For collect-on-scrape from the database: rejects after `ms` so /metrics never hangs. */
export function withTimeout<T>(what: string, ms: number, work: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new CollectTimeout(what, ms)), ms);
    timer.unref();
  });
  work.catch(() => undefined); // a late failure after the timeout is not an unhandled rejection
  return Promise.race([work, timeout]).finally(() => clearTimeout(timer));
}

/** GET /metrics: `app.get('/metrics', metricsHandler)`. A collector that fails gives a 500 with its reason. */
export function metricsHandler(_req: unknown, res: import('node:http').ServerResponse): void {
  renderMetrics().then(
    (text) => {
      res.setHeader('Content-Type', metricsContentType);
      res.end(text);
    },
    (error: Error) => {
      res.statusCode = 500;
      res.setHeader('Content-Type', 'text/plain; charset=utf-8');
      res.end(`metrics could not be collected: ${error.message}\n`);
    },
  );
}

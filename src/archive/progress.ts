// Progress of a long import or export: a bar on stderr when it is a terminal (cli-progress), else
// (a cron job, a pipe, a log file) one log line every `intervalMs`, so a long run is never silent.
import { SingleBar } from 'cli-progress';
import { logger } from '../lib/log';

export interface Progress {
  /** Sets the counters shown; cheap to call per row. */
  update(done: number, fields: Record<string, number>): void;
  stop(): void;
}

export function progress(what: string, options: { total?: number; intervalMs?: number; stream?: NodeJS.WriteStream } = {}): Progress {
  const stream = options.stream ?? process.stderr;
  if (stream.isTTY) {
    const keys: string[] = [];
    const bar = new SingleBar({
      stream, hideCursor: true, etaBuffer: 50, fps: 5,
      format: (_opts, params, payload: Record<string, number>) => {
        const counts = keys.map((k) => `${k} ${payload[k] ?? 0}`).join(' | ');
        const pct = options.total ? ` ${Math.round((params.value / options.total) * 100)}%` : '';
        return `${what}: ${params.value}${options.total ? `/${options.total}` : ''}${pct} | ${counts}`;
      },
    });
    bar.start(options.total ?? 0, 0, {});
    return {
      update(done, fields) {
        for (const k of Object.keys(fields)) if (!keys.includes(k)) keys.push(k);
        bar.update(done, fields);
      },
      stop: () => bar.stop(),
    };
  }
  const log = logger(what);
  const interval = options.intervalMs ?? 10_000;
  let last: { done: number; fields: Record<string, number> } = { done: 0, fields: {} };
  const started = Date.now();
  const timer = setInterval(() => {
    const seconds = (Date.now() - started) / 1000;
    log.info('in progress', { rows: last.done, ...last.fields, rowsPerSecond: Math.round(last.done / seconds) });
  }, interval);
  timer.unref();
  return {
    update(done, fields) {
      last = { done, fields };
    },
    stop: () => clearInterval(timer),
  };
}

// `iot import`: rows of CSV or Parquet files -> the ReadingSink, the way every protocol writes
// (dedup, heartbeats, production-run link, rollup invalidation of late data all happen in
// iot_private.ingest_staged_readings()). Rows are resolved here (registry, units, quality words)
// and handed to the sink in chunks with store(), which answers per reading: stored, duplicate or
// refused. Backpressure: at most `inFlight` chunks are waiting for their commit, and no chunk is
// handed in while the sink's buffer is full, so a file of any size streams through in bounded memory.
import type { Pool } from 'pg';
import type { Reading } from '../ingest/reading';
import type { RegistryCache } from '../ingest/registry';
import type { ReadingSink, StoreResult } from '../ingest/sink';
import { logger } from '../lib/log';
import { csvRows } from './csv-source';
import { DeviceDirectory } from './device-directory';
import type { ImportFile } from './import-files';
import { ImportSummary } from './import-summary';
import { parquetRows } from './parquet-source';
import { resolveRow } from './resolve-row';

const log = logger('import');

export interface ImportOptions {
  files: ImportFile[];
  /** Null in a dry run: rows are checked, nothing is written. */
  sink: ReadingSink | null;
  registry: RegistryCache;
  tenantId?: string;
  maxFutureMs?: number;
  chunkSize?: number;
  inFlight?: number;
  onProgress?: (summary: ImportSummary) => void;
}

export async function importReadings(pool: Pool, options: ImportOptions): Promise<ImportSummary> {
  const { sink, registry } = options;
  const summary = new ImportSummary(sink === null);
  const directory = await DeviceDirectory.load(pool);
  const chunkSize = options.chunkSize ?? 2000;
  const maxInFlight = options.inFlight ?? 4;
  const pending = new Set<Promise<void>>();
  let chunk: { reading: Reading; where: string }[] = [];
  let failure: unknown;

  const settle = (items: { where: string }[], result: StoreResult) => {
    summary.stored += result.stored;
    summary.duplicates += result.duplicates;
    for (const r of result.refused) summary.refuse(refusalKind(r.reason), items[r.index].where, r.reason);
    options.onProgress?.(summary);
  };
  const send = async () => {
    if (!chunk.length || !sink) return;
    const items = chunk;
    chunk = [];
    await sink.wait();
    const p: Promise<void> = sink.store(items.map((i) => i.reading)).then((result) => settle(items, result), (error) => {
      failure ??= error;
    }).finally(() => pending.delete(p));
    pending.add(p);
    while (pending.size >= maxInFlight) await Promise.race(pending);
    if (failure) throw failure;
  };

  for (const file of options.files) {
    const local = await file.open();
    summary.files++;
    const label = options.files.length > 1 ? file.label : undefined;
    const rows = file.kind === 'parquet' ? parquetRows(local, label, file.tenantHint) : csvRows(local, label, file.tenantHint);
    try {
      for await (const item of rows) {
        summary.rowsRead++;
        if ('unreadable' in item) {
          summary.refuse('unreadable CSV record', item.unreadable.where, item.unreadable.reason);
          continue;
        }
        const resolved = resolveRow(item.row, {
          registry, directory, tenantId: options.tenantId, maxFutureMs: options.maxFutureMs ?? 300_000, now: Date.now(),
        });
        if ('refused' in resolved) summary.refuse(resolved.refused.kind, item.row.where, resolved.refused.reason);
        else {
          summary.accepted++;
          chunk.push({ reading: resolved.reading, where: item.row.where });
          if (chunk.length >= chunkSize) await send();
        }
        if (summary.rowsRead % 1000 === 0) options.onProgress?.(summary);
      }
      await send();
    } finally {
      await file.done();
    }
    log.info('file read', { file: file.label, rowsSoFar: summary.rowsRead });
  }
  await Promise.all(pending);
  if (failure) throw failure;
  options.onProgress?.(summary);
  return summary;
}

/** The sink's reasons name values; the summary groups them by what went wrong. */
function refusalKind(reason: string): string {
  if (/is not registered or not active/.test(reason)) return 'channel not registered or not active (at write time)';
  const m = /^reading refused before writing: (\w+)/.exec(reason);
  return m ? `refused by the sink (${m[1]})` : 'refused by the database';
}

// The `iot import` and `iot export` commands as functions of a pool and their options; src/cli/main.ts
// wires them into commander. Each returns the process exit code and writes its summary on stdout.
//
// Exit codes of `iot import`: 0 when every file was read to its end, refused rows included (they
// are listed in the summary with their lines and reasons: a backfill with a few bad rows is a
// completed import, and running it again is safe since stored rows come back as duplicates);
// 1 with --strict when any row was refused, or when the import stopped part way (the database,
// a file that cannot be read); 2 for a usage error (an unknown tenant, a source that is not there
// or not an import file). `iot export`: 0 done, 1 failed part way, 2 usage error.
import type { Pool } from 'pg';
import { RegistryCache } from '../ingest/registry';
import { ReadingSink } from '../ingest/sink';
import { logger } from '../lib/log';
import { ImportFileError } from './csv-source';
import { openDestination } from './destination';
import { exportReadings } from './export';
import { ARCHIVE_FORMATS, ArchiveFormat } from './format';
import { importFiles } from './import-files';
import { importReadings } from './import';
import { progress } from './progress';
import { withPoolClient } from './reading-cursor';
import type { S3Settings } from './s3';

const log = logger('archive');

export interface ImportCommandOptions {
  tenant?: string;
  dryRun?: boolean;
  strict?: boolean;
}

export interface ImportSettings {
  /** INGEST_BATCH_SIZE, INGEST_BUFFER_MAX, INGEST_MAX_FUTURE_SECONDS * 1000. */
  batchSize?: number;
  bufferMax?: number;
  maxFutureMs?: number;
  env?: S3Settings;
  /** Where the summary goes (stdout). */
  out?: NodeJS.WritableStream;
}

async function tenantIdOf(pool: Pool, code: string): Promise<string | undefined> {
  const { rows } = await pool.query<{ id: string }>('select id::text from iot.tenants where tenant_code = $1', [code]);
  return rows[0]?.id;
}

export async function importCommand(pool: Pool, source: string, opts: ImportCommandOptions, settings: ImportSettings = {}): Promise<number> {
  const out = settings.out ?? process.stdout;
  let tenantId: string | undefined;
  if (opts.tenant) {
    tenantId = await tenantIdOf(pool, opts.tenant);
    if (!tenantId) {
      process.stderr.write(`iot import: no tenant with code ${JSON.stringify(opts.tenant)}\n`);
      return 2;
    }
  }
  let input;
  try {
    input = await importFiles(source, settings.env);
  } catch (error) {
    process.stderr.write(`iot import: ${(error as Error).message}\n`);
    return 2;
  }
  const registry = new RegistryCache(pool);
  const maxFutureMs = settings.maxFutureMs ?? 300_000;
  // No age limit: a backfill is old by nature (INGEST_MAX_AGE_DAYS is for live devices' clocks).
  const sink = opts.dryRun ? null : new ReadingSink(pool, {
    batchSize: settings.batchSize ?? 5000, maxWaitMs: 50, bufferMax: settings.bufferMax ?? 100_000, writers: 2, maxAgeMs: 0, maxFutureMs,
  });
  const bar = progress('import');
  try {
    await registry.start();
    const summary = await importReadings(pool, {
      files: input.files, sink, registry, tenantId, maxFutureMs,
      onProgress: (s) => bar.update(s.rowsRead, opts.dryRun ? { accepted: s.accepted, refused: s.refused }
        : { stored: s.stored, duplicates: s.duplicates, refused: s.refused }),
    });
    await sink?.close();
    bar.stop();
    out.write(summary.format());
    log.info(opts.dryRun ? 'import checked (dry run)' : 'import finished', {
      source, rows: summary.rowsRead, stored: summary.stored, duplicates: summary.duplicates, refused: summary.refused });
    return opts.strict && summary.refused > 0 ? 1 : 0;
  } catch (error) {
    bar.stop();
    await sink?.close({ deadlineMs: 10_000 }).catch(() => undefined);
    if (error instanceof ImportFileError) {
      process.stderr.write(`iot import: ${error.message}\n`);
      return 2;
    }
    log.error('import stopped part way; what was stored stays stored, and running it again is safe (duplicates are skipped)', { source, error });
    return 1;
  } finally {
    await registry.stop();
    await input.close();
  }
}

export interface ExportCommandOptions {
  from: string;
  to: string;
  tenant?: string;
  format?: string;
  toDir?: string;
  toUrl?: string;
  facility?: string;
  device?: string;
  sensor?: string;
}

function parseTime(text: string, option: string): Date | string {
  const ms = /^\d{4}-\d{2}-\d{2}/.test(text) ? Date.parse(text) : Number.NaN;
  return Number.isNaN(ms) ? `${option} ${JSON.stringify(text)} is not an ISO 8601 date or date-time (e.g. 2026-01-31 or 2026-01-31T00:00:00Z)` : new Date(ms);
}

export async function exportCommand(pool: Pool, opts: ExportCommandOptions, settings: { env?: S3Settings; out?: NodeJS.WritableStream } = {}): Promise<number> {
  const out = settings.out ?? process.stdout;
  const usage = (message: string) => {
    process.stderr.write(`iot export: ${message}\n`);
    return 2;
  };
  const from = parseTime(opts.from, '--from');
  const to = parseTime(opts.to, '--to');
  if (typeof from === 'string') return usage(from);
  if (typeof to === 'string') return usage(to);
  if (to <= from) return usage(`--to ${opts.to} is not after --from ${opts.from}`);
  const format = (opts.format ?? 'parquet').toLowerCase() as ArchiveFormat;
  if (!ARCHIVE_FORMATS.includes(format)) return usage(`--format ${JSON.stringify(opts.format)} is not csv or parquet`);
  if (!opts.toDir === !opts.toUrl) return usage('give exactly one of --to-dir <folder> and --to-url s3://bucket/prefix');
  let tenantId: string | undefined;
  if (opts.tenant) {
    tenantId = await tenantIdOf(pool, opts.tenant);
    if (!tenantId) return usage(`no tenant with code ${JSON.stringify(opts.tenant)}`);
  }
  let destination;
  try {
    destination = await openDestination((opts.toDir ?? opts.toUrl)!, settings.env);
  } catch (error) {
    return usage((error as Error).message);
  }
  const bar = progress('export');
  try {
    const summary = await exportReadings(withPoolClient(pool), {
      from, to, tenantId, facilityCode: opts.facility, deviceCode: opts.device, sensorType: opts.sensor, format, destination,
      onProgress: (rows) => bar.update(rows, {}),
    });
    bar.stop();
    out.write(`Export finished: ${summary.rows} readings in ${summary.files.length} files (${(summary.ms / 1000).toFixed(1)} s)\n`);
    for (const f of summary.files) out.write(`  ${f.location}\t${f.rows}\n`);
    return 0;
  } catch (error) {
    bar.stop();
    log.error('export failed part way; the files listed above are complete, run it again to redo the rest', { error });
    return 1;
  } finally {
    await destination.close();
  }
}

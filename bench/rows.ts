// What a benchmark row is, what it gets to measure on (the database and broker of one
// `npm run bench:ingest` run), and the plumbing the protocol rows share: a child process running
// one protocol's ingestor with the sink settings of the MQTT rows, a tenant of its own per row, and
// the standalone main of bench/sparkplug.ts, opcua.ts, modbus.ts and rest.ts. Kept apart from
// bench/ingest.ts so the protocol files can import it without an import cycle.
import { ChildProcess, fork } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { extname, join } from 'node:path';
import { Pool } from 'pg';
import { setLogLevel } from '../src/lib/log';
import { benchBroker, benchDatabase, BenchChannel, BenchChannelIds, copyCeiling, fmt, seedBenchPlant } from './support';

/** One row of the table. readingsPerSecond null: not measured (note says why). */
export interface BenchRow {
  name: string; readingsPerSecond: number | null; peakRssMiB?: number; note?: string;
  /** MQTT JSON readings per message: the row is compared with the baseline of the same (default 20). */
  perMessage?: number;
}

/** The ReadingSink settings of the run (bench:ingest's BENCH_BATCH_SIZE, BENCH_BATCH_MAX_WAIT_MS, BENCH_WRITERS). */
export interface SinkSettings { batchSize: number; maxWaitMs: number; writers: number }

/** What a protocol's benchmark gets to measure its row on the same database and broker. */
export interface BenchContext {
  dbUrl: string; pool: Pool; brokerUrl: string; brokerKind: string; channels: BenchChannel[]; ids: BenchChannelIds[];
  /** Default: batch 5000, wait 100 ms, 2 writers (bench:ingest's defaults). */
  sink?: SinkSettings;
}

export type RowFunction = (ctx: BenchContext) => Promise<BenchRow>;

export const sinkSettings = (ctx: BenchContext): SinkSettings => ctx.sink ?? { batchSize: 5000, maxWaitMs: 100, writers: 2 };
export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
export const mib = (bytes: number) => bytes / 2 ** 20;

/** A bench file's sibling, .ts under tsx and .js in dist/. */
export const sibling = (name: string) => join(__dirname, `${name}${extname(__filename)}`);

/** For sources that produce at a fixed rate (OPC UA, Modbus): what the stored rate says. */
export const keptUp = (stored: number, produced: number) => stored >= 0.98 * produced
  ? 'ingest kept up with the source, so the source is the limit here and the ratio to the ceiling is not the point'
  : 'ingest fell behind the source, so this is the ingest path\'s capacity (the ratio to the ceiling is not the point: the source sets the offer)';

/** A tenant, facility and work center of the row's own (tenant and facility code `code`), so its devices never clash with the bench plant's. */
export async function rowTenant(pool: Pool, code: string) {
  const t = (await pool.query(`insert into iot.tenants (tenant_code, name) values ($1, $1) returning id`, [code])).rows[0].id as string;
  const f = (await pool.query(`insert into iot.facilities (tenant_id, facility_code, name) values ($1, $2, $2) returning id`, [t, code])).rows[0].id as string;
  const wc = (await pool.query(`insert into iot.work_centers (tenant_id, facility_id, work_center_code, name, work_center_type)
    values ($1, $2, 'WC', 'WC', 'PRESS') returning id`, [t, f])).rows[0].id as string;
  return { tenantId: t, facilityId: f, workCenterId: wc };
}

/** Readings stored for a tenant (optionally within source times [from, to]). */
export async function storedFor(pool: Pool, tenantId: string, from?: Date, to?: Date): Promise<number> {
  const r = from && to
    ? await pool.query('select count(*) from iot_private.sensor_readings where tenant_id = $1 and time >= $2 and time <= $3', [tenantId, from, to])
    : await pool.query('select count(*) from iot_private.sensor_readings where tenant_id = $1', [tenantId]);
  return Number(r.rows[0].count);
}

/** Disables a row's devices afterwards, so no later row's registry load or watchdog trips over them. */
export async function retireTenant(pool: Pool, tenantId: string): Promise<void> {
  await pool.query('update iot.iot_devices set is_active = false where tenant_id = $1', [tenantId]).catch(() => undefined);
}

export type Protocol = 'sparkplug' | 'opcua' | 'modbus' | 'rest';

export interface IngestJob {
  protocol: Protocol; dbUrl: string; sink: SinkSettings; stateDir: string;
  brokerUrl?: string; clientId?: string; restMaxReadings?: number;
}

export interface IngestStats {
  kind: 'stats'; stored: number; duplicates: number; deadLetters: number; batches: number; buffered: number;
  rss: number; peakRss: number; extra: Record<string, number>;
}

/**
 * The ingesting process of a protocol row (bench/protocol-ingest-process.ts): registry, ReadingSink
 * and one protocol's ingestor, as `iot ingest <protocol>` runs them, reporting counts and RSS every 100 ms.
 */
export class IngestChild {
  private readonly child: ChildProcess;
  private readonly dir = mkdtempSync(join(tmpdir(), 'bench-ingest-child-'));
  latest: IngestStats = { kind: 'stats', stored: 0, duplicates: 0, deadLetters: 0, batches: 0, buffered: 0, rss: 0, peakRss: 0, extra: {} };
  ready: Promise<{ url?: string }>;
  private stopping: Promise<IngestStats> | undefined;

  constructor(job: Omit<IngestJob, 'stateDir'>) {
    this.child = fork(sibling('protocol-ingest-process'), [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    this.child.on('message', (m: IngestStats) => { if (m?.kind === 'stats') this.latest = m; });
    this.ready = this.next('ready');
    this.child.send({ ...job, stateDir: this.dir } satisfies IngestJob);
  }

  private next<T>(kind: string): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const on = (m: { kind?: string }) => {
        if (m?.kind !== kind) return;
        this.child.off('message', on);
        this.child.off('exit', exit);
        resolve(m as T);
      };
      const exit = (code: number | null) => reject(new Error(`protocol ingest process exited (${code}) before '${kind}'`));
      this.child.on('message', on);
      this.child.once('exit', exit);
    });
  }

  /** Writes what the sink holds; resolves with the counts after it. */
  async flush(): Promise<IngestStats> {
    const done = this.next<IngestStats>('flushed');
    this.child.send({ kind: 'flush' });
    return this.latest = await done;
  }

  /** Stops the ingestor and closes the sink (everything written); resolves with the final counts. */
  stop(): Promise<IngestStats> {
    return this.stopping ??= this.stopOnce();
  }

  private async stopOnce(): Promise<IngestStats> {
    if (this.child.exitCode === null) {
      const done = this.next<IngestStats>('stopped').catch(() => this.latest);
      this.child.send({ kind: 'stop' });
      this.latest = await Promise.race([done, sleep(30_000).then(() => this.latest)]);
      if (this.child.exitCode === null) this.child.kill('SIGKILL');
    }
    rmSync(this.dir, { recursive: true, force: true });
    return this.latest;
  }
}

/**
 * A protocol bench run alone: its own database (BENCH_DATABASE_URL or embedded) with the bench
 * plant, a broker if it needs one, its rows, and the raw COPY ceiling on the same database.
 */
export async function standalone(title: string, rows: RowFunction[], needsBroker = false): Promise<void> {
  setLogLevel('warn');
  const db = await benchDatabase(title.toLowerCase().replace(/[^a-z]/g, ''));
  const broker = needsBroker ? await benchBroker() : { url: '', kind: 'none', stop: async () => undefined };
  const pool = new Pool({ connectionString: db.url, max: 4 });
  try {
    const plant = await seedBenchPlant(pool);
    const ctx: BenchContext = { dbUrl: db.url, pool, brokerUrl: broker.url, brokerKind: broker.kind, channels: plant.channels, ids: plant.ids };
    const measured: BenchRow[] = [];
    for (const row of rows) {
      const r = await row(ctx);
      console.log(`  measured: ${r.name}: ${r.readingsPerSecond === null ? 'n/a' : fmt(r.readingsPerSecond) + ' readings/s'} (${r.note ?? ''})`);
      measured.push(r);
    }
    const ceiling = await copyCeiling(pool, plant.ids, 300_000);
    console.log([
      '', `${title} benchmark: PostgreSQL ${db.version}, tier ${db.tier}${needsBroker ? `, broker ${broker.kind}` : ''}, event detection on`, '',
      '| path | readings/s | of COPY ceiling | peak RSS MiB | notes |', '|---|---:|---:|---:|---|',
      `| raw COPY ceiling (one COPY stream, 300,000 rows) | ${fmt(ceiling)} | 1.00 | | no events, no dedup |`,
      ...measured.map((r) => `| ${r.name} | ${r.readingsPerSecond === null ? 'n/a' : fmt(r.readingsPerSecond)} | ` +
        `${r.readingsPerSecond === null ? '' : (r.readingsPerSecond / ceiling).toFixed(2)} | ${r.peakRssMiB === undefined ? '' : fmt(r.peakRssMiB)} | ${r.note ?? ''} |`),
    ].join('\n'));
  } finally {
    await pool.end();
    await broker.stop();
    await db.drop();
  }
}

/** A row that cannot run (an error, something absent) is printed as n/a with the reason, never left out. */
export function guarded(label: string, row: RowFunction): RowFunction {
  return (ctx) => row(ctx).catch((error: Error) => ({ name: label, readingsPerSecond: null, note: `n/a: ${error.message.split('\n')[0]}` }));
}

/** Runs `main` when this file is the program (not when bench:ingest imports its row function). */
export function runMain(main: () => Promise<void>): void {
  main().catch((error) => {
    console.error(error);
    process.exit(1);
  });
}

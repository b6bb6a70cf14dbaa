// The seed's contract (../shared/contract/seed-contract.json) and what the contract suite needs to
// hold the project to it: the file itself, the catalogue of schema iot, real acceptance of a value
// by a column, and a small plant populated through the real paths so "the name that is filled" can
// be checked.
import { existsSync, readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import type { Pool, PoolClient } from 'pg';
import { ReadingSink } from '../../src/ingest/sink';

export interface SeedContract {
  sql: Record<string, string[]>;
  enumerations: Record<string, string[]>;
  graphql: {
    query: Record<string, string>;
    mutation: string[];
    subscription: Record<string, { args: Record<string, string>; returns: string }>;
    types: Record<string, string[]>;
    documents: string[];
    enumerations: Record<string, string[]>;
  };
  mqtt: { topic: string; topic_examples: string[]; payload_fields: string[]; payload_examples: Record<string, unknown>[] };
  env: string[];
}

/** test/helpers -> project root -> ../shared (the checkout's sibling), as the issue names it. */
export const CONTRACT_PATH = resolve(__dirname, '../../../shared/contract/seed-contract.json');

export function loadContract(): { contract: SeedContract } | { contract: null; reason: string } {
  if (!existsSync(CONTRACT_PATH)) return { contract: null, reason: `${CONTRACT_PATH} is absent (no ../shared beside this checkout)` };
  return { contract: JSON.parse(readFileSync(CONTRACT_PATH, 'utf8')) as SeedContract };
}

/** "3 missing: a, b, c" style lines for one assertion message that lists every problem at once. */
export function report(title: string, problems: string[]): string {
  return `${title}: ${problems.length} problem(s)\n    - ${problems.join('\n    - ')}`;
}

// Catalogue ----------------------------------------------------------------------------------------

export interface Relation {
  kind: 'table' | 'view' | 'materialized view' | 'foreign table';
  columns: Set<string>;
}

const KINDS: Record<string, Relation['kind']> = { r: 'table', p: 'table', v: 'view', m: 'materialized view', f: 'foreign table' };

/** Every relation in `schema` with its columns, from pg_catalog (information_schema hides columns the caller may not read). */
export async function relationsOf(pool: Pool, schema: string): Promise<Map<string, Relation>> {
  const rows = (await pool.query<{ relname: string; relkind: string; attname: string | null }>(
    `select c.relname, c.relkind, a.attname
       from pg_class c
       join pg_namespace n on n.oid = c.relnamespace
       left join pg_attribute a on a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped
      where n.nspname = $1 and c.relkind in ('r', 'p', 'v', 'm', 'f')`, [schema])).rows;
  const out = new Map<string, Relation>();
  for (const r of rows) {
    const rel = out.get(r.relname) ?? { kind: KINDS[r.relkind], columns: new Set<string>() };
    if (r.attname) rel.columns.add(r.attname);
    out.set(r.relname, rel);
  }
  return out;
}

/**
 * Where the values of iot.<relation>.<column> are stored: the column itself for a table; for a view,
 * the same-named column of a table the view reads (views here pass enumerated columns through
 * unrenamed, e.g. iot.equipment_events.severity from iot_private.equipment_events.severity).
 */
export async function storageOf(client: PoolClient, relation: string, column: string): Promise<{ table: string; column: string } | string> {
  const rel = (await client.query<{ oid: number; relkind: string }>(
    `select c.oid, c.relkind from pg_class c join pg_namespace n on n.oid = c.relnamespace where n.nspname = 'iot' and c.relname = $1`,
    [relation])).rows[0];
  if (!rel) return `iot.${relation} does not exist`;
  if (!(await client.query(`select 1 from pg_attribute where attrelid = $1 and attname = $2 and not attisdropped`, [rel.oid, column])).rowCount) {
    return `iot.${relation} has no column ${column}`;
  }
  if (rel.relkind === 'r' || rel.relkind === 'p') return { table: `iot.${relation}`, column };
  const bases = (await client.query<{ base: string }>(
    `select distinct format('%I.%I', n.nspname, t.relname) as base
       from pg_rewrite w
       join pg_depend d on d.classid = 'pg_rewrite'::regclass and d.objid = w.oid and d.refclassid = 'pg_class'::regclass
       join pg_class t on t.oid = d.refobjid and t.relkind in ('r', 'p')
       join pg_namespace n on n.oid = t.relnamespace
       join pg_attribute a on a.attrelid = t.oid and a.attnum = d.refobjsubid and a.attname = $2
      where w.ev_class = $1 and t.oid <> $1`, [rel.oid, column])).rows;
  if (bases.length !== 1) return `view iot.${relation} reads ${bases.length === 0 ? 'no' : 'several'} table column(s) named ${column}; cannot tell where its values are stored`;
  return { table: bases[0].base, column };
}

/**
 * Which of `values` the stored column refuses, judged by PostgreSQL itself: a temporary table with a
 * column of the same type (domains included) carrying the column's own CHECK constraints (those on
 * that column alone; constraints tying it to other columns, such as "RESOLVED needs resolved_at",
 * are about rows, not values), each value inserted in a savepoint; and every single-column foreign
 * key looked up. Rolled back: nothing is left behind. Throws when the column cannot be found.
 */
export async function refusedValues(pool: Pool, relation: string, column: string, values: string[]): Promise<string[]> {
  const client = await pool.connect();
  try {
    await client.query('begin');
    await client.query(`set local search_path = pg_catalog, pg_temp`); // constraint texts come out fully qualified
    const where = await storageOf(client, relation, column);
    if (typeof where === 'string') throw new Error(where);
    const col = (await client.query<{ attnum: number; type: string; oid: number }>(
      `select a.attnum, format_type(a.atttypid, a.atttypmod) as type, a.attrelid::int as oid
         from pg_attribute a where a.attrelid = $1::regclass and a.attname = $2 and not a.attisdropped`,
      [where.table, where.column])).rows[0];
    if (!col) throw new Error(`${where.table} has no column ${where.column}`);
    const checks = (await client.query<{ def: string }>(
      `select pg_get_constraintdef(oid) as def from pg_constraint where conrelid = $1 and contype = 'c' and conkey = array[$2]::int2[]`,
      [col.oid, col.attnum])).rows;
    const fkeys = (await client.query<{ ref: string; refcol: string }>(
      `select format('%I.%I', n.nspname, t.relname) as ref, a.attname as refcol
         from pg_constraint c join pg_class t on t.oid = c.confrelid join pg_namespace n on n.oid = t.relnamespace
         join pg_attribute a on a.attrelid = c.confrelid and a.attnum = c.confkey[1]
        where c.conrelid = $1 and c.contype = 'f' and c.conkey = array[$2]::int2[]`, [col.oid, col.attnum])).rows;
    const probe = `contract_probe_${column}`;
    await client.query(`create temporary table ${probe} (${client.escapeIdentifier(where.column)} ${col.type}) on commit drop`);
    for (const [i, c] of checks.entries()) await client.query(`alter table pg_temp.${probe} add constraint probe_${i} ${c.def}`);
    const refused: string[] = [];
    for (const v of values) {
      await client.query('savepoint probe');
      try {
        await client.query(`insert into pg_temp.${probe} values ($1::${col.type})`, [v]);
        for (const fk of fkeys) {
          const hit = await client.query(`select 1 from ${fk.ref} where ${client.escapeIdentifier(fk.refcol)} = $1::${col.type}`, [v]);
          if (!hit.rowCount) throw new Error(`not in ${fk.ref}.${fk.refcol}`);
        }
        await client.query('release savepoint probe');
      } catch (error) {
        await client.query('rollback to savepoint probe');
        refused.push(`${v} (${where.table}.${where.column}: ${(error as Error).message})`);
      }
    }
    return refused;
  } finally {
    await client.query('rollback').catch(() => undefined);
    client.release();
  }
}

/** Runs `fn` in a committed transaction whose JWT tenant claim is `tenantId`, as the API sets it. */
export async function withTenant<T>(pool: Pool, tenantId: string, fn: (c: PoolClient) => Promise<T>): Promise<T> {
  const client = await pool.connect();
  try {
    await client.query('begin');
    await client.query(`select set_config('jwt.claims.tenant_id', $1, true), set_config('jwt.claims.sub', 'contract-test', true)`, [tenantId]);
    const result = await fn(client);
    await client.query('commit');
    return result;
  } catch (error) {
    await client.query('rollback').catch(() => undefined);
    throw error;
  } finally {
    client.release();
  }
}

// A plant populated through the real paths ---------------------------------------------------------

export interface ContractPlant {
  tenantId: string;
  facilityId: string;
  /** by work-center code: PRESS-A and PRESS-B degrade; FOLDER-S is in setup, CUTTER-D is down, BINDER-I idle. */
  workCenters: Record<string, string>;
  devices: Record<string, string>;
  at: Date;
  /** Steps that failed, each with its error: the suite reports them beside the names they leave empty. */
  problems: string[];
}

const HOUR = 3600_000;

/**
 * One tenant, one facility, five work centers in every utilisation state, two degrading presses with
 * a temperature monitor each, production runs, a breakdown, readings over two days (ingested by the
 * ReadingSink, so heartbeats, production-run links and threshold/anomaly events come from ingest),
 * health scores by iot_private.store_health_scores, an operator event, a model deployed, alerts by
 * iot_private.raise_predictive_alerts, and one alert acknowledged and resolved with a failure.
 */
export async function populateContractPlant(pool: Pool): Promise<ContractPlant> {
  const at = new Date(Math.floor(Date.now() / 60_000) * 60_000);
  const problems: string[] = [];
  const step = async <T>(what: string, fn: () => Promise<T>): Promise<T | undefined> => {
    try {
      return await fn();
    } catch (error) {
      problems.push(`${what}: ${(error as Error).message}`);
      return undefined;
    }
  };
  const one = async (sql: string, params: unknown[]) => (await pool.query(sql, params)).rows[0];

  const tenantId: string = (await one(`insert into iot.tenants (tenant_code, name) values ('contract-plant', 'Contract plant') returning id`, [])).id;
  const facilityId: string = (await one(
    `insert into iot.facilities (tenant_id, facility_code, name) values ($1, 'PLANT-A', 'Plant A') returning id`, [tenantId])).id;
  const workCenters: Record<string, string> = {};
  for (const [code, type] of [['PRESS-A', 'PRESS'], ['PRESS-B', 'PRESS'], ['FOLDER-S', 'FOLDER'], ['CUTTER-D', 'CUTTER'], ['BINDER-I', 'BINDER']]) {
    workCenters[code] = (await one(
      `insert into iot.work_centers (tenant_id, facility_id, work_center_code, name, work_center_type, ideal_cycle_time_seconds)
       values ($1, $2, $3, $3, $4, 1) returning id`, [tenantId, facilityId, code, type])).id;
  }
  const presses = ['PRESS-A', 'PRESS-B'];
  const devices: Record<string, string> = {};
  for (const wc of presses) {
    const code = `${wc.toLowerCase()}-monitor`;
    await step(`register device ${code}`, async () => {
      devices[wc] = (await one(
        `insert into iot.iot_devices (tenant_id, work_center_id, device_code, device_name, device_type, connection_type, connection_config)
         values ($1, $2, $3, $4, 'TEMPERATURE_MONITOR', 'MQTT', $5) returning id`,
        [tenantId, workCenters[wc], code, `${wc} temperature monitor`, { topic: `facility/PLANT-A/workcenter/${wc}/sensor/TEMPERATURE`, qos: 1 }])).id;
      await pool.query(`insert into iot.device_channels (tenant_id, device_id, sensor_type, unit) values ($1, $2, 'TEMPERATURE', '°F')`,
        [tenantId, devices[wc]]);
    });
  }

  // Production: the presses run all week (so every reading and event has a run), the folder is in
  // setup, the cutter has an open breakdown, the binder is idle.
  await step('production runs and maintenance', async () => {
    for (const wc of presses) {
      await pool.query(
        `insert into iot.production_runs (tenant_id, work_center_id, job_number, product_code, shift, status, actual_start,
           planned_quantity, good_count, scrap_count, rework_count, ideal_cycle_time_seconds)
         values ($1, $2, $3, 'BROCHURE-A4', 'A', 'RUNNING', $4, 500000, 300000, 6000, 2000, 1)`,
        [tenantId, workCenters[wc], `JOB-${wc}`, new Date(at.getTime() - 7 * 24 * HOUR)]);
    }
    await pool.query(
      `insert into iot.production_runs (tenant_id, work_center_id, job_number, status, actual_start, planned_quantity, setup_minutes)
       values ($1, $2, 'JOB-FOLD', 'SETUP', $3, 1000, 10)`, [tenantId, workCenters['FOLDER-S'], new Date(at.getTime() - 10 * 60_000)]);
    await pool.query(
      `insert into iot.maintenance_records (tenant_id, work_center_id, maintenance_type, description, started_at)
       values ($1, $2, 'BREAKDOWN', 'blade jammed', $3)`, [tenantId, workCenters['CUTTER-D'], new Date(at.getTime() - HOUR)]);
  });

  // A model for the presses, deployed (through the mutation's SQL function where it exists) before
  // alerts are raised, so alerts can name the model and algorithm that raised them.
  await step('register and deploy a predictive-maintenance model', async () => {
    const columns = await relationsOf(pool, 'iot');
    const have = columns.get('predictive_maintenance_models')?.columns ?? new Set<string>();
    const generated = new Set((await pool.query<{ attname: string }>(
      `select attname from pg_attribute where attrelid = 'iot.predictive_maintenance_models'::regclass and (attgenerated <> '' or attidentity <> '')`)).rows
      .map((r) => r.attname));
    const model: Record<string, unknown> = {
      tenant_id: tenantId, model_code: 'PRESS-THERMAL-RF', model_type: 'FAILURE_PREDICTION', algorithm: 'RANDOM_FOREST',
      work_center_id: workCenters['PRESS-A'], work_center_type: 'PRESS', equipment_manufacturer: 'Heidelberg',
      equipment_model: 'Speedmaster XL 106', failure_mode: 'SENSOR_DEVIATION', prediction_horizon_hours: 168,
      model_parameters: { trees: 200, maxDepth: 8 }, feature_set: ['temperature_avg_1h', 'health_score_slope_7d'],
      training_data_start: new Date(at.getTime() - 90 * 24 * HOUR), training_data_end: new Date(at.getTime() - 30 * 24 * HOUR),
      training_sample_count: 12000, accuracy_score: 0.92, precision_score: 0.88, recall_score: 0.81, f1_score: 0.84, auc_roc: 0.93,
      mean_absolute_error: 11.5, false_positive_rate: 0.04, false_negative_rate: 0.19, deployment_status: 'STAGING',
      // The registrant's retraining schedule: retrained a month ago, monthly, so due now.
      retraining_frequency: 'MONTHLY', last_retrained_at: new Date(at.getTime() - 30 * 24 * HOUR), next_retraining_at: at,
      data_drift_detected: false, concept_drift_detected: false,
      feature_importance: { temperature_avg_1h: 0.7, health_score_slope_7d: 0.3 },
    };
    const names = Object.keys(model).filter((c) => have.has(c) && !generated.has(c));
    // Lists and objects go in as JSON, unless the column is a PostgreSQL array (then a list).
    const arrays = new Set((await pool.query<{ attname: string }>(
      `select a.attname from pg_attribute a join pg_type t on t.oid = a.atttypid
        where a.attrelid = 'iot.predictive_maintenance_models'::regclass and t.typcategory = 'A'`)).rows.map((r) => r.attname));
    const param = (n: string) => {
      const v = model[n];
      if (v === null || typeof v !== 'object' || v instanceof Date) return v;
      return arrays.has(n) && Array.isArray(v) ? v : JSON.stringify(v);
    };
    const id: string = (await one(
      `insert into iot.predictive_maintenance_models (${names.join(', ')}) values (${names.map((_, i) => `$${i + 1}`).join(', ')}) returning id`,
      names.map(param))).id;
    const deploy = (await pool.query(`select 1 from pg_proc p join pg_namespace n on n.oid = p.pronamespace
       where n.nspname = 'iot' and p.proname = 'deploy_predictive_maintenance_model'`)).rowCount;
    if (!deploy) throw new Error('iot.deploy_predictive_maintenance_model does not exist: the model stays in STAGING');
    await withTenant(pool, tenantId, (c) => c.query(`select iot.deploy_predictive_maintenance_model($1)`, [id]));
  });

  // Readings through the one sink, oldest first, in 2-hour batches: one a minute for 48 hours, the
  // temperature climbing steadily from 70 °F out of its normal range (60-75 °F) towards 95 °F, so
  // ingest raises a threshold excursion, the health scores (every 2 hours) fall along a line the
  // trend can fit, and the last 20 minutes spike to 110 °F, an anomaly raised by ingest itself.
  // SPC control limits are computed from the first, normal batch (so the quality dimension has data).
  const scoreTimes: Date[] = [];
  const from = at.getTime() - 48 * HOUR;
  await step('ingest readings through the ReadingSink', async () => {
    const sink = new ReadingSink(pool, { batchSize: 5000, maxWaitMs: 5, bufferMax: 100_000 });
    try {
      for (let block = 0; block < 24; block++) {
        const blockEnd = from + (block + 1) * 2 * HOUR;
        scoreTimes.push(new Date(blockEnd));
        for (const wc of presses) {
          if (!devices[wc]) continue;
          sink.add(Array.from({ length: 120 }, (_, i) => {
            const t = blockEnd - (119 - i) * 60_000;
            const noise = ((i * 7) % 5) / 10 - 0.2;
            const spike = t > at.getTime() - 20 * 60_000;
            return {
              time: new Date(t), tenantId, deviceId: devices[wc], sensorType: 'TEMPERATURE', unit: '°F', quality: 'GOOD' as const,
              value: spike ? 110 + noise : 70 + (25 * (t - from)) / (48 * HOUR) + noise,
              // What a payload carried beyond the contract (here: the device's firmware, on the spike's first reading).
              metadata: spike && t <= at.getTime() - 19 * 60_000 ? { firmware: '2.1.0', rawQuality: 'VERIFIED' } : null,
            };
          }));
        }
        await sink.flush();
        if (block === 0 && devices['PRESS-A']) {
          await step('compute SPC control limits (iot.compute_spc_control_limits)', () => withTenant(pool, tenantId, async (c) => {
            const ch = (await c.query(`select id from iot.device_channels where device_id = $1`, [devices['PRESS-A']])).rows[0];
            await c.query(`select iot.compute_spc_control_limits($1, $2, $3)`, [ch.id, new Date(from), new Date(blockEnd)]);
          }));
        }
      }
    } finally {
      await sink.close();
    }
    if (sink.stats.stored === 0) throw new Error(`no reading stored (${JSON.stringify(sink.stats)})`);
  });

  await step('record an operator event (iot.record_equipment_event)', () => withTenant(pool, tenantId, (c) => c.query(
    `select iot.record_equipment_event(work_center_id => $1, event_type => 'MAINTENANCE_REQUIRED', event_description => 'bearing noise at the feeder',
       severity => 'WARNING', metadata => $2, event_code => 'FEEDER_BEARING_NOISE', iot_device_id => $3)`,
    [workCenters['PRESS-A'], { reportedBy: 'night shift' }, devices['PRESS-A'] ?? null])));

  for (const t of scoreTimes) {
    await step(`store health scores at ${t.toISOString()}`, () =>
      pool.query(`select iot_private.store_health_scores($1, $2)`, [t.getTime() === at.getTime() ? null : presses.map((w) => workCenters[w]), t]));
  }
  await step('raise predictive alerts', () => pool.query(`select iot_private.raise_predictive_alerts(null, $1)`, [at]));

  // PRESS-B's alert went the whole way: acknowledged, then resolved with the failure that happened.
  await step('acknowledge and resolve the PRESS-B alert', async () => {
    const alert = await one(`select id from iot.predictive_maintenance_alerts where work_center_id = $1 limit 1`, [workCenters['PRESS-B']]);
    if (!alert) throw new Error('no alert was raised for PRESS-B');
    await withTenant(pool, tenantId, async (c) => {
      await c.query(`select iot.acknowledge_predictive_maintenance_alert($1)`, [alert.id]);
      await c.query(`select iot.resolve_predictive_maintenance_alert(alert_id => $1, actual_failure_occurred => true,
                       actual_failure_date => $2, resolution_notes => 'bearing replaced')`, [alert.id, new Date(at.getTime() + 20 * HOUR)]);
    });
  });

  return { tenantId, facilityId, workCenters, devices, at, problems };
}

/**
 * Per contract column, how many rows of iot.<relation> (as the plant's tenant sees it) hold a value:
 * not null and not an empty text, JSON object or array.
 */
export async function filledCounts(pool: Pool, tenantId: string, relation: string, columns: string[]): Promise<Map<string, number>> {
  if (!columns.length) return new Map();
  return withTenant(pool, tenantId, async (c) => {
    const exprs = columns.map((col, i) =>
      `count(*) filter (where nullif(nullif(nullif(${c.escapeIdentifier(col)}::text, ''), '{}'), '[]') is not null) as c${i}`);
    const row = (await c.query(`select ${exprs.join(', ')} from iot.${c.escapeIdentifier(relation)}`)).rows[0];
    return new Map(columns.map((col, i) => [col, Number(row[`c${i}`])]));
  });
}

/**
 * The contract's mqtt.payload_examples exactly as the file spells them (`70.0` stays `70.0`; a
 * JSON round trip would publish `70`). Scans the array's objects by brace depth, skipping strings.
 */
export function rawPayloadExamples(fileText: string): string[] {
  const start = fileText.indexOf('[', fileText.indexOf('"payload_examples"'));
  const out: string[] = [];
  let depth = 0;
  let from = -1;
  for (let i = start + 1; i < fileText.length; i++) {
    const ch = fileText[i];
    if (ch === '"') {
      for (i++; fileText[i] !== '"'; i++) if (fileText[i] === '\\') i++;
    } else if (ch === '{') {
      if (depth++ === 0) from = i;
    } else if (ch === '}') {
      if (--depth === 0) out.push(fileText.slice(from, i + 1));
    } else if (ch === ']' && depth === 0) {
      break;
    }
  }
  return out;
}

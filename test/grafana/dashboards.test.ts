// Every Grafana panel's SQL (deploy/grafana/dashboards/*.json) runs against a migrated database
// with the demo plant, as the logins behind the data sources (deploy/grafana/provisioning): the
// all-tenants grafana login (deploy/timescaledb/grafana-grant.sql) and one tenant's analyst login
// (sql/910_sql_logins.sql). Grafana's macros and template variables are expanded the way its
// PostgreSQL data source does; an unknown macro fails the test, so no dashboard ships a query
// nobody ran. Prometheus panels (WebSocket metrics) must name metrics the app registers.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { randomBytes } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Client } from 'pg';
import type { Reading } from '../../src/ingest/reading';
import { ReadingSink } from '../../src/ingest/sink';
import { register } from '../../src/lib/metrics';
import '../../src/server/realtime/ws-metrics';
import { seedDemoHistory, seedDemoPlant } from '../../src/sim/demo-plant';
import { adminUrl, createTestDatabase, TestDatabase, asLogin as asLoginOf } from '../helpers/db';
import { refreshRollups } from '../helpers/tier';

const test = suite('grafana dashboards');
const root = join(__dirname, '../..');
const dashboardsDir = join(root, 'deploy/grafana/dashboards');
const provisioning = readFileSync(join(root, 'deploy/grafana/provisioning/datasources/timescaledb.yaml'), 'utf8');
const suffix = randomBytes(3).toString('hex');
const password = randomBytes(12).toString('hex');
const logins = { all: `h12_grafana_${suffix}`, tenant: `h12_analyst_${suffix}` };
const HOUR = 3_600_000;
const DAY = 24 * HOUR;
let db: TestDatabase;

// Dashboards, panels (rows' nested panels included), targets --------------------------------------
interface Variable { name: string; type: string; query?: string; multi?: boolean; includeAll?: boolean; current?: { value?: unknown } }
interface Target { refId: string; rawSql?: string; expr?: string; datasource?: { type?: string; uid?: string } }
interface Panel { id: number; title: string; type: string; datasource?: { type?: string; uid?: string }; targets?: Target[]; panels?: Panel[] }
interface Dashboard { uid: string; title: string; time: { from: string; to: string }; templating: { list: Variable[] }; panels: Panel[] }
interface Query { dashboard: Dashboard; file: string; panel: Panel; target: Target; datasourceType: string }

const dashboards: { file: string; d: Dashboard }[] = readdirSync(dashboardsDir).filter((f) => f.endsWith('.json')).sort()
  .map((file) => ({ file, d: JSON.parse(readFileSync(join(dashboardsDir, file), 'utf8')) as Dashboard }));

function allPanels(panels: Panel[]): Panel[] {
  return panels.flatMap((p) => [p, ...allPanels(p.panels ?? [])]);
}

const queries: Query[] = dashboards.flatMap(({ file, d }) => allPanels(d.panels).flatMap((panel) => (panel.targets ?? []).map((target) => ({
  dashboard: d, file, panel, target, datasourceType: target.datasource?.type ?? panel.datasource?.type ?? 'grafana-postgresql-datasource',
}))));
const sqlQueries = queries.filter((q) => q.datasourceType === 'grafana-postgresql-datasource');
const promQueries = queries.filter((q) => q.datasourceType === 'prometheus');

// Grafana's macros (PostgreSQL data source) --------------------------------------------------------
/** "now", "now-6h", "now-7d", "now-30m": what Grafana's time picker stores. */
function relativeTime(expr: string, now: number): number {
  if (expr === 'now') return now;
  const m = /^now-(\d+)([mhdw])$/.exec(expr);
  if (!m) throw new Error(`time range ${expr} is not handled by this test`);
  return now - Number(m[1]) * { m: 60_000, h: HOUR, d: DAY, w: 7 * DAY }[m[2] as 'm' | 'h' | 'd' | 'w'];
}

// Grafana's $__interval: range / max data points (about the panel's width in pixels), rounded to a
// "nice" step, never below the data source's timeInterval (1m, the finest rollup).
const NICE: [number, string][] = [[60_000, '1m'], [120_000, '2m'], [300_000, '5m'], [600_000, '10m'], [900_000, '15m'],
  [1_800_000, '30m'], [HOUR, '1h'], [2 * HOUR, '2h'], [3 * HOUR, '3h'], [6 * HOUR, '6h'], [12 * HOUR, '12h'], [DAY, '1d'], [7 * DAY, '7d']];
function grafanaInterval(rangeMs: number, maxDataPoints = 1000): { text: string; ms: number } {
  const raw = rangeMs / maxDataPoints;
  const [ms, text] = NICE.find(([step]) => step >= raw) ?? NICE[NICE.length - 1];
  return { text, ms };
}

const quote = (v: string) => `'${v.replace(/'/g, "''")}'`;

/** Expands the macros this project's dashboards use; anything else named $__ fails the test. */
function expandMacros(sql: string, from: number, to: number): string {
  const f = quote(new Date(from).toISOString());
  const t = quote(new Date(to).toISOString());
  const interval = grafanaInterval(to - from);
  let out = sql
    .replace(/\$__timeFilter\(([^()]+)\)/g, (_m, col: string) => `${col.trim()} BETWEEN ${f} AND ${t}`)
    .replace(/\$__timeFrom\(\)/g, f)
    .replace(/\$__timeTo\(\)/g, t)
    .replace(/\$__interval_ms\b/g, String(interval.ms))
    .replace(/\$__interval\b/g, interval.text);
  const unknown = out.match(/\$__\w+/g);
  if (unknown) throw new Error(`unknown Grafana macro ${unknown.join(', ')}: implement it in this test or do not use it`);
  return out;
}

/** Template variables: $name, ${name} and [[name]]; multi-value and All become a quoted list, like Grafana. */
function expandVariables(sql: string, values: Map<string, { text: string; list: boolean }>): string {
  const out = sql.replace(/\$\{(\w+)(?::\w+)?\}|\[\[(\w+)\]\]|\$(\w+)/g, (m, a?: string, b?: string, c?: string) => {
    const name = a ?? b ?? c!;
    if (name.startsWith('__')) return m; // macros: expandMacros
    const v = values.get(name);
    if (!v) throw new Error(`unknown template variable $${name}`);
    return v.text;
  });
  return out;
}

async function resolveVariables(d: Dashboard, c: Client, from: number, to: number) {
  const values = new Map<string, { text: string; list: boolean }>();
  for (const v of d.templating.list) {
    const current = v.current?.value;
    if (v.type === 'datasource') {
      values.set(v.name, { text: String(current), list: false });
      continue;
    }
    let options: string[];
    if (v.type === 'query') {
      const res = await c.query(expandMacros(expandVariables(v.query ?? '', values), from, to));
      const col = res.fields.some((x) => x.name === '__value') ? '__value' : res.fields[0].name;
      options = res.rows.map((r) => String(r[col]));
    } else if (v.type === 'custom') {
      options = (v.query ?? '').split(',').map((s) => s.trim());
    } else {
      throw new Error(`${d.title}: variable type ${v.type} is not handled by this test`);
    }
    const all = Array.isArray(current) ? current.includes('$__all') : current === '$__all';
    const chosen = all ? options : (Array.isArray(current) ? current.map(String) : [String(current ?? options[0])]);
    assert.ok(chosen.length > 0, `${d.title}: variable $${v.name} has no values`);
    const list = Boolean(v.multi || v.includeAll);
    values.set(v.name, { text: list ? chosen.map(quote).join(',') : chosen[0], list });
  }
  return values;
}

const asLogin = <T>(user: string, fn: (c: Client) => Promise<T>) => asLoginOf(db.url, user, password, fn);

async function runPanel(q: Query, user: string, from: number, to: number) {
  return asLogin(user, async (c) => {
    const values = await resolveVariables(q.dashboard, c, from, to);
    const sql = expandMacros(expandVariables(q.target.rawSql!, values), from, to);
    try {
      return await c.query(sql);
    } catch (error) {
      throw new Error(`${q.file} / "${q.panel.title}" (${q.target.refId}) as ${user}: ${(error as Error).message}\n${sql}`);
    }
  });
}

// Demo data ---------------------------------------------------------------------------------------
test.before(async () => {
  db = await createTestDatabase('grafana_dashboards');
  const tenantId = await seedDemoPlant(db.pool);
  await seedDemoHistory(db.pool, tenantId);
  const channels = (await db.pool.query<{ device_id: string; sensor_type: string; unit: string }>(
    `select c.device_id, c.sensor_type, c.unit from iot.device_channels c where c.tenant_id = $1`, [tenantId])).rows;
  const now = Date.now();
  // Every minute of the last 3 hours, and every 6 hours of the 20 days before: each rollup has rows.
  const times = [...Array.from({ length: 180 }, (_, i) => now - (i + 1) * 60_000), ...Array.from({ length: 80 }, (_, i) => now - 3 * HOUR - i * 6 * HOUR)];
  const sink = new ReadingSink(db.pool, { batchSize: 2000, maxWaitMs: 5, bufferMax: 50_000, writers: 2 });
  sink.add(channels.flatMap((ch, k): Reading[] => times.map((t, i) => ({
    time: new Date(t), tenantId, deviceId: ch.device_id, sensorType: ch.sensor_type, unit: ch.unit, quality: 'GOOD',
    value: ch.sensor_type === 'COUNT' ? i : 50 + ((i * 7 + k) % 11),
  }))));
  await sink.flush();
  await sink.close();
  await refreshRollups(db.pool);
  await db.pool.query(`select iot_private.store_health_scores(null, now() - interval '1 day')`);
  await db.pool.query(`select iot_private.store_health_scores(null, now())`);

  // One silent device, events, alerts of every source, dead letters.
  await db.pool.query(`update iot.iot_devices set last_heartbeat = now() - interval '1 hour'
                        where id = (select id from iot.iot_devices where tenant_id = $1 order by device_code limit 1)`, [tenantId]);
  const wcs = (await db.pool.query<{ id: string }>(`select id from iot.work_centers where tenant_id = $1 order by work_center_code`, [tenantId])).rows;
  await db.pool.query(`select iot_private.ensure_partitions('equipment_events', now() - interval '2 days', now())`);
  await db.pool.query(`insert into iot_private.equipment_events (tenant_id, work_center_id, event_timestamp, event_type, event_code, severity, event_description, acknowledged, acknowledged_at)
    values ($1, $2, now() - interval '2 hours', 'SENSOR_OUT_OF_RANGE', 'TEMPERATURE_HIGH', 'ERROR', 'Temperature above range', false, null),
           ($1, $2, now() - interval '1 day', 'ANOMALY_DETECTED', 'VIBRATION_ANOMALY', 'WARNING', 'Vibration spike', true, now() - interval '23 hours'),
           ($1, $3, now() - interval '30 minutes', 'SENSOR_OUT_OF_RANGE', 'PRESSURE_LOW', 'CRITICAL', 'Pressure below range', false, null)`,
  [tenantId, wcs[0].id, wcs[1].id]);
  await db.pool.query(`insert into iot.predictive_maintenance_alerts (tenant_id, work_center_id, alert_type, predicted_failure_mode, severity, urgency,
      status, failure_probability, description, alert_reason, alert_timestamp, acknowledged_at, resolved_at, prediction_accuracy, prediction_error_hours, rul_hours)
    values ($1, $2, 'FAILURE_PREDICTION', 'BEARING_WEAR', 'HIGH', 'URGENT', 'OPEN', 0.6, 'Bearing wear predicted', 'HEALTH_DEGRADATION', now() - interval '3 hours', null, null, null, null, 40),
           ($1, $3, 'RUL_THRESHOLD', 'OVERHEATING', 'MEDIUM', 'SOON', 'ACKNOWLEDGED', 0.3, 'Overheating within horizon', 'RUL_WITHIN_HORIZON', now() - interval '2 days', now() - interval '47 hours', null, null, null, 100),
           ($1, $2, 'FAILURE_PREDICTION', 'PRESSURE_DEVIATION', 'CRITICAL', 'IMMEDIATE', 'RESOLVED', 0.9, 'Pressure failure', 'HEALTH_DEGRADATION', now() - interval '4 days', now() - interval '95 hours', now() - interval '3 days', 'ACCURATE', 5, 10)`,
  [tenantId, wcs[2].id, wcs[3].id]);
  await db.pool.query(`insert into iot.system_alerts (tenant_id, alert_type, severity, iot_device_id, message, raised_at)
    select $1, 'HEARTBEAT_TIMEOUT', 'LOW', d.id, 'Device silent', now() - interval '50 minutes' from iot.iot_devices d where d.tenant_id = $1 order by d.device_code limit 1`, [tenantId]);
  await db.pool.query(`insert into iot_private.ingest_dead_letters (tenant_id, source, topic, payload, reason, received_at)
    values ($1, 'MQTT', 'facility/CHI/workcenter/PRES-01/sensor/temperature', '{"value":"hot"}', 'value is not a number', now() - interval '2 hours'),
           ($1, 'MQTT', 'facility/CHI/workcenter/PRES-01/sensor/temperature', '{}', 'value is missing', now() - interval '20 minutes'),
           ($1, 'SINK', null, null, 'unknown device', now() - interval '10 minutes')`, [tenantId]);

  // The two logins: like deploy/timescaledb/grafana-grant.sql (all tenants, read-only), and a tenant's analyst.
  await db.pool.query(`create role ${logins.all} login password '${password}'`);
  await db.pool.query(`alter role ${logins.all} set default_transaction_read_only = on`);
  await db.pool.query(`grant iot_analyst to ${logins.all}`);
  await db.pool.query(`insert into iot_private.sql_role_tenants (role_name, tenant_id) values ($1, null)`, [logins.all]);
  await db.pool.query(`select iot_private.set_analyst_login($1, array['demo'], $2)`, [logins.tenant, password]);
  // A second tenant, so "all tenants" and "one tenant" differ.
  await db.pool.query(`insert into iot.tenants (tenant_code, name) values ('other', 'Other Co.')`);
});

test.after(async () => {
  await db?.drop();
  const admin = new Client({ connectionString: adminUrl() });
  await admin.connect();
  for (const role of Object.values(logins)) await admin.query(`drop role if exists ${role}`);
  await admin.end();
});

// Tests ---------------------------------------------------------------------------------------------
test('the shipped dashboards: the seed four, OEE trend and ingest, the plant overview, each with a unique uid', () => {
  const uids = dashboards.map(({ d }) => d.uid);
  assert.equal(new Set(uids).size, uids.length, 'uids are unique');
  for (const uid of ['plant-equipment-health', 'plant-sensor-timelines', 'plant-alerts', 'plant-websocket', 'plant-oee', 'plant-ingest', 'plant-overview']) {
    assert.ok(uids.includes(uid), `dashboard ${uid} is shipped`);
  }
  assert.ok(sqlQueries.length >= 25, `${sqlQueries.length} SQL targets found`);
  assert.ok(promQueries.length >= 4, `${promQueries.length} Prometheus targets found`);
});

test('every data source a dashboard names is provisioned', () => {
  const provisioned = [...provisioning.matchAll(/^\s+uid:\s*(\S+)/gm)].map((m) => m[1]);
  for (const uid of ['plant-timescaledb', 'plant-analyst', 'plant-prometheus']) assert.ok(provisioned.includes(uid), `${uid} provisioned`);
  for (const q of queries) {
    const uid = q.target.datasource?.uid ?? q.panel.datasource?.uid ?? '';
    const resolved = uid === '${datasource}'
      ? String(q.dashboard.templating.list.find((v) => v.name === 'datasource')?.current?.value) : uid;
    assert.ok(provisioned.includes(resolved), `${q.file} / ${q.panel.title}: data source ${uid} (${resolved}) is provisioned`);
  }
});

test('the macro expansion refuses macros it does not implement', () => {
  assert.throws(() => expandMacros('select $__timeGroup(bucket, $__interval)', 0, HOUR), /unknown Grafana macro \$__timeGroup/);
  assert.throws(() => expandVariables('select $nope', new Map()), /unknown template variable \$nope/);
  assert.is(expandMacros(`select 1 where $__timeFilter(t)`, 0, 60_000), `select 1 where t BETWEEN '1970-01-01T00:00:00.000Z' AND '1970-01-01T00:01:00.000Z'`);
});

for (const [label, user] of [['the all-tenants grafana login', logins.all], ["a tenant's analyst login", logins.tenant]] as const) {
  test(`every panel's SQL runs at its dashboard's time range as ${label} and returns rows`, async () => {
    const now = Date.now();
    const empty: string[] = [];
    let rows = 0;
    for (const q of sqlQueries) {
      const res = await runPanel(q, user, relativeTime(q.dashboard.time.from, now), relativeTime(q.dashboard.time.to, now));
      if (res.rows.length === 0) empty.push(`${q.file} / ${q.panel.title}`);
      rows += res.rows.length;
    }
    console.log(`  ${sqlQueries.length} SQL targets as ${label}: ${rows} rows in all`);
    assert.equal(empty, [], 'panels that returned no rows although the demo has data for them');
  });
}

test('the rollup-reading panels pick 1m under 6 h, 1h under 14 days, 1d beyond, and return rows at each', async () => {
  const rollupQueries = sqlQueries.filter((q) => q.target.rawSql!.includes('iot.sensor_readings_1m'));
  assert.ok(rollupQueries.length >= 5, `${rollupQueries.length} panels read the rollups`);
  const resolution = sqlQueries.find((q) => q.panel.title === 'Resolution')!;
  const now = Date.now();
  for (const [span, rollup] of [[3 * HOUR, 'sensor_readings_1m'], [3 * DAY, 'sensor_readings_1h'], [20 * DAY, 'sensor_readings_1d']] as const) {
    const chosen = await runPanel(resolution, logins.tenant, now - span, now);
    assert.is(chosen.rows[0]['Rollup read'], rollup, `range ${span / HOUR} h`);
    for (const q of rollupQueries) {
      const res = await runPanel(q, logins.tenant, now - span, now);
      assert.ok(res.rows.length > 0, `${q.file} / ${q.panel.title} over ${span / HOUR} h returned no rows`);
      if (q.target.rawSql!.includes("'1m' AS rollup, r.bucket")) {
        // The branches not chosen are not read: every bucket comes from the chosen rollup's grid.
        const step = rollup === 'sensor_readings_1m' ? 60_000 : rollup === 'sensor_readings_1h' ? HOUR : DAY;
        const times = res.rows.map((r) => new Date(r.time ?? r.Time).getTime()).filter(Number.isFinite);
        assert.ok(times.every((t) => t % step === 0), `${q.panel.title}: buckets on the ${rollup} grid`);
      }
    }
  }
});

test("a tenant's analyst sees only its tenant in the dashboards, the grafana login every tenant", async () => {
  const other = (await db.pool.query<{ id: string }>(`select id from iot.tenants where tenant_code = 'other'`)).rows[0].id;
  await db.pool.query(`insert into iot.facilities (tenant_id, facility_code, name) values ($1, 'OTH', 'Other plant')`, [other]);
  try {
    const facilityVar = async (user: string) => asLogin(user, async (c) => (await c.query(`SELECT facility_code FROM iot.facilities ORDER BY 1`)).rows.map((r) => r.facility_code));
    assert.equal(await facilityVar(logins.tenant), ['ATL', 'CHI', 'RTM']);
    assert.equal(await facilityVar(logins.all), ['ATL', 'CHI', 'OTH', 'RTM']);
  } finally {
    await db.pool.query(`delete from iot.facilities where facility_code = 'OTH'`);
  }
});

test('the grafana login is read-only, like the shipped one', async () => {
  await asLogin(logins.all, (c) => c.query(`insert into iot.tenants (tenant_code, name) values ('x', 'x')`)).then(
    () => assert.unreachable('a dashboard login could write'), (e) => assert.is(e.code, '25006'));
});

test('every Prometheus panel names only metrics the app registers on /metrics', async () => {
  const registered = new Set(register.getMetricsAsArray().map((m) => m.name));
  for (const name of ['iot_ws_connections', 'iot_ws_subscriptions', 'iot_ws_refusals_total']) assert.ok(registered.has(name), `${name} registered`);
  const used = new Set<string>();
  for (const q of promQueries) {
    assert.ok(q.target.expr && q.target.expr.trim(), `${q.panel.title}: an expression`);
    const names = q.target.expr!.match(/\biot_[a-z_]+\b/g) ?? [];
    assert.ok(names.length > 0, `${q.panel.title}: names an iot_ metric`);
    for (const n of names) {
      assert.ok(registered.has(n), `${q.file} / ${q.panel.title}: ${n} is not a metric the app registers`);
      used.add(n);
    }
    // Balanced brackets: a typo here would only show in Grafana.
    for (const [o, c] of [['(', ')'], ['[', ']'], ['{', '}']]) {
      assert.is(q.target.expr!.split(o).length, q.target.expr!.split(c).length, `${q.panel.title}: balanced ${o}${c}`);
    }
  }
  for (const name of ['iot_ws_connections', 'iot_ws_subscriptions', 'iot_ws_refusals_total']) assert.ok(used.has(name), `a panel shows ${name}`);
  const scrape = readFileSync(join(root, 'deploy/prometheus/prometheus.yml'), 'utf8');
  assert.match(scrape, /metrics_path: \/metrics/);
  assert.match(scrape, /targets: \['app:5000'\]/);
});

test.run();

// Holds the project to the seed's contract (../shared/contract/seed-contract.json, DESIGN.md "The
// contract"): every SQL relation and column in schema iot and filled by the real paths, every
// enumeration value accepted, every GraphQL root field and type field in the generated schema with
// numbers as numbers, every environment variable known to `iot config`, and the two example MQTT
// payloads stored and found by the seed's own check query run as an analyst login. Runs on the
// tier of the run's database (CI runs every tier). Each failure lists every missing name at once.
// Without ../shared every test is skipped with the reason printed, never passed.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import mqtt, { MqttClient } from 'mqtt';
import { Client } from 'pg';
import { buildClientSchema, getOperationAST, parse, validate, type IntrospectionQuery } from 'graphql';
import { createClient } from 'graphql-ws';
import WebSocket from 'ws';
import { MqttIngestor } from '../../src/ingest/mqtt';
import { RegistryCache } from '../../src/ingest/registry';
import { ReadingSink } from '../../src/ingest/sink';
import { specs } from '../../src/lib/config';
import { publishAsDevice, testBroker } from '../helpers/broker';
import {
  CONTRACT_PATH, ContractPlant, filledCounts, loadContract, populateContractPlant, rawPayloadExamples, refusedValues, relationsOf,
  report, withTenant,
} from '../helpers/contract';
import { createTestDatabase, TestDatabase } from '../helpers/db';
import { fieldsOf, rootFields, rowTypeOf, startTestApi, typeMap, unwrap } from '../helpers/graphql';
import { sleep, waitFor } from '../helpers/wait';

const test = suite("contract: the seed's names, values, payloads and variables");
const loaded = loadContract();
const contract = loaded.contract!;
const check = loaded.contract ? test : test.skip;
if (!loaded.contract) console.log(`  [contract] every test of this suite is skipped: ${'reason' in loaded ? loaded.reason : ''}`);

const root = join(__dirname, '../..');
const run = randomBytes(3).toString('hex'); // keeps client ids and role names apart on a shared broker / cluster
let db: TestDatabase | undefined;
const cleanups: (() => Promise<unknown>)[] = [];

/** Each part of the set-up once, on first use; a failed set-up fails every test that needs it, with its error. */
function lazy<T>(make: () => Promise<T>): () => Promise<T> {
  let p: Promise<T> | undefined;
  return () => (p ??= make());
}
const database = lazy(async () => {
  db = await createTestDatabase('contract');
  console.log(`  [contract] ${CONTRACT_PATH} against tier ${db.tier}`);
  return db;
});
const plant = lazy(async (): Promise<ContractPlant> => {
  const p = await populateContractPlant((await database()).pool);
  if (p.problems.length) console.log(report('  [contract] populating the plant', p.problems));
  return p;
});
const api = lazy(async () => {
  const a = await startTestApi((await database()).url);
  cleanups.push(() => a.close());
  return a;
});
const schema = lazy(async (): Promise<IntrospectionQuery> => (await api()).introspect());

test.after(async () => {
  for (const c of cleanups.reverse()) await c().catch((e) => console.log(`  [contract] clean-up: ${e.message}`));
  await db?.drop();
});

function noProblems(title: string, problems: string[]) {
  assert.ok(problems.length === 0, report(title, problems));
}

// sql ------------------------------------------------------------------------------------------------

check('sql: every contract relation exists in schema iot with every listed column, spelled exactly', async () => {
  const relations = await relationsOf((await database()).pool, 'iot');
  const missing: string[] = [];
  for (const [relation, columns] of Object.entries(contract.sql)) {
    const rel = relations.get(relation);
    if (!rel) {
      missing.push(`relation iot.${relation} (all ${columns.length} columns)`);
      continue;
    }
    const absent = columns.filter((c) => !rel.columns.has(c));
    if (absent.length) missing.push(`iot.${relation} (${rel.kind}) lacks ${absent.join(', ')}`);
  }
  noProblems('contract sql names missing from schema iot', missing);
});

// Contract columns that may stay empty in every row of this plant, each with the reason. A column
// counts as filled when at least one row holds a value, so values empty only in some rows are fine
// (acknowledged_at of PRESS-A's open alert; actual_failure_* and prediction_* of any unresolved
// alert; anomaly_* of scores whose window had no anomaly; metadata of readings that carried nothing
// beyond the contract). The plant is built so that every contract column has a meaning in at least
// one row (PRESS-B's alert is acknowledged and resolved with a failure, the newest readings spike,
// PRESS-A has SPC limits, the model is registered with its schedule), hence nothing is listed.
const MAY_BE_EMPTY: Record<string, string> = {};

check('sql: every contract column is the one that is filled, in a plant populated through the real paths', async () => {
  const { pool } = await database();
  const p = await plant();
  const relations = await relationsOf(pool, 'iot');
  const empty: string[] = [];
  for (const [relation, columns] of Object.entries(contract.sql)) {
    const present = columns.filter((c) => relations.get(relation)?.columns.has(c));
    if (!present.length) continue; // reported by the test above
    let counts: Map<string, number>;
    try {
      counts = await filledCounts(pool, p.tenantId, relation, present);
    } catch (error) {
      empty.push(`iot.${relation}: cannot be read: ${(error as Error).message}`);
      continue;
    }
    const rows = (await withTenant(pool, p.tenantId, (c) => c.query(`select count(*)::int as n from iot.${relation}`))).rows[0].n;
    if (rows === 0) {
      empty.push(`iot.${relation}: no row at all for the plant's tenant`);
      continue;
    }
    if (process.env.CONTRACT_VERBOSE) console.log(`  [contract] iot.${relation} (${rows} rows) filled: ${[...counts].map(([k, v]) => `${k}=${v}`).join(' ')}`);
    const unfilled = present.filter((c) => counts.get(c) === 0 && !(`${relation}.${c}` in MAY_BE_EMPTY));
    if (unfilled.length) empty.push(`iot.${relation} (${rows} rows): empty in every row: ${unfilled.join(', ')}`);
  }
  if (process.env.CONTRACT_VERBOSE) {
    const alerts = await withTenant(pool, p.tenantId, (c) => c.query(`select * from iot.predictive_maintenance_alerts`));
    for (const a of alerts.rows) console.log(`  [contract] alert ${JSON.stringify(a)}`);
  }
  noProblems('contract columns left empty', [...empty, ...p.problems.map((x) => `populating the plant failed at ${x}`)]);
});

// enumerations -----------------------------------------------------------------------------------------

check('enumerations: every value is accepted by its column (its own type, checks and lookups, evaluated by PostgreSQL)', async () => {
  const { pool } = await database();
  const refused: string[] = [];
  const acceptsAnything: string[] = [];
  const NONSENSE = 'CONTRACT_PROBE_NOT_A_VALUE';
  for (const [target, values] of Object.entries(contract.enumerations)) {
    const [relation, column] = target.split('.');
    let bad: string[];
    try {
      bad = await refusedValues(pool, relation, column, [...values, NONSENSE]);
    } catch (error) {
      refused.push(`${target}: ${(error as Error).message}`);
      continue;
    }
    if (!bad.some((b) => b.startsWith(NONSENSE))) acceptsAnything.push(target);
    const wrong = bad.filter((b) => !b.startsWith(NONSENSE));
    if (wrong.length) refused.push(`${target} refuses ${wrong.join('; ')}`);
  }
  // The probe has teeth: columns with a vocabulary refuse a word outside it.
  if (acceptsAnything.length) console.log(`  [contract] these columns accept any word their format allows (no vocabulary in the column itself): ${acceptsAnything.join(', ')}`);
  assert.ok(acceptsAnything.length < Object.keys(contract.enumerations).length, 'the acceptance probe refused nothing at all: it is broken');
  // Sensor types are a lookup table: every contract type must be registered there, spelled as given.
  const sensorTypes = contract.enumerations['sensor_readings.sensor_type'] ?? [];
  const known = await pool.query<{ sensor_type: string }>(`select sensor_type from iot.sensor_types where sensor_type = any ($1)`, [sensorTypes])
    .then((r) => new Set(r.rows.map((x) => x.sensor_type)), (e) => e as Error);
  if (known instanceof Error) refused.push(`iot.sensor_types cannot be read: ${known.message}`);
  else {
    const unknown = sensorTypes.filter((s) => !known.has(s));
    if (unknown.length) refused.push(`iot.sensor_types lacks ${unknown.join(', ')}`);
  }
  noProblems('contract enumeration values refused', refused);
});

check('enumerations: WorkCenterUtilization.status takes IDLE, RUNNING, DOWN and SETUP (one work center in each state)', async () => {
  const p = await plant();
  const s = await schema();
  const a = await api();
  const expected = contract.graphql.enumerations['WorkCenterUtilization.status'];
  const problems: string[] = [];
  const types = typeMap(s);
  const rootField = rootFields(s, 'query').find((f) => f.name === 'workCenterUtilization');
  if (!rootField) {
    noProblems('WorkCenterUtilization.status', ['root field Query.workCenterUtilization is missing']);
    return;
  }
  const rowType = rowTypeOf(s, rootField);
  const statusField = fieldsOf(types.get(rowType)).find((f) => f.name === 'status');
  if (rowType !== 'WorkCenterUtilization') problems.push(`Query.workCenterUtilization returns ${rowType}, not WorkCenterUtilization`);
  if (!statusField) {
    noProblems('WorkCenterUtilization.status', [...problems, `${rowType} has no field status`]);
    return;
  }
  const statusType = types.get(unwrap(statusField.type).name);
  if (statusType?.kind === 'ENUM') {
    const values = new Set(statusType.enumValues.map((v) => v.name));
    const absent = expected.filter((v) => !values.has(v));
    if (absent.length) problems.push(`enum ${statusType.name} lacks ${absent.join(', ')}`);
  }
  // Behaviour: the plant has a work center in each state; the API must report each spelling.
  const at = p.at.getTime();
  const args: string[] = [];
  for (const arg of rootField.args) {
    const required = arg.type.kind === 'NON_NULL' && arg.defaultValue == null;
    const value = /since|from|start/i.test(arg.name) ? new Date(at - 86400_000).toISOString()
      : /until|to$|end/i.test(arg.name) ? new Date(at + 60_000).toISOString()
      : /facility/i.test(arg.name) ? p.facilityId : undefined;
    if (value !== undefined) args.push(`${arg.name}: ${JSON.stringify(value)}`);
    else if (required) problems.push(`cannot call workCenterUtilization: do not know what to pass as its required argument ${arg.name}`);
  }
  const connection = fieldsOf(types.get(unwrap(rootField.type).name)).some((f) => f.name === 'nodes');
  const query = `{ workCenterUtilization${args.length ? `(${args.join(', ')})` : ''} { ${connection ? 'nodes { status }' : 'status'} } }`;
  const r = await a.gql(query, {}, a.token('iot_operator', p.tenantId));
  if (r.errors?.length) problems.push(`${query} failed: ${r.errors.map((e) => e.message).join('; ')}`);
  else {
    const rows: { status: string }[] = connection ? r.data.workCenterUtilization.nodes : [].concat(r.data.workCenterUtilization);
    const seen = new Set(rows.map((x) => x.status));
    const unseen = expected.filter((v) => !seen.has(v));
    if (unseen.length) problems.push(`no work center reported as ${unseen.join(', ')} (reported: ${[...seen].join(', ') || 'none'})`);
  }
  noProblems('WorkCenterUtilization.status', problems);
});

// graphql ----------------------------------------------------------------------------------------------

check('graphql: every query and mutation root field of the contract exists', async () => {
  const s = await schema();
  const queries = new Set(rootFields(s, 'query').map((f) => f.name));
  const mutations = new Set(rootFields(s, 'mutation').map((f) => f.name));
  noProblems('contract root fields missing from the generated schema', [
    ...Object.keys(contract.graphql.query).filter((q) => !queries.has(q)).map((q) => `Query.${q}`),
    ...contract.graphql.mutation.filter((m) => !mutations.has(m)).map((m) => `Mutation.${m}`),
  ]);
});

// Fields clients compute with: scores, percentages, OEE, hours, counts, yields, probabilities, times.
const NUMERIC = /Score$|Percentage$|OEE|Hours$|Runs|Quantity$|Count$|Yield$|Probability$|Runtime$|Downtime$|SetupTime$|Progress$/;

check('graphql: every contract type exists with every listed field; numbers clients compute with are Float or Int', async () => {
  const s = await schema();
  const types = typeMap(s);
  const queries = rootFields(s, 'query');
  const problems: string[] = [];
  const lcfirst = (t: string) => t[0].toLowerCase() + t.slice(1);
  for (const [typeName, fields] of Object.entries(contract.graphql.types)) {
    // The root field a client reads the type through: "fields of T" in the contract, or the plural.
    const via = queries.find((q) => (contract.graphql.query[q.name] ?? '').includes(`fields of ${typeName}`))
      ?? queries.find((q) => q.name === `${lcfirst(typeName)}s` || q.name === lcfirst(typeName));
    let type = types.get(typeName);
    let label = typeName;
    const actual = via ? rowTypeOf(s, via) : undefined;
    if (!type) {
      problems.push(`type ${typeName} is missing${actual ? `: the API names it ${actual} (Query.${via!.name} returns it)` : ''}`);
      if (!actual || !types.has(actual)) continue;
      // Still check its fields under the name it has, so one run lists everything.
      type = types.get(actual)!;
      label = `${typeName} (as ${actual})`;
    } else if (via && actual !== typeName) {
      problems.push(`Query.${via.name} returns ${actual}, not ${typeName}`);
    }
    const have = new Map(fieldsOf(type).map((f) => [f.name, f]));
    const absent = fields.filter((f) => !have.has(f));
    if (absent.length) problems.push(`${label} lacks ${absent.join(', ')}`);
    for (const f of fields.filter((x) => have.has(x) && NUMERIC.test(x))) {
      const t = unwrap(have.get(f)!.type);
      if (process.env.CONTRACT_VERBOSE) console.log(`  [contract] ${label}.${f}: ${t.shown}`);
      if (t.name !== 'Float' && t.name !== 'Int') problems.push(`${label}.${f} is ${t.shown}; clients compute with it: Float or Int`);
    }
  }
  noProblems('contract types and fields', problems);
});

// The seed's subscriptions (issue 8): each name with the contract's argument names and types and
// return type; each document valid against the generated schema and run unchanged from a graphql-ws
// client that authenticates as the seed's front end does (connectionParams { authToken, tenantId }),
// receiving its event after the write that causes it.
for (const [name, spec] of Object.entries(loaded.contract ? contract.graphql.subscription : {})) {
  const shown = Object.entries(spec.args).map(([a, t]) => `${a}: ${t}`).join(', ');
  check(`graphql subscription ${name}(${shown}): ${spec.returns}`, async () => {
    const field = rootFields(await schema(), 'subscription').find((f) => f.name === name);
    if (!field) return noProblems('contract subscriptions', [`Subscription.${name} is missing`]);
    const problems: string[] = [];
    const args = new Map(field.args.map((a) => [a.name, unwrap(a.type).shown]));
    for (const [arg, type] of Object.entries(spec.args)) {
      if (!args.has(arg)) problems.push(`Subscription.${name} lacks argument ${arg}: ${type}`);
      else if (args.get(arg) !== type) problems.push(`Subscription.${name}(${arg}) is ${args.get(arg)}, not ${type}`);
    }
    const extraRequired = field.args.filter((a) => !(a.name in spec.args) && a.type.kind === 'NON_NULL').map((a) => a.name);
    if (extraRequired.length) problems.push(`Subscription.${name} requires arguments the seed's clients do not send: ${extraRequired.join(', ')}`);
    if (unwrap(field.type).shown !== spec.returns) problems.push(`Subscription.${name} returns ${unwrap(field.type).shown}, not ${spec.returns}`);
    noProblems('contract subscriptions', problems);
  });
}

/** The write that causes each document's event, and the variables the document is run with. */
const DOCUMENT_CAUSES: Record<string, (p: ContractPlant) => { variables: Record<string, unknown>; cause: () => Promise<string> }> = {
  equipmentHealthScoreUpdated: (p) => ({
    variables: { workCenterId: p.workCenters['PRESS-A'] },
    // A health-score run through the API, as the health job's mutation does it; returns the new score's id.
    cause: async () => {
      const a = await api();
      const r = await a.gql(`mutation($w: UUID!) { calculateEquipmentHealthScore(input: { workCenterId: $w }) { equipmentHealthScore { id } } }`,
        { w: p.workCenters['PRESS-A'] }, a.token('iot_operator', p.tenantId));
      if (r.errors) throw new Error(JSON.stringify(r.errors));
      return r.data.calculateEquipmentHealthScore.equipmentHealthScore.id;
    },
  }),
  criticalAlertTriggered: (p) => ({
    variables: { tenantId: p.tenantId },
    cause: async () => (await (await database()).pool.query(
      `insert into iot.predictive_maintenance_alerts (tenant_id, work_center_id, alert_type, predicted_failure_mode, severity, urgency,
         failure_probability, description, alert_reason, time_to_failure_hours, recommended_action)
       values ($1, $2, 'FAILURE_PREDICTION', 'CONTRACT_CHECK_${run}', 'CRITICAL', 'IMMEDIATE', 0.9, 'contract check', 'HEALTH_DEGRADATION', 12,
               'Stop the press') returning id`, [p.tenantId, p.workCenters['PRESS-B']])).rows[0].id,
  }),
};

for (const doc of loaded.contract ? contract.graphql.documents : []) {
  check(`graphql document ${doc.slice(0, doc.indexOf('(')) || doc}: valid, and run unchanged over graphql-ws it receives its event`, async () => {
    const errors = validate(buildClientSchema(await schema()), parse(doc));
    if (errors.length) return noProblems('contract document', errors.map((e) => e.message));
    const operation = getOperationAST(parse(doc));
    const root = operation?.selectionSet.selections[0];
    const rootName = root && root.kind === 'Field' ? root.name.value : '?';
    const how = DOCUMENT_CAUSES[rootName];
    if (!how) return noProblems('contract document', [`no write known here that causes ${rootName} (add it to DOCUMENT_CAUSES)`]);
    const p = await plant();
    const a = await api();
    const { variables, cause } = how(p);
    const client = createClient({ url: a.url.replace('http', 'ws') + '/graphql', webSocketImpl: WebSocket, retryAttempts: 0,
      connectionParams: { authToken: a.token('iot_operator', p.tenantId), tenantId: p.tenantId } });
    const got: any[] = [];
    const stop = client.subscribe({ query: doc, variables }, {
      next: (v) => got.push(v), error: (e) => got.push({ errors: [e] }), complete: () => undefined,
    });
    try {
      await sleep(500); // the subscription's LISTEN
      const id = await cause();
      await waitFor(() => got.length > 0, 5000, `the ${rootName} event`);
      assert.not.ok(got[0].errors, JSON.stringify(got[0].errors));
      const event = got[0].data[rootName];
      assert.is(event.id, id, 'the event of the causing write');
      const wanted = root && root.kind === 'Field' ? root.selectionSet!.selections.map((s) => (s.kind === 'Field' ? s.name.value : '')) : [];
      assert.equal(Object.keys(event).sort(), wanted.sort(), 'the payload is the object with the document\'s field names');
    } finally {
      stop();
      await client.dispose();
    }
  });
}

// env --------------------------------------------------------------------------------------------------

// One acceptable value per contract variable, as a deployment's .env would set it.
const ENV_VALUES: Record<string, string> = {
  MQTT_BROKER_URL: 'mqtt://broker.example:1883', MQTT_USERNAME: 'ingest', MQTT_PASSWORD: 'contract-secret',
  MQTT_TOPICS: 'facility/+/workcenter/+/sensor/+', GRAPHQL_WS_ENABLED: 'true', GRAPHQL_WS_PATH: '/graphql',
  REDIS_PUBSUB_URL: 'redis://redis.example:6379', SENSOR_TEMPERATURE_MIN: '60', SENSOR_TEMPERATURE_MAX: '75',
  SENSOR_VIBRATION_MAX: '2.5', SENSOR_PRESSURE_MIN: '80', SENSOR_PRESSURE_MAX: '120',
  OPCUA_ENDPOINT_URL: 'opc.tcp://plc.example:4840', OPCUA_NODE_IDS: 'ns=2;s=Press1.Temperature,ns=2;s=Press1.Vibration',
};

check('env: every contract variable is known to the config definitions, and `iot config` accepts a value for each', async () => {
  const problems: string[] = [];
  const known = new Set(Object.keys(specs));
  const unknown = contract.env.filter((v) => !known.has(v));
  if (unknown.length) problems.push(`unknown to src/lib/config.ts specs: ${unknown.join(', ')}`);
  const noValue = contract.env.filter((v) => !(v in ENV_VALUES));
  if (noValue.length) problems.push(`this test has no sample value for ${noValue.join(', ')} (add one to ENV_VALUES)`);
  const env = Object.fromEntries(contract.env.filter((v) => v in ENV_VALUES).map((v) => [v, ENV_VALUES[v]]));
  const r = await promisify(execFile)(process.execPath, ['-r', 'tsx/cjs', join(root, 'src/cli/main.ts'), 'config'], {
    cwd: root, env: { PATH: process.env.PATH, ...env },
  }).then((x) => ({ code: 0, ...x }), (e) => ({ code: e.code as number, stdout: String(e.stdout), stderr: String(e.stderr) }));
  if (r.code !== 0) problems.push(`\`iot config\` exited with ${r.code}: ${r.stderr.trim()}`);
  else {
    const listed = new Set(r.stdout.split('\n').map((l) => l.split('=')[0]));
    const unlisted = contract.env.filter((v) => !listed.has(v));
    if (unlisted.length) problems.push(`\`iot config\` does not list ${unlisted.join(', ')}`);
    // REDIS_PUBSUB_URL no longer applies (subscriptions need no Redis here): accepted, with a line saying why.
    const why = `${r.stdout}\n${r.stderr}`.split('\n').filter((l) => l.includes('REDIS_PUBSUB_URL') && !l.startsWith('REDIS_PUBSUB_URL='));
    if (contract.env.includes('REDIS_PUBSUB_URL') && !why.length) problems.push('`iot config` accepts REDIS_PUBSUB_URL without a log line saying why it is not used');
  }
  noProblems('contract environment variables', problems);
});

// mqtt ---------------------------------------------------------------------------------------------------

// The seed's own equipment, in a tenant of its own so the check query's "latest TEMPERATURE reading"
// is the published one: facility F1, work center WC-PRESS-01, device temp-sensor-01 with a
// TEMPERATURE channel in °F.
const SEED_TIME = '2026-01-10T12:00:00Z';
const seed = lazy(async () => {
  const { pool } = await database();
  const tenantId: string = (await pool.query(`insert into iot.tenants (tenant_code, name) values ('seed', 'Seed plant') returning id`)).rows[0].id;
  const f = await pool.query(`insert into iot.facilities (tenant_id, facility_code, name) values ($1, 'F1', 'Facility 1') returning id`, [tenantId]);
  const w = await pool.query(`insert into iot.work_centers (tenant_id, facility_id, work_center_code, name, work_center_type)
    values ($1, $2, 'WC-PRESS-01', 'Press 01', 'PRESS') returning id`, [tenantId, f.rows[0].id]);
  const d = await pool.query(`insert into iot.iot_devices (tenant_id, work_center_id, device_code, device_type, connection_type)
    values ($1, $2, 'temp-sensor-01', 'SENSOR', 'MQTT') returning id`, [tenantId, w.rows[0].id]);
  await pool.query(`insert into iot.device_channels (tenant_id, device_id, sensor_type, unit) values ($1, $2, 'TEMPERATURE', '°F')`,
    [tenantId, d.rows[0].id]);
  const broker = await testBroker();
  cleanups.push(() => broker.stop());
  const registry = new RegistryCache(pool, 0);
  await registry.start();
  cleanups.push(() => registry.stop());
  const sink = new ReadingSink(pool, { batchSize: 1000, maxWaitMs: 20, bufferMax: 10_000 });
  cleanups.push(() => sink.close());
  const ingestor = new MqttIngestor({ brokerUrl: broker.url, topics: ['facility/+/workcenter/+/sensor/+'], qos: 1,
    clientId: `test-contract-ingest-${run}`, maxFutureSeconds: 300 }, registry, sink);
  await ingestor.start();
  cleanups.push(() => ingestor.stop());
  const publisher: MqttClient = await mqtt.connectAsync(broker.url, { clientId: `test-contract-pub-${run}` });
  cleanups.push(() => publisher.endAsync());
  await sleep(200); // subscription granted
  console.log(`  [contract] broker ${broker.kind} ${broker.url}`);
  return { tenantId, deviceId: d.rows[0].id as string, broker, publisher };
});

/** Publishes with mosquitto_pub where installed (as a user would), else mqtt.js. */
async function publish(topic: string, payload: string): Promise<string> {
  const { broker, publisher } = await seed();
  return publishAsDevice(broker.url, publisher, topic, payload);
}

async function seedReadings() {
  const { pool } = await database();
  const { tenantId, deviceId } = await seed();
  return (await withTenant(pool, tenantId, (c) => c.query(
    `select reading_value, sensor_type, quality, unit_of_measure, metadata, production_run_id
       from iot.sensor_readings where iot_device_id = $1 and reading_timestamp = $2`, [deviceId, SEED_TIME]))).rows;
}

async function storedOrWhy(what: string, topic: string, sentAt: Date) {
  const { pool } = await database();
  try {
    await waitFor(async () => (await seedReadings()).length > 0, 5000, what);
  } catch {
    const dead = (await pool.query(`select reason, payload from iot_private.ingest_dead_letters where topic = $1 and received_at >= $2`,
      [topic, sentAt])).rows;
    assert.unreachable(`${what}: nothing stored in 5 s; dead letters: ${JSON.stringify(dead)}`);
  }
  await sleep(300); // a duplicate, had there been one, would have landed by now
  return seedReadings();
}

const rawPayloads = loaded.contract ? rawPayloadExamples(readFileSync(CONTRACT_PATH, 'utf8')) : [];
const TOPIC = contract?.mqtt?.topic_examples?.find((t) => t.endsWith('/sensor/TEMPERATURE')) ?? '';

check("mqtt: the contract's first example payload, published verbatim on its topic, stores one reading (72.5, TEMPERATURE, GOOD, VERIFIED kept)", async () => {
  assert.is(TOPIC, 'facility/F1/workcenter/WC-PRESS-01/sensor/TEMPERATURE');
  assert.is(rawPayloads.length, 2, 'two payload examples');
  const sentAt = new Date(Date.now() - 1000);
  const how = await publish(TOPIC, rawPayloads[0]);
  console.log(`  [contract] published ${rawPayloads[0]} with ${how}`);
  const rows = await storedOrWhy('the first example payload', TOPIC, sentAt);
  assert.is(rows.length, 1, 'exactly one reading');
  const r = rows[0];
  assert.equal([r.reading_value, r.sensor_type, r.quality, r.unit_of_measure], [72.5, 'TEMPERATURE', 'GOOD', '°F']);
  assert.match(JSON.stringify(r.metadata), '"VERIFIED"', `metadata keeps the raw quality word: ${JSON.stringify(r.metadata)}`);
});

check("mqtt: the contract's second example payload (no deviceId, same instant) stores one reading of 70.0", async () => {
  const { pool } = await database();
  const { deviceId } = await seed();
  // Both examples carry the same instant, and the second names no device, so it resolves to the same
  // channel (the only TEMPERATURE channel on WC-PRESS-01). A reading is stored once per device, sensor
  // type and time (a QoS 1 redelivery must not double it), so the second would be a duplicate of the
  // first. To see it stored as its own reading, the first is removed before it is published.
  await pool.query(`delete from iot_private.sensor_readings where device_id = $1 and time = $2`, [deviceId, SEED_TIME]);
  assert.is((await seedReadings()).length, 0);
  const sentAt = new Date(Date.now() - 1000);
  await publish(TOPIC, rawPayloads[1]);
  const rows = await storedOrWhy('the second example payload', TOPIC, sentAt);
  assert.is(rows.length, 1, 'exactly one reading');
  assert.equal([rows[0].reading_value, rows[0].sensor_type], [70, 'TEMPERATURE']);
});

check("mqtt: the seed's check query, verbatim, as an analyst SQL login (no schema prefix, no SET), returns the reading", async () => {
  const d = await database();
  const { tenantId } = await seed();
  // An analyst login mapped to the seed tenant, made the way the README tells an administrator to
  // (iot_private.set_analyst_login, behind `iot analyst-login`); by hand where that is absent.
  const role = `contract_analyst_${run}`;
  const password = randomBytes(12).toString('hex');
  cleanups.push(() => d.pool.query(`drop role if exists ${role}`));
  if ((await d.pool.query(`select to_regprocedure('iot_private.set_analyst_login(text, text[], text)') as f`)).rows[0].f) {
    await d.pool.query(`select iot_private.set_analyst_login($1, $2, $3)`, [role, ['seed'], password]);
  } else {
    console.log('  [contract] iot_private.set_analyst_login is absent: making the analyst login by hand');
    await d.pool.query(`create role ${role} login password '${password}' in role iot_analyst`);
    await d.pool.query(`insert into iot_private.sql_role_tenants (role_name, tenant_id) values ($1, $2)`, [role, tenantId]);
    await d.pool.query(`alter role ${role} set search_path = iot, public`);
  }
  const url = new URL(d.url);
  url.username = role;
  url.password = password;
  const analyst = new Client({ connectionString: url.toString() });
  await analyst.connect();
  try {
    const r = await analyst.query(`SELECT * FROM sensor_readings WHERE sensor_type = 'TEMPERATURE' ORDER BY reading_timestamp DESC LIMIT 1`);
    assert.is(r.rowCount, 1, 'one row');
    const row = r.rows[0];
    assert.equal([row.reading_value, row.sensor_type, new Date(row.reading_timestamp).toISOString()], [70, 'TEMPERATURE', '2026-01-10T12:00:00.000Z']);
  } finally {
    await analyst.end();
  }
});

test.run();

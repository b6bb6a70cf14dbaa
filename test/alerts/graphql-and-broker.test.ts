// Routing rules through the GraphQL API (PostGraphile, RLS), and the MQTT broker watch raising and
// resolving its HIGH system alert against a real in-process broker that goes away and comes back.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import mqtt from 'mqtt';
import { watchBrokerConnection } from '../../src/alerts/broker-watch';
import { startEmbeddedBroker } from '../../src/lib/embedded/broker';
import { createTestDatabase, seedSmallPlant, TestDatabase } from '../helpers/db';
import { startTestApi, TestApi } from '../helpers/graphql';
import { waitFor } from '../helpers/wait';

const test = suite('alerts: rules over GraphQL, MQTT broker system alert');
let db: TestDatabase;
let api: TestApi;
let a: Awaited<ReturnType<typeof seedSmallPlant>>;
let b: Awaited<ReturnType<typeof seedSmallPlant>>;

test.before(async () => {
  db = await createTestDatabase('alerts_gql');
  a = await seedSmallPlant(db.pool, 'acme', 'F1');
  b = await seedSmallPlant(db.pool, 'other', 'F2');
  api = await startTestApi(db.url);
});
test.after(async () => {
  await api?.close();
  await db?.drop();
});

const create = `mutation($rule: AlertRoutingRuleInput!) { createAlertRoutingRule(input: { alertRoutingRule: $rule }) {
  alertRoutingRule { id name source channel recipients minSeverity isEnabled } } }`;

test('an operator creates and edits its tenant\'s rules over GraphQL; a bad recipient is refused by name; an analyst only reads', async () => {
  const op = api.token('iot_operator', a.tenantId);
  const made = await api.gql(create, { rule: { name: 'Chat', source: 'EQUIPMENT_EVENT', minSeverity: 'ERROR', channel: 'WEBHOOK',
    recipients: ['https://chat.acme.test/hook'] } }, op);
  assert.equal(made.errors, undefined, JSON.stringify(made.errors));
  const rule = made.data.createAlertRoutingRule.alertRoutingRule;
  assert.equal([rule.name, rule.channel, rule.recipients, rule.isEnabled], ['Chat', 'WEBHOOK', ['https://chat.acme.test/hook'], true]);
  const bad = await api.gql(create, { rule: { name: 'Bad', source: 'EQUIPMENT_EVENT', channel: 'SMS', recipients: ['0800-CALL-ME'] } }, op);
  assert.match(bad.errors?.[0].message ?? '', 'recipient 0800-CALL-ME is not a phone number in E.164 form');
  const edited = await api.gql(`mutation($id: UUID!) { updateAlertRoutingRule(input: { id: $id, patch: { isEnabled: false } }) {
    alertRoutingRule { isEnabled } } }`, { id: rule.id }, op);
  assert.equal(edited.data?.updateAlertRoutingRule.alertRoutingRule.isEnabled, false, JSON.stringify(edited.errors));

  const list = `{ alertRoutingRules(orderBy: NAME_ASC) { nodes { name tenantId } } alertDeliveries { totalCount } systemAlerts { totalCount } }`;
  const mine = await api.gql(list, {}, op);
  assert.equal(mine.errors, undefined, JSON.stringify(mine.errors));
  assert.ok(mine.data.alertRoutingRules.nodes.length === 5 && mine.data.alertRoutingRules.nodes.every((n: any) => n.tenantId === a.tenantId),
    'the four default rules and Chat, all of tenant A');
  const theirs = await api.gql(list, {}, api.token('iot_analyst', b.tenantId));
  assert.equal(theirs.data.alertRoutingRules.nodes.map((n: any) => n.tenantId), Array(4).fill(b.tenantId), 'B sees its own default rules only');
  const refused = await api.gql(create, { rule: { name: 'x', source: 'SYSTEM_ALERT', channel: 'EMAIL', recipients: ['x@b.test'] } },
    api.token('iot_analyst', b.tenantId));
  assert.ok(refused.errors?.length, 'an analyst cannot create a rule');
});

test('the broker watch raises MQTT_BROKER_CONNECTION_LOST (HIGH) for each tenant after the grace time and resolves it on reconnect', async () => {
  let broker = await startEmbeddedBroker(0);
  const port = Number(new URL(broker.url).port);
  const client = mqtt.connect(broker.url, { reconnectPeriod: 100, connectTimeout: 1000 });
  await new Promise((resolve) => client.once('connect', resolve));
  const watch = watchBrokerConnection(client, db.pool, { brokerUrl: broker.url, graceMs: 300 });
  const open = async () => (await db.pool.query(`select tenant_id, severity from iot.system_alerts
    where alert_type = 'MQTT_BROKER_CONNECTION_LOST' and resolved_at is null`)).rows;
  try {
    await broker.stop();
    await waitFor(async () => (await open()).length === 2, 10_000, 'the alert for both tenants');
    assert.equal((await open()).map((r) => r.severity), ['HIGH', 'HIGH']);
    broker = await startEmbeddedBroker(port);
    await waitFor(async () => (await open()).length === 0, 10_000, 'resolution on reconnect');
    const all = await db.pool.query(`select count(*)::int as n from iot.system_alerts where alert_type = 'MQTT_BROKER_CONNECTION_LOST'`);
    assert.is(all.rows[0].n, 2, 'one alert per tenant for the whole outage');
  } finally {
    watch.stop();
    client.end(true);
    await broker.stop().catch(() => undefined);
  }
});

test.run();

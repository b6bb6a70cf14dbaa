// Alert routing end to end: rules in SQL, deliveries as graphile-worker jobs (run for real with the
// alert tasks), e-mail to a real SMTP server in process, webhooks and SMS to a real HTTP receiver.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { Logger, run, Runner } from 'graphile-worker';
import { closeAlertEmailTransports } from '../../src/alerts/email';
import { raiseSystemAlert, resolveSystemAlerts } from '../../src/alerts/system-alerts';
import deliver from '../../workers/alerts__deliver';
import sweep from '../../workers/alerts__sweep';
import { createTestDatabase, seedSmallPlant, TestDatabase } from '../helpers/db';
import { HttpReceiver, startHttpReceiver } from '../helpers/http-receiver';
import { SmtpReceiver, startSmtpReceiver } from '../helpers/smtp';
import { sleep, waitFor } from '../helpers/wait';

const test = suite('alerts: routing rules, deliveries with retries, system alerts');
let db: TestDatabase;
let worker: Runner;
let smtp: SmtpReceiver;
let hooks: HttpReceiver;
let a: Awaited<ReturnType<typeof seedSmallPlant>>;
let b: Awaited<ReturnType<typeof seedSmallPlant>>;
const envKeys = ['SMTP_URL', 'ALERT_SMS_WEBHOOK_URL', 'ALERT_DELIVERY_MAX_ATTEMPTS', 'ALERT_WEBHOOK_TIMEOUT_MS', 'ALERT_EMAIL_FROM'];
const savedEnv = Object.fromEntries(envKeys.map((k) => [k, process.env[k]]));

test.before(async () => {
  try {
    db = await createTestDatabase('alerts');
    smtp = await startSmtpReceiver();
    hooks = await startHttpReceiver();
    Object.assign(process.env, { SMTP_URL: smtp.url, ALERT_SMS_WEBHOOK_URL: `${hooks.url}/sms`, ALERT_DELIVERY_MAX_ATTEMPTS: '3',
      ALERT_WEBHOOK_TIMEOUT_MS: '2000', ALERT_EMAIL_FROM: 'alerts@plant.test' });
    // The worker first: it installs graphile_worker's schema, which routing queues jobs into.
    worker = await run({ connectionString: db.url, concurrency: 4, noHandleSignals: true, pollInterval: 200,
      taskList: { alerts__deliver: deliver, alerts__sweep: sweep }, logger: new Logger(() => () => undefined) });
    a = await seedSmallPlant(db.pool, 'acme', 'F1');
    b = await seedSmallPlant(db.pool, 'other', 'F2');
  } catch (error) {
    console.error('[alerts] setup failed:', error); // uvu does not print a failing hook's error
    throw error;
  }
});
test.after(async () => {
  await worker?.stop();
  closeAlertEmailTransports();
  await smtp?.close();
  await hooks?.close();
  for (const k of envKeys) if (savedEnv[k] === undefined) delete process.env[k]; else process.env[k] = savedEnv[k];
  await db?.drop();
});

const q = async <T = any>(sql: string, params: unknown[] = []) => (await db.pool.query(sql, params)).rows as T[];
async function event(workCenterId: string, type: string, severity: string, description: string): Promise<string> {
  const [r] = await q<{ id: string }>(`select (iot.record_equipment_event($1, $2, $3, $4)).id`, [workCenterId, type, description, severity]);
  return r.id;
}
async function predictiveAlert(tenantId: string, workCenterId: string, mode: string, severity: string, urgency: string): Promise<string> {
  const [r] = await q<{ id: string }>(
    `insert into iot.predictive_maintenance_alerts (tenant_id, work_center_id, alert_type, alert_reason, predicted_failure_mode,
       severity, urgency, failure_probability, description, recommended_action, rul_hours)
     values ($1, $2, 'FAILURE_PREDICTION', 'HEALTH_DEGRADATION', $3, $4, $5, 0.9, $6, 'replace the bearing', 12) returning id`,
    [tenantId, workCenterId, mode, severity, urgency, `${mode} predicted within 12 h`]);
  return r.id;
}
const deliveriesOf = (sourceId: string) => q<{ channel: string; recipient: string; status: string; attempts: number; last_error: string | null }>(
  `select channel, recipient, status, attempts, last_error from iot.alert_deliveries where source_id = $1 order by channel, recipient`, [sourceId]);
type Delivery = Awaited<ReturnType<typeof deliveriesOf>>[number];
const settled = async (sourceId: string, n: number): Promise<Delivery[]> => (await waitFor(async () => {
  const d = await deliveriesOf(sourceId);
  return d.length === n && d.every((x) => x.status !== 'PENDING') ? d : null;
}, 30_000, `${n} deliveries of ${sourceId} to settle`))!;
const mailsTo = (address: string) => smtp.mails.filter((m) => m.to.includes(address));
const hooksAt = (path: string) => hooks.requests.filter((r) => r.path === path);

test('every tenant has the default rules, disabled until the maintenance team is configured; recipients are checked', async () => {
  const rules = await q(`select builtin_key, channel, is_enabled, recipients from iot.alert_routing_rules where tenant_id = $1 order by builtin_key`, [a.tenantId]);
  assert.equal(rules.map((r) => [r.builtin_key, r.channel, r.is_enabled, r.recipients]), [
    ['MAINTENANCE_EMAIL_CRITICAL_ALERTS', 'EMAIL', false, []],
    ['MAINTENANCE_EMAIL_CRITICAL_EVENTS', 'EMAIL', false, []],
    ['MAINTENANCE_EMAIL_SYSTEM_ALERTS', 'EMAIL', false, []],
    ['MAINTENANCE_SMS_IMMEDIATE_ALERTS', 'SMS', false, []],
  ]);
  await q(`update iot.tenants set maintenance_team_email = 'maint@acme.test', maintenance_team_phone = '+4930123456' where id = $1`, [a.tenantId]);
  await q(`update iot.tenants set maintenance_team_email = 'maint@other.test' where id = $1`, [b.tenantId]);
  const enabled = await q(`select builtin_key, recipients from iot.alert_routing_rules where tenant_id = $1 and is_enabled order by builtin_key`, [a.tenantId]);
  assert.equal(enabled.map((r) => r.recipients), [['maint@acme.test'], ['maint@acme.test'], ['maint@acme.test'], ['+4930123456']]);

  for (const [channel, bad, says] of [['EMAIL', 'maint at acme', 'not an e-mail address'], ['SMS', '0301234', 'E.164'],
    ['WEBHOOK', 'ftp://x.test/hook', 'http(s) URL']]) {
    try {
      await q(`insert into iot.alert_routing_rules (tenant_id, name, source, channel, recipients) values ($1, 'bad', 'EQUIPMENT_EVENT', $2, $3)`,
        [a.tenantId, channel, ['ok@x.test', bad].slice(channel === 'EMAIL' ? 0 : 1)]);
      assert.unreachable(`${bad} accepted`);
    } catch (error) {
      const e = error as Error & { code?: string };
      assert.is(e.code, '22023', e.message);
      assert.ok(e.message.includes(bad) && e.message.includes(says), e.message);
    }
  }
});

test('a critical event sends exactly one e-mail (To, Subject, body) and one webhook per matching rule', async () => {
  await q(`insert into iot.alert_routing_rules (tenant_id, name, source, event_types, min_severity, channel, recipients)
           values ($1, 'Chat: out-of-range errors', 'EQUIPMENT_EVENT', '{SENSOR_OUT_OF_RANGE}', 'ERROR', 'WEBHOOK', $2)`,
    [a.tenantId, [`${hooks.url}/hook`]]);
  const started = Date.now();
  const id = await event(a.workCenterId, 'SENSOR_OUT_OF_RANGE', 'CRITICAL', 'TEMPERATURE above normal range 60-75, peak 98 °F');
  await waitFor(() => mailsTo('maint@acme.test').length && hooksAt('/hook').length, 10_000, 'the e-mail and the webhook');
  console.log(`  [alerts] event insert to e-mail and webhook received: ${Date.now() - started} ms`);
  const d = await settled(id, 2);
  assert.equal(d.map((x) => [x.channel, x.recipient, x.status, x.attempts]),
    [['EMAIL', 'maint@acme.test', 'SENT', 1], ['WEBHOOK', `${hooks.url}/hook`, 'SENT', 1]]);
  await sleep(1000); // nothing more arrives
  const mails = mailsTo('maint@acme.test');
  assert.is(mails.length, 1, 'one e-mail');
  assert.is(mails[0].header('subject'), '[CRITICAL] SENSOR OUT OF RANGE at F1 / PRESS-1');
  assert.match(mails[0].header('from') ?? '', 'alerts@plant.test');
  assert.match(mails[0].body, 'TEMPERATURE above normal range 60-75, peak 98 °F');
  assert.match(mails[0].body, 'Where: F1 / PRESS-1 (Press 1)');
  assert.match(mails[0].body, 'Rule: Maintenance team e-mail: critical equipment events.');
  const posts = hooksAt('/hook');
  assert.is(posts.length, 1, 'one webhook');
  assert.is(posts[0].body.alert.id, id);
  assert.is(posts[0].body.alert.severity, 'CRITICAL');
  assert.is(posts[0].body.alert.type, 'SENSOR_OUT_OF_RANGE');
  assert.is(posts[0].body.alert.workCenterCode, 'PRESS-1');
  assert.ok(posts[0].headers['idempotency-key'], 'carries the delivery id as Idempotency-Key');
});

test('non-matching severity, type or urgency sends nothing', async () => {
  const mailsBefore = smtp.mails.length;
  const hooksBefore = hooks.requests.length;
  const ids = [
    await event(a.workCenterId, 'SENSOR_OUT_OF_RANGE', 'WARNING', 'below the webhook rule (ERROR) and the e-mail rule (CRITICAL)'),
    await event(a.workCenterId, 'STARTUP', 'ERROR', 'ERROR but not SENSOR_OUT_OF_RANGE'),
    await predictiveAlert(a.tenantId, a.workCenterId, 'BEARING_WEAR', 'HIGH', 'URGENT'), // not CRITICAL, not IMMEDIATE
  ];
  for (const id of ids) assert.equal(await deliveriesOf(id), [], 'no delivery');
  await sleep(1000);
  assert.is(smtp.mails.length, mailsBefore, 'no e-mail');
  assert.is(hooks.requests.length, hooksBefore, 'no webhook');
});

test('another tenant\'s rules never fire for this tenant\'s events, and the other way round', async () => {
  const mine = await event(a.workCenterId, 'ERROR', 'CRITICAL', 'press A jammed');
  const theirs = await event(b.workCenterId, 'ERROR', 'CRITICAL', 'press B jammed');
  const dm = await settled(mine, 1);
  const dt = await settled(theirs, 1);
  assert.equal(dm.map((x) => x.recipient), ['maint@acme.test']);
  assert.equal(dt.map((x) => x.recipient), ['maint@other.test']);
  const tenantsOfRules = await q(`select distinct r.tenant_id from iot.alert_deliveries d join iot.alert_routing_rules r on r.id = d.rule_id
                                  where d.source_id = any ($1)  and r.tenant_id <> d.tenant_id`, [[mine, theirs]]);
  assert.equal(tenantsOfRules, [], 'every delivery comes from a rule of the alert\'s own tenant');
  assert.ok(mailsTo('maint@other.test').every((m) => m.body.includes('press B jammed')), 'B is told only of B');
  assert.not.ok(mailsTo('maint@acme.test').some((m) => m.body.includes('press B')), 'A never hears of B');
});

test('the same event routed again (re-run, duplicate trigger) delivers once', async () => {
  const id = await event(a.workCenterId, 'MAINTENANCE_REQUIRED', 'CRITICAL', 'lubrication overdue');
  await settled(id, 1);
  const again = await q(`select iot_private.route_alert('EQUIPMENT_EVENT', $1) as n union all select iot_private.route_alert('EQUIPMENT_EVENT', $1)`, [id]);
  assert.equal(again.map((r) => r.n), [0, 0], 'no new delivery');
  // And a job for the delivery run again finds it SENT and sends nothing.
  const [dl] = await q(`select id from iot.alert_deliveries where source_id = $1`, [id]);
  await q(`select graphile_worker.add_job('alerts__deliver', json_build_object('deliveryId', $1::uuid), job_key := 'rerun:' || $1)`, [dl.id]);
  await waitFor(async () => (await q(`select count(*)::int as n from graphile_worker.jobs where key = 'rerun:' || $1`, [dl.id]))[0].n === 0, 10_000, 're-run job');
  assert.is(smtp.mails.filter((m) => m.body.includes('lubrication overdue')).length, 1, 'one e-mail');
  assert.equal((await deliveriesOf(id)).map((x) => [x.status, x.attempts]), [['SENT', 1]]);
});

test('an SMS gateway failing twice then answering gets 3 attempts and one SENT (graphile-worker backoff)', async () => {
  hooks.failNext(2);
  const id = await predictiveAlert(a.tenantId, a.workCenterId, 'OVERHEATING', 'MEDIUM', 'IMMEDIATE');
  const d = await settled(id, 1);
  assert.equal(d.map((x) => [x.channel, x.recipient, x.status, x.attempts, x.last_error]), [['SMS', '+4930123456', 'SENT', 3, null]]);
  const sms = hooksAt('/sms').filter((r) => r.body.alertId === id);
  assert.equal(sms.map((r) => r.status), [500, 500, 200], 'three calls, the third answered');
  assert.is(sms[2].body.to, '+4930123456');
  assert.match(sms[2].body.text, '[MEDIUM/IMMEDIATE] FAILURE PREDICTION OVERHEATING at F1 / PRESS-1');
});

test('a receiver that always fails ends FAILED after ALERT_DELIVERY_MAX_ATTEMPTS (3), with the error', async () => {
  const dead = await startHttpReceiver();
  dead.failNext(Infinity);
  try {
    await q(`insert into iot.alert_routing_rules (tenant_id, name, source, min_severity, channel, recipients)
             values ($1, 'Broken chat', 'PREDICTIVE_ALERT', 'CRITICAL', 'WEBHOOK', $2)`, [a.tenantId, [`${dead.url}/broken`]]);
    const id = await predictiveAlert(a.tenantId, a.workCenterId, 'PRESSURE_DEVIATION', 'CRITICAL', 'URGENT');
    const d = await settled(id, 2);
    const hook = d.find((x) => x.channel === 'WEBHOOK')!;
    assert.is(hook.status, 'FAILED');
    assert.is(hook.attempts, 3);
    assert.match(hook.last_error ?? '', 'answered HTTP 500');
    assert.is(dead.requests.length, 3, 'three calls, then no more');
    assert.is(d.find((x) => x.channel === 'EMAIL')!.status, 'SENT', 'the e-mail of the same alert is unaffected');
    await sleep(3000);
    assert.is(dead.requests.length, 3, 'no call after FAILED');
    assert.equal(await q(`select count(*)::int as n from graphile_worker.jobs where task_identifier = 'alerts__deliver' and attempts >= max_attempts`), [{ n: 0 }],
      'no dead job left behind: the delivery row is the record');
  } finally {
    await dead.close();
  }
});

test('SMTP_URL unset: the e-mail stays PENDING with the reason, and is sent once SMTP_URL is set', async () => {
  delete process.env.SMTP_URL;
  let id: string;
  try {
    id = await event(a.workCenterId, 'ERROR', 'CRITICAL', 'sent once mail is configured');
    const [d] = (await waitFor(async () => {
      const rows = await deliveriesOf(id);
      return rows.length === 1 && rows[0].last_error ? rows : null;
    }, 10_000, 'the first attempt'))!;
    assert.equal([d.status, d.attempts, d.last_error], ['PENDING', 0, 'SMTP_URL is not set']);
  } finally {
    process.env.SMTP_URL = smtp.url;
  }
  const [r] = await q(`select iot_private.sweep_alerts(array['EMAIL', 'WEBHOOK']) as r`);
  assert.ok(r.r.deliveriesQueued >= 1, JSON.stringify(r.r));
  const d = await settled(id, 1);
  assert.equal([d[0].status, d[0].attempts, d[0].last_error], ['SENT', 1, null]);
  assert.is(smtp.mails.filter((m) => m.body.includes('sent once mail is configured')).length, 1);
});

test('health below 30 raises one CRITICAL HEALTH_CRITICAL alert, routed once; a healthy score resolves it', async () => {
  await q(`select iot_private.ensure_partitions('equipment_health_scores', now() - interval '1 hour', now())`);
  const score = (minutesAgo: number, value: number) => q(
    `insert into iot_private.equipment_health_scores (score_timestamp, tenant_id, work_center_id, overall_health_score, health_status)
     values (now() - make_interval(mins => $1), $2, $3, $4, iot_private.health_status($4))`, [minutesAgo, a.tenantId, a.workCenterId, value]);
  await score(30, 25);
  await score(15, 22);
  const open = await q(`select id, severity, occurrences, resolved_at from iot.system_alerts where alert_type = 'HEALTH_CRITICAL' and work_center_id = $1`, [a.workCenterId]);
  assert.is(open.length, 1, 'one alert for two low scores');
  assert.equal([open[0].severity, open[0].occurrences, open[0].resolved_at], ['CRITICAL', 2, null]);
  const d = await settled(open[0].id, 1);
  assert.equal(d.map((x) => [x.channel, x.recipient, x.status]), [['EMAIL', 'maint@acme.test', 'SENT']]);
  const mail = smtp.mails.filter((m) => m.header('subject') === '[CRITICAL] HEALTH CRITICAL at F1 / PRESS-1');
  assert.is(mail.length, 1);
  assert.match(mail[0].body, 'health score 25.00 is below 30');
  await score(0, 55);
  const [after] = await q(`select resolved_at from iot.system_alerts where id = $1`, [open[0].id]);
  assert.ok(after.resolved_at, 'resolved by a score back above 30');
});

test('a heartbeat timeout over 5 minutes raises one LOW HEARTBEAT_TIMEOUT alert, routed once, resolved when heard again', async () => {
  await q(`insert into iot.alert_routing_rules (tenant_id, name, source, event_types, min_severity, channel, recipients)
           values ($1, 'Chat: silent devices', 'SYSTEM_ALERT', '{HEARTBEAT_TIMEOUT}', 'LOW', 'WEBHOOK', $2)`, [a.tenantId, [`${hooks.url}/silent`]]);
  await q(`update iot.iot_devices set last_heartbeat = now() - interval '10 minutes' where id = $1`, [a.deviceId]);
  assert.equal(await q(`select iot_private.check_device_heartbeats() as n`), [{ n: 1 }]);
  assert.equal(await q(`select iot_private.check_device_heartbeats() as n`), [{ n: 0 }], 'one event per silence');
  await q(`select iot_private.sweep_alerts('{}')`); // the sweep finds it open already
  const alerts = await q(`select id, severity, tenant_id from iot.system_alerts where alert_type = 'HEARTBEAT_TIMEOUT' and iot_device_id = $1`, [a.deviceId]);
  assert.is(alerts.length, 1, 'one alert');
  assert.equal([alerts[0].severity, alerts[0].tenant_id], ['LOW', a.tenantId]);
  const d = await settled(alerts[0].id, 1);
  assert.equal(d.map((x) => [x.channel, x.status]), [['WEBHOOK', 'SENT']], 'LOW is below the default e-mail rule (HIGH); the chat rule takes it');
  assert.is(hooksAt('/silent').length, 1);
  assert.match(hooksAt('/silent')[0].body.subject, '[LOW] HEARTBEAT TIMEOUT at F1 / PRESS-1 / F1-DEV-1');
  await q(`update iot.iot_devices set last_heartbeat = now() + interval '1 second' where id = $1`, [a.deviceId]);
  const [s] = await q(`select iot_private.sweep_alerts('{}') as r`);
  assert.is(s.r.heartbeatAlertsResolved, 1);
});

test('MQTT broker lost (TypeScript helper): one HIGH alert per tenant with MQTT devices, counted when raised again, resolved on reconnect', async () => {
  const message = 'MQTT broker mqtt://broker.test:1883 unreachable';
  assert.is(await raiseSystemAlert(db.pool, { alertType: 'MQTT_BROKER_CONNECTION_LOST', message }), 2, 'both tenants have MQTT devices');
  assert.is(await raiseSystemAlert(db.pool, { alertType: 'MQTT_BROKER_CONNECTION_LOST', message }), 2);
  const open = await q(`select tenant_id, severity, occurrences from iot.system_alerts where alert_type = 'MQTT_BROKER_CONNECTION_LOST' and resolved_at is null order by tenant_id`);
  assert.equal(open.map((r) => [r.severity, r.occurrences]), [['HIGH', 2], ['HIGH', 2]]);
  assert.equal(open.map((r) => r.tenant_id).sort(), [a.tenantId, b.tenantId].sort());
  await waitFor(() => mailsTo('maint@other.test').some((m) => m.header('subject') === '[HIGH] MQTT BROKER CONNECTION LOST'), 15_000, 'B\'s e-mail');
  await waitFor(() => mailsTo('maint@acme.test').some((m) => m.header('subject') === '[HIGH] MQTT BROKER CONNECTION LOST'), 15_000, 'A\'s e-mail');
  assert.is(await resolveSystemAlerts(db.pool, { alertType: 'MQTT_BROKER_CONNECTION_LOST' }), 2);
  assert.is(await raiseSystemAlert(db.pool, { alertType: 'HEALTH_CALCULATION_FAILED', workCenterId: a.workCenterId, message: 'health job failed: division by zero' }), 1);
  const [h] = await q(`select id, tenant_id, severity from iot.system_alerts where alert_type = 'HEALTH_CALCULATION_FAILED'`);
  assert.equal([h.tenant_id, h.severity], [a.tenantId, 'MEDIUM']);
  // An operator closes it by hand; another tenant's operator cannot.
  try {
    await db.asRole('iot_operator', { tenant_id: b.tenantId }, (c) => c.query(`select iot.resolve_system_alert($1)`, [h.id]));
    assert.unreachable('B resolved A\'s alert');
  } catch (error) {
    assert.is((error as { code?: string }).code, 'IOT04');
  }
  const closed = await db.asRole('iot_operator', { tenant_id: a.tenantId }, async (c) => {
    const r = (await c.query(`select (iot.resolve_system_alert($1)).resolved_at`, [h.id])).rows[0].resolved_at;
    await c.query('commit');
    return r;
  });
  assert.ok(closed, 'resolved by A\'s operator');
});

test('operators edit their own tenant\'s rules through RLS; analysts only read; nobody sees another tenant\'s', async () => {
  const seen = await db.asRole('iot_operator', { tenant_id: a.tenantId }, async (c) => {
    await c.query(`insert into iot.alert_routing_rules (name, source, channel, recipients) values ('Ops list', 'SYSTEM_ALERT', 'EMAIL', '{ops@acme.test}')`);
    await c.query(`update iot.alert_routing_rules set is_enabled = false where name = 'Ops list'`);
    return (await c.query(`select distinct tenant_id from iot.alert_routing_rules`)).rows.map((r) => r.tenant_id);
  });
  assert.equal(seen, [a.tenantId]);
  const deliveries = await db.asRole('iot_analyst', { tenant_id: b.tenantId }, async (c) =>
    (await c.query(`select distinct tenant_id from iot.alert_deliveries`)).rows.map((r) => r.tenant_id));
  assert.equal(deliveries, [b.tenantId]);
  try {
    await db.asRole('iot_analyst', { tenant_id: b.tenantId }, (c) =>
      c.query(`insert into iot.alert_routing_rules (name, source, channel, recipients) values ('x', 'SYSTEM_ALERT', 'EMAIL', '{x@b.test}')`));
    assert.unreachable('an analyst wrote a rule');
  } catch (error) {
    assert.is((error as { code?: string }).code, '42501');
  }
});

test.run();

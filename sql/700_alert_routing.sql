-- Alert routing (issue 8, part 5). An equipment event, a predictive-maintenance alert or a system
-- alert is matched against its tenant's enabled rules (iot.alert_routing_rules) in SQL, right in
-- the statement that raises it; each match makes one row of iot.alert_deliveries per recipient
-- (unique per rule, alert and recipient, so routing the same alert twice delivers once) and one
-- graphile-worker job `alerts__deliver` that sends it (workers/alerts__deliver.ts), with retries.
-- Tables: db/migrations/000011_alert_routing.sql.

insert into iot_private.settings (key, value) values
  ('system_alert_health_threshold', '30'),    -- a health score below this raises HEALTH_CRITICAL
  ('system_alert_heartbeat_seconds', '300')   -- a device silent longer than this raises HEARTBEAT_TIMEOUT
on conflict (key) do nothing;

-- Severities ---------------------------------------------------------------------------------
-- Events speak INFO < WARNING < ERROR < CRITICAL, alerts LOW < MEDIUM < HIGH < CRITICAL. Both map
-- onto one scale 1-4, so a rule's min_severity may be written in either vocabulary (HIGH on an
-- event rule means ERROR and above).
create or replace function iot.alert_severity_rank(severity text) returns integer
  language sql immutable parallel safe
  set search_path = pg_catalog, pg_temp
as $$
  select case upper(severity)
    when 'INFO' then 1 when 'LOW' then 1
    when 'WARNING' then 2 when 'MEDIUM' then 2
    when 'ERROR' then 3 when 'HIGH' then 3
    when 'CRITICAL' then 4 end
$$;
comment on function iot.alert_severity_rank(text) is
  'Rank 1-4 of a severity in either vocabulary: INFO/LOW 1, WARNING/MEDIUM 2, ERROR/HIGH 3, CRITICAL 4; null for anything else.';

-- Rules: checks that name the bad value ---------------------------------------------------------
create or replace function iot_private.alert_recipient_problem(channel text, recipient text) returns text
  language sql immutable
  set search_path = pg_catalog, pg_temp
as $$
  select case
    when recipient is null or btrim(recipient) = '' then 'a recipient is blank'
    when channel = 'EMAIL' and recipient !~ '^[^@[:space:]<>,;"]+@[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$'
      then format('recipient %s is not an e-mail address (name@example.com)', recipient)
    when channel = 'SMS' and recipient !~ '^\+[1-9][0-9]{6,14}$'
      then format('recipient %s is not a phone number in E.164 form (+4930123456)', recipient)
    when channel = 'WEBHOOK' and (recipient !~ '^https?://[^[:space:]/?#]+[^[:space:]]*$' or length(recipient) > 2048)
      then format('recipient %s is not an http(s) URL of at most 2048 characters', recipient)
  end
$$;
comment on function iot_private.alert_recipient_problem(text, text) is
  'Why a recipient does not fit its channel (EMAIL address, SMS phone number in E.164, WEBHOOK http(s) URL), or null when it does.';

-- Security definer: operators write rules but may not call iot_private functions themselves.
create or replace function iot_private.tg_alert_routing_rules__check() returns trigger
  language plpgsql security definer
  set search_path = pg_catalog, pg_temp
as $$
declare
  r text;
  problem text;
  known text[];
begin
  foreach r in array coalesce(new.recipients, '{}') loop
    problem := iot_private.alert_recipient_problem(new.channel, r);
    if problem is not null then
      raise exception 'alert routing rule "%": %', new.name, problem using errcode = '22023', column = 'recipients';
    end if;
  end loop;
  if cardinality(new.recipients) <> cardinality(array(select distinct unnest(new.recipients))) then
    raise exception 'alert routing rule "%": a recipient is listed twice', new.name using errcode = '22023', column = 'recipients';
  end if;
  known := case new.source
    when 'EQUIPMENT_EVENT' then array['STARTUP', 'SHUTDOWN', 'ERROR', 'WARNING', 'MAINTENANCE_REQUIRED', 'SENSOR_OUT_OF_RANGE',
                                      'HEARTBEAT_TIMEOUT', 'ANOMALY_DETECTED']
    when 'PREDICTIVE_ALERT' then array['FAILURE_PREDICTION', 'ANOMALY_DETECTED', 'RUL_THRESHOLD']
    when 'SYSTEM_ALERT' then array['HEALTH_CRITICAL', 'MQTT_BROKER_CONNECTION_LOST', 'HEALTH_CALCULATION_FAILED', 'HEARTBEAT_TIMEOUT'] end;
  foreach r in array coalesce(new.event_types, '{}') loop
    if known is not null and not (r = any (known)) then
      raise exception 'alert routing rule "%": event type % is not one of %''s types (%)', new.name, r, new.source,
        array_to_string(known, ', ') using errcode = '22023', column = 'event_types';
    end if;
  end loop;
  if new.urgencies is not null and new.source <> 'PREDICTIVE_ALERT' then
    raise exception 'alert routing rule "%": urgencies apply to PREDICTIVE_ALERT rules only (% has no urgency)', new.name, new.source
      using errcode = '22023', column = 'urgencies';
  end if;
  if tg_op = 'UPDATE' then
    new.updated_at := now();
  end if;
  return new;
end
$$;
comment on function iot_private.tg_alert_routing_rules__check() is
  'Checks a routing rule''s recipients against its channel and its event types against its source, naming the bad value (22023).';
drop trigger if exists _100_check on iot.alert_routing_rules;
create trigger _100_check before insert or update on iot.alert_routing_rules
  for each row execute function iot_private.tg_alert_routing_rules__check();

-- Default rules: the seed's routing for every tenant ------------------------------------------
-- A rule whose contact is not configured exists disabled (recipients empty): the operator sees it,
-- and setting iot.tenants.maintenance_team_email / _phone enables it.
create or replace function iot_private.ensure_default_alert_rules(tenant uuid) returns integer
  language plpgsql security definer
  set search_path = pg_catalog, pg_temp
as $$
declare
  made integer;
begin
  insert into iot.alert_routing_rules (tenant_id, name, source, min_severity, urgencies, channel, recipients, is_enabled, builtin_key)
  select t.id, d.name, d.source, d.min_severity, d.urgencies, d.channel,
         array_remove(array[c.contact], null), c.contact is not null, d.builtin_key
  from iot.tenants t
  cross join iot_private.default_alert_routing_rules d
  cross join lateral (select case d.contact when 'email' then t.maintenance_team_email else t.maintenance_team_phone end as contact) c
  where t.id = tenant
  on conflict do nothing;
  get diagnostics made = row_count;
  return made;
end
$$;
comment on function iot_private.ensure_default_alert_rules(uuid) is
  'Creates the default routing rules a tenant lacks (iot_private.default_alert_routing_rules); disabled where the tenant has no maintenance-team contact.';

-- A changed contact moves the default rules that still follow it (recipients untouched by an operator).
create or replace function iot_private.tg_tenants__alert_contacts() returns trigger
  language plpgsql security definer
  set search_path = pg_catalog, pg_temp
as $$
begin
  if tg_op = 'INSERT' then
    perform iot_private.ensure_default_alert_rules(new.id);
    return null;
  end if;
  update iot.alert_routing_rules r
     set recipients = array_remove(array[x.new_contact], null), is_enabled = x.new_contact is not null
  from iot_private.default_alert_routing_rules d,
       lateral (select case d.contact when 'email' then old.maintenance_team_email else old.maintenance_team_phone end as old_contact,
                       case d.contact when 'email' then new.maintenance_team_email else new.maintenance_team_phone end as new_contact) x
  where r.tenant_id = new.id and r.builtin_key = d.builtin_key
    and x.old_contact is distinct from x.new_contact
    and r.recipients = array_remove(array[x.old_contact], null);
  return null;
end
$$;
comment on function iot_private.tg_tenants__alert_contacts() is
  'New tenants get the default routing rules; a changed maintenance-team contact updates the default rules that still send to the old one.';
drop trigger if exists _700_alert_contacts on iot.tenants;
create trigger _700_alert_contacts after insert or update of maintenance_team_email, maintenance_team_phone on iot.tenants
  for each row execute function iot_private.tg_tenants__alert_contacts();

-- What an alert is, whatever its source: the one shape rules match and messages render ----------
create or replace function iot_private.alert_summary(source text, source_id uuid) returns jsonb
  language plpgsql stable security definer
  set search_path = pg_catalog, pg_temp
as $$
declare
  s jsonb;
begin
  if source = 'EQUIPMENT_EVENT' then
    select jsonb_build_object('source', source, 'id', e.id, 'tenantId', e.tenant_id, 'type', e.event_type,
             'code', e.event_code, 'severity', e.severity, 'urgency', null, 'workCenterId', e.work_center_id,
             'iotDeviceId', e.iot_device_id, 'sensorType', e.sensor_type, 'occurredAt', e.event_timestamp,
             'description', e.event_description, 'metadata', e.metadata)
      into s from iot_private.equipment_events e where e.id = source_id limit 1;
  elsif source = 'PREDICTIVE_ALERT' then
    select jsonb_build_object('source', source, 'id', a.id, 'tenantId', a.tenant_id, 'type', a.alert_type,
             'code', a.predicted_failure_mode, 'severity', a.severity, 'urgency', a.urgency, 'workCenterId', a.work_center_id,
             'iotDeviceId', null, 'occurredAt', a.alert_timestamp, 'description', a.description,
             'failureProbability', a.failure_probability, 'rulHours', a.rul_hours,
             'predictedFailureTimestamp', a.predicted_failure_timestamp, 'recommendedAction', a.recommended_action,
             'status', a.status)
      into s from iot.predictive_maintenance_alerts a where a.id = source_id;
  elsif source = 'SYSTEM_ALERT' then
    select jsonb_build_object('source', source, 'id', a.id, 'tenantId', a.tenant_id, 'type', a.alert_type,
             'code', a.alert_type, 'severity', a.severity, 'urgency', null, 'workCenterId', a.work_center_id,
             'iotDeviceId', a.iot_device_id, 'occurredAt', a.raised_at, 'description', a.message, 'details', a.details,
             'resolvedAt', a.resolved_at)
      into s from iot.system_alerts a where a.id = source_id;
  else
    raise exception 'alert source % is not EQUIPMENT_EVENT, PREDICTIVE_ALERT or SYSTEM_ALERT', quote_nullable(source) using errcode = '22023';
  end if;
  if s is null then
    return null;
  end if;
  -- Names a person on call recognises.
  -- (coalesce: SELECT INTO with no row would make s null; system alerts may have no work center.)
  s := s || coalesce((select jsonb_build_object('workCenterCode', w.work_center_code, 'workCenterName', w.name, 'facilityCode', f.facility_code)
                      from iot.work_centers w join iot.facilities f on f.id = w.facility_id where w.id = (s ->> 'workCenterId')::uuid), '{}')
            || coalesce((select jsonb_build_object('deviceCode', d.device_code) from iot.iot_devices d where d.id = (s ->> 'iotDeviceId')::uuid), '{}');
  return s || jsonb_build_object('tenantCode', (select t.tenant_code from iot.tenants t where t.id = (s ->> 'tenantId')::uuid));
end
$$;
comment on function iot_private.alert_summary(text, uuid) is
  'One alert (equipment event, predictive-maintenance alert or system alert) as JSON with type, severity, urgency, where and what; null when it does not exist.';

-- Routing -----------------------------------------------------------------------------------
-- Jobs are queued only where graphile-worker's schema exists (it is installed when the worker
-- first starts); deliveries made before that are queued by the alerts__sweep job.
create or replace function iot_private.enqueue_alert_delivery(delivery_id uuid) returns void
  language plpgsql security definer
  set search_path = pg_catalog, pg_temp
as $$
begin
  if to_regnamespace('graphile_worker') is not null then
    -- max_attempts is a ceiling only: the task marks a delivery FAILED after ALERT_DELIVERY_MAX_ATTEMPTS
    -- (at most 100) of its own attempts and then ends the job.
    perform graphile_worker.add_job('alerts__deliver', json_build_object('deliveryId', delivery_id),
                                    job_key := 'alert-delivery:' || delivery_id, max_attempts := 100);
  end if;
end
$$;
comment on function iot_private.enqueue_alert_delivery(uuid) is 'Queues the graphile-worker job alerts__deliver for one delivery (job key alert-delivery:<id>).';

create or replace function iot_private.route_alert(source text, source_id uuid) returns integer
  language plpgsql security definer
  set search_path = pg_catalog, pg_temp
as $$
declare
  a jsonb := iot_private.alert_summary(source, source_id);
  d uuid;
  made integer := 0;
begin
  if a is null then
    return 0;
  end if;
  for d in
    insert into iot.alert_deliveries (tenant_id, rule_id, source, source_id, channel, recipient)
    select r.tenant_id, r.id, route_alert.source, route_alert.source_id, r.channel, x.recipient
    from iot.alert_routing_rules r
    cross join lateral unnest(r.recipients) x(recipient)
    where r.tenant_id = (a ->> 'tenantId')::uuid
      and r.is_enabled
      and r.source = route_alert.source
      and (r.event_types is null or a ->> 'type' = any (r.event_types))
      and iot.alert_severity_rank(a ->> 'severity') >= iot.alert_severity_rank(r.min_severity)
      and (r.urgencies is null or a ->> 'urgency' = any (r.urgencies))
    on conflict on constraint alert_deliveries_dedupe_key do nothing
    returning id
  loop
    perform iot_private.enqueue_alert_delivery(d);
    made := made + 1;
  end loop;
  return made;
end
$$;
comment on function iot_private.route_alert(text, uuid) is
  'Matches one alert against its tenant''s enabled rules and makes one delivery (and job) per matching rule and recipient; a delivery that exists already is not made again. Returns the deliveries made.';

create or replace function iot_private.tg_equipment_events__route_alert() returns trigger
  language plpgsql security definer
  set search_path = pg_catalog, pg_temp
as $$
begin
  perform iot_private.route_alert('EQUIPMENT_EVENT', new.id);
  return null;
end
$$;
comment on function iot_private.tg_equipment_events__route_alert() is 'Routes each new equipment event to its tenant''s alert rules (events are rare: one per excursion).';
drop trigger if exists _800_route_alert on iot_private.equipment_events;
create trigger _800_route_alert after insert on iot_private.equipment_events
  for each row execute function iot_private.tg_equipment_events__route_alert();

-- A re-raised alert that became more severe or more urgent may now match more rules; those it
-- matched already have their delivery and are not sent again.
create or replace function iot_private.tg_predictive_alerts__route_alert() returns trigger
  language plpgsql security definer
  set search_path = pg_catalog, pg_temp
as $$
begin
  if tg_op = 'INSERT' or new.severity is distinct from old.severity or new.urgency is distinct from old.urgency then
    perform iot_private.route_alert('PREDICTIVE_ALERT', new.id);
  end if;
  return null;
end
$$;
comment on function iot_private.tg_predictive_alerts__route_alert() is 'Routes a new predictive-maintenance alert, and one whose severity or urgency changed.';
drop trigger if exists _800_route_alert on iot.predictive_maintenance_alerts;
create trigger _800_route_alert after insert or update of severity, urgency on iot.predictive_maintenance_alerts
  for each row execute function iot_private.tg_predictive_alerts__route_alert();

create or replace function iot_private.tg_system_alerts__route_alert() returns trigger
  language plpgsql security definer
  set search_path = pg_catalog, pg_temp
as $$
begin
  perform iot_private.route_alert('SYSTEM_ALERT', new.id);
  return null;
end
$$;
comment on function iot_private.tg_system_alerts__route_alert() is 'Routes each newly raised system alert (raising an open one again only counts it).';
drop trigger if exists _800_route_alert on iot.system_alerts;
create trigger _800_route_alert after insert on iot.system_alerts
  for each row execute function iot_private.tg_system_alerts__route_alert();

-- Messages ----------------------------------------------------------------------------------
create or replace function iot_private.render_alert_delivery(delivery_id uuid) returns jsonb
  language plpgsql stable security definer
  set search_path = pg_catalog, pg_temp
as $$
declare
  d iot.alert_deliveries;
  a jsonb;
  place text;
  subject text;
  body text;
begin
  select * into d from iot.alert_deliveries where id = delivery_id;
  if d.id is null then
    return null;
  end if;
  a := iot_private.alert_summary(d.source, d.source_id);
  if a is null then
    return jsonb_build_object('delivery', to_jsonb(d), 'alert', null);
  end if;
  place := concat_ws(' / ', a ->> 'facilityCode', a ->> 'workCenterCode', a ->> 'deviceCode');
  subject := format('[%s%s] %s%s%s', a ->> 'severity', coalesce('/' || (a ->> 'urgency'), ''),
                    replace(a ->> 'type', '_', ' '),
                    case when a ->> 'code' is distinct from a ->> 'type' then ' ' || (a ->> 'code') else '' end,
                    case when place <> '' then ' at ' || place else '' end);
  body := concat_ws(E'\n',
    a ->> 'description',
    '',
    'Severity: ' || (a ->> 'severity') || coalesce(', urgency ' || (a ->> 'urgency'), ''),
    'Where: ' || nullif(place, '') || coalesce(' (' || (a ->> 'workCenterName') || ')', ''),
    'When: ' || to_char((a ->> 'occurredAt')::timestamptz at time zone 'UTC', 'YYYY-MM-DD HH24:MI:SS "UTC"'),
    'Failure probability: ' || round(((a ->> 'failureProbability')::numeric) * 100, 1) || ' %',
    'Remaining useful life: ' || round((a ->> 'rulHours')::numeric, 1) || ' h',
    'Recommended action: ' || (a ->> 'recommendedAction'),
    '',
    format('%s %s, tenant %s. Rule: %s.', a ->> 'source', a ->> 'id', a ->> 'tenantCode',
           coalesce((select r.name from iot.alert_routing_rules r where r.id = d.rule_id), '(deleted)')));
  return jsonb_build_object('delivery', to_jsonb(d), 'alert', a, 'subject', subject, 'text', body,
                            'sms', left(subject || ': ' || coalesce(a ->> 'description', ''), 300));
end
$$;
comment on function iot_private.render_alert_delivery(uuid) is
  'A delivery with its alert (JSON), e-mail subject and text, and a short SMS text (300 characters at most).';

-- System alerts -----------------------------------------------------------------------------
-- Raising an open alert again counts it (occurrences, last_seen_at) and routes nothing new.
-- tenant null: every tenant the alert concerns (an MQTT broker shared by all tenants: each tenant
-- with active MQTT devices; a health job over all work centers: each tenant with active work
-- centers), because alerts, rules and dashboards are per tenant and a tenant-less alert would be
-- seen and routed by nobody.
create or replace function iot_private.raise_system_alert(
  alert_type text, tenant uuid, work_center uuid, device uuid, message text, details jsonb default '{}'
) returns integer
  language plpgsql security definer
  set search_path = pg_catalog, pg_temp
as $$
#variable_conflict use_column
declare
  raised integer;
  sev text := case alert_type when 'HEALTH_CRITICAL' then 'CRITICAL' when 'MQTT_BROKER_CONNECTION_LOST' then 'HIGH'
                              when 'HEALTH_CALCULATION_FAILED' then 'MEDIUM' when 'HEARTBEAT_TIMEOUT' then 'LOW' end;
begin
  if sev is null then
    raise exception 'system alert type % is not HEALTH_CRITICAL, MQTT_BROKER_CONNECTION_LOST, HEALTH_CALCULATION_FAILED or HEARTBEAT_TIMEOUT',
      quote_nullable(alert_type) using errcode = '22023';
  end if;
  if device is not null then
    select d.tenant_id, d.work_center_id into tenant, work_center from iot.iot_devices d where d.id = device;
  elsif work_center is not null then
    select w.tenant_id into tenant from iot.work_centers w where w.id = work_center;
  end if;
  insert into iot.system_alerts as s (tenant_id, alert_type, severity, work_center_id, iot_device_id, message, details)
  select t.id, raise_system_alert.alert_type, sev, work_center, device, raise_system_alert.message,
         coalesce(raise_system_alert.details, '{}')
  from iot.tenants t
  where case when tenant is not null then t.id = tenant
             when raise_system_alert.alert_type = 'MQTT_BROKER_CONNECTION_LOST' then exists (
               select 1 from iot.iot_devices d where d.tenant_id = t.id and d.is_active and d.connection_type = 'MQTT')
             else exists (select 1 from iot.work_centers w where w.tenant_id = t.id and w.is_active) end
  on conflict (tenant_id, alert_type, work_center_id, iot_device_id) where resolved_at is null do update
    set occurrences = s.occurrences + 1, last_seen_at = now(), details = excluded.details;
  get diagnostics raised = row_count;
  return raised;
end
$$;
comment on function iot_private.raise_system_alert(text, uuid, uuid, uuid, text, jsonb) is
  'Raises (or counts again) the open system alert of a type and subject; tenant null raises it for every tenant concerned. Returns the alerts raised or counted.';

create or replace function iot_private.resolve_system_alerts(alert_type text, tenant uuid, work_center uuid, device uuid)
returns integer
  language plpgsql security definer
  set search_path = pg_catalog, pg_temp
as $$
declare
  n integer;
begin
  update iot.system_alerts s set resolved_at = greatest(now(), s.raised_at)
  where s.resolved_at is null and s.alert_type = resolve_system_alerts.alert_type
    and (tenant is null or s.tenant_id = tenant)
    and s.work_center_id is not distinct from work_center
    and s.iot_device_id is not distinct from device;
  get diagnostics n = row_count;
  return n;
end
$$;
comment on function iot_private.resolve_system_alerts(text, uuid, uuid, uuid) is
  'Resolves the open system alerts of a type and subject (tenant null: of every tenant). Returns how many.';

-- Operators close a system alert by hand (e.g. a health-job failure that was fixed). Security
-- definer, so the tenant is checked here: another tenant's alert is not found (IOT04).
create or replace function iot.resolve_system_alert(system_alert_id uuid) returns iot.system_alerts
  language plpgsql volatile security definer
  set search_path = pg_catalog, pg_temp
as $$
declare
  result iot.system_alerts;
begin
  update iot.system_alerts s set resolved_at = coalesce(s.resolved_at, greatest(now(), s.raised_at))
   where s.id = system_alert_id and s.tenant_id = any (iot.current_tenant_ids())
  returning * into result;
  if result.id is null then
    raise exception 'no system alert %', system_alert_id using errcode = 'IOT04';
  end if;
  return result;
end
$$;
comment on function iot.resolve_system_alert(uuid) is 'Resolves an open system alert of the caller''s tenant (already resolved: returned as it is).';

-- CRITICAL: a health score below the threshold (30) opens HEALTH_CRITICAL for the work center; a
-- score at or above it resolves it. Scores are per work center per interval, so a row trigger.
create or replace function iot_private.tg_health_scores__system_alert() returns trigger
  language plpgsql security definer
  set search_path = pg_catalog, pg_temp
as $$
declare
  threshold numeric := coalesce((select value::numeric from iot_private.settings where key = 'system_alert_health_threshold'), 30);
begin
  if new.overall_health_score is null then
    return null;
  end if;
  if new.overall_health_score < threshold then
    perform iot_private.raise_system_alert('HEALTH_CRITICAL', new.tenant_id, new.work_center_id, null,
      format('health score %s is below %s (%s)', new.overall_health_score, threshold, coalesce(new.recommended_action, 'inspect the equipment')),
      jsonb_build_object('healthScoreId', new.id, 'overallHealthScore', new.overall_health_score, 'scoreTimestamp', new.score_timestamp,
                         'healthStatus', new.health_status, 'riskFactors', new.risk_factors));
  elsif exists (select 1 from iot.system_alerts s where s.work_center_id = new.work_center_id
                  and s.alert_type = 'HEALTH_CRITICAL' and s.resolved_at is null) then
    perform iot_private.resolve_system_alerts('HEALTH_CRITICAL', new.tenant_id, new.work_center_id, null);
  end if;
  return null;
end
$$;
comment on function iot_private.tg_health_scores__system_alert() is 'Opens HEALTH_CRITICAL when a work center''s score falls below system_alert_health_threshold (30), resolves it when a score is back above.';
drop trigger if exists _800_system_alert on iot_private.equipment_health_scores;
create trigger _800_system_alert after insert on iot_private.equipment_health_scores
  for each row execute function iot_private.tg_health_scores__system_alert();

-- LOW: a device silent for more than system_alert_heartbeat_seconds (300 s). The watchdog's
-- HEARTBEAT_TIMEOUT event raises it at once when the device's own timeout is at least that long
-- (the default, 300 s); for shorter timeouts the alerts__sweep job raises it once 300 s have passed.
create or replace function iot_private.tg_equipment_events__heartbeat_system_alert() returns trigger
  language plpgsql security definer
  set search_path = pg_catalog, pg_temp
as $$
declare
  silence_limit integer := coalesce((select value::integer from iot_private.settings where key = 'system_alert_heartbeat_seconds'), 300);
  last_heard timestamptz := (new.metadata ->> 'lastHeartbeat')::timestamptz;
begin
  if new.iot_device_id is not null and (last_heard is null or new.event_timestamp - last_heard >= make_interval(secs => silence_limit)) then
    perform iot_private.raise_system_alert('HEARTBEAT_TIMEOUT', new.tenant_id, new.work_center_id, new.iot_device_id,
      coalesce(new.event_description, 'device silent'),
      jsonb_build_object('equipmentEventId', new.id, 'lastHeartbeat', last_heard, 'silenceLimitSeconds', silence_limit));
  end if;
  return null;
end
$$;
comment on function iot_private.tg_equipment_events__heartbeat_system_alert() is
  'Raises the LOW system alert HEARTBEAT_TIMEOUT for a HEARTBEAT_TIMEOUT event whose silence is at least system_alert_heartbeat_seconds (300).';
drop trigger if exists _700_heartbeat_system_alert on iot_private.equipment_events;
create trigger _700_heartbeat_system_alert after insert on iot_private.equipment_events
  for each row when (new.event_type = 'HEARTBEAT_TIMEOUT')
  execute function iot_private.tg_equipment_events__heartbeat_system_alert();

-- Housekeeping, every minute (alerts__sweep): heartbeat alerts for short device timeouts and their
-- resolution once the device is heard from again; jobs for deliveries that have none (made before
-- graphile-worker was installed, or waiting for a channel that is now configured).
create or replace function iot_private.sweep_alerts(configured_channels text[]) returns jsonb
  language plpgsql security definer
  set search_path = pg_catalog, pg_temp
as $$
declare
  silence_limit integer := coalesce((select value::integer from iot_private.settings where key = 'system_alert_heartbeat_seconds'), 300);
  raised integer := 0;
  resolved integer;
  requeued integer := 0;
  r record;
begin
  for r in
    select d.id, d.device_code, d.last_heartbeat from iot.iot_devices d
    where d.is_active and d.connection_type <> 'REST_API' and d.last_heartbeat < now() - make_interval(secs => silence_limit)
      and not exists (select 1 from iot.system_alerts s where s.iot_device_id = d.id and s.alert_type = 'HEARTBEAT_TIMEOUT'
                        and s.resolved_at is null)
  loop
    raised := raised + iot_private.raise_system_alert('HEARTBEAT_TIMEOUT', null, null, r.id,
      format('device %s silent since %s', r.device_code, to_char(r.last_heartbeat at time zone 'UTC', 'YYYY-MM-DD HH24:MI:SS"Z"')),
      jsonb_build_object('lastHeartbeat', r.last_heartbeat, 'silenceLimitSeconds', silence_limit));
  end loop;
  update iot.system_alerts s set resolved_at = greatest(now(), s.raised_at)
  from iot.iot_devices d
  where s.alert_type = 'HEARTBEAT_TIMEOUT' and s.resolved_at is null and d.id = s.iot_device_id
    and (d.last_heartbeat > s.raised_at or not d.is_active);
  get diagnostics resolved = row_count;
  if to_regnamespace('graphile_worker') is not null then
    for r in
      select d.id from iot.alert_deliveries d
      where d.status = 'PENDING'
        and (not exists (select 1 from graphile_worker.jobs j where j.key = 'alert-delivery:' || d.id)
             or (d.channel = any (configured_channels) and d.last_error like '% is not set'))
      order by d.created_at
      limit 1000
    loop
      perform graphile_worker.add_job('alerts__deliver', json_build_object('deliveryId', r.id),
                                      job_key := 'alert-delivery:' || r.id, max_attempts := 100);
      requeued := requeued + 1;
    end loop;
  end if;
  return jsonb_build_object('heartbeatAlertsRaised', raised, 'heartbeatAlertsResolved', resolved, 'deliveriesQueued', requeued);
end
$$;
comment on function iot_private.sweep_alerts(text[]) is
  'Every minute: HEARTBEAT_TIMEOUT system alerts for devices silent past system_alert_heartbeat_seconds, resolved when heard again; jobs for PENDING deliveries without one or waiting for a channel now configured.';

-- GraphQL and grants --------------------------------------------------------------------------
comment on table iot.alert_routing_rules is
  E'Where alerts go: per tenant, by source (EQUIPMENT_EVENT, PREDICTIVE_ALERT, SYSTEM_ALERT), event types (null: any), lowest severity (either vocabulary) and urgencies (null: any), to EMAIL addresses, SMS numbers or WEBHOOK URLs. Operators edit their tenant''s rules.';
comment on column iot.alert_routing_rules.builtin_key is 'Set on the default rules every tenant gets (they follow iot.tenants.maintenance_team_* until edited); null on rules operators add.';
comment on table iot.alert_deliveries is
  E'@omit create,update,delete\nOne message per rule, alert and recipient: PENDING until sent (retried with backoff), then SENT, or FAILED after ALERT_DELIVERY_MAX_ATTEMPTS, or SUPPRESSED when its rule was disabled or deleted first.';
comment on table iot.system_alerts is
  E'@omit create,update,delete\nThe seed''s system alerts: CRITICAL health below 30, HIGH MQTT broker connection lost, MEDIUM health calculation failure, LOW heartbeat timeout over 5 minutes. One open alert per type and subject.';
comment on constraint alert_deliveries_rule_fkey on iot.alert_deliveries is E'@fieldName rule\n@foreignFieldName deliveries';
comment on constraint system_alerts_work_center_fkey on iot.system_alerts is E'@fieldName workCenter\n@foreignFieldName systemAlerts';
comment on constraint system_alerts_iot_device_fkey on iot.system_alerts is E'@fieldName iotDevice\n@foreignFieldName systemAlerts';
comment on constraint alert_routing_rules_tenant_fkey on iot.alert_routing_rules is '@omit';
comment on constraint alert_deliveries_tenant_fkey on iot.alert_deliveries is '@omit';
comment on constraint system_alerts_tenant_fkey on iot.system_alerts is '@omit';

grant select on iot.alert_routing_rules, iot.alert_deliveries, iot.system_alerts to iot_operator, iot_analyst;
grant insert (name, source, event_types, min_severity, urgencies, channel, recipients, is_enabled),
      update (name, source, event_types, min_severity, urgencies, channel, recipients, is_enabled),
      delete
  on iot.alert_routing_rules to iot_operator;
grant execute on function iot.alert_severity_rank(text) to iot_operator, iot_analyst;
grant execute on function iot.resolve_system_alert(uuid) to iot_operator;

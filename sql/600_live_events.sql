-- Live events (issue 8): every change a dashboard shows is a NOTIFY from the database, on the
-- tenant's channel '<prefix>:<key>' (sql/060_notify_channels.sql), so any number of API instances
-- deliver them without Redis. The shapes are the live-events contract of issue 8 (API: src/server/plugins/live/):
--   iot_health         a new health score row          (row trigger here)
--   iot_alerts         a predictive-maintenance alert created or its status/severity/urgency changed
--   iot_spc            an SPC measurement batch (sql/110_ingest.sql) or a new SPC alert (trigger here)
--   iot_live_readings  latest readings per device, at most once per live_reading_interval_ms (110)
--   iot_events         a new equipment event (sql/300_telemetry_api.sql)
-- Rows travel as to_jsonb() of the row as the named iot.* relation exposes it (snake_case columns).
-- Every payload carries its routing keys (tenantId, facilityId, workCenterId, deviceId,
-- parameterCode) at top level, so the API filters subscribers without a query.

-- Settings ---------------------------------------------------------------------------------------
-- live_reading_interval_ms: LIVE_READING_INTERVAL_MS, written at every migrate (src/lib/db/migrate.ts).
insert into iot_private.settings (key, value) values ('live_reading_interval_ms', '1000')
on conflict (key) do nothing;

-- Read by every ingest batch, so a bad value is refused when written, never met by a batch.
create or replace function iot_private.tg_settings__check_live_settings() returns trigger
  language plpgsql
  set search_path = pg_catalog, pg_temp
as $$
begin
  if new.key = 'live_reading_interval_ms'
     and (case when new.value ~ '^\s*[0-9]{1,7}\s*$' then new.value::integer not between 100 and 3600000 else true end) then
    raise exception 'setting live_reading_interval_ms must be a whole number of milliseconds from 100 to 3600000, not %', new.value
      using errcode = '22023';
  end if;
  return new;
end
$$;
comment on function iot_private.tg_settings__check_live_settings() is
  'Refuses a live_reading_interval_ms setting outside 100..3600000 ms, naming the key.';
drop trigger if exists _220_check_live_settings on iot_private.settings;
create trigger _220_check_live_settings before insert or update on iot_private.settings
  for each row execute function iot_private.tg_settings__check_live_settings();

create or replace function iot_private.live_reading_interval() returns interval
  language sql stable
  set search_path = pg_catalog, pg_temp
as $$
  select make_interval(secs => coalesce(
    (select s.value::integer from iot_private.settings s where s.key = 'live_reading_interval_ms'), 1000) / 1000.0)
$$;
comment on function iot_private.live_reading_interval() is
  'Shortest time between two live-readings notices of one device (setting live_reading_interval_ms, default 1000 ms).';

-- Sending ---------------------------------------------------------------------------------------
-- NOTIFY refuses payloads of 8000 bytes and more. Anything of 7,900 bytes or more is parked in the
-- outbox and the notice carries its id, the payload's small top-level values (the routing keys,
-- change, critical...) and "kind" (the payload's own kind, else the channel prefix), so the API can
-- still filter before it fetches. The ingest batch sends its inline notices itself (no function
-- call per notice) and calls park_live_event only for the big ones; triggers use notify_live_event.
create or replace function iot_private.park_live_event(prefix text, tenant uuid, payload jsonb) returns text
  language plpgsql volatile security definer
  set search_path = pg_catalog, pg_temp
as $$
declare
  box bigint;
begin
  insert into iot_private.live_event_outbox (tenant_id, kind, payload) values (tenant, prefix, payload) returning id into box;
  return (coalesce((select jsonb_object_agg(e.key, e.value) from jsonb_each(payload) e
                    where jsonb_typeof(e.value) in ('string', 'number', 'boolean', 'null') and octet_length(e.value::text) <= 200), '{}')
          || jsonb_build_object('outbox', box, 'kind', coalesce(payload ->> 'kind', prefix)))::text;
end
$$;
comment on function iot_private.park_live_event(text, uuid, jsonb) is
  'Stores a live-event payload too big for NOTIFY in iot_private.live_event_outbox; returns the notice to send instead: {"outbox": id, "kind", the payload''s small top-level values}.';
revoke all on function iot_private.park_live_event(text, uuid, jsonb) from public;

create or replace function iot_private.notify_live_event(prefix text, tenant uuid, payload jsonb) returns bigint
  language plpgsql volatile security definer
  set search_path = pg_catalog, pg_temp
as $$
declare
  body text := payload::text;
  notice text;
begin
  if octet_length(body) < 7900 then
    perform pg_notify(iot_private.notify_channel(prefix, tenant), body);
    return null;
  end if;
  notice := iot_private.park_live_event(prefix, tenant, payload);
  perform pg_notify(iot_private.notify_channel(prefix, tenant), notice);
  return (notice::jsonb ->> 'outbox')::bigint;
end
$$;
comment on function iot_private.notify_live_event(text, uuid, jsonb) is
  'NOTIFYs a live event on the tenant''s <prefix> channel; a payload of 7,900 bytes or more is parked (iot_private.park_live_event) and NOTIFYed as {"outbox": id, "kind", routing keys}. Returns the outbox id or null.';
revoke all on function iot_private.notify_live_event(text, uuid, jsonb) from public;

create or replace function iot_private.live_event_payload(event_id bigint) returns jsonb
  language sql stable security definer
  set search_path = pg_catalog, pg_temp
as $$ select o.payload from iot_private.live_event_outbox o where o.id = event_id $$;
comment on function iot_private.live_event_payload(bigint) is
  'The payload of an outbox notice ({"outbox": id}), as if it had come in the NOTIFY; null once pruned. For the API owner only.';
revoke all on function iot_private.live_event_payload(bigint) from public;

create or replace function iot_private.prune_live_event_outbox(older_than interval) returns integer
  language sql volatile
  set search_path = pg_catalog, pg_temp
as $$
  with gone as (
    delete from iot_private.live_event_outbox o where o.created_at < now() - older_than returning 1
  )
  select count(*)::integer from gone
$$;
comment on function iot_private.prune_live_event_outbox(interval) is
  'Deletes outbox payloads created more than older_than ago (job live_events__prune, hourly); returns how many.';
revoke all on function iot_private.prune_live_event_outbox(interval) from public;

-- NOTIFY's queue (8 GB by default) fills when a listener stops reading; at 1.0 NOTIFY fails.
create or replace function iot.notification_queue_usage() returns double precision
  language sql volatile
  set search_path = pg_catalog, pg_temp
as $$ select pg_notification_queue_usage() $$;
comment on function iot.notification_queue_usage() is
  E'@omit\nFill of PostgreSQL''s NOTIFY queue, 0 to 1 (pg_notification_queue_usage()); a metric of the API.';

-- Trailing notices for live readings -----------------------------------------------------------
-- A batch held back by the interval is counted into the device's next notice; a device that falls
-- silent right after one would leave dashboards a value behind. This sends, for every device whose
-- readings were held back, whose last notice is at least the interval old and which has been quiet
-- (no batch: iot_devices.last_heartbeat) for at least the interval too, one notice with the latest
-- reading of each of its sensor types (of the last day) and the count held back. The quiet rule
-- keeps a device that reports more often than the interval on fresh leading-edge notices from its
-- own batches: flushing it would send values up to an interval old instead. Rows a running batch
-- holds are skipped (next run). Called by every API instance that has sensorReadingUpdated
-- subscribers, an interval after a batch and at most twice per interval (src/server/plugins/live/flush.ts),
-- and by the job live_events__flush every minute; one caller at a time scans (advisory lock).
create or replace function iot_private.flush_live_readings() returns integer
  language plpgsql volatile
  set search_path = pg_catalog, pg_temp
as $$
declare
  sent integer;
  quiet constant interval := iot_private.live_reading_interval();
begin
  -- Another caller (another API instance, the minute job) is scanning right now: it sends them.
  if not pg_try_advisory_xact_lock(hashtextextended('iot_private.flush_live_readings', 0)) then
    return 0;
  end if;
  with due as (
    select st.device_id, st.pending_count
    from iot_private.live_reading_state st
    join iot.iot_devices d on d.id = st.device_id
    where not st.notified and st.pending_count > 0 and st.last_notified_at <= now() - quiet
      and (d.last_heartbeat is null or d.last_heartbeat <= now() - quiet)
    order by st.device_id
    for update of st skip locked
  ), marked as (
    update iot_private.live_reading_state st set notified = true, last_notified_at = now()
    from due where st.device_id = due.device_id
    returning st.device_id
  ), latest as (
    select d.id as device_id, d.tenant_id, d.facility_id, d.work_center_id, due.pending_count,
           jsonb_agg(jsonb_build_object(
             'id', md5(r.device_id::text || '/' || r.sensor_type || '/' || (extract(epoch from r.time) * 1000000)::bigint::text)::uuid,
             'tenant_id', r.tenant_id, 'iot_device_id', r.device_id, 'reading_timestamp', r.time, 'sensor_type', r.sensor_type,
             'reading_value', r.value, 'unit_of_measure', r.unit, 'quality', r.quality, 'production_run_id', r.production_run_id,
             'metadata', r.metadata) order by r.sensor_type) as readings
    from due
    join marked m on m.device_id = due.device_id
    join iot.iot_devices d on d.id = due.device_id
    join iot.device_channels c on c.device_id = d.id
    cross join lateral (
      select x.* from iot_private.sensor_readings x
      where x.device_id = c.device_id and x.sensor_type = c.sensor_type and x.time > now() - interval '1 day'
      order by x.time desc limit 1
    ) r
    group by d.id, d.tenant_id, d.facility_id, d.work_center_id, due.pending_count
  )
  select count(*)::integer into sent
  from (
    select iot_private.notify_live_event('iot_live_readings', l.tenant_id, jsonb_build_object(
             'tenantId', l.tenant_id, 'facilityId', l.facility_id, 'workCenterId', l.work_center_id, 'deviceId', l.device_id,
             'count', l.pending_count, 'readings', l.readings)) as outbox_id  -- volatile: kept, run once per row
    from latest l
  ) n;
  return sent;
end
$$;
comment on function iot_private.flush_live_readings() is
  'Sends the live-readings notice held back by the interval for devices quiet for at least the interval since (latest value per sensor type, count held back); returns the notices sent (0 when another caller is scanning). Called by the API an interval after a batch (at most twice per interval), and by a job every minute.';
revoke all on function iot_private.flush_live_readings() from public;

-- SPC parameter codes ----------------------------------------------------------------------------
-- A control chart keeps its name when its limits are recomputed: a new limit without a code takes
-- the code of its channel's latest limit, else <device_code>.<SENSOR_TYPE>.
create or replace function iot_private.tg_spc_control_limits__default_parameter_code() returns trigger
  language plpgsql security definer
  set search_path = pg_catalog, pg_temp
as $$
begin
  if new.parameter_code is null then
    new.parameter_code := coalesce(
      (select l.parameter_code from iot.spc_control_limits l
        where l.channel_id = new.channel_id and l.tenant_id = new.tenant_id order by l.created_at desc limit 1),
      (select d.device_code || '.' || c.sensor_type from iot.device_channels c join iot.iot_devices d on d.id = c.device_id
        where c.id = new.channel_id and c.tenant_id = new.tenant_id));
  end if;
  return new;
end
$$;
comment on function iot_private.tg_spc_control_limits__default_parameter_code() is
  'Fills spc_control_limits.parameter_code when not given: the channel''s previous code, else <device_code>.<SENSOR_TYPE>.';
drop trigger if exists _100_default_parameter_code on iot.spc_control_limits;
create trigger _100_default_parameter_code before insert on iot.spc_control_limits
  for each row execute function iot_private.tg_spc_control_limits__default_parameter_code();

-- Health scores: one notice per new row (about one per work center per 15 minutes) --------------
create or replace function iot_private.tg_equipment_health_scores__notify() returns trigger
  language plpgsql security definer
  set search_path = pg_catalog, pg_temp
as $$
declare
  previous text;
begin
  -- The work center's score before this one; rows of the same statement are visible here.
  select h.health_status into previous
  from iot_private.equipment_health_scores h
  where h.work_center_id = new.work_center_id and h.score_timestamp < new.score_timestamp
  order by h.score_timestamp desc limit 1;
  perform iot_private.notify_live_event('iot_health', new.tenant_id, jsonb_build_object(
    'tenantId', new.tenant_id,
    'facilityId', (select w.facility_id from iot.work_centers w where w.id = new.work_center_id),
    'workCenterId', new.work_center_id,
    'score', to_jsonb(jsonb_populate_record(null::iot.equipment_health_scores, to_jsonb(new))),
    'previousStatus', previous,
    -- The first score of a work center changes nothing: there was no status before.
    'statusChanged', previous is not null and previous is distinct from new.health_status));
  return null;
end
$$;
comment on function iot_private.tg_equipment_health_scores__notify() is
  'NOTIFYs iot_health with the new score (as iot.equipment_health_scores shows it), the previous status and whether it changed.';
drop trigger if exists _900_notify on iot_private.equipment_health_scores;
create trigger _900_notify after insert on iot_private.equipment_health_scores
  for each row execute function iot_private.tg_equipment_health_scores__notify();

-- Predictive-maintenance alerts -----------------------------------------------------------------
-- Deferred to commit and re-reading the row: a workflow step writes in two statements (the status,
-- then scheduled_for or the resolution), and dashboards must get the row as committed. The WHEN
-- clause keeps updates that change nothing relevant (a re-raise with the same status, severity and
-- urgency) from queuing anything.
create or replace function iot_private.tg_predictive_maintenance_alerts__notify() returns trigger
  language plpgsql security definer
  set search_path = pg_catalog, pg_temp
as $$
declare
  a iot.predictive_maintenance_alerts;
  critical boolean;
  was_critical boolean := tg_op = 'UPDATE' and (old.severity = 'CRITICAL' or old.urgency = 'IMMEDIATE');
begin
  select * into a from iot.predictive_maintenance_alerts x where x.id = new.id;
  if a.id is null then
    return null;  -- deleted later in the same transaction: nothing to show
  end if;
  critical := a.severity = 'CRITICAL' or a.urgency = 'IMMEDIATE';
  perform iot_private.notify_live_event('iot_alerts', a.tenant_id, jsonb_build_object(
    'tenantId', a.tenant_id,
    'facilityId', (select w.facility_id from iot.work_centers w where w.id = a.work_center_id),
    'workCenterId', a.work_center_id,
    'change', case when tg_op = 'INSERT' then 'CREATED'
                   when new.status is distinct from old.status and new.status in ('ACKNOWLEDGED', 'SCHEDULED', 'IN_PROGRESS', 'RESOLVED')
                     then new.status
                   else 'UPDATED' end,
    'previousStatus', case when tg_op = 'UPDATE' then old.status end,
    'alert', to_jsonb(a),
    'critical', critical,
    'becameCritical', critical and not was_critical));
  return null;
end
$$;
comment on function iot_private.tg_predictive_maintenance_alerts__notify() is
  'At commit, NOTIFYs iot_alerts with the alert as committed, the change (CREATED, ACKNOWLEDGED, SCHEDULED, IN_PROGRESS, RESOLVED, UPDATED), the previous status and whether it is (or just became) critical.';
drop trigger if exists _900_notify_created on iot.predictive_maintenance_alerts;
create constraint trigger _900_notify_created after insert on iot.predictive_maintenance_alerts
  deferrable initially deferred
  for each row execute function iot_private.tg_predictive_maintenance_alerts__notify();
drop trigger if exists _900_notify_changed on iot.predictive_maintenance_alerts;
create constraint trigger _900_notify_changed after update on iot.predictive_maintenance_alerts
  deferrable initially deferred
  for each row
  when ((old.status, old.severity, old.urgency) is distinct from (new.status, new.severity, new.urgency))
  execute function iot_private.tg_predictive_maintenance_alerts__notify();

-- SPC alerts -------------------------------------------------------------------------------------
create or replace function iot_private.tg_spc_alerts__notify() returns trigger
  language plpgsql security definer
  set search_path = pg_catalog, pg_temp
as $$
declare
  info record;
begin
  select l.parameter_code, c.device_id, w.facility_id into info
  from iot.spc_control_limits l
  join iot.device_channels c on c.id = l.channel_id
  join iot.work_centers w on w.id = new.work_center_id
  where l.id = new.control_limit_id;
  perform iot_private.notify_live_event('iot_spc', new.tenant_id, jsonb_build_object(
    'kind', 'alert',
    'tenantId', new.tenant_id,
    'facilityId', info.facility_id,
    'workCenterId', new.work_center_id,
    'deviceId', info.device_id,
    'parameterCode', info.parameter_code,
    'controlLimitId', new.control_limit_id,
    'alert', to_jsonb(new)));
  return null;
end
$$;
comment on function iot_private.tg_spc_alerts__notify() is
  'NOTIFYs iot_spc with {kind: alert, routing keys, alert: the iot.spc_alerts row} for each new SPC alert.';
drop trigger if exists _900_notify on iot.spc_alerts;
create trigger _900_notify after insert on iot.spc_alerts
  for each row execute function iot_private.tg_spc_alerts__notify();

-- SPC zones for measurement points (sql/110_ingest.sql): C within 1 sigma of the center line,
-- B 1-2 sigma, A beyond 2 (a point beyond 3 sigma is still '+A'/'-A', with outOfControl true);
-- the boundaries belong to the inner zone, as in the Western Electric rules ("beyond 1 sigma").
-- No SET clause: a SET makes every call save and restore settings (tens of microseconds, per point
-- of every batch); without it this one-expression function is inlined into the batch's query.
create or replace function iot_private.spc_zone(z double precision) returns text
  language sql immutable parallel safe
as $$
  select case when z < 0 then '-' else '+' end
      || case when pg_catalog.abs(z) <= 1 then 'C' when pg_catalog.abs(z) <= 2 then 'B' else 'A' end
$$;
comment on function iot_private.spc_zone(double precision) is
  'SPC zone of a point z sigmas from the center line: +C/-C (|z| <= 1), +B/-B (<= 2), +A/-A (beyond).';

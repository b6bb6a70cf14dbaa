-- Telemetry for the API and analysts: tenant-filtered views and functions over iot_private.
-- Hypertables cannot carry RLS, so every view here filters by iot.current_tenant_ids() itself.
-- Views are security barriers so a caller's predicates cannot peek past the tenant filter.

-- The seed's names. A reading's id is derived from its identity (device, sensor type, time) rather
-- than stored: the raw table stays narrow for COPY, and a redelivered reading keeps its id.
create or replace view iot.sensor_readings with (security_barrier) as
  select md5(r.device_id::text || '/' || r.sensor_type || '/' || (extract(epoch from r.time) * 1000000)::bigint::text)::uuid as id,
         r.tenant_id, r.device_id as iot_device_id, r.time as reading_timestamp, r.sensor_type,
         r.value as reading_value, r.unit as unit_of_measure, r.quality, r.production_run_id, r.metadata
  from iot_private.sensor_readings r
  where r.tenant_id = any ((select iot.current_tenant_ids())::uuid[]);
comment on view iot.sensor_readings is E'@omit all,create,update,delete\n@foreignKey (iot_device_id) references iot.iot_devices (id)|@fieldName device|@foreignFieldName sensorReadings\nRaw readings of the caller''s tenant. Page with first/last (capped); use deviceReadings or sensorHistory for time ranges.';
comment on column iot.sensor_readings.id is 'Derived from (iot_device_id, sensor_type, reading_timestamp), the reading''s identity; not indexed: look readings up by device and time.';
comment on column iot.sensor_readings.quality is 'GOOD, UNCERTAIN or BAD (field words such as VERIFIED or OPC UA status names are mapped; the raw word is in metadata).';
comment on column iot.sensor_readings.production_run_id is 'The production run active on the work center at reading_timestamp.';

do $$
declare
  g text;
begin
  foreach g in array array['1m', '1h', '1d'] loop
    execute format($v$
      create or replace view iot.%1$I with (security_barrier) as
      select r.bucket, r.tenant_id, d.work_center_id, r.device_id, d.device_code, r.sensor_type,
             r.reading_count,
             r.value_sum / r.reading_count as avg_value,
             r.value_min as min_value,
             r.value_max as max_value,
             case when r.reading_count > 1 then
               sqrt(greatest(r.value_sum_sq - r.value_sum * r.value_sum / r.reading_count, 0) / (r.reading_count - 1))
             end as stddev_value,
             r.value_sum, r.value_sum_sq
      from iot_private.%1$I r
      join iot.iot_devices d on d.id = r.device_id
      where r.tenant_id = any ((select iot.current_tenant_ids())::uuid[])$v$, 'sensor_readings_' || g);
    execute format($c$comment on view iot.%I is %L$c$, 'sensor_readings_' || g,
      format(E'@omit all,create,update,delete\nPer-%s rollup of readings (count, avg, min, max, stddev) for the caller''s tenants. Same columns on every TimescaleDB tier; current up to the latest reading.', g));
  end loop;
end $$;

-- Error IOT03: a telemetry time range that is backwards or too long. (In iot so that callers of
-- the telemetry functions can run it; hidden from GraphQL.)
create or replace function iot.check_time_range(since timestamptz, until timestamptz, max_span interval)
  returns void language plpgsql immutable
  set search_path = pg_catalog, pg_temp
as $$
begin
  if since is null or until is null then
    raise exception 'a time range needs both since and until' using errcode = 'IOT03';
  end if;
  if until < since then
    raise exception 'time range is backwards: since % is after until %', since, until using errcode = 'IOT03';
  end if;
  if until - since > max_span then
    raise exception 'time range % to % is longer than % (use a rollup)', since, until, max_span using errcode = 'IOT03';
  end if;
end
$$;
comment on function iot.check_time_range(timestamptz, timestamptz, interval) is '@omit';

create or replace function iot.device_readings(
  device_id uuid, since timestamptz, until timestamptz default now(), sensor_type text default null)
  returns setof iot.sensor_readings
  language plpgsql stable
  set search_path = pg_catalog, pg_temp
as $$
begin
  perform iot.check_time_range(since, until, interval '7 days');
  return query
    select r.* from iot.sensor_readings r
    where r.iot_device_id = device_readings.device_id
      and r.reading_timestamp >= since and r.reading_timestamp <= until
      and (device_readings.sensor_type is null or r.sensor_type = upper(device_readings.sensor_type))
    order by r.reading_timestamp desc;
end
$$;
comment on function iot.device_readings(uuid, timestamptz, timestamptz, text) is
  'Raw readings of one device (optionally one sensor type), newest first, over at most 7 days. Page with first/after.';

do $$
begin
  create type iot.sensor_history_point as (
    bucket timestamptz,
    reading_count bigint,
    avg_value double precision,
    min_value double precision,
    max_value double precision
  );
exception when duplicate_object then
  null;
end $$;

-- A chart series for one channel at a resolution that fits the range: raw under 2 hours,
-- then 1-minute, 1-hour and 1-day rollups.
create or replace function iot.sensor_history(
  device_id uuid, sensor_type text, since timestamptz, until timestamptz default now(), resolution text default 'auto')
  returns setof iot.sensor_history_point
  language plpgsql stable
  set search_path = pg_catalog, pg_temp
as $$
declare
  res text := resolution;
begin
  perform iot.check_time_range(since, until, interval '3660 days');
  if res = 'auto' then
    res := case when until - since <= interval '2 hours' then 'raw'
                when until - since <= interval '2 days' then '1m'
                when until - since <= interval '90 days' then '1h'
                else '1d' end;
  end if;
  if res = 'raw' then
    perform iot.check_time_range(since, until, interval '1 day');
    return query select r.reading_timestamp, 1::bigint, r.reading_value, r.reading_value, r.reading_value
      from iot.sensor_readings r
      where r.iot_device_id = sensor_history.device_id and r.sensor_type = upper(sensor_history.sensor_type)
        and r.reading_timestamp >= since and r.reading_timestamp <= until order by r.reading_timestamp;
  elsif res in ('1m', '1h', '1d') then
    if res = '1m' then perform iot.check_time_range(since, until, interval '31 days'); end if;
    return query execute format(
      'select bucket, reading_count, avg_value, min_value, max_value from iot.%I
       where device_id = $1 and sensor_type = $2 and bucket >= $3 and bucket <= $4 order by bucket',
      'sensor_readings_' || res) using sensor_history.device_id, upper(sensor_history.sensor_type), since, until;
  else
    raise exception 'resolution must be auto, raw, 1m, 1h or 1d, not %', resolution using errcode = 'IOT03';
  end if;
end
$$;
comment on function iot.sensor_history(uuid, text, timestamptz, timestamptz, text) is
  'Chart series for one channel: resolution auto picks raw (<= 2 h), 1m (<= 2 d), 1h (<= 90 d) or 1d.';

-- Latest reading of a channel, as a computed field (deviceChannel.latestReading).
create or replace function iot.device_channels_latest_reading(c iot.device_channels)
  returns iot.sensor_readings
  language sql stable
  set search_path = pg_catalog, pg_temp
as $$
  select r.* from iot.sensor_readings r
  where r.iot_device_id = c.device_id and r.sensor_type = c.sensor_type
    and r.reading_timestamp > now() - interval '7 days'
  order by r.reading_timestamp desc limit 1
$$;

-- Equipment events --------------------------------------------------------------------------
create or replace view iot.equipment_events with (security_barrier) as
  select e.id, e.tenant_id, e.work_center_id, e.iot_device_id, e.event_timestamp, e.event_type, e.event_code,
         e.event_description, e.severity, e.production_run_id, e.metadata, e.acknowledged, e.sensor_type,
         e.acknowledged_by, e.acknowledged_at
  from iot_private.equipment_events e
  where e.tenant_id = any ((select iot.current_tenant_ids())::uuid[]);
comment on view iot.equipment_events is E'@omit create,update,delete\n@primaryKey id\n@foreignKey (work_center_id) references iot.work_centers (id)|@fieldName workCenter|@foreignFieldName equipmentEvents\n@foreignKey (iot_device_id) references iot.iot_devices (id)|@fieldName device|@foreignFieldName equipmentEvents\nEquipment events of the caller''s tenant. Raise with recordEquipmentEvent, acknowledge with acknowledgeEquipmentEvent.';
comment on column iot.equipment_events.severity is 'INFO, WARNING, ERROR or CRITICAL.';
comment on column iot.equipment_events.production_run_id is 'The production run active on the work center when the event happened.';

-- Who is acting: the JWT subject for API users, the SQL login otherwise.
create or replace function iot.current_actor() returns text
  language sql stable
  set search_path = pg_catalog, pg_temp
as $$ select coalesce(nullif(current_setting('jwt.claims.sub', true), ''), session_user::text) $$;

-- Error IOT04: the row does not exist or belongs to another tenant (deliberately indistinguishable).
create or replace function iot.acknowledge_equipment_event(event_id uuid) returns iot.equipment_events
  language plpgsql volatile security definer
  set search_path = pg_catalog, pg_temp
as $$
declare
  result iot.equipment_events;
begin
  update iot_private.equipment_events e
     set acknowledged = true, acknowledged_by = iot.current_actor(), acknowledged_at = now()
   where e.id = event_id and e.tenant_id = any (iot.current_tenant_ids()) and not e.acknowledged;
  select * into result from iot.equipment_events v where v.id = event_id;
  if result.id is null then
    raise exception 'equipment event % not found', event_id using errcode = 'IOT04';
  end if;
  return result;
end
$$;
comment on function iot.acknowledge_equipment_event(uuid) is 'Marks an event acknowledged by the caller. Acknowledging twice keeps the first acknowledgement.';

create or replace function iot.record_equipment_event(
  work_center_id uuid, event_type text, event_description text, severity text default 'INFO',
  metadata jsonb default '{}', event_code text default null, iot_device_id uuid default null)
  returns iot.equipment_events
  language plpgsql volatile security definer
  set search_path = pg_catalog, pg_temp
as $$
declare
  wc iot.work_centers;
  result iot.equipment_events;
begin
  select * into wc from iot.work_centers w
   where w.id = record_equipment_event.work_center_id and w.tenant_id = any (iot.current_tenant_ids());
  if wc.id is null then
    raise exception 'work center % not found', work_center_id using errcode = 'IOT04';
  end if;
  if record_equipment_event.iot_device_id is not null and not exists (
       select 1 from iot.iot_devices d where d.id = record_equipment_event.iot_device_id and d.work_center_id = wc.id) then
    raise exception 'device % not found on work center %', iot_device_id, wc.id using errcode = 'IOT04';
  end if;
  perform iot_private.ensure_partitions('equipment_events', now(), now());
  insert into iot_private.equipment_events
    (tenant_id, work_center_id, iot_device_id, event_type, event_code, severity, event_description, metadata)
  values (wc.tenant_id, wc.id, record_equipment_event.iot_device_id, upper(event_type),
          coalesce(upper(record_equipment_event.event_code), upper(event_type)), upper(severity), event_description,
          coalesce(record_equipment_event.metadata, '{}'))
  returning id into result.id;
  select * into result from iot.equipment_events v where v.id = result.id;
  return result;
end
$$;
comment on function iot.record_equipment_event(uuid, text, text, text, jsonb, text, uuid) is
  'Records an operator event (STARTUP, SHUTDOWN, MAINTENANCE_REQUIRED...) on a work center; severity INFO, WARNING, ERROR or CRITICAL.';

-- Every event carries the production run active on its work center at its time. Events are rare
-- by construction (one per excursion), so a row trigger here is not a per-reading trigger.
create or replace function iot_private.tg_equipment_events__set_production_run() returns trigger
  language plpgsql
  set search_path = pg_catalog, pg_temp
as $$
begin
  if new.production_run_id is null then
    select r.id into new.production_run_id
    from iot.production_runs r
    where r.work_center_id = new.work_center_id and r.tenant_id = new.tenant_id and r.status <> 'CANCELLED'
      and r.actual_start <= new.event_timestamp and (r.actual_end is null or r.actual_end > new.event_timestamp)
    order by r.actual_start desc limit 1;
  end if;
  return new;
end
$$;
drop trigger if exists _100_set_production_run on iot_private.equipment_events;
create trigger _100_set_production_run before insert on iot_private.equipment_events
  for each row execute function iot_private.tg_equipment_events__set_production_run();

-- Every new event is pushed to subscribers of its tenant. Events are rare by construction
-- (one per excursion), so a row trigger here is not a per-reading trigger. The channel carries the
-- tenant's random key (sql/060_notify_channels.sql), never its id, so no SQL login can listen in.
-- Security definer: the key lives in iot_private, whoever inserts the event.
create or replace function iot_private.tg_equipment_events__notify() returns trigger
  language plpgsql security definer
  set search_path = pg_catalog, pg_temp
as $$
begin
  -- Threshold and anomaly events make the work center's health worth recomputing soon; the job
  -- key coalesces a burst of events into one job per work center.
  if new.event_type in ('SENSOR_OUT_OF_RANGE', 'ANOMALY_DETECTED') and to_regnamespace('graphile_worker') is not null then
    perform graphile_worker.add_job('health__calculate_scores', json_build_object('workCenterId', new.work_center_id),
                                    run_at := now() + interval '1 minute', job_key := 'health:' || new.work_center_id,
                                    max_attempts := 3);
  end if;
  -- The live-events shape (sql/600_live_events.sql): routing keys and the row as iot.equipment_events
  -- shows it; the flat keys of the earlier notice are kept beside them for existing listeners.
  perform iot_private.notify_live_event('iot_events', new.tenant_id, jsonb_build_object(
    'tenantId', new.tenant_id,
    'facilityId', (select w.facility_id from iot.work_centers w where w.id = new.work_center_id),
    'workCenterId', new.work_center_id,
    'deviceId', new.iot_device_id,
    'event', to_jsonb(jsonb_populate_record(null::iot.equipment_events, to_jsonb(new))),
    'id', new.id, 'eventTimestamp', new.event_timestamp, 'iotDeviceId', new.iot_device_id, 'sensorType', new.sensor_type,
    'eventType', new.event_type, 'eventCode', new.event_code, 'severity', new.severity,
    'eventDescription', new.event_description, 'productionRunId', new.production_run_id));
  return null;
end
$$;
drop trigger if exists _900_notify on iot_private.equipment_events;
create trigger _900_notify after insert on iot_private.equipment_events
  for each row execute function iot_private.tg_equipment_events__notify();

-- Health scores (computed by the health jobs) ------------------------------------------------
create or replace view iot.equipment_health_scores with (security_barrier) as
  select h.id, h.tenant_id, h.work_center_id, h.score_timestamp, h.overall_health_score, h.health_status,
         h.sensor_health_score, h.oee_health_score, h.quality_health_score, h.reliability_health_score,
         h.performance_health_score, h.anomaly_detected, h.anomaly_severity, h.anomaly_type,
         h.health_score_7d_avg, h.health_score_30d_avg, h.health_score_change_7d, h.trend_direction,
         h.risk_factors, h.recommended_action, h.details
  from iot_private.equipment_health_scores h
  where h.tenant_id = any ((select iot.current_tenant_ids())::uuid[]);
comment on view iot.equipment_health_scores is E'@omit all,create,update,delete\n@primaryKey id\n@foreignKey (work_center_id) references iot.work_centers (id)|@fieldName workCenter|@foreignFieldName equipmentHealthScores\nHealth score history per work center.';

-- Dead letters of the caller's tenant (those whose facility could be resolved).
create or replace view iot.ingest_dead_letters with (security_barrier) as
  select d.id, d.received_at, d.tenant_id, d.source, d.topic, d.payload, d.reason
  from iot_private.ingest_dead_letters d
  where d.tenant_id = any ((select iot.current_tenant_ids())::uuid[]);
comment on view iot.ingest_dead_letters is E'@omit create,update,delete\n@primaryKey id\nPayloads that could not be stored, with the reason.';

-- The one way telemetry gets in. The sink (src/ingest/sink.ts) COPYs a batch into the session's
-- temporary table pg_temp.reading_staging and calls iot_private.ingest_staged_readings() in the
-- same transaction. Everything per batch is set-based: one insert, one heartbeat update, one
-- NOTIFY per tenant. (A statement-level trigger with transition tables would be the textbook place,
-- but TimescaleDB refuses transition tables on hypertables, so the batch function does it.)

create or replace function iot_private.create_reading_staging() returns void
  language plpgsql
  set search_path = pg_catalog, pg_temp
as $$
begin
  create temporary table if not exists reading_staging (
    time        timestamptz not null,
    tenant_id   uuid not null,
    device_id   uuid not null,
    sensor_type text not null,
    value       double precision not null,
    unit        text not null,
    quality     text not null,
    metadata    jsonb
  ) on commit delete rows;
  -- A session that made the table before metadata existed (an upgrade under a running ingestor).
  alter table pg_temp.reading_staging add column if not exists metadata jsonb;
end
$$;

create or replace function iot_private.ingest_staged_readings(
  out inserted bigint, out duplicates bigint, out rejected bigint)
  language plpgsql
  set search_path = pg_catalog, pg_temp
  set jit = off  -- compiling these plans costs more than running them, every batch
as $$
declare
  lo timestamptz;
  hi timestamptz;
  staged bigint;
begin
  select min(time), max(time), count(*) into lo, hi, staged from pg_temp.reading_staging;
  if staged = 0 then
    inserted := 0; duplicates := 0; rejected := 0;
    return;
  end if;
  if iot.timescale_tier() = 3 then
    perform iot_private.ensure_partitions('sensor_readings', lo, hi);
  end if;
  if lo < now() - interval '30 seconds' then
    -- Late readings: hold the rollup refresher off until this batch commits (it takes this lock
    -- exclusively), then mark the rolled-up range stale so the next refresh recomputes it.
    perform pg_advisory_xact_lock_shared(hashtext('iot_private.refresh_rollups'));
    perform iot_private.invalidate_rollups(lo, hi);
  end if;

  -- The ingestor's registry cache may be a moment behind: rows whose channel was removed or
  -- deactivated since are moved to dead letters, not stored and not lost.
  with orphans as (
    delete from pg_temp.reading_staging s
    where not exists (
      select 1
      from iot.device_channels c
      join iot.iot_devices d on d.id = c.device_id
      where c.device_id = s.device_id and c.sensor_type = s.sensor_type
        and c.is_active and d.is_active
    )
    returning s.*
  ), dead as (
    insert into iot_private.ingest_dead_letters (tenant_id, source, payload, reason)
    select tenant_id, 'SINK',
           json_build_object('deviceId', device_id, 'sensorType', sensor_type, 'value', value, 'timestamp', time,
                             'metadata', metadata)::text,
           format('channel %s of device %s is not registered or not active', sensor_type, device_id)
    from orphans
    returning 1
  )
  select count(*) into rejected from dead;

  -- production_run_id: the run active on the reading's work center at its time. The batch's few
  -- work centers and their runs overlapping [lo, hi] are found once; each reading then picks the
  -- latest-started of them that covers its time.
  with batch_devices as (
    select d.id as device_id, d.work_center_id
    from iot.iot_devices d
    where d.id in (select distinct s.device_id from pg_temp.reading_staging s)
  ), runs as materialized (  -- a handful of rows, scanned per reading: keep it computed once
    select r.id, b.device_id, r.actual_start, coalesce(r.actual_end, 'infinity') as actual_end
    from iot.production_runs r
    join batch_devices b on b.work_center_id = r.work_center_id
    where r.actual_start <= hi and (r.actual_end is null or r.actual_end > lo) and r.status <> 'CANCELLED'
  ), ins as (
    insert into iot_private.sensor_readings (time, tenant_id, device_id, sensor_type, value, unit, quality, production_run_id, metadata)
    select s.time, s.tenant_id, s.device_id, s.sensor_type, s.value, s.unit, s.quality,
           (select r.id from runs r
             where r.device_id = s.device_id and s.time >= r.actual_start and s.time < r.actual_end
             order by r.actual_start desc limit 1),
           s.metadata
    from pg_temp.reading_staging s
    on conflict do nothing
    returning tenant_id, device_id, time
  ), per_device as (
    select tenant_id, device_id, count(*) as n, min(time) as first_time, max(time) as last_time
    from ins group by tenant_id, device_id
  ), locked as (
    -- Lock devices in id order so parallel sink writers never deadlock on heartbeats.
    select d.id from iot.iot_devices d
    where d.id in (select device_id from per_device) and d.last_heartbeat is distinct from now()
    order by d.id
    for no key update
  ), heartbeat as (
    update iot.iot_devices d set last_heartbeat = now()
    from locked l where d.id = l.id
  )
  -- One NOTIFY per tenant per batch (pg_notify is volatile, so the planner keeps it).
  select coalesce(sum(t.n), 0) into inserted
  from (
    select sum(n) as n,
           pg_notify('iot_readings:' || tenant_id, json_build_object(
             'tenantId', tenant_id, 'readingCount', sum(n), 'deviceCount', count(*),
             'firstTime', min(first_time), 'lastTime', max(last_time))::text) as notified
    from per_device group by tenant_id
  ) t;
  duplicates := staged - rejected - inserted;
  -- Threshold and anomaly events for this batch, set-based (sql/510_batch_events.sql).
  perform iot_private.detect_batch_events();
end
$$;
comment on function iot_private.ingest_staged_readings() is
  'Stores the batch in pg_temp.reading_staging: dead-letters orphans, inserts the rest once (duplicates skipped), updates heartbeats, NOTIFYs per tenant.';

-- Ingestors record what they could not parse or resolve, in one statement per batch.
create or replace function iot_private.record_dead_letters(
  sources text[], topics text[], payloads text[], reasons text[], tenant_ids uuid[])
  returns integer language sql
  set search_path = pg_catalog, pg_temp
as $$
  with ins as (
    insert into iot_private.ingest_dead_letters (source, topic, payload, reason, tenant_id)
    select * from unnest(sources, topics, payloads, reasons, tenant_ids)
    returning 1
  )
  select count(*)::integer from ins
$$;

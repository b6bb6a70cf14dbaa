-- The one way telemetry gets in. The sink (src/ingest/sink.ts) COPYs a batch into the session's
-- temporary table pg_temp.reading_staging and calls iot_private.ingest_staged_readings() in the
-- same transaction; it runs the event detector after the commit (sql/515_events_after_commit.sql).
-- Everything per batch is set-based: one insert, one heartbeat update, one NOTIFY per tenant, one
-- live-readings NOTIFY per device at most once per interval, one SPC measurement NOTIFY per active
-- control limit (sql/600_live_events.sql). (A statement-level trigger with transition tables
-- would be the textbook place, but TimescaleDB refuses transition tables on hypertables, so the
-- batch function does it.)

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

-- detect_events: false when the caller runs the event detector after the commit, in a transaction
-- of its own (the sink: sql/515_events_after_commit.sql), so the readings' NOTIFYs do not wait for it.
drop function if exists iot_private.ingest_staged_readings();  -- before detect_events existed
create or replace function iot_private.ingest_staged_readings(
  detect_events boolean default true, out inserted bigint, out duplicates bigint, out rejected bigint)
  language plpgsql
  set search_path = pg_catalog, pg_temp
  set jit = off  -- compiling these plans costs more than running them, every batch
as $$
declare
  lo timestamptz;
  hi timestamptz;
  staged bigint;
  live_interval interval;
  live_notices bigint;
  spc_notices bigint;
  any_runs boolean;
begin
  select min(time), max(time), count(*) into lo, hi, staged from pg_temp.reading_staging;
  if staged = 0 then
    inserted := 0; duplicates := 0; rejected := 0;
    return;
  end if;
  live_interval := iot_private.live_reading_interval();
  if iot.timescale_tier() = 3 then
    -- The partitions of the days the batch holds, not of the span between its oldest and newest
    -- reading: one reading dated 2001 beside today's makes one (coarse) partition, not 9,000.
    perform iot_private.ensure_partitions_for('sensor_readings',
      (select array_agg(distinct date_trunc('day', s.time, 'UTC')) from pg_temp.reading_staging s));
  elsif lo < now() - interval '92 days' then
    -- Tiers 1-2: coarse chunks for old days, likewise (sql/100_partitions.sql).
    perform iot_private.ensure_coarse_chunks('sensor_readings',
      (select array_agg(distinct date_trunc('day', s.time, 'UTC')) from pg_temp.reading_staging s
        where s.time < now() - interval '92 days'));
  end if;
  if lo < now() - interval '30 seconds' then
    -- Late readings: hold the rollup refresher off until this batch commits (it takes this lock
    -- exclusively), then mark the rolled-up ranges stale so the next refresh recomputes them: one
    -- range per day the batch holds, so a reading years old beside current ones does not make the
    -- refresher recompute every rollup in between.
    perform pg_advisory_xact_lock_shared(hashtext('iot_private.refresh_rollups'));
    perform iot_private.invalidate_rollups(min(s.time), max(s.time))
    from pg_temp.reading_staging s
    group by date_trunc('day', s.time, 'UTC');
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
    insert into iot_private.ingest_dead_letters (tenant_id, source, payload, reason, payload_bytes, payload_sha256,
                                                source_key, reason_class)
    select o.tenant_id, 'SINK', p.text,
           format('channel %s of device %s is not registered or not active', o.sensor_type, o.device_id),
           octet_length(p.text), encode(sha256(convert_to(p.text, 'UTF8')), 'hex'), 'device/' || o.device_id, 'registry'
    from orphans o
    cross join lateral (
      select json_build_object('deviceId', o.device_id, 'sensorType', o.sensor_type, 'value', o.value, 'timestamp', o.time,
                               'metadata', o.metadata)::text as text
    ) p
    returning 1
  )
  select count(*) into rejected from dead;

  -- production_run_id: the run active on the reading's work center at its time. The batch's few
  -- work centers and their runs overlapping [lo, hi] are found once; each reading then picks the
  -- latest-started of them that covers its time. Without any run overlapping the batch (checked
  -- first, one index probe per work center) no reading looks (a subquery per reading costs ~2 us).
  select exists (
    select 1 from iot.production_runs r
    where r.work_center_id in (select d.work_center_id from iot.iot_devices d
                               where d.id in (select distinct s.device_id from pg_temp.reading_staging s))
      and r.actual_start <= hi and (r.actual_end is null or r.actual_end > lo) and r.status <> 'CANCELLED')
    into any_runs;
  -- A plain insert: it costs a third less than one with ON CONFLICT, and nearly every batch holds
  -- only new readings. When one is stored already (a QoS 1 redelivery, a batch retried after a lost
  -- commit) or is in the batch twice, the insert fails as a whole: those readings leave the batch
  -- (the first staged of a pair stays) and the rest is stored. Each retry removes at least one
  -- (a writer storing the same reading at the same moment is waited for by the failed insert).
  <<store>>
  loop
    begin
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
               case when any_runs then
                 (select r.id from runs r
                   where r.device_id = s.device_id and s.time >= r.actual_start and s.time < r.actual_end
                   order by r.actual_start desc limit 1) end,
               s.metadata
        from pg_temp.reading_staging s
        returning tenant_id, device_id, time, sensor_type, value, unit, quality, production_run_id, metadata
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
        returning d.id, d.tenant_id, d.facility_id, d.work_center_id
      ), live_state as (
        -- Live readings (sql/600_live_events.sql): one state row per device, written once per batch
        -- and only after heartbeat holds the device's row lock (it feeds from heartbeat), so writers
        -- take the two locks in the same order. A device is due when its last notice is at least the
        -- interval old; readings of batches that were not due are counted into the next notice. (A
        -- second batch in one transaction finds its devices' heartbeats set already and sends nothing
        -- live; the sink writes one batch per transaction.)
        insert into iot_private.live_reading_state as st (device_id, tenant_id, last_notified_at, pending_count, notified)
        -- The device's tenant: its channel is where the notice goes. (Grouped by device: per_device may
        -- split one device over two tenant ids, and an upsert must not meet a row twice.)
        select p.device_id, h.tenant_id, now(), sum(p.n), true
        from per_device p join heartbeat h on h.id = p.device_id
        group by p.device_id, h.tenant_id
        order by p.device_id
        on conflict (device_id) do update set
          notified = st.last_notified_at <= now() - live_interval,
          pending_count = case when st.notified then 0 else st.pending_count end + excluded.pending_count,
          last_notified_at = case when st.last_notified_at <= now() - live_interval then now() else st.last_notified_at end
        returning st.device_id, st.tenant_id, st.pending_count, st.notified
      ), live_due as (
        select s.device_id, s.tenant_id, s.pending_count, h.facility_id, h.work_center_id
        from live_state s join heartbeat h on h.id = s.device_id
        where s.notified
      ), live_latest as materialized (  -- each CTE below is computed once, never re-run per row of a join
        -- The latest stored reading of each sensor type of each due device: a narrow hash aggregate,
        -- then the rows it names (cheaper than sorting the batch's wide rows for DISTINCT ON).
        select i.*
        from (
          select x.device_id, x.sensor_type, max(x.time) as time
          from ins x
          where x.device_id in (select device_id from live_due)
          group by x.device_id, x.sensor_type
        ) m
        join ins i on i.device_id = m.device_id and i.sensor_type = m.sensor_type and i.time = m.time
      ), live_readings as materialized (
        -- As iot.sensor_readings shows them; its id is derived there from device, sensor type and time
        -- by the same expression. (json, not jsonb: built once and sent as text, never queried.)
        select l.device_id, json_agg(json_build_object(
                 'id', md5(l.device_id::text || '/' || l.sensor_type || '/' || (extract(epoch from l.time) * 1000000)::bigint::text)::uuid,
                 'tenant_id', l.tenant_id, 'iot_device_id', l.device_id, 'reading_timestamp', l.time, 'sensor_type', l.sensor_type,
                 'reading_value', l.value, 'unit_of_measure', l.unit, 'quality', l.quality, 'production_run_id', l.production_run_id,
                 'metadata', l.metadata) order by l.sensor_type) as readings
        from live_latest l
        group by l.device_id
      ), live_channels as materialized (
        select t.tenant_id, iot_private.notify_channel('iot_live_readings', t.tenant_id) as channel  -- once per tenant
        from (select distinct tenant_id from live_due) t
      ), live_bodies as materialized (
        select c.channel, d.tenant_id, json_build_object(
                 'tenantId', d.tenant_id, 'facilityId', d.facility_id, 'workCenterId', d.work_center_id, 'deviceId', d.device_id,
                 'count', d.pending_count, 'readings', r.readings)::text as body
        from live_due d
        join live_readings r on r.device_id = d.device_id
        join live_channels c on c.tenant_id = d.tenant_id
      ), live_sent as (
        -- Inline below 7,900 bytes; bigger ones are parked in the outbox and sent by id (sql/600_live_events.sql).
        select pg_notify(b.channel, case when octet_length(b.body) < 7900 then b.body
                                         else iot_private.park_live_event('iot_live_readings', b.tenant_id, b.body::jsonb) end)
        from live_bodies b
      ), spc_limits as materialized (
        -- SPC measurement points: only channels of this batch's devices with an active control limit.
        select l.id, l.tenant_id, l.parameter_code, l.center_line, l.sigma, l.upper_control_limit, l.lower_control_limit,
               c.device_id, c.sensor_type, h.facility_id, h.work_center_id
        from iot.device_channels c
        join iot.spc_control_limits l on l.channel_id = c.id and l.is_active
        join heartbeat h on h.id = c.device_id
      ), spc_points as materialized (
        -- At most the 50 newest points per limit; BAD readings are not process data (sql/520_spc.sql).
        select p.id, json_agg(json_build_object(
                 'timestamp', p.time, 'value', p.value, 'centerLine', p.center_line,
                 'upperControlLimit', p.upper_control_limit, 'lowerControlLimit', p.lower_control_limit,
                 'sigma', p.sigma, 'zone', iot_private.spc_zone(p.z), 'outOfControl', abs(p.z) > 3) order by p.time) as points
        from (
          select l.id, l.center_line, l.upper_control_limit, l.lower_control_limit, l.sigma, i.time, i.value,
                 (i.value - l.center_line) / l.sigma as z,
                 row_number() over (partition by l.id order by i.time desc) as age
          from ins i
          join spc_limits l on l.device_id = i.device_id and l.sensor_type = i.sensor_type
          where i.quality <> 'BAD'
        ) p
        where p.age <= 50
        group by p.id
      ), spc_channels as materialized (
        select t.tenant_id, iot_private.notify_channel('iot_spc', t.tenant_id) as channel
        from (select distinct tenant_id from spc_limits) t
      ), spc_bodies as materialized (
        select c.channel, l.tenant_id, json_build_object(
                 'kind', 'measurement', 'tenantId', l.tenant_id, 'facilityId', l.facility_id, 'workCenterId', l.work_center_id,
                 'deviceId', l.device_id, 'parameterCode', l.parameter_code, 'controlLimitId', l.id, 'points', p.points)::text as body
        from spc_limits l
        join spc_points p on p.id = l.id
        join spc_channels c on c.tenant_id = l.tenant_id
      ), spc_sent as (
        select pg_notify(b.channel, case when octet_length(b.body) < 7900 then b.body
                                         else iot_private.park_live_event('iot_spc', b.tenant_id, b.body::jsonb) end)
        from spc_bodies b
      )
      -- One NOTIFY per tenant per batch (pg_notify is volatile, so the planner keeps it); the live and
      -- SPC notices are counted here so that their CTEs run.
      select coalesce(sum(t.n), 0), (select count(*) from live_sent), (select count(*) from spc_sent)
        into inserted, live_notices, spc_notices
      from (
        select sum(n) as n,
               pg_notify(iot_private.notify_channel('iot_readings', tenant_id), json_build_object(
                 'tenantId', tenant_id, 'readingCount', sum(n), 'deviceCount', count(*),
                 'firstTime', min(first_time), 'lastTime', max(last_time))::text) as notified
        from per_device group by tenant_id
      ) t;
      exit store;
    exception when unique_violation then
      delete from pg_temp.reading_staging s
      where exists (select 1 from iot_private.sensor_readings r
                    where r.device_id = s.device_id and r.time = s.time and r.sensor_type = s.sensor_type
                      and r.time >= lo and r.time <= hi)
         or exists (select 1 from pg_temp.reading_staging o
                    where o.device_id = s.device_id and o.time = s.time and o.sensor_type = s.sensor_type and o.ctid < s.ctid);
      if not found then
        raise;  -- not a duplicate reading after all
      end if;
    end;
  end loop;
  duplicates := staged - rejected - inserted;
  -- Threshold and anomaly events for this batch, set-based (sql/510_batch_events.sql).
  if detect_events then
    perform iot_private.detect_batch_events();
  end if;
end
$$;
comment on function iot_private.ingest_staged_readings(boolean) is
  'Stores the batch in pg_temp.reading_staging: dead-letters orphans, inserts the rest once (duplicates skipped), updates heartbeats, NOTIFYs per tenant (iot_readings), per due device (iot_live_readings, at most once per live_reading_interval_ms) and per active SPC limit (iot_spc measurement points); then, unless detect_events is false, raises the batch''s threshold and anomaly events.';

-- Dead letters, one statement per batch. The sink (src/ingest/dead-letters.ts) has already clipped
-- topic and payload, kept their original size and SHA-256, and made every text safe for PostgreSQL;
-- the limits here only back that up for any other caller.
create or replace function iot_private.record_dead_letters(letters jsonb)
  returns integer language sql
  set search_path = pg_catalog, pg_temp
as $$
  with ins as (
    insert into iot_private.ingest_dead_letters (received_at, tenant_id, source, topic, payload, reason,
      topic_bytes, topic_sha256, payload_bytes, payload_sha256, payload_base64, source_key, reason_class, suppressed_count)
    select coalesce(x."receivedAt", now()), x."tenantId", coalesce(x.source, 'SINK'),
           left(x.topic, 16384), left(x.payload, 65536), left(coalesce(x.reason, '(no reason given)'), 8192),
           coalesce(x."topicBytes", octet_length(x.topic)),
           coalesce(x."topicSha256", encode(sha256(convert_to(x.topic, 'UTF8')), 'hex')),
           coalesce(x."payloadBytes", octet_length(x.payload)),
           coalesce(x."payloadSha256", encode(sha256(convert_to(x.payload, 'UTF8')), 'hex')),
           left(x."payloadBase64", 131072), left(x."sourceKey", 200), left(x."reasonClass", 40),
           coalesce(x."suppressedCount", 0)
    from jsonb_to_recordset(letters) as x("receivedAt" timestamptz, "tenantId" uuid, source text, topic text, payload text,
      reason text, "topicBytes" integer, "topicSha256" text, "payloadBytes" integer, "payloadSha256" text,
      "payloadBase64" text, "sourceKey" text, "reasonClass" text, "suppressedCount" integer)
    returning 1
  )
  select count(*)::integer from ins
$$;
comment on function iot_private.record_dead_letters(jsonb) is
  'Writes dead letters given as a JSON array of objects (receivedAt, tenantId, source, topic, payload, reason, topicBytes, topicSha256, payloadBytes, payloadSha256, payloadBase64, sourceKey, reasonClass, suppressedCount).';

-- The earlier form (parallel arrays), kept for callers of the previous release.
create or replace function iot_private.record_dead_letters(
  sources text[], topics text[], payloads text[], reasons text[], tenant_ids uuid[])
  returns integer language sql
  set search_path = pg_catalog, pg_temp
as $$
  select iot_private.record_dead_letters(coalesce(jsonb_agg(jsonb_build_object(
    'source', s, 'topic', t, 'payload', p, 'reason', r, 'tenantId', tid)), '[]'))
  from unnest(sources, topics, payloads, reasons, tenant_ids) as u(s, t, p, r, tid)
$$;

-- Retention of dead letters (INGEST_DEAD_LETTER_RETENTION_DAYS, job dead_letters__prune): deletes
-- at most max_rows of the oldest received before the cutoff; the job calls it again while it
-- deletes that many, so no one statement runs long.
create or replace function iot_private.prune_dead_letters(cutoff timestamptz, max_rows integer default 10000)
  returns integer language sql
  set search_path = pg_catalog, pg_temp
as $$
  with gone as (
    delete from iot_private.ingest_dead_letters d
    where d.id in (select o.id from iot_private.ingest_dead_letters o
                   where o.received_at < cutoff order by o.received_at limit max_rows)
    returning 1
  )
  select count(*)::integer from gone
$$;

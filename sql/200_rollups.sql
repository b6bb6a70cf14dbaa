-- Rollups sensor_readings_1m / _1h / _1d: same names and columns on every tier.
--   tier 1: continuous aggregates (real-time) with refresh policies;
--   tiers 2-3: rollup tables refreshed incrementally by the rollups__refresh job, plus live
--   aggregation of raw rows past the watermark, so the views are always current.
-- Columns: bucket, tenant_id, device_id, sensor_type, reading_count, value_sum, value_sum_sq,
-- value_min, value_max. value_sum/value_sum_sq let averages and deviations be merged exactly.
-- The sums are float8 and cannot overflow or underflow: a stored value is 0 or of magnitude 1e-15 to
-- 1e15 (constraint sensor_readings_value_range), so a square is 0 or within 1e-30..1e30, and a bucket
-- of one channel holds at most 8.64e10 readings (a day of distinct microsecond times): value_sum_sq
-- <= 8.64e40, value_sum^2 <= 7.5e51, far from float8's 1.8e308, and no product of non-zero values
-- rounds to 0 (which PostgreSQL reports as "value out of range: underflow").

create table if not exists iot_private.rollup_invalidations (
  rollup_name text not null,
  from_time   timestamptz not null,
  to_time     timestamptz not null
);
comment on table iot_private.rollup_invalidations is
  'Time ranges below a rollup watermark that received late readings; the next refresh recomputes them.';

create or replace function iot_private.rollup_width(rollup_name text) returns interval
  language sql immutable
  set search_path = pg_catalog, pg_temp
as $$ select case rollup_name when '1m' then interval '1 minute' when '1h' then interval '1 hour' else interval '1 day' end $$;

-- Called by the sink for each batch: late readings invalidate what is already rolled up.
create or replace function iot_private.invalidate_rollups(lo timestamptz, hi timestamptz) returns void
  language sql
  set search_path = pg_catalog, pg_temp
as $$
  insert into iot_private.rollup_invalidations (rollup_name, from_time, to_time)
  select w.rollup_name, lo, hi
  from iot_private.rollup_watermarks w
  where w.watermark > lo and iot.timescale_tier() > 1
$$;

-- Makes sure every stored value is in the range the rollups' arithmetic relies on. Migration 000008
-- adds sensor_readings_value_range NOT VALID to a table that already has readings (a scan there would
-- run under ACCESS EXCLUSIVE); this moves the values outside it to the dead letters, with the reading
-- and the reason (not dropped), marks their rolled-up range stale, and validates the constraint
-- under SHARE UPDATE EXCLUSIVE, so ingest and queries go on. Once validated it only reads the
-- catalog. Called by refresh_rollups (the rollups__refresh job, every minute, every tier) before it
-- refreshes anything. Returns the readings moved.
create or replace function iot_private.validate_reading_value_range() returns bigint
  language plpgsql
  set search_path = pg_catalog, pg_temp
as $$
declare
  moved bigint;
  first_time timestamptz;
  last_time timestamptz;
begin
  if not exists (select 1 from pg_constraint
                 where conrelid = 'iot_private.sensor_readings'::regclass
                   and conname = 'sensor_readings_value_range' and not convalidated) then
    return 0;
  end if;
  -- Only the tables' owner may validate; a worker connected otherwise says so and refreshes anyway.
  if not pg_has_role((select relowner from pg_class where oid = 'iot_private.sensor_readings'::regclass), 'USAGE') then
    raise warning 'constraint sensor_readings_value_range is not validated yet, and % does not own iot_private.sensor_readings to validate it', current_user;
    return 0;
  end if;
  with out_of_range as (
    delete from iot_private.sensor_readings
    where not (value = 0 or (abs(value) >= 1e-15::float8 and abs(value) <= 1e15::float8))
    returning *
  ), letters as (
    select array_agg('SINK'::text) as sources, array_agg(null::text) as topics,
           array_agg(json_build_object('deviceId', device_id, 'sensorType', sensor_type, 'value', value, 'unit', unit,
                                       'quality', quality, 'timestamp', time, 'metadata', metadata)::text) as payloads,
           array_agg(format('value %s is outside the accepted range (0, or a magnitude from 1e-15 to 1e15); '
                            'moved here from iot_private.sensor_readings when the range was introduced', value)) as reasons,
           array_agg(tenant_id) as tenants,
           count(*) as n, min(time) as first_time, max(time) as last_time
    from out_of_range
  )
  select case when l.n > 0 then iot_private.record_dead_letters(l.sources, l.topics, l.payloads, l.reasons, l.tenants) else 0 end,
         l.first_time, l.last_time
  into moved, first_time, last_time
  from letters l;
  if moved > 0 then
    perform iot_private.invalidate_rollups(first_time, last_time);
    raise warning 'moved % stored readings with values outside 0 or 1e-15..1e15 to iot_private.ingest_dead_letters (% to %)',
      moved, first_time, last_time;
  end if;
  alter table iot_private.sensor_readings validate constraint sensor_readings_value_range;
  return moved;
end
$$;

-- Recomputes the buckets of one rollup in [from_time, to_time) from raw readings.
create or replace function iot_private.recompute_rollup(rollup_name text, from_time timestamptz, to_time timestamptz)
  returns bigint language plpgsql
  set search_path = pg_catalog, pg_temp
as $$
declare
  width interval := iot_private.rollup_width(rollup_name);
  tbl text := format('iot_private.%I', 'sensor_readings_' || rollup_name || '_rollup');
  lo timestamptz := date_bin(width, from_time, timestamptz '2000-01-01 00:00Z');
  hi timestamptz := date_bin(width, to_time, timestamptz '2000-01-01 00:00Z');
  n bigint;
begin
  if hi < to_time then hi := hi + width; end if;
  execute format('delete from %s where bucket >= $1 and bucket < $2', tbl) using lo, hi;
  execute format($q$
    insert into %s (bucket, tenant_id, device_id, sensor_type, reading_count, value_sum, value_sum_sq, value_min, value_max)
    select date_bin($3, time, timestamptz '2000-01-01 00:00Z'), tenant_id, device_id, sensor_type,
           count(*), sum(value), sum(value * value), min(value), max(value)
    from iot_private.sensor_readings
    where time >= $1 and time < $2
    group by 1, 2, 3, 4$q$, tbl) using lo, hi, width;
  get diagnostics n = row_count;
  return n;
end
$$;

-- The rollups__refresh job (tiers 2-3): moves each watermark up to the last complete bucket
-- older than `settle`, and recomputes invalidated ranges. Returns the rows written.
create or replace function iot_private.refresh_rollups(settle interval default interval '1 minute')
  returns bigint language plpgsql
  set search_path = pg_catalog, pg_temp
as $$
declare
  r record;
  inv record;
  new_mark timestamptz;
  written bigint := 0;
begin
  -- One refresher at a time (a second caller just returns); then wait for in-flight late batches,
  -- which hold the shared lock, so none of them can slip under a new watermark unseen.
  if not pg_try_advisory_xact_lock(hashtext('iot_private.refresh_rollups.single')) then
    return 0;
  end if;
  perform iot_private.validate_reading_value_range(); -- before the lock late batches wait for
  if iot.timescale_tier() = 1 then
    return 0; -- continuous aggregate policies do this
  end if;
  perform pg_advisory_xact_lock(hashtext('iot_private.refresh_rollups'));
  for r in select * from iot_private.rollup_watermarks order by rollup_name loop
    for inv in
      delete from iot_private.rollup_invalidations i where i.rollup_name = r.rollup_name
      returning from_time, to_time
    loop
      written := written + iot_private.recompute_rollup(r.rollup_name, inv.from_time, least(inv.to_time + interval '1 microsecond', r.watermark));
    end loop;
    new_mark := date_bin(iot_private.rollup_width(r.rollup_name), now() - settle, timestamptz '2000-01-01 00:00Z');
    if new_mark > r.watermark then
      -- A fresh rollup (watermark -infinity) starts at the oldest reading.
      written := written + iot_private.recompute_rollup(r.rollup_name,
        greatest(r.watermark, coalesce((select min(time) from iot_private.sensor_readings), new_mark)), new_mark);
      update iot_private.rollup_watermarks set watermark = new_mark, updated_at = now()
      where rollup_name = r.rollup_name;
    end if;
  end loop;
  return written;
end
$$;

-- Until the first refresh the watermark is -infinity: the views aggregate raw readings live.
insert into iot_private.rollup_watermarks (rollup_name, watermark)
select g, '-infinity'
from unnest(array['1m', '1h', '1d']) g
where iot.timescale_tier() > 1
on conflict (rollup_name) do nothing;

-- The unified views in iot_private (tier-specific bodies, same columns).
do $$
declare
  g text;
  width text;
begin
  foreach g in array array['1m', '1h', '1d'] loop
    width := iot_private.rollup_width(g)::text;
    if iot.timescale_tier() = 1 then
      execute format($v$
        create materialized view if not exists iot_private.%I
        with (timescaledb.continuous, timescaledb.materialized_only = false) as
        select time_bucket(%L::interval, time) as bucket, tenant_id, device_id, sensor_type,
               count(*) as reading_count, sum(value) as value_sum, sum(value * value) as value_sum_sq,
               min(value) as value_min, max(value) as value_max
        from iot_private.sensor_readings
        group by 1, 2, 3, 4
        with no data$v$, 'sensor_readings_' || g || '_cagg', width);
      execute format('create or replace view iot_private.%I as select * from iot_private.%I',
                     'sensor_readings_' || g, 'sensor_readings_' || g || '_cagg');
      begin
        perform add_continuous_aggregate_policy(format('iot_private.%I', 'sensor_readings_' || g || '_cagg')::regclass,
          start_offset => case g when '1m' then interval '3 hours' when '1h' then interval '3 days' else interval '30 days' end,
          end_offset => iot_private.rollup_width(g),
          schedule_interval => case g when '1d' then interval '1 hour' else iot_private.rollup_width(g) end,
          if_not_exists => true);
      end;
    else
      execute format($v$
        create or replace view iot_private.%1$I as
        select bucket, tenant_id, device_id, sensor_type, reading_count, value_sum, value_sum_sq, value_min, value_max
        from iot_private.%2$I
        where bucket < (select watermark from iot_private.rollup_watermarks where rollup_name = %3$L)
        union all
        select date_bin(%4$L::interval, time, timestamptz '2000-01-01 00:00Z') as bucket, tenant_id, device_id, sensor_type,
               count(*)::bigint, sum(value), sum(value * value), min(value), max(value)
        from iot_private.sensor_readings
        where time >= (select watermark from iot_private.rollup_watermarks where rollup_name = %3$L)
        group by 1, 2, 3, 4$v$, 'sensor_readings_' || g, 'sensor_readings_' || g || '_rollup', g, width);
    end if;
  end loop;
end $$;

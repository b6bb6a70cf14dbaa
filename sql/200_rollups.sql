-- Rollups sensor_readings_1m / _1h / _1d: same names and columns on every tier.
--   tier 1: continuous aggregates (real-time), refreshed by the rollups__refresh job calling
--   TimescaleDB's refresh_continuous_aggregate over the whole retained range: TimescaleDB's own
--   invalidation log records inserts below the watermark, so that refresh recomputes only the
--   invalidated regions (late and backfilled readings of any age) plus what is new. No TimescaleDB
--   policy: on PostgreSQL 15.20 its background jobs fail, and a policy's fixed window misses readings
--   older than its start_offset and recomputes dropped raw ranges from nothing;
--   tiers 2-3: rollup tables refreshed incrementally by the same job, plus live aggregation of raw
--   rows past the watermark, so the views are always current.
-- On every tier the 1-hour and 1-day views take their current hour / day from the next finer
-- rollup (1m, 1h), not from raw readings (below).
-- On every tier, refreshes start at the retained-from boundary that retention records
-- (iot_private.settings 'telemetry_retained_from', sql/100_partitions.sql): a rollup outlives the raw
-- readings it was computed from and is never recomputed from an emptied range.
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
comment on function iot_private.rollup_width(text) is 'Bucket width of rollup 1m, 1h or 1d.';

-- Raw readings are complete from this time on (retention dropped everything before); -infinity
-- until retention first drops something.
create or replace function iot_private.telemetry_retained_from() returns timestamptz
  language sql stable
  set search_path = pg_catalog, pg_temp
as $$ select coalesce((select s.value::timestamptz from iot_private.settings s where s.key = 'telemetry_retained_from'), '-infinity') $$;
comment on function iot_private.telemetry_retained_from() is
  'Time from which raw readings are complete (retention dropped what was before); -infinity if nothing was dropped.';

-- Retention per relation (the telemetry__apply_retention job): raw readings by its payload
-- (TELEMETRY_RETENTION_DAYS), each rollup by a setting here, in days, 0 keeping it forever.
insert into iot_private.settings (key, value) values
  ('rollup_1m_retention_days', '365'), ('rollup_1h_retention_days', '0'), ('rollup_1d_retention_days', '0'),
  ('rollup_1m_retained_from', '-infinity'), ('rollup_1h_retained_from', '-infinity'), ('rollup_1d_retained_from', '-infinity')
on conflict (key) do nothing;

-- The maintenance jobs read these every run: refuse values they could not use, when written.
create or replace function iot_private.tg_settings__check_maintenance_settings() returns trigger
  language plpgsql
  set search_path = pg_catalog, pg_temp
as $$
begin
  if new.key in ('rollup_1m_retention_days', 'rollup_1h_retention_days', 'rollup_1d_retention_days')
     and (new.value !~ '^\s*[0-9]{1,5}\s*$') then
    raise exception 'setting % must be a whole number of days (0 keeps the rollup forever), not %', new.key, new.value
      using errcode = '22023';
  elsif new.key = 'telemetry_compress_after' then
    begin
      if new.value::interval < interval '0' then
        raise invalid_parameter_value;
      end if;
    exception when others then
      raise exception 'setting telemetry_compress_after must be an interval of 0 or more such as ''7 days'', not %', new.value
        using errcode = '22023';
    end;
  end if;
  return new;
end
$$;
drop trigger if exists _220_check_maintenance_settings on iot_private.settings;
create trigger _220_check_maintenance_settings before insert or update on iot_private.settings
  for each row execute function iot_private.tg_settings__check_maintenance_settings();
comment on function iot_private.tg_settings__check_maintenance_settings() is
  'Refuses unusable values of the rollup retention and compression settings when they are written.';

-- Days from which a rollup is complete: its own retention or the raw readings' (whichever is later).
create or replace function iot_private.rollup_retained_from(rollup_name text) returns timestamptz
  language sql stable
  set search_path = pg_catalog, pg_temp
as $$
  select greatest(iot_private.telemetry_retained_from(),
                  coalesce((select s.value::timestamptz from iot_private.settings s where s.key = 'rollup_' || rollup_name || '_retained_from'),
                           '-infinity'))
$$;
comment on function iot_private.rollup_retained_from(text) is
  'Time from which rollup 1m/1h/1d can be recomputed: after both its own retention and that of the raw readings.';

-- The first bucket of a rollup that may be recomputed from raw readings: the first whole bucket at
-- or after the retained-from boundary. Buckets before it are kept as they are.
-- Rollup functions that add a bucket width run in UTC: `+ interval '1 day'` follows the session's
-- time zone, so on a daylight-saving day it is 23 or 25 hours and would split a day's bucket.
create or replace function iot_private.rollup_refresh_start(rollup_name text) returns timestamptz
  language sql stable
  set search_path = pg_catalog, pg_temp
  set timezone = 'UTC'
as $$
  select case when b.t = '-infinity' then b.t
              when date_bin(w.w, b.t, timestamptz '2000-01-01 00:00Z') = b.t then b.t
              else date_bin(w.w, b.t, timestamptz '2000-01-01 00:00Z') + w.w end
  from (select iot_private.rollup_retained_from(rollup_name) as t) b,
       (select iot_private.rollup_width(rollup_name) as w) w
$$;
comment on function iot_private.rollup_refresh_start(text) is
  'First bucket of rollup 1m/1h/1d that refreshes may recompute: buckets before the retained raw range are never touched.';

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
  -- Tier 1 with compression on: TimescaleDB refuses VALIDATE CONSTRAINT (new rows are checked all
  -- the same); compression is only enabled once the constraint is validated (sql/100_partitions.sql).
  if iot.timescale_tier() = 1 then  -- nested: the view exists on tiers 1-2 only
    if exists (select 1 from timescaledb_information.hypertables h
               where h.hypertable_schema = 'iot_private' and h.hypertable_name = 'sensor_readings' and h.compression_enabled) then
      return 0;
    end if;
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
  set timezone = 'UTC'
as $$
declare
  width interval := iot_private.rollup_width(rollup_name);
  tbl text := format('iot_private.%I', 'sensor_readings_' || rollup_name || '_rollup');
  lo timestamptz := date_bin(width, from_time, timestamptz '2000-01-01 00:00Z');
  hi timestamptz := date_bin(width, to_time, timestamptz '2000-01-01 00:00Z');
  step_lo timestamptz;
  step_hi timestamptz;
  step_rows bigint;
  n bigint := 0;
begin
  if hi < to_time then hi := hi + width; end if;
  -- Never below the retained raw range: those buckets would be recomputed from nothing.
  lo := greatest(lo, iot_private.rollup_refresh_start(rollup_name));
  if not (isfinite(lo) and isfinite(hi)) then -- the day steps below would never end
    raise exception 'recompute_rollup(%) needs a finite range, not [%, %)', rollup_name, from_time, to_time using errcode = '22023';
  end if;
  if lo >= hi then
    return 0;
  end if;
  execute format('delete from %s where bucket >= $1 and bucket < $2', tbl) using lo, hi;
  -- Written in bucket order, a day at a time: a dashboard reads a time range, and rows of one bucket
  -- spread over the table cost a page read each (a first refresh of 30 days in hash order made the
  -- last hour of the 1-minute rollup 27,700 page reads for 18,000 rows: 71 -> 28 ms on tier 2). A day's sort
  -- stays small; a minute's refresh is one step.
  step_lo := lo;
  while step_lo < hi loop
    step_hi := least(hi, step_lo + greatest(width, interval '1 day'));
    execute format($q$
      insert into %s (bucket, tenant_id, device_id, sensor_type, reading_count, value_sum, value_sum_sq, value_min, value_max)
      select date_bin($3, time, timestamptz '2000-01-01 00:00Z'), tenant_id, device_id, sensor_type,
             count(*), sum(value), sum(value * value), min(value), max(value)
      from iot_private.sensor_readings
      where time >= $1 and time < $2
      group by 1, 2, 3, 4
      order by 1, 2, 3, 4$q$, tbl) using step_lo, step_hi, width;
    get diagnostics step_rows = row_count;
    n := n + step_rows;
    step_lo := step_hi;
  end loop;
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
    -- TimescaleDB refuses to refresh a continuous aggregate inside a function's transaction: the
    -- job CALLs iot_private.refresh_all_rollups(), which runs this and then refreshes them.
    return 0;
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
      if g = '1m' then -- 1h and 1d: below, from the next finer rollup above their watermark
        execute format('create or replace view iot_private.%I as select * from iot_private.%I',
                       'sensor_readings_' || g, 'sensor_readings_' || g || '_cagg');
      end if;
      -- Earlier releases added refresh policies; the rollups__refresh job refreshes now (header).
      perform remove_continuous_aggregate_policy(format('iot_private.%I', 'sensor_readings_' || g || '_cagg')::regclass,
                                                 if_exists => true);
    elsif g = '1m' then
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

-- What each rollup has stored (not the live part): tier 1 the continuous aggregate's
-- materialization hypertable, tiers 2-3 the rollup table; same columns. With
-- iot_private.rollup_watermark() a reader can take the stored rows below the watermark and
-- aggregate raw readings above it itself, with both bounds constants it can plan with
-- (iot_private.channel_sensor_health); the views above compute the watermark at run time.
do $$
declare
  g text;
  stored text;
begin
  foreach g in array array['1m', '1h', '1d'] loop
    if iot.timescale_tier() = 1 then
      execute format($q$select format('%%I.%%I', h.schema_name, h.table_name)
        from _timescaledb_catalog.continuous_agg c join _timescaledb_catalog.hypertable h on h.id = c.mat_hypertable_id
        where c.user_view_schema = 'iot_private' and c.user_view_name = %L$q$, 'sensor_readings_' || g || '_cagg') into stored;
    else
      stored := format('iot_private.%I', 'sensor_readings_' || g || '_rollup');
    end if;
    execute format($v$
      create or replace view iot_private.%I as
      select bucket, tenant_id, device_id, sensor_type, reading_count, value_sum, value_sum_sq, value_min, value_max
      from %s$v$, 'sensor_readings_' || g || '_stored', stored);
    execute format('comment on view iot_private.%I is %L', 'sensor_readings_' || g || '_stored',
      format('Rows stored by rollup %s (tier 1: its materialization hypertable; tiers 2-3: its rollup table), valid below iot_private.rollup_watermark(%L).', g, g));
  end loop;
end $$;

-- The time below which a rollup's stored rows are complete (up to the last refresh); the views
-- aggregate raw readings from it on. -infinity before the first refresh.
create or replace function iot_private.rollup_watermark(rollup_name text) returns timestamptz
  language plpgsql stable
  set search_path = pg_catalog, pg_temp
as $$
begin
  if iot.timescale_tier() = 1 then -- the catalog exists on tier 1 only: read in this branch
    return coalesce((select _timescaledb_functions.to_timestamp(_timescaledb_functions.cagg_watermark(c.mat_hypertable_id))
                     from _timescaledb_catalog.continuous_agg c
                     where c.user_view_schema = 'iot_private' and c.user_view_name = 'sensor_readings_' || rollup_name || '_cagg'),
                    '-infinity');
  end if;
  return coalesce((select w.watermark from iot_private.rollup_watermarks w where w.rollup_name = rollup_watermark.rollup_name), '-infinity');
end
$$;
comment on function iot_private.rollup_watermark(text) is
  'Watermark of rollup 1m/1h/1d: its stored rows (iot_private.sensor_readings_<name>_stored) are complete below it; the views aggregate raw readings from it on.';

-- The 1-hour and 1-day rollups, every tier: their stored buckets below their watermark, and from
-- the watermark on (the current hour; today) the sum of the next finer rollup's buckets (1m for 1h,
-- 1h for 1d) rather than an aggregate of raw readings. A whole hour of raw readings is 72,000 at
-- 300 channels every 15 s, aggregated for every dashboard query of the 1-hour rollup (90 of the 110
-- ms a 7-day sensor timeline spent in the server on tier 2 at 51.8M readings); the 1-minute rollup has 18,000 rows for it,
-- and raw readings remain only past its own watermark (the last minute or two). Exact: counts,
-- sums and extremes merge. Like the 1-minute rollup they are current up to the latest reading; a
-- late reading below the finer rollup's watermark shows after the next refresh (every minute),
-- as it always did below their own.
-- The watermark is read as the 1-minute view reads it (not through rollup_watermark(), which the
-- API roles may not execute).
do $$
declare
  pair text[];
  mark text;
begin
  foreach pair slice 1 in array array[['1h', '1m', 'hour'], ['1d', '1h', 'day']] loop
    mark := format('(select w.watermark from iot_private.rollup_watermarks w where w.rollup_name = %L)', pair[1]);
    if iot.timescale_tier() = 1 then
      mark := format('coalesce(_timescaledb_functions.to_timestamp(_timescaledb_functions.cagg_watermark(%s)), ''-infinity'')',
                     (select c.mat_hypertable_id from _timescaledb_catalog.continuous_agg c
                      where c.user_view_schema = 'iot_private' and c.user_view_name = 'sensor_readings_' || pair[1] || '_cagg'));
    end if;
    execute format($v$
      create or replace view iot_private.%1$I as
      select s.bucket, s.tenant_id, s.device_id, s.sensor_type, s.reading_count, s.value_sum, s.value_sum_sq, s.value_min, s.value_max
      from iot_private.%2$I s
      where s.bucket < %4$s
      union all
      select date_bin(%5$L::interval, f.bucket, timestamptz '2000-01-01 00:00Z'), f.tenant_id, f.device_id, f.sensor_type,
             sum(f.reading_count)::bigint, sum(f.value_sum), sum(f.value_sum_sq), min(f.value_min), max(f.value_max)
      from iot_private.%3$I f
      where f.bucket >= %4$s
      group by 1, 2, 3, 4$v$,
      'sensor_readings_' || pair[1], 'sensor_readings_' || pair[1] || '_stored', 'sensor_readings_' || pair[2], mark, '1 ' || pair[3]);
  end loop;
end $$;

-- The rollups__refresh job, every tier: CALL iot_private.refresh_all_rollups() (outside a
-- transaction block). Tiers 2-3: refresh_rollups(). Tier 1: also refresh each continuous
-- aggregate from its refresh start (retained range) to the last complete bucket; TimescaleDB
-- materialises only the invalidated regions in that range (late inserts it logged) and what is new.
-- A procedure, not a function: refresh_continuous_aggregate commits as it goes and refuses to run
-- inside a function (or a procedure with SET options, or an EXECUTE), so the body names the
-- extension's schema statically; it is written here at migrate time.
do $do$
declare
  ts text := (select n.nspname from pg_extension e join pg_namespace n on n.oid = e.extnamespace where e.extname = 'timescaledb');
  tier1 text := '';
begin
  if iot.timescale_tier() = 1 then
    tier1 := format($b$
  foreach g in array array['1m', '1h', '1d'] loop
    from_time := iot_private.rollup_refresh_start(g);
    if from_time = '-infinity' then
      from_time := null;
    end if;
    -- Up to the last bucket complete a minute ago, as on tiers 2-3: a bucket still filling stays
    -- live (real-time aggregation); materialising it would hide its next readings until a refresh.
    to_time := date_bin(iot_private.rollup_width(g), now() - interval '1 minute', timestamptz '2000-01-01 00:00Z');
    continue when from_time >= to_time;
    if g = '1m' then
      call %1$I.refresh_continuous_aggregate('iot_private.sensor_readings_1m_cagg'::regclass, from_time, to_time);
    elsif g = '1h' then
      call %1$I.refresh_continuous_aggregate('iot_private.sensor_readings_1h_cagg'::regclass, from_time, to_time);
    else
      call %1$I.refresh_continuous_aggregate('iot_private.sensor_readings_1d_cagg'::regclass, from_time, to_time);
    end if;
  end loop;$b$, ts);
  end if;
  execute format($p$
create or replace procedure iot_private.refresh_all_rollups()
  language plpgsql
as $body$
declare
  g text;
  from_time timestamptz;
  to_time timestamptz;
begin
  perform iot_private.refresh_rollups();
  %s
end
$body$$p$, tier1);
end
$do$;
comment on procedure iot_private.refresh_all_rollups() is
  'Refreshes the 1m/1h/1d rollups on every tier, late and backfilled readings included, never below the retained raw range. CALL it outside a transaction block (the rollups__refresh job does, every minute).';

-- Tiers 1-2: no TimescaleDB job of this product is scheduled (graphile-worker drives refresh,
-- compression and retention), so TimescaleDB's housekeeping of its job history has nothing to do;
-- on PostgreSQL 15.20 it fails every run ("cannot drop portal") and would keep /healthz red.
do $$
declare
  ts text := (select n.nspname from pg_extension e join pg_namespace n on n.oid = e.extnamespace where e.extname = 'timescaledb');
  id integer;
begin
  if ts is null then
    return;
  end if;
  for id in select j.job_id from timescaledb_information.jobs j
            where j.proc_name = 'policy_job_stat_history_retention' and j.scheduled loop
    begin
      execute format('select %I.alter_job($1, scheduled => false)', ts) using id;
    exception when others then
      -- The Apache-only build (tier 2) refuses alter_job; failed_maintenance_jobs reports the job then.
      raise notice 'TimescaleDB job % stays scheduled: %', id, sqlerrm;
    end;
  end loop;
end $$;

-- Maintenance jobs that failed, for /healthz and the metrics: TimescaleDB jobs (tiers 1-2: policies
-- or add_job jobs whose last run failed, e.g. any background job on PostgreSQL 15.20) and graphile-worker jobs
-- that failed for good (rollups__refresh, retention, compression ... run with ?max=1 or used up
-- their attempts) in the last `within`. One row per failing job; none when all is well.
create or replace function iot_private.failed_maintenance_jobs(within interval default interval '1 hour')
  returns table (source text, job_name text, last_status text, last_run_at timestamptz, failures bigint, last_error text)
  language plpgsql stable
  set search_path = pg_catalog, pg_temp
as $$
begin
  if to_regclass('timescaledb_information.job_stats') is not null then
    return query
      select 'timescaledb'::text, j.application_name::text, s.last_run_status::text, s.last_run_started_at,
             s.total_failures::bigint,
             (select e.err_message::text from timescaledb_information.job_errors e
               where e.job_id = j.job_id order by e.start_time desc limit 1)
      from timescaledb_information.jobs j
      join timescaledb_information.job_stats s on s.job_id = j.job_id
      -- Jobs 1-999 are TimescaleDB's own housekeeping (telemetry, job-history retention), which
      -- fails by design under the Apache licence (tier 2): not the product's maintenance.
      where s.last_run_status = 'Failed' and j.scheduled and j.job_id >= 1000;
  end if;
  if to_regclass('graphile_worker.jobs') is not null then
    return query
      select 'graphile-worker'::text, j.task_identifier::text, 'Failed'::text, j.updated_at,
             count(*) over (partition by j.task_identifier), j.last_error::text
      from graphile_worker.jobs j
      where j.last_error is not null and j.attempts >= j.max_attempts and j.locked_at is null
        and j.updated_at >= now() - within
      order by j.updated_at desc;
  end if;
end
$$;
comment on function iot_private.failed_maintenance_jobs(interval) is
  'Failing maintenance jobs for /healthz and metrics: TimescaleDB jobs whose last run failed, graphile-worker jobs that failed for good within the interval.';

-- Retention of one rollup: drops its buckets before the cutoff (tier 1: the continuous aggregate's
-- chunks wholly before it; tiers 2-3: rows) and records the boundary, so no refresh recomputes
-- them. Returns chunks (tier 1) or rows (tiers 2-3) dropped.
create or replace function iot_private.drop_rollup_before(rollup_name text, cutoff timestamptz) returns bigint
  language plpgsql
  set search_path = pg_catalog, pg_temp
as $$
declare
  ts text := (select n.nspname from pg_extension e join pg_namespace n on n.oid = e.extnamespace where e.extname = 'timescaledb');
  n bigint;
begin
  if rollup_name not in ('1m', '1h', '1d') then
    raise exception 'iot_private.drop_rollup_before: no rollup %', rollup_name using errcode = '22023';
  end if;
  update iot_private.settings s set value = greatest(s.value::timestamptz, cutoff)::text, updated_at = now()
  where s.key = 'rollup_' || rollup_name || '_retained_from';
  if iot.timescale_tier() = 1 then
    execute format('select count(*) from %I.drop_chunks(%L::regclass, older_than => $1)',
                   ts, format('iot_private.%I', 'sensor_readings_' || rollup_name || '_cagg'))
      into n using cutoff;
  else
    execute format('delete from iot_private.%I where bucket < $1', 'sensor_readings_' || rollup_name || '_rollup') using cutoff;
    get diagnostics n = row_count;
  end if;
  return n;
end
$$;
comment on function iot_private.drop_rollup_before(text, timestamptz) is
  'Retention of rollup 1m/1h/1d: drops what is before the cutoff and records it, so refreshes never recompute it.';

-- The telemetry__apply_retention job, rollups part: each rollup by its rollup_<name>_retention_days setting.
create or replace function iot_private.apply_rollup_retention()
  returns table (rollup_name text, retention_days integer, dropped bigint)
  language sql
  set search_path = pg_catalog, pg_temp
as $$
  select g.name, d.days,
         case when d.days > 0 then iot_private.drop_rollup_before(g.name, now() - make_interval(days => d.days)) else 0 end
  from unnest(array['1m', '1h', '1d']) as g(name)
  cross join lateral (select coalesce((select s.value::integer from iot_private.settings s
                                       where s.key = 'rollup_' || g.name || '_retention_days'), 0) as days) d
$$;
comment on function iot_private.apply_rollup_retention() is
  'Retention of the rollups by the settings rollup_1m/1h/1d_retention_days (0 keeps forever); returns what each dropped.';

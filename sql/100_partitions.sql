-- Tier 3 (plain PostgreSQL): native range partitions made ahead of time, so no insert ever
-- meets a missing partition. Tiers 1-2 let TimescaleDB make chunks; these functions do nothing there.

create or replace function iot.timescale_tier() returns integer
  language sql stable
  set search_path = pg_catalog, pg_temp
as $$ select value::integer from iot_private.settings where key = 'timescale_tier' $$;
comment on function iot.timescale_tier() is
  '1 = TimescaleDB with community features, 2 = TimescaleDB Apache-only, 3 = plain PostgreSQL (native partitions).';

-- Tier 3 partitions are made only where rows fall, and nothing a device sends can make many or
-- hold anyone up:
--  - the partition for a time t spans one unit of the table's granularity (a day for readings, a
--    month for events and health scores) while t is at most 92 days old, a month while t is at most
--    two years old, and a calendar year before that (UTC), clipped to the gap between its
--    neighbours: a batch dated 2001, 2010 and today makes at most two partitions, not thousands;
--  - ingest makes the partitions of the times its batch holds (ensure_partitions_for), never the
--    span between its oldest and newest reading;
--  - a partition is made by CREATE TABLE + ATTACH PARTITION, which takes SHARE UPDATE EXCLUSIVE on
--    the parent, so every tenant's readers and writers go on meanwhile (CREATE TABLE ... PARTITION
--    OF takes ACCESS EXCLUSIVE on the parent until the transaction ends).
-- Names: <table>_pYYYYMMDD for one whole unit of the table's granularity (as before), else
-- <table>_pYYYYMMDD_YYYYMMDD (first day, and the day after the last).

-- Every range partition of a telemetry table with its bounds.
create or replace function iot_private.partition_bounds(table_name text)
  returns table (partition_name text, from_time timestamptz, to_time timestamptz)
  language sql stable
  set search_path = pg_catalog, pg_temp
as $$
  select c.relname::text,
         substring(b.expr from 'FROM \(''([^'']+)''\)')::timestamptz,
         substring(b.expr from 'TO \(''([^'']+)''\)')::timestamptz
  from pg_inherits i
  join pg_class c on c.oid = i.inhrelid
  cross join lateral (select pg_get_expr(c.relpartbound, c.oid) as expr) b
  where i.inhparent = to_regclass(format('iot_private.%I', partition_bounds.table_name))
    and b.expr like 'FOR VALUES FROM (''%'
$$;

-- The unit a new partition for time t spans: the table's granularity for recent times, coarser for old ones.
create or replace function iot_private.partition_unit(granularity text, t timestamptz)
  returns text language sql stable
  set search_path = pg_catalog, pg_temp
as $$
  select case
    when t >= now() - interval '92 days' then granularity
    when t >= now() - interval '2 years' then case when granularity in ('day', 'week') then 'month' else granularity end
    else 'year'
  end
$$;

-- Makes the partition that holds time t unless one does. Returns 1 when it made one, else 0.
create or replace function iot_private.ensure_partition_at(table_name text, t timestamptz)
  returns integer language plpgsql
  set search_path = pg_catalog, pg_temp
as $$
declare
  g text;
  unit text;
  lo timestamptz;
  hi timestamptz;
  prev_hi timestamptz;
  next_lo timestamptz;
  covered boolean;
  whole boolean;
  part text;
begin
  if iot.timescale_tier() <> 3 then
    return 0;
  end if;
  select p.granularity into g from iot_private.partitioned_tables p where p.table_name = ensure_partition_at.table_name;
  if g is null then
    raise exception 'iot_private.ensure_partition_at: % is not a partitioned telemetry table', table_name;
  end if;
  -- Every batch comes here: the usual case is the whole-unit partition, found by its name.
  if to_regclass(format('iot_private.%I', table_name || '_p' || to_char(date_trunc(g, t, 'UTC') at time zone 'UTC', 'YYYYMMDD'))) is not null then
    return 0;
  end if;
  -- One session at a time makes partitions of a table (the others wait here, holding nothing of
  -- it yet): two sink writers each making a partition would otherwise deadlock on the parent.
  perform pg_advisory_xact_lock(hashtext('iot_private.ensure_partition_at'), hashtext(table_name));
  for attempt in 1..3 loop
    select coalesce(bool_or(t >= b.from_time and t < b.to_time), false),
           max(b.to_time) filter (where b.to_time <= t),
           min(b.from_time) filter (where b.from_time > t)
      into covered, prev_hi, next_lo
      from iot_private.partition_bounds(table_name) b;
    if covered then
      return 0;
    end if;
    unit := iot_private.partition_unit(g, t);
    lo := date_trunc(unit, t, 'UTC');
    hi := (lo at time zone 'UTC' + ('1 ' || unit)::interval) at time zone 'UTC';
    whole := unit = g and (prev_hi is null or prev_hi <= lo) and (next_lo is null or next_lo >= hi);
    lo := greatest(lo, prev_hi);  -- greatest and least skip nulls
    hi := least(hi, next_lo);
    part := table_name || '_p' || to_char(lo at time zone 'UTC', 'YYYYMMDD')
            || case when whole then '' else '_' || to_char(hi at time zone 'UTC', 'YYYYMMDD') end
            || case when lo = date_trunc('day', lo, 'UTC') and hi = date_trunc('day', hi, 'UTC') then ''
                    else '_' || to_char(lo at time zone 'UTC', 'HH24MISS') end;
    begin
      execute format('create table iot_private.%I (like iot_private.%I including defaults including constraints)', part, table_name);
      execute format('alter table iot_private.%I attach partition iot_private.%I for values from (%L) to (%L)',
                     table_name, part, lo, hi);
      return 1;
    exception when duplicate_table or invalid_object_definition then
      null; -- another session made it, or one overlapping it, meanwhile: look again
    end;
  end loop;
  raise exception 'iot_private.ensure_partition_at: no partition of % could be made for %', table_name, t;
end
$$;

-- Makes the partitions that hold the given times (ingest: the batch's distinct days). Returns how many it made.
create or replace function iot_private.ensure_partitions_for(table_name text, times timestamptz[])
  returns integer language plpgsql
  set search_path = pg_catalog, pg_temp
as $$
declare
  g text;
  todo timestamptz[];
  t timestamptz;
  made integer := 0;
begin
  if iot.timescale_tier() <> 3 then
    return 0;
  end if;
  select p.granularity into g from iot_private.partitioned_tables p where p.table_name = ensure_partitions_for.table_name;
  -- Every batch: times whose whole-unit partition exists by its usual name need nothing more.
  todo := array(select distinct x from unnest(times) x
                where x is not null
                  and to_regclass(format('iot_private.%I', table_name || '_p' || to_char(date_trunc(g, x, 'UTC') at time zone 'UTC', 'YYYYMMDD'))) is null);
  -- The rest: the earliest time no partition holds, until none is left (one partition may hold many).
  -- ensure_partition_at returns 0 when another session made the partition while this one waited for
  -- its lock (two sink writers with readings of the same old day): look again, do not fail the batch.
  for attempt in 1 .. 2 * coalesce(array_length(todo, 1), 0) + 2 loop
    select min(x) into t from unnest(todo) x
    where not exists (select 1 from iot_private.partition_bounds(table_name) b where x >= b.from_time and x < b.to_time);
    if t is null then
      return made;
    end if;
    made := made + iot_private.ensure_partition_at(table_name, t);
  end loop;
  raise exception 'iot_private.ensure_partitions_for: no partition of % holds %', table_name, t;
end
$$;

-- Makes partitions covering all of [from_time, to_time] (the job that makes them ahead, tests,
-- benchmarks). Old parts of the span get coarse partitions too, so even a long span makes few.
create or replace function iot_private.ensure_partitions(table_name text, from_time timestamptz, to_time timestamptz)
  returns integer language plpgsql
  set search_path = pg_catalog, pg_temp
as $$
declare
  g text;
  t timestamptz := from_time;
  lo timestamptz;
  next_t timestamptz;
  made integer := 0;
begin
  if iot.timescale_tier() <> 3 then
    return 0;
  end if;
  select p.granularity into g from iot_private.partitioned_tables p where p.table_name = ensure_partitions.table_name;
  if g is null then
    raise exception 'iot_private.ensure_partitions: % is not a partitioned telemetry table', table_name;
  end if;
  while t <= to_time loop
    made := made + iot_private.ensure_partition_at(table_name, t);
    lo := date_trunc(g, t, 'UTC');
    if to_regclass(format('iot_private.%I', table_name || '_p' || to_char(lo at time zone 'UTC', 'YYYYMMDD'))) is not null then
      next_t := (lo at time zone 'UTC' + ('1 ' || g)::interval) at time zone 'UTC';
    else
      select b.to_time into next_t from iot_private.partition_bounds(table_name) b
       where t >= b.from_time and t < b.to_time;
    end if;
    if next_t is null or next_t <= t then
      raise exception 'iot_private.ensure_partitions: no partition of % holds %', table_name, t;
    end if;
    t := next_t;
  end loop;
  return made;
end
$$;

-- Tiers 1-2: TimescaleDB makes a chunk of the hypertable's interval (a day) for every day a row
-- falls on, so readings spread over thousands of old days would make thousands of chunks, and a
-- query over the whole table would then need a lock per chunk (out of shared memory for every
-- session). Readings older than 92 days get the same coarse ranges as on tier 3 instead: before
-- the batch is inserted, the chunk that will hold each such day is made with the chunk interval set
-- to 30 or 365 days for the moment (in this transaction only: others never see it), by inserting
-- and deleting a placeholder row. TimescaleDB cuts a new chunk to fit between existing ones.
create or replace function iot_private.ensure_coarse_chunks(table_name text, times timestamptz[])
  returns integer language plpgsql
  set search_path = pg_catalog, pg_temp
as $$
declare
  ts text;
  usual interval;
  t timestamptz;
  unit text;
  made integer := 0;
  placeholder constant uuid := '00000000-0000-0000-0000-000000000000';
begin
  if iot.timescale_tier() = 3 or table_name <> 'sensor_readings' or coalesce(cardinality(times), 0) = 0 then
    return 0;
  end if;
  select n.nspname into ts from pg_extension e join pg_namespace n on n.oid = e.extnamespace where e.extname = 'timescaledb';
  select d.time_interval into usual from timescaledb_information.dimensions d
   where d.hypertable_schema = 'iot_private' and d.hypertable_name = table_name and d.column_name = 'time';
  for t in select distinct x from unnest(times) x where x is not null order by 1 loop
    unit := iot_private.partition_unit('day', t);
    continue when unit = 'day' or exists (
      select 1 from timescaledb_information.chunks c
      where c.hypertable_schema = 'iot_private' and c.hypertable_name = table_name and t >= c.range_start and t < c.range_end);
    begin
      execute format('select %I.set_chunk_time_interval(%L::regclass, $1)', ts, 'iot_private.' || table_name)
        using case unit when 'month' then interval '30 days' else interval '365 days' end;
      insert into iot_private.sensor_readings (time, tenant_id, device_id, sensor_type, value, unit, quality)
      values (t, placeholder, placeholder, '(chunk placeholder)', 0, '', 'GOOD') on conflict do nothing;
      delete from iot_private.sensor_readings r
       where r.device_id = placeholder and r.time = t and r.sensor_type = '(chunk placeholder)';
      execute format('select %I.set_chunk_time_interval(%L::regclass, $1)', ts, 'iot_private.' || table_name) using usual;
      made := made + 1;
    exception when others then
      -- Then TimescaleDB makes its usual chunk for the day: more chunks, nothing lost.
      raise warning 'iot_private.ensure_coarse_chunks: no coarse chunk for % (%); the usual one is made', t, sqlerrm;
    end;
  end loop;
  return made;
end
$$;

-- The scheduled job: partitions for the past day through `days_ahead` days ahead for every table.
create or replace function iot_private.create_partitions_ahead(days_ahead integer default 7)
  returns integer language sql
  set search_path = pg_catalog, pg_temp
as $$
  select coalesce(sum(iot_private.ensure_partitions(table_name, now() - interval '1 day', now() + make_interval(days => days_ahead))), 0)::integer
  from iot_private.partitioned_tables
$$;

-- Retention: drop whole chunks/partitions older than the cutoff. Never touches anything newer.
-- Records how far raw readings are gone (settings 'telemetry_retained_from': the end of the newest
-- dropped chunk/partition), so rollup refreshes start after it and keep the rollups of dropped
-- days (sql/200_rollups.sql). Returns the chunks/partitions dropped.
create or replace function iot_private.drop_telemetry_before(cutoff timestamptz)
  returns integer language plpgsql
  set search_path = pg_catalog, pg_temp
as $$
declare
  dropped integer := 0;
  dropped_through timestamptz;
  r record;
begin
  if iot.timescale_tier() < 3 then
    -- drop_chunks drops the chunks wholly before the cutoff (range_end <= cutoff).
    select max(c.range_end) into dropped_through
    from timescaledb_information.chunks c
    where c.hypertable_schema = 'iot_private' and c.hypertable_name = 'sensor_readings' and c.range_end <= cutoff;
    -- TimescaleDB's functions live in whatever schema the extension was created in.
    execute format('select count(*) from %I.drop_chunks(%L::regclass, older_than => $1)',
                   (select n.nspname from pg_extension e join pg_namespace n on n.oid = e.extnamespace where e.extname = 'timescaledb'),
                   'iot_private.sensor_readings')
      into dropped using cutoff;
  else
    for r in
      select b.partition_name, b.to_time from iot_private.partition_bounds('sensor_readings') b
    loop
      -- Drop only partitions wholly before the cutoff.
      if r.to_time <= cutoff then
        execute format('drop table iot_private.%I', r.partition_name);
        dropped := dropped + 1;
        dropped_through := greatest(dropped_through, r.to_time);
      end if;
    end loop;
  end if;
  if dropped > 0 and dropped_through is not null then
    insert into iot_private.settings as s (key, value) values ('telemetry_retained_from', dropped_through::text)
    on conflict (key) do update
      set value = greatest(s.value::timestamptz, excluded.value::timestamptz)::text, updated_at = now();
  end if;
  return dropped;
end
$$;
comment on function iot_private.drop_telemetry_before(timestamptz) is
  'Retention of raw readings: drops whole chunks/partitions before the cutoff and records the retained-from boundary rollup refreshes start at.';

-- Tier 1: compression of raw readings (TimescaleDB's columnstore): segment by device and sensor
-- type, ordered by time, for chunks older than the setting telemetry_compress_after (default
-- 7 days), compressed by the telemetry__compress job. Reads, rollup refreshes and late readings
-- (deduplicated on insert) work on compressed chunks. Tiers 2-3 do not compress (the Apache build
-- has no compression).
insert into iot_private.settings (key, value) values ('telemetry_compress_after', '7 days')
on conflict (key) do nothing;

-- Turns compression on once (tier 1). Not while a constraint of sensor_readings awaits validation:
-- TimescaleDB refuses VALIDATE CONSTRAINT on a table with compression enabled (refresh_rollups
-- validates first; the next call enables). Returns whether compression is on.
create or replace function iot_private.enable_telemetry_compression() returns boolean
  language plpgsql
  set search_path = pg_catalog, pg_temp
as $$
begin
  if iot.timescale_tier() <> 1 then
    return false;
  end if;
  if exists (select 1 from timescaledb_information.hypertables h
             where h.hypertable_schema = 'iot_private' and h.hypertable_name = 'sensor_readings' and h.compression_enabled) then
    return true;
  end if;
  if exists (select 1 from pg_constraint where conrelid = 'iot_private.sensor_readings'::regclass and not convalidated) then
    raise notice 'compression of iot_private.sensor_readings waits until its constraints are validated';
    return false;
  end if;
  alter table iot_private.sensor_readings set (timescaledb.compress,
    timescaledb.compress_segmentby = 'device_id, sensor_type', timescaledb.compress_orderby = 'time desc');
  return true;
end
$$;
comment on function iot_private.enable_telemetry_compression() is
  'Tier 1: enables compression of iot_private.sensor_readings (segment by device_id, sensor_type; order by time). Returns whether it is on.';

-- Compresses the raw chunks wholly older than the cutoff that are not compressed yet (tier 1).
-- Returns the chunks compressed; 0 on tiers 2-3.
create or replace function iot_private.compress_telemetry_before(cutoff timestamptz) returns integer
  language plpgsql
  set search_path = pg_catalog, pg_temp
as $$
declare
  ts text := (select n.nspname from pg_extension e join pg_namespace n on n.oid = e.extnamespace where e.extname = 'timescaledb');
  chunk regclass;
  done integer := 0;
begin
  if not iot_private.enable_telemetry_compression() then
    return 0;
  end if;
  for chunk in
    select format('%I.%I', c.chunk_schema, c.chunk_name)::regclass
    from timescaledb_information.chunks c
    where c.hypertable_schema = 'iot_private' and c.hypertable_name = 'sensor_readings'
      and c.range_end <= cutoff and not c.is_compressed
    order by c.range_start
  loop
    execute format('select %I.compress_chunk($1, if_not_compressed => true)', ts) using chunk;
    done := done + 1;
  end loop;
  return done;
end
$$;
comment on function iot_private.compress_telemetry_before(timestamptz) is
  'Tier 1: compresses raw chunks wholly older than the cutoff; returns how many. 0 on tiers 2-3.';

-- The telemetry__compress job: chunks older than the telemetry_compress_after setting.
create or replace function iot_private.compress_telemetry() returns integer
  language sql
  set search_path = pg_catalog, pg_temp
as $$
  select iot_private.compress_telemetry_before(now() - coalesce(
    (select s.value::interval from iot_private.settings s where s.key = 'telemetry_compress_after'), interval '7 days'))
$$;
comment on function iot_private.compress_telemetry() is
  'The telemetry__compress job (tier 1): compresses raw chunks older than the setting telemetry_compress_after.';

select iot_private.enable_telemetry_compression();

-- Keep partitions a week ahead at every migrate (the worker job keeps it so between migrates).
select iot_private.create_partitions_ahead(7);

-- Tier 3 (plain PostgreSQL): native range partitions made ahead of time, so no insert ever
-- meets a missing partition. Tiers 1-2 let TimescaleDB make chunks; these functions do nothing there.

create or replace function iot.timescale_tier() returns integer
  language sql stable
  set search_path = pg_catalog, pg_temp
as $$ select value::integer from iot_private.settings where key = 'timescale_tier' $$;
comment on function iot.timescale_tier() is
  '1 = TimescaleDB with community features, 2 = TimescaleDB Apache-only, 3 = plain PostgreSQL (native partitions).';

-- Creates the partitions of one table that cover [from_time, to_time]. Returns how many it made.
create or replace function iot_private.ensure_partitions(table_name text, from_time timestamptz, to_time timestamptz)
  returns integer language plpgsql
  set search_path = pg_catalog, pg_temp
as $$
declare
  g text;
  step interval;
  lo timestamptz;
  hi timestamptz;
  made integer := 0;
  part text;
begin
  if iot.timescale_tier() <> 3 then
    return 0;
  end if;
  select p.granularity into g from iot_private.partitioned_tables p where p.table_name = ensure_partitions.table_name;
  if g is null then
    raise exception 'iot_private.ensure_partitions: % is not a partitioned telemetry table', table_name;
  end if;
  step := ('1 ' || g)::interval;
  lo := date_trunc(g, from_time, 'UTC');
  while lo <= to_time loop
    hi := (lo at time zone 'UTC' + step) at time zone 'UTC';
    part := table_name || '_p' || to_char(lo at time zone 'UTC', 'YYYYMMDD');
    if to_regclass('iot_private.' || part) is null then
      begin
        execute format('create table iot_private.%I partition of iot_private.%I for values from (%L) to (%L)',
                       part, table_name, lo, hi);
        made := made + 1;
      exception when duplicate_table then
        null; -- another session made it first
      end;
    end if;
    lo := hi;
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
create or replace function iot_private.drop_telemetry_before(cutoff timestamptz)
  returns integer language plpgsql
  set search_path = pg_catalog, pg_temp
as $$
declare
  dropped integer := 0;
  r record;
begin
  if iot.timescale_tier() < 3 then
    -- TimescaleDB's functions live in whatever schema the extension was created in.
    execute format('select count(*) from %I.drop_chunks(%L::regclass, older_than => $1)',
                   (select n.nspname from pg_extension e join pg_namespace n on n.oid = e.extnamespace where e.extname = 'timescaledb'),
                   'iot_private.sensor_readings')
      into dropped using cutoff;
    return dropped;
  end if;
  for r in
    select c.relname, pg_get_expr(c.relpartbound, c.oid) as bound
    from pg_inherits i
    join pg_class c on c.oid = i.inhrelid
    where i.inhparent = 'iot_private.sensor_readings'::regclass
  loop
    -- Bound text is FOR VALUES FROM ('...') TO ('...'); drop only partitions wholly before the cutoff.
    if (substring(r.bound from 'TO \(''([^'']+)''\)'))::timestamptz <= cutoff then
      execute format('drop table iot_private.%I', r.relname);
      dropped := dropped + 1;
    end if;
  end loop;
  return dropped;
end
$$;

-- Keep partitions a week ahead at every migrate (the worker job keeps it so between migrates).
select iot_private.create_partitions_ahead(7);

-- OEE (overall equipment effectiveness) from production runs and breakdowns.
-- For a work center and a window [since, until):
--   planned time  = the parts of its production runs (actual_start .. actual_end, or now if still
--                   running) inside the window;
--   downtime      = the parts of BREAKDOWN maintenance records inside those run intervals, plus
--                   setup_minutes of runs that started in the window;
--   run time      = planned time - downtime;
--   availability  = run time / planned time;
--   performance   = ideal cycle time x units / run time, at most 1 (ideal cycle time from the run,
--                   else from the work center; units of a run only partly inside the window are
--                   counted pro rata);
--   quality       = good / (good + scrap + rework);
--   oee           = availability x performance x quality.
-- A window without production runs has no OEE (null), not 0.

do $$
begin
  create type iot.oee_result as (
    work_center_id uuid, since timestamptz, until timestamptz,
    planned_minutes numeric, downtime_minutes numeric, run_minutes numeric,
    good_count numeric, scrap_count numeric, rework_count numeric, total_count numeric,
    availability numeric, performance numeric, quality numeric, oee numeric, oee_target numeric,
    avg_cycle_time_seconds numeric, ideal_cycle_time_seconds numeric
  );
exception when duplicate_object then null;
end $$;
comment on type iot.oee_result is 'OEE of one work center over a window; fractions 0..1, null when there was no production.';

-- Set-based core: OEE for every work center in `work_center_ids` (null = all) over one window.
-- In iot (hidden from GraphQL) so that callers' row-level security applies to what it reads.
create or replace function iot.oee_for(work_center_ids uuid[], since timestamptz, until timestamptz)
  returns setof iot.oee_result
  language sql stable
  set search_path = pg_catalog, pg_temp
as $$
  with runs as (
    select r.work_center_id, r.id,
           greatest(r.actual_start, since) as s,
           least(coalesce(r.actual_end, least(now(), until)), until) as e,
           extract(epoch from coalesce(r.actual_end, now()) - r.actual_start) as full_seconds,
           r.good_count, r.scrap_count, r.rework_count,
           case when r.actual_start >= since then r.setup_minutes else 0 end as setup_minutes,
           coalesce(r.ideal_cycle_time_seconds, w.ideal_cycle_time_seconds) as ideal_ct,
           w.oee_target
    from iot.production_runs r
    join iot.work_centers w on w.id = r.work_center_id
    where (work_center_ids is null or r.work_center_id = any (work_center_ids))
      and r.actual_start is not null and r.actual_start < until
      and coalesce(r.actual_end, now()) > since
      and r.status <> 'CANCELLED'
  ), clipped as (
    select runs.*, extract(epoch from e - s) as seconds,
           case when full_seconds > 0 then least(1, extract(epoch from e - s) / full_seconds) else 1 end as share
    from runs where e > s
  ), breakdowns as (
    select c.id, sum(extract(epoch from least(c.e, coalesce(m.ended_at, now())) - greatest(c.s, m.started_at))) as seconds
    from clipped c
    join iot.maintenance_records m on m.work_center_id = c.work_center_id and m.maintenance_type = 'BREAKDOWN'
      and m.started_at < c.e and coalesce(m.ended_at, now()) > c.s
    group by c.id
  ), per_wc as (
    select c.work_center_id,
           sum(c.seconds) / 60 as planned_minutes,
           least(sum(c.seconds), sum(coalesce(b.seconds, 0)) + sum(c.setup_minutes) * 60) / 60 as downtime_minutes,
           sum(c.good_count * c.share) as good, sum(c.scrap_count * c.share) as scrap, sum(c.rework_count * c.share) as rework,
           sum(c.ideal_ct * (c.good_count + c.scrap_count + c.rework_count) * c.share) as ideal_seconds,
           sum(c.ideal_ct * (c.good_count + c.scrap_count + c.rework_count) * c.share) / nullif(sum((c.good_count + c.scrap_count + c.rework_count) * c.share), 0) as ideal_ct,
           max(c.oee_target) as oee_target
    from clipped c left join breakdowns b on b.id = c.id
    group by c.work_center_id
  )
  select p.work_center_id, since, until,
         round(p.planned_minutes, 2), round(p.downtime_minutes, 2), round(p.planned_minutes - p.downtime_minutes, 2),
         round(p.good, 2), round(p.scrap, 2), round(p.rework, 2), round(p.good + p.scrap + p.rework, 2),
         a.availability, pf.performance, q.quality,
         round(a.availability * pf.performance * q.quality, 4),
         p.oee_target,
         round((p.planned_minutes - p.downtime_minutes) * 60 / nullif(p.good + p.scrap + p.rework, 0), 3),
         round(p.ideal_ct, 3)
  from per_wc p
  cross join lateral (select round((p.planned_minutes - p.downtime_minutes) / nullif(p.planned_minutes, 0), 4) as availability) a
  -- least() ignores nulls: without an ideal cycle time (or run time) performance is unknown, not 100%.
  cross join lateral (select p.ideal_seconds / nullif((p.planned_minutes - p.downtime_minutes) * 60, 0) as ratio) pr
  cross join lateral (select round(case when pr.ratio is not null then least(1, pr.ratio) end, 4) as performance) pf
  cross join lateral (select round(p.good / nullif(p.good + p.scrap + p.rework, 0), 4) as quality) q
$$;

comment on function iot.oee_for(uuid[], timestamptz, timestamptz) is '@omit';

create or replace function iot.work_center_oee(work_center_id uuid, since timestamptz, until timestamptz default now())
  returns iot.oee_result
  language sql stable
  set search_path = pg_catalog, pg_temp
as $$
  select o.* from iot.oee_for(array[work_center_id], since, until) o
  where exists (select 1 from iot.work_centers w where w.id = work_center_oee.work_center_id) -- RLS decides visibility
$$;
comment on function iot.work_center_oee(uuid, timestamptz, timestamptz) is 'OEE of one work center over [since, until). Null when it did not produce.';

-- The seed's OEETrend, ProductionSummary and WorkCenterUtilization: fractions become percentages
-- (0-100) where the seed's names say Percentage or OEE; minutes stay minutes. @exactName keeps the
-- seed's spelling in GraphQL (currentOEE, targetOEEPercentage), which camel-casing would change.
do $$
begin
  create type iot.oee_trend as (
    work_center_id uuid, work_center_name text, calculation_date date, shift text,
    availability_percentage numeric, performance_percentage numeric, quality_percentage numeric,
    oee_percentage numeric, target_oee_percentage numeric,
    bucket timestamptz, good_count numeric, total_count numeric, run_minutes numeric, downtime_minutes numeric
  );
exception when duplicate_object then null;
end $$;
comment on type iot.oee_trend is E'@exactName OEETrend\nOEE of a work center in one shift, day, week or month, in percent, with the target.';
comment on column iot.oee_trend.target_oee_percentage is E'@exactName targetOEEPercentage\nThe work center''s OEE target in percent.';
comment on column iot.oee_trend.calculation_date is 'The bucket''s first day in the facility''s time zone.';

-- OEE per work center and bucket (shift, day, week, month; days in the facility's time zone).
-- With bucket 'shift' a shift is the runs of one shift label on one day, measured over its own
-- window (its first run's start to its last run's end), not over the whole day: otherwise every
-- shift of a day would show the day's OEE.
create or replace function iot.oee_trends(
  since timestamptz, until timestamptz default now(), bucket text default 'day', work_center_id uuid default null)
  returns setof iot.oee_trend
  language plpgsql stable
  set search_path = pg_catalog, pg_temp
as $$
begin
  perform iot.check_time_range(since, until, interval '400 days');
  if bucket not in ('shift', 'day', 'week', 'month') then
    raise exception 'bucket must be shift, day, week or month, not %', bucket using errcode = 'IOT03';
  end if;
  if bucket = 'shift' then
    return query
      with wcs as (
        select w.id, w.name, f.timezone from iot.work_centers w join iot.facilities f on f.id = w.facility_id
        where oee_trends.work_center_id is null or w.id = oee_trends.work_center_id
      ), shifts as (
        select wcs.id, wcs.name, (r.actual_start at time zone wcs.timezone)::date as day, r.shift,
               greatest(since, min(r.actual_start)) as shift_start, least(until, max(coalesce(r.actual_end, now()))) as shift_end
        from wcs join iot.production_runs r on r.work_center_id = wcs.id
        where r.status <> 'CANCELLED' and r.actual_start is not null and r.actual_start < until and coalesce(r.actual_end, now()) > since
        group by 1, 2, 3, 4
      )
      select o.work_center_id, s.name, s.day, s.shift,
             round(o.availability * 100, 2), round(o.performance * 100, 2), round(o.quality * 100, 2),
             round(o.oee * 100, 2), round(o.oee_target * 100, 2),
             s.shift_start, o.good_count, o.total_count, o.run_minutes, o.downtime_minutes
      from shifts s
      cross join lateral iot.oee_for(array[s.id], s.shift_start, s.shift_end) o
      where s.shift_end > s.shift_start
      order by 1, 10, 4;
    return;
  end if;
  return query
    with wcs as (
      select w.id, w.name, f.timezone from iot.work_centers w join iot.facilities f on f.id = w.facility_id
      where oee_trends.work_center_id is null or w.id = oee_trends.work_center_id
    ), buckets as (
      select wcs.id, wcs.name, wcs.timezone, b as local_start
      from wcs, generate_series(date_trunc(bucket, since at time zone wcs.timezone), until at time zone wcs.timezone,
                                case bucket when 'week' then interval '1 week' when 'month' then interval '1 month' else interval '1 day' end) b
    )
    select o.work_center_id, b.name, b.local_start::date, null::text,
           round(o.availability * 100, 2), round(o.performance * 100, 2), round(o.quality * 100, 2),
           round(o.oee * 100, 2), round(o.oee_target * 100, 2),
           b.local_start at time zone b.timezone, o.good_count, o.total_count, o.run_minutes, o.downtime_minutes
    from buckets b
    cross join lateral iot.oee_for(array[b.id],
      greatest(since, b.local_start at time zone b.timezone),
      least(until, (b.local_start + case bucket when 'week' then interval '1 week' when 'month' then interval '1 month' else interval '1 day' end) at time zone b.timezone)) o
    order by 1, 10, 4;
end
$$;
comment on function iot.oee_trends(timestamptz, timestamptz, text, uuid) is
  'OEE per work center per shift, day, week or month (facility time zone), in percent, with the target. Buckets without production are left out.';

-- Where a window is left out: the facility's current day so far.
create or replace function iot.facility_today_start(facility_id uuid) returns timestamptz
  language sql stable
  set search_path = pg_catalog, pg_temp
as $$
  select date_trunc('day', now() at time zone f.timezone) at time zone f.timezone
  from iot.facilities f where f.id = facility_today_start.facility_id
$$;
comment on function iot.facility_today_start(uuid) is E'@omit\nMidnight of the current day in the facility''s time zone.';

do $$
begin
  create type iot.production_summary as (
    facility_id uuid, work_center_id uuid, work_center_name text, work_center_type text,
    active_runs integer, scheduled_runs integer, completed_runs_today integer,
    total_good_quantity numeric, total_scrap_quantity numeric, total_rework_quantity numeric,
    average_yield numeric, current_oee numeric, as_of_timestamp timestamptz,
    runs integer, planned_quantity numeric, attainment numeric
  );
exception when duplicate_object then null;
end $$;
comment on type iot.production_summary is E'@exactName ProductionSummary\nProduction of a work center: runs now, quantities of the runs started in the window, yield and OEE in percent.';
comment on column iot.production_summary.current_oee is E'@exactName currentOEE\nOEE in percent of the facility''s current day so far; null when the work center has not produced today.';
comment on column iot.production_summary.average_yield is 'Good units / all units of the window''s runs, in percent.';
comment on column iot.production_summary.attainment is 'Good units / planned quantity of the window''s runs, in percent.';

-- One row per active work center. since/until default to the facility's current day so far.
create or replace function iot.production_summary(
  since timestamptz default null, until timestamptz default null, work_center_id uuid default null)
  returns setof iot.production_summary
  language sql stable
  set search_path = pg_catalog, pg_temp
as $$
  select w.facility_id, w.id, w.name, w.work_center_type,
         (select count(*) from iot.production_runs r where r.work_center_id = w.id and r.status in ('SETUP', 'RUNNING', 'PAUSED'))::integer,
         (select count(*) from iot.production_runs r where r.work_center_id = w.id and r.status = 'PLANNED')::integer,
         (select count(*) from iot.production_runs r where r.work_center_id = w.id and r.status = 'COMPLETED'
             and r.actual_end >= iot.facility_today_start(w.facility_id))::integer,
         coalesce(q.good, 0), coalesce(q.scrap, 0), coalesce(q.rework, 0),
         round(100 * q.good / nullif(q.good + q.scrap + q.rework, 0), 2),
         round(100 * o.oee, 2),
         now(),
         coalesce(q.runs, 0)::integer, q.planned,
         round(100 * q.good / nullif(q.planned, 0), 2)
  from iot.work_centers w
  cross join lateral (select coalesce(since, iot.facility_today_start(w.facility_id)) as s, coalesce(until, now()) as u) win
  left join lateral (
    select count(*) as runs, sum(r.good_count)::numeric as good, sum(r.scrap_count)::numeric as scrap,
           sum(r.rework_count)::numeric as rework, sum(r.planned_quantity)::numeric as planned
    from iot.production_runs r
    where r.work_center_id = w.id and r.actual_start >= win.s and r.actual_start < win.u and r.status <> 'CANCELLED'
  ) q on true
  left join lateral iot.oee_for(array[w.id], iot.facility_today_start(w.facility_id), now()) o on true
  where w.is_active and (production_summary.work_center_id is null or w.id = production_summary.work_center_id)
  order by w.facility_id, w.work_center_code
$$;
comment on function iot.production_summary(timestamptz, timestamptz, uuid) is
  'Per work center: active, scheduled and completed-today runs; good, scrap and rework units of runs started in the window (default: today); yield, attainment and today''s OEE in percent.';

do $$
begin
  create type iot.work_center_utilization as (
    work_center_id uuid, work_center_name text, work_center_type text, status text,
    current_production_run_id uuid, current_oee numeric,
    today_runtime numeric, today_downtime numeric, today_setup_time numeric,
    utilization_percentage numeric, active_run_progress numeric
  );
exception when duplicate_object then null;
end $$;
comment on type iot.work_center_utilization is E'@exactName WorkCenterUtilization\nA work center now: status, the active run, and run, down and setup minutes of the window (default: today).';
comment on column iot.work_center_utilization.status is 'IDLE, RUNNING, DOWN (an open breakdown) or SETUP.';
comment on column iot.work_center_utilization.current_oee is E'@exactName currentOEE\nOEE in percent over the window.';
comment on column iot.work_center_utilization.today_runtime is 'Run minutes in the window (planned time less downtime).';
comment on column iot.work_center_utilization.today_downtime is 'Downtime minutes (breakdowns and setup) in the window.';
comment on column iot.work_center_utilization.today_setup_time is 'Setup minutes of runs started in the window.';
comment on column iot.work_center_utilization.utilization_percentage is 'Run time / window length, in percent.';
comment on column iot.work_center_utilization.active_run_progress is 'Units made / planned quantity of the active run, in percent.';

-- Status now: DOWN (an open breakdown), SETUP or RUNNING (the active run's status), else IDLE.
-- since/until default to the facility's current day so far.
create or replace function iot.work_center_utilization(since timestamptz default null, until timestamptz default null)
  returns setof iot.work_center_utilization
  language sql stable
  set search_path = pg_catalog, pg_temp
as $$
  select w.id, w.name, w.work_center_type,
         case when exists (select 1 from iot.maintenance_records m where m.work_center_id = w.id
                             and m.maintenance_type = 'BREAKDOWN' and m.ended_at is null) then 'DOWN'
              when a.status = 'SETUP' then 'SETUP'
              when a.status = 'RUNNING' then 'RUNNING'
              else 'IDLE' end,
         a.id,
         round(100 * o.oee, 2),
         coalesce(o.run_minutes, 0), coalesce(o.downtime_minutes, 0),
         coalesce((select sum(r.setup_minutes) from iot.production_runs r where r.work_center_id = w.id
                     and r.actual_start >= win.s and r.actual_start < win.u), 0),
         round(100 * coalesce(o.run_minutes, 0) / nullif(extract(epoch from win.u - win.s) / 60, 0), 2),
         -- Not least(1, x / nullif(...)): least() ignores nulls, and no active run is no progress, not 100%.
         case when a.planned_quantity > 0 then
           round(100 * least(1, (a.good_count + a.scrap_count + a.rework_count)::numeric / a.planned_quantity), 2) end
  from iot.work_centers w
  cross join lateral (select coalesce(since, iot.facility_today_start(w.facility_id)) as s, coalesce(until, now()) as u) win
  left join lateral iot.oee_for(array[w.id], win.s, win.u) o on true
  left join lateral (
    select r.* from iot.production_runs r
    where r.work_center_id = w.id and r.status in ('SETUP', 'RUNNING', 'PAUSED')
    order by r.actual_start desc nulls last limit 1
  ) a on true
  where w.is_active
  order by w.facility_id, w.work_center_code
$$;
comment on function iot.work_center_utilization(timestamptz, timestamptz) is
  'Per work center: status now (IDLE, RUNNING, DOWN, SETUP), the active run and its progress, run, down and setup minutes and utilisation in the window (default: today), OEE in percent.';

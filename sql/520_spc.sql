-- Statistical process control (SPC): Shewhart control limits per channel, and the Western Electric
-- rules 1-4 applied every minute to new readings by the spc__evaluate job (workers/spc__evaluate.ts).
--
-- Error codes raised here:
--   IOT03  the baseline window is missing, empty or backwards, or longer than 31 days
--   IOT04  the channel does not exist or belongs to another tenant (deliberately indistinguishable)
--   IOT05  the baseline cannot give control limits: fewer than 30 readings, or no spread (sigma = 0)
--
-- Readings with quality BAD are left out of baselines and evaluations alike: a reading the device
-- itself marks as unreliable says nothing about the process.
--
-- The rules, on one channel's readings in time order, with z = (value - center_line) / sigma.
-- A rule "matches" at a point when the window ending at that point shows the pattern:
--   rule 1  the point is beyond 3 sigma:                          |z| > 3                     HIGH
--   rule 2  2 of the last 3 points beyond 2 sigma, same side:     z > 2 (or z < -2) twice     HIGH
--   rule 3  4 of the last 5 points beyond 1 sigma, same side:     z > 1 (or z < -1) 4 times   LOW
--   rule 4  the last 8 points on the same side of the center:     z > 0 (or z < 0) 8 times    LOW
-- Severity: rules 1 and 2 catch large, sudden shifts (a spike, a broken part), so they are HIGH;
-- rules 3 and 4 catch small sustained shifts and drifts (wear, a sensor going off), so they are LOW.
-- The quality health dimension deducts 10 points per HIGH and 5 per LOW alert, so this mapping is
-- part of the health score's meaning: change it only together with that.
--
-- No alert storms:
--   * Runs. Consecutive points at which a rule matches form one violating run; an alert is raised
--     for the point that starts the run (detected_at = that point's time, value = its value) and
--     not again while the run lasts, even when the run spans several evaluations.
--   * At most one alert per channel and rule per evaluation (the earliest run start), and none while
--     an unacknowledged alert for the same channel and rule was raised (created_at) within the last
--     hour: a process that keeps falling out of control must not bury the operator, who re-arms the
--     rule by acknowledging the alert. Runs suppressed this way are not raised later.
--
-- Progress: iot_private.spc_evaluation_state keeps, per control limit, the time of the newest reading
-- evaluated and the time of the 8th newest. Each run re-reads those 8 readings as context (7 complete
-- the longest window, rule 4's; the 8th tells whether the point before the first new one already
-- matched, i.e. whether a run is continuing), then evaluates the newer readings up to now() - 5 s,
-- at most one hour of them per channel (a backlog is worked off over the following minutes; an hour
-- without readings is stepped over). Readings stored later with a time before the channel's evaluated
-- point are not evaluated: SPC watches the live stream. The 5 second margin keeps the readings of
-- batches still being committed for the next run, which would otherwise step past them.
-- New limits start at the end of their baseline (or when they were computed, if earlier), but at
-- most one day before they were computed.
-- Readings are read per channel by time range, which the (device_id, time desc, sensor_type) index
-- serves, behind `offset 0` fences that keep the planner from making one hash join over all readings
-- of it; no ORDER BY time LIMIT in the steady state, which TimescaleDB would serve from its time-only
-- index by walking every device's readings.

create table if not exists iot_private.spc_evaluation_state (
  control_limit_id  uuid not null,
  evaluated_through timestamptz not null,
  context_from      timestamptz,
  updated_at        timestamptz not null default now(),
  constraint spc_evaluation_state_pkey primary key (control_limit_id),
  constraint spc_evaluation_state_control_limit_fkey foreign key (control_limit_id)
    references iot.spc_control_limits (id) on delete cascade
);
alter table iot_private.spc_evaluation_state add column if not exists context_from timestamptz;
comment on table iot_private.spc_evaluation_state is
  'Per control limit: time of the newest reading iot_private.evaluate_spc() has evaluated (evaluated_through) and of the 8th newest (context_from).';

-- Internal, for jobs: new control limits for many channels in one statement. Channels whose
-- baseline has fewer than 30 readings or no spread are skipped (they get no row); the previous
-- active limits of every channel that gets new ones are deactivated. No tenant check: callers are
-- trusted (iot.compute_spc_control_limits() checks the tenant, then calls this).
create or replace function iot_private.compute_spc_control_limits(
  channel_ids uuid[], baseline_from timestamptz, baseline_to timestamptz)
  returns setof iot.spc_control_limits
  language sql volatile
  set search_path = pg_catalog, pg_temp
as $$
  with channel as materialized (
    select c.id, c.tenant_id, c.device_id, c.sensor_type
    from iot.device_channels c
    where c.id = any (channel_ids)
    order by c.id
    for no key update  -- serialises recomputations of one channel (one active row per channel)
  ), baseline as materialized (
    select channel.id as channel_id, channel.tenant_id, s.n, s.mean, s.sd
    from channel
    cross join lateral (
      select count(*) as n, avg(r.value) as mean, stddev_samp(r.value) as sd
      from iot_private.sensor_readings r
      where r.device_id = channel.device_id and r.sensor_type = channel.sensor_type
        and r.time >= baseline_from and r.time <= baseline_to
        and r.quality <> 'BAD'
    ) s
    where s.n >= 30 and s.sd > 0
  ), retired as (
    update iot.spc_control_limits l
       set is_active = false
      from baseline b
     where l.channel_id = b.channel_id and l.is_active
    returning l.id
  )
  insert into iot.spc_control_limits
    (tenant_id, channel_id, center_line, sigma, baseline_from, baseline_to, sample_count, is_active)
  select b.tenant_id, b.channel_id, b.mean, b.sd, baseline_from, baseline_to, b.n, true
  from baseline b
  -- Data-modifying CTEs run in no set order; this uncorrelated subquery runs `retired` to the end
  -- first, so the old active row is gone before the new one meets spc_control_limits_one_active_per_channel.
  where (select count(*) from retired) >= 0
  returning *
$$;
comment on function iot_private.compute_spc_control_limits(uuid[], timestamptz, timestamptz) is
  'New active control limits (mean, sample stddev of non-BAD readings in [baseline_from, baseline_to]) for each channel with >= 30 readings and sigma > 0; others skipped.';

create or replace function iot.compute_spc_control_limits(
  channel_id uuid, baseline_from timestamptz, baseline_to timestamptz)
  returns iot.spc_control_limits
  language plpgsql volatile security definer
  set search_path = pg_catalog, pg_temp
as $$
declare
  ch record;
  result iot.spc_control_limits;
  n bigint;
  sd double precision;
begin
  if baseline_from is null or baseline_to is null then
    raise exception 'a control limit baseline needs both baseline_from and baseline_to' using errcode = 'IOT03';
  end if;
  if baseline_to <= baseline_from then
    raise exception 'baseline window is empty or backwards: baseline_from % is not before baseline_to %',
      baseline_from, baseline_to using errcode = 'IOT03';
  end if;
  if baseline_to - baseline_from > interval '31 days' then
    raise exception 'baseline window % to % is longer than 31 days', baseline_from, baseline_to using errcode = 'IOT03';
  end if;

  select c.id, c.device_id, c.sensor_type, d.device_code into ch
  from iot.device_channels c
  join iot.iot_devices d on d.id = c.device_id
  where c.id = compute_spc_control_limits.channel_id and c.tenant_id = any (iot.current_tenant_ids());
  if ch.id is null then
    raise exception 'channel % not found', channel_id using errcode = 'IOT04';
  end if;

  select * into result
  from iot_private.compute_spc_control_limits(array[ch.id], baseline_from, baseline_to);
  if result.id is null then
    -- Say why: count and spread of the same readings.
    select count(*), stddev_samp(r.value) into n, sd
    from iot_private.sensor_readings r
    where r.device_id = ch.device_id and r.sensor_type = ch.sensor_type
      and r.time >= baseline_from and r.time <= baseline_to and r.quality <> 'BAD';
    if n < 30 then
      raise exception 'channel % (% of device %) has % readings between % and %; control limits need at least 30',
        ch.id, ch.sensor_type, ch.device_code, n, baseline_from, baseline_to
        using errcode = 'IOT05', hint = 'Choose a longer baseline window in which the channel was reporting.';
    end if;
    raise exception 'channel % (% of device %) has % readings between % and % but they do not vary (sigma 0); control limits need spread',
      ch.id, ch.sensor_type, ch.device_code, n, baseline_from, baseline_to
      using errcode = 'IOT05', hint = 'Choose a baseline window in which the process was running.';
  end if;
  return result;
end
$$;
comment on function iot.compute_spc_control_limits(uuid, timestamptz, timestamptz) is
  E'Computes Shewhart control limits for a channel from a baseline window of stable operation (at most 31 days, at least 30 readings): center line = mean, sigma = sample standard deviation, control limits = center line +/- 3 sigma. The new limits replace the channel''s active ones; readings after the baseline are then checked every minute against Western Electric rules 1-4 (spcAlerts). Errors: IOT03 bad window, IOT04 channel not found, IOT05 too few readings or no spread.';

-- Views read by iot_private.evaluate_spc() (and by tests and curious operators). Nothing depends on
-- them (functions refer to them at run time), so they are recreated to let their columns change.
drop view if exists iot_private.spc_pending_points;
drop view if exists iot_private.spc_evaluation_windows;

-- Per active control limit: which readings the next evaluation looks at, (evaluate_after, evaluate_until].
create view iot_private.spc_evaluation_windows as
select l.id as control_limit_id, l.tenant_id, l.channel_id, c.device_id, c.sensor_type, l.center_line, l.sigma,
       w.evaluate_after,
       least(w.evaluate_after + interval '1 hour', now() - interval '5 seconds') as evaluate_until,
       s.context_from,
       s.control_limit_id is not null as has_state
from iot.spc_control_limits l
join iot.device_channels c on c.id = l.channel_id
left join iot_private.spc_evaluation_state s on s.control_limit_id = l.id
cross join lateral (
  select coalesce(s.evaluated_through,
                  greatest(least(l.baseline_to, l.created_at), l.created_at - interval '1 day')) as evaluate_after
) w
where l.is_active;
comment on view iot_private.spc_evaluation_windows is
  'Per active control limit: the readings the next SPC evaluation looks at, (evaluate_after, evaluate_until], and where its context starts.';

-- The readings of one evaluation, with the rules matched at each and the rules whose violating run
-- starts there: the context (is_new false) and the new readings. Set-based: per channel at most two
-- index range scans, then window functions over all channels at once (one sort; rows kept narrow
-- for it). No per-reading loop.
create view iot_private.spc_pending_points as
with win as (
  select * from iot_private.spc_evaluation_windows
), points as (
  -- Context, usually: the readings from the 8th newest evaluated one to the newest.
  select win.control_limit_id, win.channel_id, p.time, p.value, (p.value - win.center_line) / win.sigma as z, false as is_new
  from win
  cross join lateral (
    select r.time, r.value
    from iot_private.sensor_readings r
    where r.device_id = win.device_id and r.sensor_type = win.sensor_type
      and r.time >= win.context_from and r.time <= win.evaluate_after and r.quality <> 'BAD'
    offset 0  -- a fence: keeps this a range scan per channel (flattened, it may become a hash join over all readings)
  ) p
  union all
  -- Context, at a limit's first evaluation: the 8 readings before its start.
  select win.control_limit_id, win.channel_id, p.time, p.value, (p.value - win.center_line) / win.sigma, false
  from win
  cross join lateral (
    select r.time, r.value
    from iot_private.sensor_readings r
    where win.context_from is null
      and r.device_id = win.device_id and r.sensor_type = win.sensor_type
      and r.time <= win.evaluate_after and r.quality <> 'BAD'
    order by r.time desc
    limit 8
  ) p
  union all
  -- The new readings.
  select win.control_limit_id, win.channel_id, p.time, p.value, (p.value - win.center_line) / win.sigma, true
  from win
  cross join lateral (
    select r.time, r.value
    from iot_private.sensor_readings r
    where r.device_id = win.device_id and r.sensor_type = win.sensor_type
      and r.time > win.evaluate_after and r.time <= win.evaluate_until and r.quality <> 'BAD'
    offset 0  -- as above
  ) p
), matched as (
  select p.*,
    abs(p.z) > 3 as rule1,
    count(*) over w3 = 3
      and greatest(count(*) filter (where p.z > 2) over w3, count(*) filter (where p.z < -2) over w3) >= 2 as rule2,
    count(*) over w5 = 5
      and greatest(count(*) filter (where p.z > 1) over w5, count(*) filter (where p.z < -1) over w5) >= 4 as rule3,
    count(*) over w8 = 8
      and greatest(count(*) filter (where p.z > 0) over w8, count(*) filter (where p.z < 0) over w8) = 8 as rule4,
    first_value(p.time) over w8 as window_from  -- where the longest window ending here starts
  from points p
  window w3 as (partition by p.control_limit_id order by p.time rows 2 preceding),
         w5 as (partition by p.control_limit_id order by p.time rows 4 preceding),
         w8 as (partition by p.control_limit_id order by p.time rows 7 preceding)
)
select m.control_limit_id, m.channel_id, m.time, m.value, m.z, m.is_new, m.rule1, m.rule2, m.rule3, m.rule4,
  -- A run starts where a rule matches and did not at the point before; only new points raise.
  case when m.is_new then array_remove(array[
    case when m.rule1 and not coalesce(lag(m.rule1) over w, false) then 1 end,
    case when m.rule2 and not coalesce(lag(m.rule2) over w, false) then 2 end,
    case when m.rule3 and not coalesce(lag(m.rule3) over w, false) then 3 end,
    case when m.rule4 and not coalesce(lag(m.rule4) over w, false) then 4 end
  ]::smallint[], null) else '{}' end as run_starts,
  m.window_from
from matched m
window w as (partition by m.control_limit_id order by m.time);
comment on view iot_private.spc_pending_points is
  'The readings of the next SPC evaluation: context (is_new false) and new ones, with the Western Electric rules matched at each (rule1-4) and the rules whose violating run starts there (run_starts).';

create or replace function iot_private.evaluate_spc() returns integer
  language plpgsql
  set search_path = pg_catalog, pg_temp
as $$
declare
  raised integer;
begin
  -- One evaluation at a time: a run overlapping the next minute's would read the same readings.
  if not pg_try_advisory_xact_lock(hashtext('iot_private.evaluate_spc')) then
    return 0;
  end if;

  -- One statement, one snapshot: the windows read here are the ones the points view read.
  with win as materialized (
    select * from iot_private.spc_evaluation_windows
  ), pending as materialized (
    select * from iot_private.spc_pending_points
  ), signal as (
    -- The earliest run start per channel and rule in this evaluation.
    select distinct on (p.channel_id, s.rule) p.control_limit_id, p.channel_id, p.time, p.value, p.z, p.window_from, s.rule,
           case s.rule when 1 then 1 when 2 then 3 when 3 then 5 else 8 end as window_size
    from pending p
    cross join lateral unnest(p.run_starts) as s(rule)
    where p.run_starts <> '{}'
    order by p.channel_id, s.rule, p.time
  ), alert as (
    insert into iot.spc_alerts (tenant_id, work_center_id, channel_id, control_limit_id, rule, severity,
                                detected_at, value, details)
    select w.tenant_id, d.work_center_id, s.channel_id, s.control_limit_id, s.rule,
           -- Rules 1-2 (large, sudden shifts) are HIGH, rules 3-4 (small sustained shifts) LOW; see the top of the file.
           case when s.rule <= 2 then 'HIGH' else 'LOW' end,
           s.time, s.value,
           jsonb_build_object(
             'rule', s.rule,
             'description', case s.rule
               when 1 then 'one point beyond 3 sigma'
               when 2 then '2 of 3 consecutive points beyond 2 sigma on the same side'
               when 3 then '4 of 5 consecutive points beyond 1 sigma on the same side'
               else '8 consecutive points on the same side of the center line' end,
             -- Zones: C within 1 sigma of the center line, B 1-2 sigma, A 2-3 sigma, beyond A outside the limits.
             'zone', case s.rule when 1 then 'beyond A' when 2 then 'A' when 3 then 'B' else 'C' end,
             'sigmaThreshold', 4 - s.rule,
             'side', case when s.z > 0 then 'UPPER' else 'LOWER' end,
             'z', s.z,
             'centerLine', w.center_line,
             'sigma', w.sigma,
             'windowStart', v.window_start,
             'values', v.window_values)
    from signal s
    join win w on w.control_limit_id = s.control_limit_id
    join iot.iot_devices d on d.id = w.device_id
    -- The values of the window that completed the pattern (for the few alerts only, a short range scan).
    cross join lateral (
      select min(x.time) as window_start, jsonb_agg(x.value order by x.time) as window_values
      from (
        select r.time, r.value
        from iot_private.sensor_readings r
        where r.device_id = w.device_id and r.sensor_type = w.sensor_type
          and r.time >= s.window_from and r.time <= s.time and r.quality <> 'BAD'
        order by r.time desc
        limit s.window_size
      ) x
    ) v
    where not exists (
      select 1 from iot.spc_alerts a
      where a.channel_id = s.channel_id and a.rule = s.rule
        and a.acknowledged_at is null and a.created_at > now() - interval '1 hour'
    )
    returning 1
  ), seen as (
    select p.control_limit_id, max(p.time) filter (where p.is_new) as newest, min(p.time) filter (where p.age <= 8) as context_from
    from (
      select q.control_limit_id, q.time, q.is_new, row_number() over (partition by q.control_limit_id order by q.time desc) as age
      from pending q
    ) p
    group by p.control_limit_id
  ), progress as (
    insert into iot_private.spc_evaluation_state as st (control_limit_id, evaluated_through, context_from)
    select w.control_limit_id,
           -- Through the newest reading seen; past an hour without readings when that hour is over.
           coalesce(n.newest, case when w.evaluate_until < now() - interval '5 seconds' then w.evaluate_until else w.evaluate_after end),
           coalesce(n.context_from, w.context_from)
    from win w
    left join seen n on n.control_limit_id = w.control_limit_id
    where n.newest is not null or w.evaluate_until < now() - interval '5 seconds' or not w.has_state
    on conflict (control_limit_id) do update
      set evaluated_through = excluded.evaluated_through, context_from = excluded.context_from, updated_at = now()
  )
  select count(*)::integer into raised from alert;
  return raised;
end
$$;
comment on function iot_private.evaluate_spc() is
  'Applies Western Electric rules 1-4 to readings newer than each active control limit''s progress; raises iot.spc_alerts (one per violating run, none while an unacknowledged one of the same channel and rule is under an hour old). Returns the alerts raised.';

-- Acknowledging an SPC alert ends the one-hour hold on new alerts of its channel and rule.
create or replace function iot.acknowledge_spc_alert(alert_id uuid) returns iot.spc_alerts
  language plpgsql volatile security definer
  set search_path = pg_catalog, pg_temp
as $$
declare
  result iot.spc_alerts;
begin
  update iot.spc_alerts a set acknowledged_at = now(), acknowledged_by = iot.current_actor()
   where a.id = alert_id and a.tenant_id = any (iot.current_tenant_ids()) and a.acknowledged_at is null;
  select * into result from iot.spc_alerts a where a.id = alert_id and a.tenant_id = any (iot.current_tenant_ids());
  if result.id is null then
    raise exception 'SPC alert % not found', alert_id using errcode = 'IOT04';
  end if;
  return result;
end
$$;
comment on function iot.acknowledge_spc_alert(uuid) is 'Marks an SPC alert acknowledged by the caller (the first acknowledgement is kept).';

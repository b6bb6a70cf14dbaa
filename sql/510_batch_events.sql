-- Threshold (SENSOR_OUT_OF_RANGE, with hysteresis) and anomaly (ANOMALY_DETECTED) events, per batch.
-- Called by iot_private.ingest_staged_readings() at the end of every ingest batch, in the same
-- transaction, with the batch still in pg_temp.reading_staging (orphans already removed). Set-based:
-- window functions over the batch, one statement for the statistics of every channel in the batch,
-- no loop over readings or channels. Events are rare by construction (one per excursion, at most one
-- anomaly per channel per 5 minutes), so the NOTIFY row trigger on equipment_events stays cheap.
--
-- Which readings count
--   One per (device, sensor type, time) (a batch may hold a reading twice), quality BAD left out
--   (the device itself says the value is not to be trusted), and only readings newer than the
--   channel's state.last_time: a QoS 1 redelivery of stored readings raises nothing again, and
--   late, out-of-order readings (older than what the channel's events were last computed from) are
--   stored by the ingest but ignored here; they neither open nor close an excursion nor raise an
--   anomaly. Within a batch readings are taken in time order.
--
-- SENSOR_OUT_OF_RANGE, one per excursion
--   Range: the channel's normal_min/normal_max, each end falling back to its sensor type's default
--   (null = unbounded at that end; no bound at all = no threshold events). Should the mix of
--   channel and default ends be inverted (a channel that sets only normal_max below the type's
--   normal_min), the channel's own ends alone are used.
--   An excursion starts at the first reading outside [min, max] (bounds themselves are normal). It
--   ends only at a reading back inside by the hysteresis margin:
--     two-sided range: margin = 5% of the width (max - min) inside each bound, so it ends at a
--       reading in [min + 0.05 w, max - 0.05 w];
--     one bound only:  margin = 5% of the bound's magnitude, so it ends at a reading
--       <= max - 0.05 |max| (upper bound) or >= min + 0.05 |min| (lower bound).
--   Readings out of range again while latched, or inside but within the margin, change nothing.
--   The latch (channel_event_state.out_of_range) carries excursions across batches.
--   Severity HIGH when the first reading is beyond its bound by more than 20% of the width (one
--   bound: of the bound's magnitude, so any excess over a lone bound of 0), else MEDIUM. An
--   excursion that crosses from one side to the other without coming back inside is the same one.
--
-- ANOMALY_DETECTED, sudden spikes, drops and steps
--   Baseline of a reading at time t: the channel's stored readings in [t - W, t), where
--     W = 60 minutes, stretched to 30 sampling intervals for slow channels (so a channel sampled
--         every 5 minutes gets 150 minutes) and capped at 24 hours; the sampling interval is the
--         median gap between the batch's readings of the channel (the first gap counted from
--         state.last_time); a lone first reading gets 60 minutes.
--   It is taken from the 1-minute rollups (iot_private.sensor_readings_1m, every tier) for the whole
--   minutes before the minute of the channel's first reading in the batch, and from the batch's own
--   earlier readings after that (readings of that minute stored by earlier batches are left out).
--   When the channel's readings in the batch span less than a minute (live traffic), the rollup
--   part is the minutes [minute - W, minute) for each of them (so up to a minute more than W), and
--   it is cached in the state row: the rollups are read once per channel per minute, not per batch.
--   Otherwise (backfills, slow channels) each reading's frame is exactly [t - W, t). How readings are
--   cut into batches does not change the events (NAB gives the same with batches of 1, 3 or 288),
--   except that on tiers 2-3 readings older than the rollup watermark reach the rollup view only at
--   the next refresh, so a backfill's baseline holds its own batch and what was rolled up before.
--   With n readings, mean m and sample standard deviation s in the baseline:
--     sigma = greatest(s, 1% of |m|, 1% of the normal range width when the range has both ends, 1e-9)
--             (the floor keeps a flat-lining or quantised signal from firing on its last digit),
--     z     = (value - m) / sigma,
--     step  = |value - previous reading| / (sqrt(2) sigma), the previous reading being the channel's
--             last one if it lies within W (the difference of two readings of the baseline
--             distribution has standard deviation sqrt(2) sigma, so both tests use the same k).
--   A reading is anomalous when n >= 30 and |z| > k or step > k, with k = 4 (tuned on NAB's
--   machine_temperature_system_failure series, test/eval/nab.test.ts: 4 of 4 failure windows, 26
--   events outside them in 22,695 readings; k = 5 finds 3 of 4 with 8).
--   One event per episode: consecutive anomalous readings are one episode, and only its first reading
--   may raise an event (channel_event_state.anomalous carries an open episode across batches).
--   Rate limit on top: at most one ANOMALY_DETECTED per channel per 5 minutes of reading time; the
--   earliest episode start at least 5 minutes after the previous event wins, then the next at least
--   5 minutes after that (channel_event_state.last_anomaly_at), so an alert storm cannot happen.
--   Severity HIGH when |z| or step exceeds 2k, else MEDIUM.
--
-- Concurrency: the sink may write two batches at once. The state rows of the batch's channels are
-- locked in key order before anything is read, so batches of the same channel take turns and see
-- each other's state (READ COMMITTED: each statement below takes a new snapshot).

create table if not exists iot_private.channel_event_state (
  device_id            uuid not null,
  sensor_type          text not null,
  last_time            timestamptz,
  last_value           double precision,
  out_of_range         boolean not null default false,
  excursion_started_at timestamptz,
  excursion_side       text,
  anomalous            boolean not null default false,
  last_anomaly_at      timestamptz,
  baseline_end         timestamptz,
  baseline_window      interval,
  baseline_count       double precision,
  baseline_sum         double precision,
  baseline_sum_sq      double precision,
  updated_at           timestamptz not null default now(),
  constraint channel_event_state_pkey primary key (device_id, sensor_type),
  -- State goes with its channel.
  constraint channel_event_state_channel_fkey foreign key (device_id, sensor_type)
    references iot.device_channels (device_id, sensor_type) on update cascade on delete cascade,
  constraint channel_event_state_side_valid check (excursion_side in ('above', 'below')),
  constraint channel_event_state_excursion_consistent
    check (out_of_range = (excursion_started_at is not null) and out_of_range = (excursion_side is not null)),
  constraint channel_event_state_last_consistent check ((last_time is null) = (last_value is null))
);
comment on table iot_private.channel_event_state is
  'Per-channel latch of iot_private.detect_batch_events(): the newest reading events were computed from, the open out-of-range excursion and the last anomaly event (rate limit).';
comment on column iot_private.channel_event_state.last_time is
  'Newest reading time events were computed from; older readings arriving later are ignored for events.';
comment on column iot_private.channel_event_state.anomalous is
  'True while the newest reading is anomalous: an anomaly episode is open and raises no further event.';
comment on column iot_private.channel_event_state.baseline_end is
  'Cached anomaly baseline: count, sum and sum of squares of the rollup minutes [baseline_end - baseline_window, baseline_end).';
comment on column iot_private.channel_event_state.out_of_range is
  'True from the reading that left the normal range until one back inside by the hysteresis margin.';

-- Numbers in event messages: at most 3 decimals, no trailing zeros.
create or replace function iot_private.event_number(v double precision) returns text
  language sql immutable
  set search_path = pg_catalog, pg_temp
as $$ select trim_scale(round(v::numeric, 3))::text $$;

-- jit off: the statement's estimated cost easily passes jit_above_cost, and compiling it took from
-- 0.1 s to over 2 s per batch, for a query that runs in tens of milliseconds.
-- plan_cache_mode: the batch's size is known only when the statement is planned (the staging table
-- has no statistics; the planner reads its size), so each batch gets a plan for its own size.
create or replace function iot_private.detect_batch_events() returns integer
  language plpgsql
  set search_path = pg_catalog, pg_temp
  set jit = off
  set plan_cache_mode = force_custom_plan
as $$
declare
  -- Anomaly threshold in standard deviations and minimum baseline (see the header).
  k constant double precision := 4;
  min_sample constant integer := 30;
  events jsonb;
  raised integer;
begin
  -- State rows for new channels, then every state row of the batch locked, both in key order.
  insert into iot_private.channel_event_state (device_id, sensor_type)
  select distinct s.device_id, s.sensor_type
  from pg_temp.reading_staging s
  order by 1, 2
  on conflict on constraint channel_event_state_pkey do nothing;
  perform 1
  from iot_private.channel_event_state e
  where (e.device_id, e.sensor_type) in (select s.device_id, s.sensor_type from pg_temp.reading_staging s)
  order by e.device_id, e.sensor_type
  for update;

  -- The plan is shaped for the planner's blindness about the temporary table: no join between two
  -- CTEs (it would guess one row each and nest loops over both). Each channel's readings travel as
  -- arrays on its channel row, and everything per reading happens in one lateral subquery per
  -- channel, whose narrow rows are already in time order for its window passes.
  with recursive batch as (
    select r.device_id, r.sensor_type, r.time, r.value, r.unit,
           r.time - lag(r.time, 1, r.state_time) over (partition by r.device_id, r.sensor_type order by r.time) as gap
    from (
      select distinct on (r.device_id, r.sensor_type, r.time)
             r.device_id, r.sensor_type, r.time, r.value, r.unit, e.last_time as state_time
      from pg_temp.reading_staging r
      -- Index lookups whatever the statistics say (offset 0 keeps the planner from turning this
      -- into a join it may nest the wrong way round when the state table was analyzed empty).
      cross join lateral (
        select e.last_time from iot_private.channel_event_state e
        where e.device_id = r.device_id and e.sensor_type = r.sensor_type offset 0
      ) e
      where r.quality <> 'BAD' and (e.last_time is null or r.time > e.last_time)
      order by r.device_id, r.sensor_type, r.time, r.ctid
    ) r
  ), channels as materialized (
    -- One row per channel of the batch: its readings (arrays in time order), range with the
    -- hysteresis margins, state before the batch, device, and the baseline length W.
    select g.device_id, g.sensor_type, g.times, g.vals, g.units,
           d.tenant_id, d.work_center_id, d.device_code,
           rg.lo, rg.hi,
           -- 5% as / 20, so that round figures stay exact (75 - 15 / 20 = 74.25).
           case when rg.lo is null then 0 when rg.hi is null then abs(rg.lo) / 20 else (rg.hi - rg.lo) / 20 end as lo_margin,
           case when rg.hi is null then 0 when rg.lo is null then abs(rg.hi) / 20 else (rg.hi - rg.lo) / 20 end as hi_margin,
           case when rg.lo is not null and rg.hi is not null then rg.hi - rg.lo else abs(coalesce(rg.hi, rg.lo)) end as severity_scale,
           w.win, w.history_end, w.short,
           w.short and e.baseline_end = w.history_end and e.baseline_window = w.win as cached,
           e.baseline_count, e.baseline_sum, e.baseline_sum_sq,
           e.last_time as state_time, e.last_value as state_value, e.out_of_range, e.anomalous, e.last_anomaly_at
    from (
      select b.device_id, b.sensor_type,
             array_agg(b.time order by b.time) as times, array_agg(b.value order by b.time) as vals,
             array_agg(b.unit order by b.time) as units,
             coalesce(percentile_disc(0.5) within group (order by b.gap), interval '0') as median_gap
      from batch b
      group by b.device_id, b.sensor_type
    ) g
    cross join lateral (
      select e.* from iot_private.channel_event_state e
      where e.device_id = g.device_id and e.sensor_type = g.sensor_type offset 0
    ) e
    join iot.device_channels c on c.device_id = g.device_id and c.sensor_type = g.sensor_type
    join iot.sensor_types st on st.sensor_type = c.sensor_type
    join iot.iot_devices d on d.id = g.device_id
    cross join lateral (
      select case when coalesce(c.normal_min, st.normal_min) >= coalesce(c.normal_max, st.normal_max)
                  then c.normal_min else coalesce(c.normal_min, st.normal_min) end as lo,
             case when coalesce(c.normal_min, st.normal_min) >= coalesce(c.normal_max, st.normal_max)
                  then c.normal_max else coalesce(c.normal_max, st.normal_max) end as hi
    ) rg
    cross join lateral (
      select least(greatest(interval '60 minutes', 30 * g.median_gap), interval '24 hours') as win,
             date_bin('1 minute', g.times[1], timestamptz '2000-01-01 00:00Z') as history_end,
             g.times[cardinality(g.times)] - g.times[1] < interval '1 minute' as short
    ) w
  ), readings as (
    -- Per reading, all within one lateral subquery per channel (its rows are in time order and
    -- narrow there, so the window passes below need no sort of wide rows):
    --  1. the baseline over [t - W, t). The whole minutes before the batch come from the 1-minute
    --     rollups: bucket by bucket when the channel's readings in the batch span a minute or more
    --     (backfills, slow channels), so each reading's frame drops the buckets older than its
    --     t - W; as one sum when they span less (live traffic: each frame then starts at the minute
    --     holding its t - W, up to a minute early), and that sum is kept in the state row and read
    --     from the rollups again only when the batch starts in a new minute, so most batches do not
    --     touch the rollups. Frame sums are differences of running sums (a frame starting at
    --     UNBOUNDED PRECEDING accumulates in one pass; float sums have no inverse, so a sliding
    --     frame would re-add every row);
    --  2. z, step, anomalous; threshold "set" (outside [lo, hi]) and "reset" (back inside by the margin);
    --  3. the latch: a reading is latched when its most recent set is later than its most recent
    --     reset; with neither in the batch so far, the state from earlier batches holds; and anomaly
    --     episodes (an anomalous reading after a non-anomalous one starts one);
    --  4. excursion starts (latched after not latched), and what the state keeps after the last reading.
    select c.device_id, c.sensor_type, c.tenant_id, c.work_center_id, c.device_code, c.lo, c.hi,
           c.lo_margin, c.hi_margin, c.severity_scale, c.win, c.last_anomaly_at,
           c.short, c.history_end, hist.n as history_count, hist.s as history_sum, hist.s2 as history_sum_sq,
           c.units[r.seq] as unit, r.seq = cardinality(c.times) as is_last, r.*
    from channels c
    cross join lateral (
      -- Short batches: the whole minutes [history_end - W, history_end) as one sum.
      select case when c.cached then c.baseline_count else f.n end as n,
             case when c.cached then c.baseline_sum else f.s end as s,
             case when c.cached then c.baseline_sum_sq else f.s2 end as s2
      from (
        select sum(v.reading_count)::double precision as n, sum(v.value_sum) as s, sum(v.value_sum_sq) as s2
        from (
          select v.reading_count, v.value_sum, v.value_sum_sq
          from iot_private.sensor_readings_1m v
          where c.short and not c.cached
            and v.device_id = c.device_id and v.sensor_type = c.sensor_type
            and v.bucket >= c.history_end - c.win and v.bucket < c.history_end
          offset 0 -- keeps the subquery apart, so the channel's keys reach the view's index scans
        ) v
      ) f
    ) hist
    cross join lateral (
      select l5.*,
             max(l5.time) filter (where l5.starts) over o as started_at,
             (array_agg(l5.side) filter (where l5.starts) over o) as start_sides
      from (
        select l4.*,
               l4.latched and not coalesce(lag(l4.latched) over o, c.out_of_range) as starts
        from (
          select l3.*,
                 case when c.lo is null and c.hi is null then false
                      when l3.last_set is null and l3.last_reset is null then c.out_of_range
                      else coalesce(l3.last_set > l3.last_reset, l3.last_set is not null) end as latched
          from (
            select l2.*,
                   max(l2.time) filter (where l2.is_out) over o as last_set,
                   max(l2.time) filter (where l2.is_back) over o as last_reset,
                   l2.anomalous and not coalesce(lag(l2.anomalous) over o, c.anomalous) as episode_starts
            from (
              select l1.time, l1.value, l1.seq, l1.base_n, m.mean, sd.sd, sd.sigma, z.z, z.step_z, p.prev_value,
                     coalesce(l1.base_n >= min_sample and (abs(z.z) > k or z.step_z > k), false) as anomalous,
                     (l1.value < c.lo or l1.value > c.hi) is true as is_out,
                     (c.lo is null or l1.value >= c.lo + c.lo_margin) and (c.hi is null or l1.value <= c.hi - c.hi_margin) as is_back,
                     case when l1.value > c.hi then 'above' else 'below' end as side
              from (
                select w.time, w.value, w.seq,
                       w.a_n - 1 - coalesce(w.b_n, 0) as base_n,
                       w.a_s - w.value - coalesce(w.b_s, 0) as base_s,
                       w.a_s2 - w.value * w.value - coalesce(w.b_s2, 0) as base_s2
                from (
                  select s.time, s.value, s.seq,
                         sum(s.n) over upto as a_n, sum(s.s) over upto as a_s, sum(s.s2) over upto as a_s2,
                         sum(s.n) over older as b_n, sum(s.s) over older as b_s, sum(s.s2) over older as b_s2
                  from (
                    select v.bucket as time, null::double precision as value, null::bigint as seq,
                           v.reading_count::double precision as n, v.value_sum as s, v.value_sum_sq as s2
                    from (
                      select v.bucket, v.reading_count, v.value_sum, v.value_sum_sq
                      from iot_private.sensor_readings_1m v
                      where not c.short
                        and v.device_id = c.device_id and v.sensor_type = c.sensor_type
                        and v.bucket >= c.history_end - c.win and v.bucket < c.history_end
                      offset 0
                    ) v
                    union all
                    select c.history_end - interval '1 minute', null, null, hist.n, hist.s, hist.s2
                    where c.short and hist.n > 0
                    union all
                    select u.time, u.value, u.seq, 1, u.value, u.value * u.value
                    from unnest(c.times, c.vals) with ordinality as u(time, value, seq)
                  ) s
                  window upto as (order by s.time range between unbounded preceding and current row),
                         older as (order by s.time range between unbounded preceding and c.win + interval '1 microsecond' preceding)
                ) w
                where w.seq is not null
              ) l1
              cross join lateral (
                select case when l1.seq > 1 then c.times[l1.seq - 1] else c.state_time end as prev_time,
                       case when l1.seq > 1 then c.vals[l1.seq - 1] else c.state_value end as prev_value_any
              ) p0
              cross join lateral (select case when p0.prev_time >= l1.time - c.win then p0.prev_value_any end as prev_value) p
              cross join lateral (select l1.base_s / nullif(l1.base_n, 0) as mean) m
              cross join lateral (
                select q.sd, greatest(q.sd, 0.01 * abs(m.mean), 0.01 * (c.hi - c.lo), 1e-9) as sigma
                from (select sqrt(greatest(l1.base_s2 - l1.base_s * m.mean, 0) / nullif(l1.base_n - 1, 0)) as sd) q
              ) sd
              cross join lateral (
                select (l1.value - m.mean) / sd.sigma as z,
                       abs(l1.value - p.prev_value) / (sqrt(2) * sd.sigma) as step_z
              ) z
            ) l2
            window o as (order by l2.time rows unbounded preceding)
          ) l3
        ) l4
        window o as (order by l4.time)
      ) l5
      window o as (order by l5.time rows unbounded preceding)
    ) r
  ), saved as (
    -- The channel's state after its last reading in the batch.
    update iot_private.channel_event_state e
       set last_time = f.time,
           last_value = f.value,
           out_of_range = f.latched,
           excursion_started_at = case when f.latched then coalesce(f.started_at, e.excursion_started_at) end,
           excursion_side = case when f.latched then coalesce(f.start_sides[cardinality(f.start_sides)], e.excursion_side) end,
           anomalous = f.anomalous,
           baseline_end = case when f.short then f.history_end else e.baseline_end end,
           baseline_window = case when f.short then f.win else e.baseline_window end,
           baseline_count = case when f.short then f.history_count else e.baseline_count end,
           baseline_sum = case when f.short then f.history_sum else e.baseline_sum end,
           baseline_sum_sq = case when f.short then f.history_sum_sq else e.baseline_sum_sq end,
           updated_at = now()
      from readings f
     where f.is_last and e.device_id = f.device_id and e.sensor_type = f.sensor_type
  ), excursion_events as (
    select jsonb_build_object(
             'time', t.time, 'tenant_id', t.tenant_id, 'work_center_id', t.work_center_id, 'device_id', t.device_id,
             'sensor_type', t.sensor_type, 'event_type', 'SENSOR_OUT_OF_RANGE',
             'severity', case when t.excess * 5 > t.severity_scale then 'HIGH' else 'MEDIUM' end,
             'message', format('%s %s %s %s on device %s', t.sensor_type, iot_private.event_number(t.value), t.unit,
                          case when t.lo is not null and t.hi is not null
                               then format('%s normal range %s–%s', t.side, iot_private.event_number(t.lo), iot_private.event_number(t.hi))
                               when t.side = 'above' then format('above normal maximum %s', iot_private.event_number(t.hi))
                               else format('below normal minimum %s', iot_private.event_number(t.lo)) end,
                          t.device_code),
             'details', jsonb_build_object('value', t.value, 'normalMin', t.lo, 'normalMax', t.hi, 'side', t.side,
                          'hysteresisMargin', case when t.side = 'above' then t.hi_margin else t.lo_margin end)) as event
    from (select t.*, case when t.side = 'above' then t.value - t.hi else t.lo - t.value end as excess
          from readings t where t.starts) t
  ), candidates as (
    -- Anomaly episode starts per channel, in time order, each with its event ready.
    select t.device_id, t.sensor_type, t.last_anomaly_at,
           array_agg(t.time order by t.time) as times,
           jsonb_agg(jsonb_build_object(
             'time', t.time, 'tenant_id', t.tenant_id, 'work_center_id', t.work_center_id, 'device_id', t.device_id,
             'sensor_type', t.sensor_type, 'event_type', 'ANOMALY_DETECTED',
             'severity', case when t.score > 2 * k then 'HIGH' else 'MEDIUM' end,
             'message', case when abs(t.z) > k
                  then format('%s %s %s on device %s is %s standard deviations %s the mean %s of the previous %s min (%s readings)',
                              t.sensor_type, iot_private.event_number(t.value), t.unit, t.device_code,
                              iot_private.event_number(abs(t.z)), case when t.z > 0 then 'above' else 'below' end,
                              iot_private.event_number(t.mean), extract(epoch from t.win)::bigint / 60, t.base_n)
                  else format('%s on device %s jumped from %s to %s %s (%s standard deviations of the previous %s min)',
                              t.sensor_type, t.device_code, iot_private.event_number(t.prev_value),
                              iot_private.event_number(t.value), t.unit, iot_private.event_number(t.step_z * sqrt(2)),
                              extract(epoch from t.win)::bigint / 60) end,
             'details', jsonb_build_object('value', t.value, 'mean', t.mean, 'stddev', t.sd, 'sigma', t.sigma, 'zScore', t.z,
                          'previousValue', t.prev_value, 'stepScore', t.step_z, 'readings', t.base_n,
                          'windowMinutes', extract(epoch from t.win)::double precision / 60, 'k', k))
             order by t.time) as events
    from (select r.*, greatest(abs(r.z), coalesce(r.step_z, 0)) as score from readings r where r.episode_starts) t
    group by t.device_id, t.sensor_type, t.last_anomaly_at
  ), chain as (
    -- Rate limit: the earliest start at least 5 minutes after the last event, then the next at
    -- least 5 minutes after that one, and so on; i indexes the channel's arrays.
    select c.times, c.events,
           (select min(i) from generate_subscripts(c.times, 1) i
            where c.last_anomaly_at is null or c.times[i] >= c.last_anomaly_at + interval '5 minutes') as i
    from candidates c
    union all
    select ch.times, ch.events,
           (select min(j) from generate_subscripts(ch.times, 1) j where ch.times[j] >= ch.times[ch.i] + interval '5 minutes')
    from chain ch
    where ch.i is not null
  )
  select jsonb_agg(ev.event order by ev.event ->> 'time') into events
  from (
    select x.event from excursion_events x
    union all
    select ch.events -> (ch.i::integer - 1) from chain ch where ch.i is not null
  ) ev;

  if events is null then
    return 0;
  end if;
  if iot.timescale_tier() = 3 then
    perform iot_private.ensure_partitions('equipment_events',
      (select min((x ->> 'time')::timestamptz) from jsonb_array_elements(events) x),
      (select max((x ->> 'time')::timestamptz) from jsonb_array_elements(events) x));
  end if;
  insert into iot_private.equipment_events (time, tenant_id, work_center_id, device_id, sensor_type, event_type, severity, message, details)
  select x.time, x.tenant_id, x.work_center_id, x.device_id, x.sensor_type, x.event_type, x.severity, x.message, x.details
  from jsonb_to_recordset(events) as x(time timestamptz, tenant_id uuid, work_center_id uuid, device_id uuid, sensor_type text,
                                       event_type text, severity text, message text, details jsonb);
  get diagnostics raised = row_count;
  -- The rate limit's memory (from the events, which are few: a join the planner gets right).
  update iot_private.channel_event_state e
     set last_anomaly_at = a.last_at
    from (select x.device_id, x.sensor_type, max(x.time) as last_at
          from jsonb_to_recordset(events) as x(time timestamptz, device_id uuid, sensor_type text, event_type text)
          where x.event_type = 'ANOMALY_DETECTED'
          group by x.device_id, x.sensor_type) a
   where e.device_id = a.device_id and e.sensor_type = a.sensor_type;
  return raised;
end
$$;
comment on function iot_private.detect_batch_events() is
  'Raises SENSOR_OUT_OF_RANGE (one per excursion, with hysteresis) and ANOMALY_DETECTED (k-sigma spike/step, at most one per channel per 5 minutes) events for the batch in pg_temp.reading_staging. Returns the number raised.';

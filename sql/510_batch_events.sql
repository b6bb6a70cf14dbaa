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
--   It is taken from the 1-minute rollups (iot_private.sensor_readings_1m, every tier) for whole
--   minutes before the minute of the channel's first reading in the batch, and from the batch's own
--   earlier readings after that (readings of that minute stored by earlier batches are left out).
--   Results do not depend on how readings are cut into batches, except that on tiers 2-3 readings
--   older than the rollup watermark reach the rollup view only at the next refresh, so a backfill's
--   baseline holds its own batch and what was rolled up before.
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
comment on column iot_private.channel_event_state.out_of_range is
  'True from the reading that left the normal range until one back inside by the hysteresis margin.';

-- Numbers in event messages: at most 3 decimals, no trailing zeros.
create or replace function iot_private.event_number(v double precision) returns text
  language sql immutable
  set search_path = pg_catalog, pg_temp
as $$ select trim_scale(round(v::numeric, 3))::text $$;

create or replace function iot_private.detect_batch_events() returns integer
  language plpgsql
  set search_path = pg_catalog, pg_temp
as $$
declare
  -- Anomaly threshold in standard deviations (see the header for the definitions).
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

  with recursive batch as (
    select distinct on (r.device_id, r.sensor_type, r.time)
           r.device_id, r.sensor_type, r.time, r.value, r.unit
    from pg_temp.reading_staging r
    join iot_private.channel_event_state e on e.device_id = r.device_id and e.sensor_type = r.sensor_type
    where r.quality <> 'BAD' and (e.last_time is null or r.time > e.last_time)
    order by r.device_id, r.sensor_type, r.time, r.ctid
  ), ordered as (
    select b.*,
           b.time - lag(b.time, 1, e.last_time) over w as gap,
           lag(b.time, 1, e.last_time) over w as prev_time,
           lag(b.value, 1, e.last_value) over w as prev_value,
           row_number() over w as seq,
           count(*) over (partition by b.device_id, b.sensor_type) as n_new
    from batch b
    join iot_private.channel_event_state e on e.device_id = b.device_id and e.sensor_type = b.sensor_type
    window w as (partition by b.device_id, b.sensor_type order by b.time)
  ), channels as materialized (
    -- One row per channel of the batch: its range (with the hysteresis margins), state, device and
    -- the baseline length W.
    select o.device_id, o.sensor_type, o.first_time, o.last_time, o.last_value,
           d.tenant_id, d.work_center_id, d.device_code,
           rg.lo, rg.hi,
           -- 5% as / 20, so that round figures stay exact (75 - 15 / 20 = 74.25).
           case when rg.lo is null then 0 when rg.hi is null then abs(rg.lo) / 20 else (rg.hi - rg.lo) / 20 end as lo_margin,
           case when rg.hi is null then 0 when rg.lo is null then abs(rg.hi) / 20 else (rg.hi - rg.lo) / 20 end as hi_margin,
           case when rg.lo is not null and rg.hi is not null then rg.hi - rg.lo else abs(coalesce(rg.hi, rg.lo)) end as severity_scale,
           least(greatest(interval '60 minutes', 30 * o.median_gap), interval '24 hours') as win,
           date_bin('1 minute', o.first_time, timestamptz '2000-01-01 00:00Z') as history_end,
           e.out_of_range, e.excursion_started_at, e.excursion_side, e.anomalous, e.last_anomaly_at
    from (
      select o.device_id, o.sensor_type, min(o.time) as first_time, max(o.time) as last_time,
             (array_agg(o.value order by o.time desc))[1] as last_value,
             coalesce(percentile_disc(0.5) within group (order by o.gap), interval '0') as median_gap
      from ordered o
      group by o.device_id, o.sensor_type
    ) o
    join iot_private.channel_event_state e on e.device_id = o.device_id and e.sensor_type = o.sensor_type
    join iot.device_channels c on c.device_id = o.device_id and c.sensor_type = o.sensor_type
    join iot.sensor_types st on st.sensor_type = c.sensor_type
    join iot.iot_devices d on d.id = o.device_id
    cross join lateral (
      select case when coalesce(c.normal_min, st.normal_min) >= coalesce(c.normal_max, st.normal_max)
                  then c.normal_min else coalesce(c.normal_min, st.normal_min) end as lo,
             case when coalesce(c.normal_min, st.normal_min) >= coalesce(c.normal_max, st.normal_max)
                  then c.normal_max else coalesce(c.normal_max, st.normal_max) end as hi
    ) rg
  ),

  -- Thresholds: a latch per reading. "set" = outside [lo, hi], "reset" = back inside by the margin.
  -- A reading is latched when its most recent set (up to and including it) is later than its most
  -- recent reset; with neither in the batch so far, the state from earlier batches holds.
  flagged as (
    select o.device_id, o.sensor_type, o.time, o.value, o.unit, c.lo, c.hi, c.severity_scale,
           (o.value < c.lo or o.value > c.hi) is true as is_out,
           (c.lo is null or o.value >= c.lo + c.lo_margin) and (c.hi is null or o.value <= c.hi - c.hi_margin) as is_back
    from ordered o
    join channels c on c.device_id = o.device_id and c.sensor_type = o.sensor_type
    where c.lo is not null or c.hi is not null
  ), latched as (
    select f.*,
           max(f.time) filter (where f.is_out) over w as last_set,
           max(f.time) filter (where f.is_back) over w as last_reset
    from flagged f
    window w as (partition by f.device_id, f.sensor_type order by f.time rows unbounded preceding)
  ), latch as (
    select l.*,
           case when l.last_set is null and l.last_reset is null then c.out_of_range
                else coalesce(l.last_set > l.last_reset, l.last_set is not null) end as latched,
           c.out_of_range as latched_before_batch
    from latched l
    join channels c on c.device_id = l.device_id and c.sensor_type = l.sensor_type
  ), transitions as (
    select l.*,
           l.latched and not coalesce(lag(l.latched) over w, l.latched_before_batch) as starts,
           row_number() over (partition by l.device_id, l.sensor_type order by l.time desc) as from_last
    from latch l
    window w as (partition by l.device_id, l.sensor_type order by l.time)
  ), excursions as (
    select t.device_id, t.sensor_type, t.time, t.value, t.unit, t.lo, t.hi,
           case when t.value > t.hi then 'above' else 'below' end as side,
           case when t.value > t.hi then t.value - t.hi else t.lo - t.value end as excess,
           t.severity_scale
    from transitions t
    where t.starts
  ), threshold_end as (
    -- Latch after each channel's last reading, and when its open excursion (if any) started.
    select t.device_id, t.sensor_type, t.latched,
           (select max(x.time) from excursions x where x.device_id = t.device_id and x.sensor_type = t.sensor_type) as started_at,
           (select x.side from excursions x where x.device_id = t.device_id and x.sensor_type = t.sensor_type
            order by x.time desc limit 1) as side
    from transitions t
    where t.from_last = 1
  ),

  -- Anomalies: the baseline of each reading over the union of whole-minute rollup buckets before
  -- the batch and the batch's own readings, in one window pass. The frame is "the previous W": the
  -- ordering key is time in units of the channel's W, so RANGE 1 PRECEDING is [t - W, t]. The key
  -- is numeric, so t - W lands exactly on 1 preceding (a double could drop the oldest reading).
  history as (
    select c.device_id, c.sensor_type, h.bucket as time, h.reading_count::double precision as n,
           h.value_sum as s, h.value_sum_sq as s2
    from channels c
    cross join lateral (
      select v.bucket, v.reading_count, v.value_sum, v.value_sum_sq
      from iot_private.sensor_readings_1m v
      where v.device_id = c.device_id and v.sensor_type = c.sensor_type
        and v.bucket >= c.history_end - c.win and v.bucket < c.history_end
      offset 0 -- keeps the subquery apart, so the channel's keys reach the view's index scans
    ) h
  ), series as (
    select h.device_id, h.sensor_type, h.time, h.n, h.s, h.s2, false as is_reading,
           null::double precision as value, null::text as unit, null::timestamptz as prev_time, null::double precision as prev_value
    from history h
    union all
    select o.device_id, o.sensor_type, o.time, 1, o.value, o.value * o.value, true,
           o.value, o.unit, o.prev_time, o.prev_value
    from ordered o
  ), baseline as (
    select sr.*, c.win, c.lo, c.hi,
           sum(sr.n) over w as base_n, sum(sr.s) over w as base_s, sum(sr.s2) over w as base_s2
    from series sr
    join channels c on c.device_id = sr.device_id and c.sensor_type = sr.sensor_type
    window w as (partition by sr.device_id, sr.sensor_type
                 order by extract(epoch from sr.time) / extract(epoch from c.win)
                 range between 1 preceding and current row exclude current row)
  ), scored as (
    select b.device_id, b.sensor_type, b.time, b.value, b.unit, b.win, b.base_n, m.mean, sd.sd, sd.sigma, z.z, z.step_z,
           case when b.prev_time >= b.time - b.win then b.prev_value end as prev_value,
           coalesce(b.base_n >= min_sample and (abs(z.z) > k or z.step_z > k), false) as anomalous
    from baseline b
    cross join lateral (select b.base_s / nullif(b.base_n, 0) as mean) m
    cross join lateral (
      select s.sd, greatest(s.sd, 0.01 * abs(m.mean), 0.01 * (b.hi - b.lo), 1e-9) as sigma
      from (select sqrt(greatest(b.base_s2 - b.base_s * m.mean, 0) / nullif(b.base_n - 1, 0)) as sd) s
    ) sd
    cross join lateral (
      select (b.value - m.mean) / sd.sigma as z,
             case when b.prev_time >= b.time - b.win then abs(b.value - b.prev_value) / (sqrt(2) * sd.sigma) end as step_z
    ) z
    where b.is_reading
  ), episodes as (
    -- An anomaly episode starts at an anomalous reading whose predecessor was not anomalous; the
    -- readings that follow while the deviation lasts belong to the same episode and raise nothing.
    select s.*,
           s.anomalous and not coalesce(lag(s.anomalous) over w, c.anomalous) as starts,
           row_number() over (partition by s.device_id, s.sensor_type order by s.time desc) as from_last
    from scored s
    join channels c on c.device_id = s.device_id and c.sensor_type = s.sensor_type
    window w as (partition by s.device_id, s.sensor_type order by s.time)
  ), candidates as (
    select e.*, greatest(abs(e.z), coalesce(e.step_z, 0)) as score
    from episodes e
    where e.starts
  ), chain as (
    -- Rate limit: the earliest candidate at least 5 minutes after the last event, then the next at
    -- least 5 minutes after that one, and so on (few steps: candidates are rare).
    select c.device_id, c.sensor_type, min(x.time) as time
    from channels c
    join candidates x on x.device_id = c.device_id and x.sensor_type = c.sensor_type
    where c.last_anomaly_at is null or x.time >= c.last_anomaly_at + interval '5 minutes'
    group by c.device_id, c.sensor_type
    union all
    select ch.device_id, ch.sensor_type,
           (select min(x.time) from candidates x
            where x.device_id = ch.device_id and x.sensor_type = ch.sensor_type and x.time >= ch.time + interval '5 minutes')
    from chain ch
    where ch.time is not null
  ), anomalies as (
    select x.*
    from chain ch
    join candidates x on x.device_id = ch.device_id and x.sensor_type = ch.sensor_type and x.time = ch.time
  ),

  -- The events, and the state after the batch.
  new_events as (
    select c.tenant_id, c.work_center_id, c.device_id, c.sensor_type, x.time,
           'SENSOR_OUT_OF_RANGE' as event_type,
           case when x.excess * 5 > x.severity_scale then 'HIGH' else 'MEDIUM' end as severity,
           format('%s %s %s %s on device %s', c.sensor_type, iot_private.event_number(x.value), x.unit,
                  case when x.lo is not null and x.hi is not null
                       then format('%s normal range %s–%s', x.side, iot_private.event_number(x.lo), iot_private.event_number(x.hi))
                       when x.side = 'above' then format('above normal maximum %s', iot_private.event_number(x.hi))
                       else format('below normal minimum %s', iot_private.event_number(x.lo)) end,
                  c.device_code) as message,
           jsonb_build_object('value', x.value, 'normalMin', x.lo, 'normalMax', x.hi, 'side', x.side,
                              'hysteresisMargin', case when x.side = 'above' then c.hi_margin else c.lo_margin end) as details
    from excursions x
    join channels c on c.device_id = x.device_id and c.sensor_type = x.sensor_type
    union all
    select c.tenant_id, c.work_center_id, c.device_id, c.sensor_type, a.time,
           'ANOMALY_DETECTED',
           case when a.score > 2 * k then 'HIGH' else 'MEDIUM' end,
           case when abs(a.z) > k
                then format('%s %s %s on device %s is %s standard deviations %s the mean %s of the previous %s min (%s readings)',
                            c.sensor_type, iot_private.event_number(a.value), a.unit, c.device_code,
                            iot_private.event_number(abs(a.z)), case when a.z > 0 then 'above' else 'below' end,
                            iot_private.event_number(a.mean), extract(epoch from a.win)::bigint / 60, a.base_n)
                else format('%s on device %s jumped from %s to %s %s (%s standard deviations of the previous %s min)',
                            c.sensor_type, c.device_code, iot_private.event_number(a.prev_value),
                            iot_private.event_number(a.value), a.unit, iot_private.event_number(a.step_z * sqrt(2)),
                            extract(epoch from a.win)::bigint / 60) end,
           jsonb_build_object('value', a.value, 'mean', a.mean, 'stddev', a.sd, 'sigma', a.sigma, 'zScore', a.z,
                              'previousValue', a.prev_value, 'stepScore', a.step_z, 'readings', a.base_n,
                              'windowMinutes', (extract(epoch from a.win) / 60)::double precision, 'k', k)
    from anomalies a
    join channels c on c.device_id = a.device_id and c.sensor_type = a.sensor_type
  ), saved as (
    update iot_private.channel_event_state e
       set last_time = c.last_time,
           last_value = c.last_value,
           out_of_range = coalesce(t.latched, false),
           excursion_started_at = case when t.latched then coalesce(t.started_at, c.excursion_started_at) end,
           excursion_side = case when t.latched then coalesce(t.side, c.excursion_side) end,
           anomalous = coalesce((select x.anomalous from episodes x
                                 where x.device_id = c.device_id and x.sensor_type = c.sensor_type and x.from_last = 1), false),
           last_anomaly_at = coalesce((select max(a.time) from anomalies a
                                       where a.device_id = c.device_id and a.sensor_type = c.sensor_type), c.last_anomaly_at),
           updated_at = now()
      from channels c
      left join threshold_end t on t.device_id = c.device_id and t.sensor_type = c.sensor_type
     where e.device_id = c.device_id and e.sensor_type = c.sensor_type
  )
  select jsonb_agg(to_jsonb(ne) order by ne.time) into events from new_events ne;

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
  return raised;
end
$$;
comment on function iot_private.detect_batch_events() is
  'Raises SENSOR_OUT_OF_RANGE (one per excursion, with hysteresis) and ANOMALY_DETECTED (k-sigma spike/step, at most one per channel per 5 minutes) events for the batch in pg_temp.reading_staging. Returns the number raised.';

-- Threshold (SENSOR_OUT_OF_RANGE, with hysteresis and minimum durations) and anomaly
-- (ANOMALY_DETECTED) events, per batch.
-- Called after every ingest batch commits, with the batch's stored readings loaded into
-- pg_temp.reading_staging (iot_private.detect_stored_events, sql/515_events_after_commit.sql), or
-- by iot_private.ingest_staged_readings() in the batch's own transaction (orphans already
-- removed) for a caller that wants the events in the same commit. Set-based:
-- window functions over the batch, one statement for the statistics of every channel in the batch,
-- no loop over readings or channels. Events are rare by construction (one per excursion, at most one
-- anomaly per channel per 5 minutes), so the row triggers on equipment_events stay cheap.
--
-- Settings (iot_private.settings, checked when written; defaults below):
--   excursion_min_seconds  30     readings must stay out of range this long before an excursion opens
--   recovery_min_seconds   30     and back inside the hysteresis band this long before it closes
--   counter_sensor_types   COUNT  comma-separated sensor types that are cumulative counters
--
-- Which readings count
--   One per (device, sensor type, time) (a batch may hold a reading twice), quality BAD left out
--   (the device itself says the value is not to be trusted), and only readings newer than the
--   channel's state.last_time: a QoS 1 redelivery of stored readings raises nothing again, and
--   late, out-of-order readings (older than what the channel's events were last computed from) are
--   stored by the ingest but ignored here; they neither open nor close an excursion nor raise an
--   anomaly. Within a batch readings are taken in time order. How readings are cut into batches
--   does not change the events: everything a later batch needs is carried in channel_event_state.
--
-- SENSOR_OUT_OF_RANGE, one per excursion
--   Range: the channel's normal_min/normal_max, each end falling back to its sensor type's default
--   (null = unbounded at that end; no bound at all = no threshold events). Should the mix of
--   channel and default ends be inverted (a channel that sets only normal_max below the type's
--   normal_min), the channel's own ends alone are used. Counters are judged on their raw value here.
--   Each reading is "out" (outside [min, max]; the bounds themselves are normal), "back" (inside by
--   the hysteresis margin) or in between (inside, within the margin):
--     two-sided range: margin = 5% of the width (max - min) inside each bound, so back means in
--       [min + 0.05 w, max - 0.05 w];
--     one bound only:  margin = 5% of the bound's magnitude, so back means
--       <= max - 0.05 |max| (upper bound) or >= min + 0.05 |min| (lower bound).
--   A recovery is a run of consecutive back readings spanning at least recovery_min_seconds (from
--   its first reading to the current one). An episode starts at an out reading and lasts until a
--   recovery completes: out readings, in-between readings and shorter runs of back readings on the
--   way (noise wider than the hysteresis) are all the same episode.
--   The episode becomes an excursion, and raises its one event, at the first out reading at least
--   excursion_min_seconds after the episode's first out reading: a spike shorter than that raises
--   nothing. The event is stamped at the episode's first out reading (when the excursion began);
--   metadata.confirmedAt says when it was raised. An excursion that crosses from one side to the
--   other without a recovery is the same one.
--   With both settings 0 this is plain hysteresis: an event at the first out reading, ended by the
--   first back reading.
--   Severity ERROR when the peak (the reading furthest out up to the event) is beyond its bound by
--   more than 20% of the width (one bound: of the bound's magnitude, so any excess over a lone bound
--   of 0), else WARNING. Code <SENSOR_TYPE>_HIGH or _LOW by the peak's side (TEMPERATURE_HIGH).
--
-- ANOMALY_DETECTED, sudden spikes, drops and steps
--   The judged value: the reading's value; for a cumulative counter (counter_sensor_types) its rate,
--   the delta per second from the previous reading (a negative delta is a counter reset: no rate,
--   neither judged nor in a baseline; a counter's first reading has none either).
--   Baseline of a reading at time t: the channel's judged values in [t - W, t), where
--     W = 60 minutes, stretched to 30 sampling intervals for slow channels (so a channel sampled
--         every 5 minutes gets 150 minutes) and capped at 24 hours; the sampling interval is the
--         median gap between the batch's readings of the channel (the first gap counted from
--         state.last_time); a lone first reading gets 60 minutes.
--   It is taken, for the whole minutes before the minute of the channel's first reading in the
--   batch, from the 1-minute rollups (iot_private.sensor_readings_1m, every tier), or for counters
--   from the stored raw readings (rates are not in the rollups; quality BAD left out), and from the
--   batch's own earlier readings after that (readings of that minute stored by earlier batches are
--   left out).
--   When the channel's readings in the batch span less than a minute (live traffic), the history
--   part is the minutes [minute - W, minute) for each of them (so up to a minute more than W), and
--   it is cached in the state row: history is read once per channel per minute, not per batch.
--   Otherwise (backfills, slow channels) each reading's frame is exactly [t - W, t). NAB gives the
--   same events with batches of 1, 3 or 288, except that on tiers 2-3 readings older than the rollup
--   watermark reach the rollup view only at the next refresh, so a backfill's baseline holds its own
--   batch and what was rolled up before.
--   With n values, mean m and sample standard deviation s in the baseline:
--     sigma = greatest(s, 1% of |m|, 1% of the normal range width when the range has both ends and
--             the channel is not a counter, 1e-9)
--             (the floor keeps a flat-lining or quantised signal from firing on its last digit),
--     z     = (value - m) / sigma,
--     step  = |value - previous reading| / (sqrt(2) sigma), the previous reading being the channel's
--             last one if it lies within W (the difference of two readings of the baseline
--             distribution has standard deviation sqrt(2) sigma, so both tests use the same k).
--             Not for counters: a rate is already a difference, and its step would be the noisy
--             second difference; a change of rate is the z test's to find.
--   A value is anomalous when n >= 30 and |z| > k or step > k, with k = 4 (tuned on NAB's
--   machine_temperature_system_failure series, test/eval/nab.test.ts: 4 of 4 failure windows, 26
--   events outside them in 22,695 readings; k = 5 finds 3 of 4 with 8).
--   One event per episode: consecutive anomalous readings are one episode, and only its first reading
--   may raise an event (channel_event_state.anomalous carries an open episode across batches).
--   Rate limit on top: at most one ANOMALY_DETECTED per channel per 5 minutes of reading time; the
--   earliest episode start at least 5 minutes after the previous event wins, then the next at least
--   5 minutes after that (channel_event_state.last_anomaly_at), so an alert storm cannot happen.
--   Severity ERROR when |z| or step exceeds 2k, else WARNING. Code <SENSOR_TYPE>_ANOMALY, for
--   counters <SENSOR_TYPE>_RATE_ANOMALY.
--
-- Severities raised by the system: WARNING and ERROR here, WARNING for HEARTBEAT_TIMEOUT
-- (sql/400_heartbeats.sql). INFO and CRITICAL are left to events recorded by people
-- (recordEquipmentEvent).
--
-- Concurrency: the sink may write two batches at once. The state rows of the batch's channels are
-- locked in key order before anything is read, so batches of the same channel take turns and see
-- each other's state (READ COMMITTED: each statement below takes a new snapshot).

insert into iot_private.settings (key, value) values
  ('excursion_min_seconds', '30'), ('recovery_min_seconds', '30'), ('counter_sensor_types', 'COUNT')
on conflict (key) do nothing;

-- A setting the detector reads every batch must never make a batch fail: refuse bad values when
-- they are written, naming the key and what is expected.
create or replace function iot_private.tg_settings__check_event_settings() returns trigger
  language plpgsql
  set search_path = pg_catalog, pg_temp
as $$
begin
  if new.key in ('excursion_min_seconds', 'recovery_min_seconds')
     and (case when new.value ~ '^\s*[0-9]{1,9}(\.[0-9]+)?\s*$' then new.value::numeric > 86400 else true end) then
    raise exception 'setting % must be a number of seconds from 0 to 86400, not %', new.key, new.value
      using errcode = '22023';
  elsif new.key = 'counter_sensor_types' and new.value !~ '^\s*([A-Z][A-Z0-9_]{0,62}\s*(,\s*|$))*$' then
    raise exception 'setting counter_sensor_types must be comma-separated upper-case sensor types, not %', new.value
      using errcode = '22023';
  end if;
  return new;
end
$$;
drop trigger if exists _200_check_event_settings on iot_private.settings;
create trigger _200_check_event_settings before insert or update on iot_private.settings
  for each row execute function iot_private.tg_settings__check_event_settings();

create table if not exists iot_private.channel_event_state (
  device_id            uuid not null,
  sensor_type          text not null,
  last_time            timestamptz,
  last_value           double precision,
  out_of_range         boolean not null default false,
  excursion_started_at timestamptz,
  excursion_side       text,
  excursion_confirmed  boolean not null default false,
  excursion_peak_value double precision,
  back_since           timestamptz,
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
  constraint channel_event_state_last_consistent check ((last_time is null) = (last_value is null)),
  constraint channel_event_state_confirmed_open check (out_of_range or not excursion_confirmed),
  constraint channel_event_state_peak_open check (out_of_range or excursion_peak_value is null)
);

-- Upgrade of a state table made before minimum durations existed: an excursion open then had
-- already raised its event, so it counts as confirmed (no second event for it).
do $$
begin
  if not exists (select 1 from pg_attribute where attrelid = 'iot_private.channel_event_state'::regclass
                 and attname = 'excursion_confirmed' and not attisdropped) then
    alter table iot_private.channel_event_state
      add column excursion_confirmed boolean not null default false,
      add column excursion_peak_value double precision,
      add column back_since timestamptz;
    update iot_private.channel_event_state set excursion_confirmed = true where out_of_range;
    alter table iot_private.channel_event_state
      add constraint channel_event_state_confirmed_open check (out_of_range or not excursion_confirmed),
      add constraint channel_event_state_peak_open check (out_of_range or excursion_peak_value is null);
  end if;
end $$;

comment on table iot_private.channel_event_state is
  'Per-channel latch of iot_private.detect_batch_events(): the newest reading events were computed from, the open out-of-range episode and the last anomaly event (rate limit).';
comment on column iot_private.channel_event_state.last_time is
  'Newest reading time events were computed from; older readings arriving later are ignored for events.';
comment on column iot_private.channel_event_state.anomalous is
  'True while the newest reading is anomalous: an anomaly episode is open and raises no further event.';
comment on column iot_private.channel_event_state.baseline_end is
  'Cached anomaly baseline: count, sum and sum of squares of the judged values in the minutes [baseline_end - baseline_window, baseline_end).';
comment on column iot_private.channel_event_state.out_of_range is
  'True from an out-of-range reading until readings have been back inside by the hysteresis margin for recovery_min_seconds.';
comment on column iot_private.channel_event_state.excursion_confirmed is
  'The open episode has stayed out of range for excursion_min_seconds and raised its SENSOR_OUT_OF_RANGE event.';
comment on column iot_private.channel_event_state.excursion_peak_value is
  'The reading furthest out of range in the open episode so far (its event reports it).';
comment on column iot_private.channel_event_state.back_since is
  'First reading of the current run of readings back inside the hysteresis band; null when the newest reading is not.';

-- Numbers in event descriptions: at most 3 decimals, no trailing zeros.
create or replace function iot_private.event_number(v double precision) returns text
  language sql immutable
  set search_path = pg_catalog, pg_temp
as $$ select trim_scale(round(v::numeric, 3))::text $$;

-- An event code from a sensor type and a suffix, within the 63 characters event codes allow.
create or replace function iot_private.event_code(sensor_type text, suffix text) returns text
  language sql immutable
  set search_path = pg_catalog, pg_temp
as $$ select left(upper(sensor_type), 63 - length(suffix)) || suffix $$;

-- A numeric setting in seconds (validated on write), with its default when absent.
create or replace function iot_private.setting_seconds(setting_key text, fallback double precision) returns interval
  language sql stable
  set search_path = pg_catalog, pg_temp
as $$
  select make_interval(secs => coalesce((select s.value::double precision from iot_private.settings s where s.key = setting_key), fallback))
$$;

-- The anomaly baseline's history part of a channel: count, sum and sum of squares of its values in
-- the 1-minute rollups' buckets [from_time, to_time) (the full detector reads the same for a short
-- batch), as [n, sum, sum of squares], nulls when there are none.
create or replace function iot_private.baseline_history(device uuid, sensor text, from_time timestamptz, to_time timestamptz)
  returns double precision[]
  language plpgsql stable
  set search_path = pg_catalog, pg_temp
as $$
declare
  sums double precision[];
begin
  select array[sum(r.reading_count::double precision), sum(r.value_sum), sum(r.value_sum_sq)] into sums
  from iot_private.sensor_readings_1m r
  where r.device_id = device and r.sensor_type = sensor and r.bucket >= from_time and r.bucket < to_time;
  return sums;
end
$$;
comment on function iot_private.baseline_history(uuid, text, timestamptz, timestamptz) is
  'Count, sum and sum of squares of a channel''s values in the 1-minute rollup buckets [from_time, to_time), as an array (nulls when none): the anomaly baseline''s history part.';

-- Fast path: a channel whose batch provably raises nothing and changes nothing but its newest
-- reading (and an open excursion's peak) has its state saved here in one flat pass; only the
-- other channels' devices go through the full detector below. The proof needs no sort and no
-- per-reading arithmetic: one hashed aggregate per channel (count, minimum and maximum of the
-- judged readings, first and last time) bounds everything the full detector could find:
--  - either no excursion is open and every reading is back inside the hysteresis band (no episode
--    can start: the minimum and the maximum are), or a confirmed excursion is open and every
--    reading is beyond the band on one side (no recovery can start, and its one event was raised);
--  - the readings span less than a minute and the first is at most 2 minutes after the channel's
--    last one, so W is 60 minutes and the baseline's history part is the cache of their minute: kept
--    when it is that minute's, else read here from the 1-minute rollups as the full detector reads
--    it; the channel is not a counter;
--  - no reading's z or step can reach 0.999 k. Each reading's baseline is the cache plus the
--    batch's earlier readings, so its mean lies between the smallest and the largest of the cache's
--    mean and the batch's values, and |value - mean| is at most that span (D); adding values never
--    lowers the sum of squared deviations, so its standard deviation is at least
--    sqrt(SS_cache / (n_cache + n_batch)), and the floors (1% of the smallest |mean| possible, 1% of
--    the range width) hold too. D / sigma bounds z; the span of the batch's values and the channel's
--    last value, over sqrt(2) sigma, bounds every step. (When no reading can have 30 values before
--    it, none is judged at all.)
-- Such a channel's full run would raise nothing and write exactly this state (newest reading;
-- back_since from the first back reading, or null in an excursion; the excursion's peak; not
-- anomalous; the baseline cache unchanged). test/db/events.test.ts runs both and compares.
-- Live traffic takes it for nearly every channel: all but those around excursions and spikes. It also takes the batch's state rows' locks, in key
-- order, before it reads them (a second writer with the same channels waits here).
-- The session setting iot.event_fast_path = off turns it off (the tests compare the two).
create or replace function iot_private.save_plain_channel_states(
  counter_types text[], k double precision, min_sample integer) returns uuid[]
  language plpgsql
  set search_path = pg_catalog, pg_temp
  set jit = off
  set plan_cache_mode = auto  -- one hashed plan fits every batch size; planning it each batch cost more
as $$
declare
  slow_devices uuid[];
begin
  with locked as materialized (
    select e.device_id, e.sensor_type, e.last_time, e.last_value, e.out_of_range, e.excursion_confirmed,
           e.excursion_peak_value, e.baseline_window, e.baseline_end, e.baseline_count, e.baseline_sum, e.baseline_sum_sq
    from iot_private.channel_event_state e
    where (e.device_id, e.sensor_type) in (select s.device_id, s.sensor_type from pg_temp.reading_staging s)
    order by e.device_id, e.sensor_type
    for update
  ), agg as materialized (
    -- Each channel's readings (BAD ones left out) in one hashed pass. The newest value comes from the
    -- largest [epoch, value] pair: the batch holds one reading per (device, sensor type, time) here
    -- (ingest_staged_readings takes duplicates out before it stores the batch).
    select s.device_id, s.sensor_type, count(*) as nb, min(s.value) as vmin, max(s.value) as vmax,
           min(s.time) as first_time, max(s.time) as last_time,
           (max(array[date_part('epoch', s.time), s.value]))[2] as last_value
    from pg_temp.reading_staging s
    where s.quality <> 'BAD'
    group by s.device_id, s.sensor_type
  ), info as materialized (
    -- The channels with readings to judge (newer than their state), beside their state, range and
    -- baseline cache. A candidate's readings are all newer, so the aggregates above are exactly its
    -- judged readings. A candidate whose cache is of an earlier minute gets it refreshed here as the
    -- full detector would (the minutes [m - 60, m) of the 1-minute rollups; W is 60 minutes, as no
    -- gap exceeds 2 minutes), so the once-a-minute refresh needs no full run.
    select a.*, e.last_time as state_time, e.last_value as state_value, e.out_of_range as latched, e.excursion_peak_value as open_peak,
           w.candidate, w.stale, w.m,
           case when w.stale then h.sums[1] else e.baseline_count end as cache_n,
           case when w.stale then h.sums[2] else e.baseline_sum end as cache_s,
           case when w.stale then h.sums[3] else e.baseline_sum_sq end as cache_s2,
           rg.lo, rg.hi,
           case when rg.lo is null then 0 when rg.hi is null then abs(rg.lo) / 20 else (rg.hi - rg.lo) / 20 end as lo_margin,
           case when rg.hi is null then 0 when rg.lo is null then abs(rg.hi) / 20 else (rg.hi - rg.lo) / 20 end as hi_margin
    from agg a
    join locked e on e.device_id = a.device_id and e.sensor_type = a.sensor_type
    join iot.device_channels c on c.device_id = a.device_id and c.sensor_type = a.sensor_type
    join iot.sensor_types st on st.sensor_type = c.sensor_type
    cross join lateral (
      select case when coalesce(c.normal_min, st.normal_min) >= coalesce(c.normal_max, st.normal_max)
                  then c.normal_min else coalesce(c.normal_min, st.normal_min) end as lo,
             case when coalesce(c.normal_min, st.normal_min) >= coalesce(c.normal_max, st.normal_max)
                  then c.normal_max else coalesce(c.normal_max, st.normal_max) end as hi
    ) rg
    cross join lateral (
      select v.candidate, v.m, v.candidate and not (e.baseline_end is not distinct from v.m and e.baseline_window = interval '60 minutes') as stale
      from (
        select (not e.out_of_range or e.excursion_confirmed) and a.first_time > e.last_time
                 and not (a.sensor_type = any (counter_types))
                 and a.last_time - a.first_time < interval '1 minute' and a.first_time - e.last_time <= interval '2 minutes' as candidate,
               date_bin('1 minute', a.first_time, timestamptz '2000-01-01 00:00Z') as m
      ) v
    ) w
    cross join lateral (
      -- [n, sum, sum of squares]; a function, so this statement's plan need not include the view's
      -- (planned afresh every batch, it cost more than the rest). offset 0: called once per row.
      select case when w.stale then iot_private.baseline_history(a.device_id, a.sensor_type, w.m - interval '60 minutes', w.m) end as sums
      offset 0
    ) h
    where e.last_time is null or a.last_time > e.last_time
  ), plain as (
    -- The bounds above: m_lo..m_hi where every reading's baseline mean lies, sigma_lb below every sigma.
    select i.device_id, i.sensor_type, i.first_time, i.last_time, i.last_value, i.latched, i.stale, i.m, i.cache_n, i.cache_s, i.cache_s2,
           -- An open excursion's peak so far, as the full detector keeps it ([excess, value], the largest).
           case when i.latched then (greatest(
             case when i.vmax > i.hi then array[i.vmax - i.hi, i.vmax] end,
             case when i.vmin < i.lo then array[i.lo - i.vmin, i.vmin] end,
             case when i.open_peak is not null then array[greatest(i.open_peak - i.hi, i.lo - i.open_peak), i.open_peak] end))[2]
           end as peak
    from (select i.*, coalesce(i.cache_n, 0) as hn, coalesce(i.cache_s, 0) as hs, coalesce(i.cache_s2, 0) as hs2 from info i) i
    cross join lateral (
      select case when i.hn > 0 then least(i.hs / i.hn, i.vmin) else i.vmin end as m_lo,
             case when i.hn > 0 then greatest(i.hs / i.hn, i.vmax) else i.vmax end as m_hi
    ) m0
    cross join lateral (
      select m0.m_lo, m0.m_hi,
             greatest(case when i.hn > 0 then sqrt(greatest(i.hs2 - i.hs * i.hs / i.hn, 0) / (i.hn + i.nb)) end,
                      0.01 * case when m0.m_lo <= 0 and m0.m_hi >= 0 then 0 else least(abs(m0.m_lo), abs(m0.m_hi)) end,
                      0.01 * (i.hi - i.lo), 1e-9) as sigma_lb
    ) m
    where i.candidate
      and case when i.latched
               then (i.hi is not null and i.vmin > i.hi - i.hi_margin) or (i.lo is not null and i.vmax < i.lo + i.lo_margin)
               else (i.lo is null or i.vmin >= i.lo + i.lo_margin) and (i.hi is null or i.vmax <= i.hi - i.hi_margin) end
      and (i.hn + i.nb - 1 < min_sample
           or (greatest(i.vmax, m.m_hi) - least(i.vmin, m.m_lo)) / m.sigma_lb <= 0.999 * k
              and (greatest(i.vmax, i.state_value) - least(i.vmin, i.state_value)) / (sqrt(2) * m.sigma_lb) <= 0.999 * k)
  ), saved as (
    update iot_private.channel_event_state e
       set last_time = p.last_time, last_value = p.last_value,
           back_since = case when not p.latched then coalesce(e.back_since, p.first_time) end,
           excursion_peak_value = p.peak,
           anomalous = false,
           baseline_end = case when p.stale then p.m else e.baseline_end end,
           baseline_window = case when p.stale then interval '60 minutes' else e.baseline_window end,
           baseline_count = case when p.stale then p.cache_n else e.baseline_count end,
           baseline_sum = case when p.stale then p.cache_s else e.baseline_sum end,
           baseline_sum_sq = case when p.stale then p.cache_s2 else e.baseline_sum_sq end,
           updated_at = now()
      from plain p
     where e.device_id = p.device_id and e.sensor_type = p.sensor_type
    returning e.device_id, e.sensor_type
  )
  -- Every other channel with readings to judge: not a candidate, not plain, or its cache is stale.
  select array_agg(distinct x.device_id) into slow_devices
  from (
    select i.device_id, i.sensor_type from info i
    except
    select sv.device_id, sv.sensor_type from saved sv
  ) x;
  return slow_devices;
end
$$;
comment on function iot_private.save_plain_channel_states(text[], double precision, integer) is
  'Fast path of iot_private.detect_batch_events(): locks the batch''s channel state rows, saves the state of the channels that provably raise nothing (see the comment above it in sql/510_batch_events.sql) and returns the devices of the other channels with readings to judge (null: none).';

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
  excursion_min constant interval := iot_private.setting_seconds('excursion_min_seconds', 30);
  recovery_min constant interval := iot_private.setting_seconds('recovery_min_seconds', 30);
  counter_types constant text[] := coalesce(
    (select regexp_split_to_array(btrim(s.value), '\s*,\s*') from iot_private.settings s where s.key = 'counter_sensor_types'),
    array['COUNT']);
  events jsonb;
  raised integer;
  -- Devices whose channels need the full detector below (null: all of them, the fast path is off).
  slow_devices uuid[];
begin
  -- State rows for new channels (most batches have none: checked first, an insert that conflicts costs more).
  insert into iot_private.channel_event_state (device_id, sensor_type)
  select distinct s.device_id, s.sensor_type
  from pg_temp.reading_staging s
  where not exists (select 1 from iot_private.channel_event_state e where e.device_id = s.device_id and e.sensor_type = s.sensor_type)
  order by 1, 2
  on conflict on constraint channel_event_state_pkey do nothing;

  -- The fast path first (iot_private.save_plain_channel_states, which also locks the batch's state
  -- rows in key order): only the devices of channels it cannot settle go through the full detector
  -- below. iot.event_fast_path = off (a session setting) sends every channel through it
  -- (test/db/events.test.ts compares the two).
  if coalesce(current_setting('iot.event_fast_path', true), '') <> 'off' then
    slow_devices := iot_private.save_plain_channel_states(counter_types, k, min_sample);
    if slow_devices is null then
      return 0;
    end if;
    -- Live traffic leaves the full detector a few channels (an excursion, a spike): one plan, made
    -- once, serves them all, where planning the statement below afresh cost more than running it.
    -- A backfill or a large slow set still gets a plan for its own size.
    if (select count(*) from pg_temp.reading_staging s where s.device_id = any (slow_devices)) <= 2000 then
      perform set_config('plan_cache_mode', 'force_generic_plan', true);  -- undone when this function returns
    end if;
  else
    perform 1 from iot_private.channel_event_state e
    where (e.device_id, e.sensor_type) in (select s.device_id, s.sensor_type from pg_temp.reading_staging s)
    order by e.device_id, e.sensor_type
    for update;
  end if;

  -- The plan is shaped for the planner's blindness about the temporary table: no join between two
  -- CTEs (it would guess one row each and nest loops over both). Each channel's readings travel as
  -- arrays on its channel row, and everything per reading happens in one lateral subquery per
  -- channel, whose narrow rows are already in time order for its window passes.
  with recursive batch as (
    -- x: the judged value (the value; a counter's rate since the previous reading, null after a reset).
    select r.device_id, r.sensor_type, r.time, r.value, r.unit, r.gap,
           case when not r.counter then r.value
                when r.value >= r.prev_value and r.gap > interval '0'
                then (r.value - r.prev_value) / extract(epoch from r.gap) end as x
    from (
      select r.*,
             r.time - lag(r.time, 1, r.state_time) over w as gap,
             lag(r.value, 1, r.state_value) over w as prev_value,
             r.sensor_type = any (counter_types) as counter
      from (
        select distinct on (r.device_id, r.sensor_type, r.time)
               r.device_id, r.sensor_type, r.time, r.value, r.unit, e.last_time as state_time, e.last_value as state_value
        from pg_temp.reading_staging r
        -- Index lookups whatever the statistics say (offset 0 keeps the planner from turning this
        -- into a join it may nest the wrong way round when the state table was analyzed empty).
        cross join lateral (
          select e.last_time, e.last_value from iot_private.channel_event_state e
          where e.device_id = r.device_id and e.sensor_type = r.sensor_type offset 0
        ) e
        where r.quality <> 'BAD' and (e.last_time is null or r.time > e.last_time)
          and (slow_devices is null or r.device_id = any (slow_devices))
        order by r.device_id, r.sensor_type, r.time, r.ctid
      ) r
      window w as (partition by r.device_id, r.sensor_type order by r.time)
    ) r
  ), channels as materialized (
    -- One row per channel of the batch: its readings (arrays in time order), range with the
    -- hysteresis margins, state before the batch, device, and the baseline length W.
    select g.device_id, g.sensor_type, g.times, g.vals, g.xs, g.units,
           g.sensor_type = any (counter_types) as counter,
           d.tenant_id, d.work_center_id, d.device_code,
           rg.lo, rg.hi,
           -- 5% as / 20, so that round figures stay exact (75 - 15 / 20 = 74.25).
           case when rg.lo is null then 0 when rg.hi is null then abs(rg.lo) / 20 else (rg.hi - rg.lo) / 20 end as lo_margin,
           case when rg.hi is null then 0 when rg.lo is null then abs(rg.hi) / 20 else (rg.hi - rg.lo) / 20 end as hi_margin,
           case when rg.lo is not null and rg.hi is not null then rg.hi - rg.lo else abs(coalesce(rg.hi, rg.lo)) end as severity_scale,
           w.win, w.history_end, w.short,
           w.short and e.baseline_end = w.history_end and e.baseline_window = w.win as cached,
           e.baseline_count, e.baseline_sum, e.baseline_sum_sq,
           e.last_time as state_time, e.last_value as state_value, e.out_of_range, e.anomalous, e.last_anomaly_at,
           case when e.out_of_range then e.excursion_started_at end as open_since,
           e.out_of_range and e.excursion_confirmed as open_confirmed,
           e.excursion_peak_value as open_peak, e.back_since
    from (
      select b.device_id, b.sensor_type,
             array_agg(b.time order by b.time) as times, array_agg(b.value order by b.time) as vals,
             array_agg(b.x order by b.time) as xs, array_agg(b.unit order by b.time) as units,
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
    --  1. the baseline over [t - W, t). The whole minutes before the batch come from history (the
    --     1-minute rollups; a counter's rates from raw readings): minute by minute when the
    --     channel's readings in the batch span a minute or more (backfills, slow channels), so each
    --     reading's frame drops the minutes older than its t - W; as one sum when they span less
    --     (live traffic: each frame then starts at the minute holding its t - W, up to a minute
    --     early), and that sum is kept in the state row and read again only when the batch starts in
    --     a new minute, so most batches read no history. Frame sums are differences of running sums
    --     (a frame starting at UNBOUNDED PRECEDING accumulates in one pass; float sums have no
    --     inverse, so a sliding frame would re-add every row);
    --  2. z, step, anomalous; whether the reading is out of range, back inside by the margin, and
    --     its excess over the bound;
    --  3. runs of back readings (a new run after every reading that is not back) and when the
    --     current one began; a recovery is a back reading at least recovery_min into its run;
    --  4. the episode latch: a reading is in an episode when its most recent out reading is later
    --     than its most recent recovery; with neither in the batch so far, the state from earlier
    --     batches holds; episode starts (latched after not latched) and anomaly episode starts;
    --  5. per episode: its start, and the first out reading at least excursion_min after it, which
    --     raises the event unless an earlier one did; the peak up to it (and up to the last reading,
    --     for the state), from the channel's arrays, only for those rows.
    select c.device_id, c.sensor_type, c.tenant_id, c.work_center_id, c.device_code, c.lo, c.hi,
           c.lo_margin, c.hi_margin, c.severity_scale, c.win, c.last_anomaly_at, c.counter,
           c.short, c.history_end, hist.n as history_count, hist.s as history_sum, hist.s2 as history_sum_sq,
           c.units[r.seq] as unit, r.seq = cardinality(c.times) as is_last, r.*
    from channels c
    cross join lateral (
      -- Short batches: the whole minutes [history_end - W, history_end) as one sum.
      select case when c.cached then c.baseline_count else f.n end as n,
             case when c.cached then c.baseline_sum else f.s end as s,
             case when c.cached then c.baseline_sum_sq else f.s2 end as s2
      from (
        select sum(h.n) as n, sum(h.s) as s, sum(h.s2) as s2
        from (
          select v.n, v.s, v.s2
          from (
            select v.reading_count::double precision as n, v.value_sum as s, v.value_sum_sq as s2
            from iot_private.sensor_readings_1m v
            where c.short and not c.cached and not c.counter
              and v.device_id = c.device_id and v.sensor_type = c.sensor_type
              and v.bucket >= c.history_end - c.win and v.bucket < c.history_end
            offset 0 -- keeps the subquery apart, so the channel's keys reach the view's index scans
          ) v
          union all
          select 1, q.x, q.x * q.x
          from (
            select case when r.value >= lag(r.value) over o
                        then (r.value - lag(r.value) over o) / extract(epoch from r.time - lag(r.time) over o) end as x
            from iot_private.sensor_readings r
            where c.short and not c.cached and c.counter
              and r.device_id = c.device_id and r.sensor_type = c.sensor_type and r.quality <> 'BAD'
              and r.time >= c.history_end - c.win and r.time < c.history_end
            window o as (order by r.time)
          ) q
          where q.x is not null
        ) h
      ) f
    ) hist
    cross join lateral (
      -- The peak, [excess, value] of the reading furthest out in the episode up to this one: only
      -- where it is used (the event's reading, and the last one for the state).
      select ev.*,
             case when ev.latched and (ev.raises or ev.seq = cardinality(c.times)) then greatest(
               (select max(array[case when u.v > c.hi then u.v - c.hi else c.lo - u.v end, u.v])
                from unnest(c.times, c.vals) as u(t, v)
                where u.t >= ev.started_at and u.t <= ev.time and (u.v < c.lo or u.v > c.hi)),
               case when ev.started_at = c.open_since and c.open_peak is not null
                    then array[greatest(c.open_peak - c.hi, c.lo - c.open_peak), c.open_peak] end) end as peak
      from (
        -- The first ready reading of an episode raises its event, unless an earlier batch did.
        select rb.*,
               rb.latched and coalesce(rb.started_at = c.open_since and c.open_confirmed, false) as confirmed_by_state,
               rb.ready and not rb.ready_before
                 and not (rb.latched and coalesce(rb.started_at = c.open_since and c.open_confirmed, false)) as raises
        from (
          select rd.*,
                 coalesce(max(rd.time) filter (where rd.ready) over prior >= rd.started_at, false) as ready_before
          from (
            select ep.*, ep.is_out and ep.latched and ep.time - ep.started_at >= excursion_min as ready
            from (
              select st.*,
                     coalesce(max(st.time) filter (where st.starts) over o, c.open_since) as started_at,
                     (array_agg(st.side) filter (where st.starts) over o) as start_sides
              from (
                select lt.*,
                       lt.latched and not coalesce(lag(lt.latched) over o, c.out_of_range) as starts
                from (
                  select rc.*,
                         case when c.lo is null and c.hi is null then false
                              when rc.last_set is null and rc.last_reset is null then c.out_of_range
                              else coalesce(rc.last_set > rc.last_reset, rc.last_set is not null) end as latched
                  from (
                    select bk.*,
                           max(bk.time) filter (where bk.is_back and bk.time - bk.back_start >= recovery_min) over o as last_reset
                    from (
                      select rs.*,
                             case when rs.is_back then coalesce(max(rs.time) filter (where rs.run_starts) over o, c.back_since) end as back_start,
                             max(rs.time) filter (where rs.is_out) over o as last_set
                      from (
                        select l2.*,
                               l2.is_back and not coalesce(lag(l2.is_back) over o, c.back_since is not null) as run_starts,
                               l2.anomalous and not coalesce(lag(l2.anomalous) over o, c.anomalous) as episode_starts
                        from (
                          select l1.time, l1.value, l1.x, l1.seq, l1.base_n, m.mean, sd.sd, sd.sigma, z.z, z.step_z, p.prev_value,
                                 coalesce(l1.base_n >= min_sample and (abs(z.z) > k or z.step_z > k), false) as anomalous,
                                 (l1.value < c.lo or l1.value > c.hi) is true as is_out,
                                 (c.lo is null or l1.value >= c.lo + c.lo_margin) and (c.hi is null or l1.value <= c.hi - c.hi_margin) as is_back,
                                 case when l1.value > c.hi then 'above' else 'below' end as side,
                                 case when l1.value > c.hi then l1.value - c.hi when l1.value < c.lo then c.lo - l1.value end as excess
                          from (
                            select w.time, w.value, w.x, w.seq,
                                   w.a_n - w.n - coalesce(w.b_n, 0) as base_n,
                                   w.a_s - w.s - coalesce(w.b_s, 0) as base_s,
                                   w.a_s2 - w.s2 - coalesce(w.b_s2, 0) as base_s2
                            from (
                              select s.time, s.value, s.x, s.seq, s.n, s.s, s.s2,
                                     sum(s.n) over upto as a_n, sum(s.s) over upto as a_s, sum(s.s2) over upto as a_s2,
                                     sum(s.n) over older as b_n, sum(s.s) over older as b_s, sum(s.s2) over older as b_s2
                              from (
                                select v.bucket as time, null::double precision as value, null::double precision as x, null::bigint as seq,
                                       v.n, v.s, v.s2
                                from (
                                  select v.bucket, v.reading_count::double precision as n, v.value_sum as s, v.value_sum_sq as s2
                                  from iot_private.sensor_readings_1m v
                                  where not c.short and not c.counter
                                    and v.device_id = c.device_id and v.sensor_type = c.sensor_type
                                    and v.bucket >= c.history_end - c.win and v.bucket < c.history_end
                                  offset 0
                                ) v
                                union all
                                select date_bin('1 minute', q.time, timestamptz '2000-01-01 00:00Z'), null, null, null,
                                       count(q.x)::double precision, sum(q.x), sum(q.x * q.x)
                                from (
                                  select r.time,
                                         case when r.value >= lag(r.value) over o
                                              then (r.value - lag(r.value) over o) / extract(epoch from r.time - lag(r.time) over o) end as x
                                  from iot_private.sensor_readings r
                                  where not c.short and c.counter
                                    and r.device_id = c.device_id and r.sensor_type = c.sensor_type and r.quality <> 'BAD'
                                    and r.time >= c.history_end - c.win and r.time < c.history_end
                                  window o as (order by r.time)
                                ) q
                                where q.x is not null
                                group by 1
                                union all
                                select c.history_end - interval '1 minute', null, null, null, hist.n, hist.s, hist.s2
                                where c.short and hist.n > 0
                                union all
                                select u.time, u.value, u.x, u.seq, (u.x is not null)::int, coalesce(u.x, 0), coalesce(u.x * u.x, 0)
                                from unnest(c.times, c.vals, c.xs) with ordinality as u(time, value, x, seq)
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
                            select q.sd, greatest(q.sd, 0.01 * abs(m.mean), case when not c.counter then 0.01 * (c.hi - c.lo) end, 1e-9) as sigma
                            from (select sqrt(greatest(l1.base_s2 - l1.base_s * m.mean, 0) / nullif(l1.base_n - 1, 0)) as sd) q
                          ) sd
                          cross join lateral (
                            select (l1.x - m.mean) / sd.sigma as z,
                                   case when not c.counter then abs(l1.value - p.prev_value) / (sqrt(2) * sd.sigma) end as step_z
                          ) z
                        ) l2
                        window o as (order by l2.time rows unbounded preceding)
                      ) rs
                      window o as (order by rs.time rows unbounded preceding)
                    ) bk
                    window o as (order by bk.time rows unbounded preceding)
                  ) rc
                ) lt
                window o as (order by lt.time rows unbounded preceding)
              ) st
              window o as (order by st.time rows unbounded preceding)
            ) ep
          ) rd
          window prior as (order by rd.time rows between unbounded preceding and 1 preceding)
        ) rb
      ) ev
    ) r
  ), saved as (
    -- The channel's state after its last reading in the batch.
    update iot_private.channel_event_state e
       set last_time = f.time,
           last_value = f.value,
           out_of_range = f.latched,
           excursion_started_at = case when f.latched then f.started_at end,
           excursion_side = case when f.latched then coalesce(f.start_sides[cardinality(f.start_sides)], e.excursion_side) end,
           excursion_confirmed = f.latched and (f.ready or f.ready_before or f.confirmed_by_state),
           excursion_peak_value = case when f.latched then f.peak[2] end,
           back_since = case when f.is_back then f.back_start end,
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
             'event_timestamp', t.started_at, 'tenant_id', t.tenant_id, 'work_center_id', t.work_center_id,
             'iot_device_id', t.device_id, 'sensor_type', t.sensor_type, 'event_type', 'SENSOR_OUT_OF_RANGE',
             'event_code', iot_private.event_code(t.sensor_type, case when t.peak_side = 'above' then '_HIGH' else '_LOW' end),
             'severity', case when t.peak[1] * 5 > t.severity_scale then 'ERROR' else 'WARNING' end,
             'event_description', format('%s %s on device %s for %s s, peak %s %s', t.sensor_type,
                          case when t.lo is not null and t.hi is not null
                               then format('%s normal range %s–%s', t.peak_side, iot_private.event_number(t.lo), iot_private.event_number(t.hi))
                               when t.peak_side = 'above' then format('above normal maximum %s', iot_private.event_number(t.hi))
                               else format('below normal minimum %s', iot_private.event_number(t.lo)) end,
                          t.device_code, iot_private.event_number(extract(epoch from t.time - t.started_at)::double precision),
                          iot_private.event_number(t.peak[2]), t.unit),
             'metadata', jsonb_build_object('value', t.peak[2], 'normalMin', t.lo, 'normalMax', t.hi, 'side', t.peak_side,
                          'hysteresisMargin', case when t.peak_side = 'above' then t.hi_margin else t.lo_margin end,
                          'confirmedAt', t.time, 'durationSeconds', extract(epoch from t.time - t.started_at)::double precision,
                          'minExcursionSeconds', extract(epoch from excursion_min)::double precision,
                          'minRecoverySeconds', extract(epoch from recovery_min)::double precision)) as event
    from (select t.*, case when t.peak[2] > t.hi then 'above' else 'below' end as peak_side
          from readings t where t.raises) t
  ), candidates as (
    -- Anomaly episode starts per channel, in time order, each with its event ready.
    select t.device_id, t.sensor_type, t.last_anomaly_at,
           array_agg(t.time order by t.time) as times,
           jsonb_agg(jsonb_build_object(
             'event_timestamp', t.time, 'tenant_id', t.tenant_id, 'work_center_id', t.work_center_id,
             'iot_device_id', t.device_id, 'sensor_type', t.sensor_type, 'event_type', 'ANOMALY_DETECTED',
             'event_code', iot_private.event_code(t.sensor_type, case when t.counter then '_RATE_ANOMALY' else '_ANOMALY' end),
             'severity', case when t.score > 2 * k then 'ERROR' else 'WARNING' end,
             'event_description', case
                  when t.counter
                  then format('%s rate %s %s/s on device %s is %s standard deviations %s the mean rate %s of the previous %s min (%s readings)',
                              t.sensor_type, iot_private.event_number(t.x), t.unit, t.device_code,
                              iot_private.event_number(abs(t.z)), case when t.z > 0 then 'above' else 'below' end,
                              iot_private.event_number(t.mean), extract(epoch from t.win)::bigint / 60, t.base_n)
                  when abs(t.z) > k
                  then format('%s %s %s on device %s is %s standard deviations %s the mean %s of the previous %s min (%s readings)',
                              t.sensor_type, iot_private.event_number(t.value), t.unit, t.device_code,
                              iot_private.event_number(abs(t.z)), case when t.z > 0 then 'above' else 'below' end,
                              iot_private.event_number(t.mean), extract(epoch from t.win)::bigint / 60, t.base_n)
                  else format('%s on device %s jumped from %s to %s %s (%s standard deviations of the previous %s min)',
                              t.sensor_type, t.device_code, iot_private.event_number(t.prev_value),
                              iot_private.event_number(t.value), t.unit, iot_private.event_number(t.step_z * sqrt(2)),
                              extract(epoch from t.win)::bigint / 60) end,
             'metadata', jsonb_build_object('value', t.x, 'mean', t.mean, 'stddev', t.sd, 'sigma', t.sigma, 'zScore', t.z,
                          'previousValue', t.prev_value, 'stepScore', t.step_z, 'readings', t.base_n,
                          'windowMinutes', extract(epoch from t.win)::double precision / 60, 'k', k) ||
                        case when t.counter then jsonb_build_object('judgedOn', 'rate', 'counterValue', t.value) else '{}' end)
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
  select jsonb_agg(ev.event order by ev.event ->> 'event_timestamp') into events
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
      (select min((x ->> 'event_timestamp')::timestamptz) from jsonb_array_elements(events) x),
      (select max((x ->> 'event_timestamp')::timestamptz) from jsonb_array_elements(events) x));
  end if;
  insert into iot_private.equipment_events (event_timestamp, tenant_id, work_center_id, iot_device_id, sensor_type,
                                            event_type, event_code, severity, event_description, metadata)
  select x.event_timestamp, x.tenant_id, x.work_center_id, x.iot_device_id, x.sensor_type,
         x.event_type, x.event_code, x.severity, x.event_description, x.metadata
  from jsonb_to_recordset(events) as x(event_timestamp timestamptz, tenant_id uuid, work_center_id uuid, iot_device_id uuid,
                                       sensor_type text, event_type text, event_code text, severity text,
                                       event_description text, metadata jsonb);
  get diagnostics raised = row_count;
  -- The rate limit's memory (from the events, which are few: a join the planner gets right).
  update iot_private.channel_event_state e
     set last_anomaly_at = a.last_at
    from (select x.iot_device_id, x.sensor_type, max(x.event_timestamp) as last_at
          from jsonb_to_recordset(events) as x(event_timestamp timestamptz, iot_device_id uuid, sensor_type text, event_type text)
          where x.event_type = 'ANOMALY_DETECTED'
          group by x.iot_device_id, x.sensor_type) a
   where e.device_id = a.iot_device_id and e.sensor_type = a.sensor_type;
  return raised;
end
$$;
comment on function iot_private.detect_batch_events() is
  'Raises SENSOR_OUT_OF_RANGE (one per excursion: hysteresis and minimum durations) and ANOMALY_DETECTED (k-sigma spike/step, counters on their rate, at most one per channel per 5 minutes) events for the batch in pg_temp.reading_staging. Returns the number raised.';

-- Equipment health: a 0-100 score per work center from five weighted dimensions.
--
-- sensor health (30%): each active channel with a normal range (the channel's normal_min/max, else
--   its sensor type's) over the 24 hours before `at` (whole minutes). A reading's deviation is 0
--   inside the range and its distance to the nearest bound outside it. The maximum deviation is
--   the range width (max - min); for a range with one bound, the bound's magnitude (1 if it is 0).
--   Channel score = greatest(0, 100 - avg deviation / max deviation x 100). The dimension is the
--   mean of the channel scores. Channels without a range or without readings do not count.
-- OEE health (25%): 7-day OEE (sql/500_oee.sql) against 85% world class: least(100, oee / 0.85 x 100).
-- quality health (20%): greatest(0, 100 - 10 x HIGH - 5 x LOW SPC alerts in the last 7 days); only for
--   work centers with SPC control limits or alerts (otherwise no data).
-- reliability health (15%): greatest(0, 100 - 20 x BREAKDOWN records started in the last 30 days).
--   Always scored: no breakdown logged is 100.
-- performance health (10%): 100 x 7-day OEE performance, minus the cycle-time degradation in percent
--   (actual seconds per unit over the last 7 days against days 8-30 before; no penalty for getting
--   faster), within 0..100. No runs in 7 days: no data.
-- A dimension without data is left out and the remaining weights are scaled to sum to 1.
-- Minimum scored weight (setting health_min_scored_weight, default 0.40): below it the work center
--   gets no overall score and no status (null), and the recommended action names the missing data.
--   Reliability is always scored, so it alone (0.15) would make a machine nobody measures EXCELLENT
--   from the absence of breakdown records; quality (SPC alerts) adds 0.20 but says nothing without
--   telemetry behind it, and performance exists only with OEE. 0.40 is the least weight every
--   measured score reaches (reliability with OEE 0.40, with sensors 0.45) and that no unmeasured one
--   does (reliability 0.15, with quality 0.35).
-- Status: EXCELLENT >= 90, GOOD >= 75, FAIR >= 50, POOR >= 30, CRITICAL < 30.
-- Anomalies: anomaly_detected when the work center has ANOMALY_DETECTED or SENSOR_OUT_OF_RANGE
--   events in the 24 hours up to the score (the sensor dimension's window, acknowledged or not);
--   anomaly_severity is the highest of their severities, anomaly_type the event_code of the latest
--   event with that severity (TEMPERATURE_HIGH, VIBRATION_ANOMALY, COUNT_RATE_ANOMALY; the event
--   type for events recorded without a code); details.anomalyEvents24h counts them.
-- 7-day change: this score minus the latest stored score at least 7 days older (within one more day),
--   else minus the oldest score of the last 7 days if it is at least a day old. Trend: IMPROVING > +5,
--   STABLE -5..+5, DEGRADING -10..-5, RAPIDLY_DEGRADING < -10; none without a baseline.

insert into iot_private.settings (key, value) values ('health_min_scored_weight', '0.40')
on conflict (key) do nothing;

-- Read by every scoring pass: refuse a value that could not be used, when it is written.
create or replace function iot_private.tg_settings__check_health_settings() returns trigger
  language plpgsql
  set search_path = pg_catalog, pg_temp
as $$
begin
  if new.key = 'health_min_scored_weight'
     and (case when new.value ~ '^\s*[0-9]{1,3}(\.[0-9]+)?\s*$' then new.value::numeric > 1 else true end) then
    raise exception 'setting health_min_scored_weight must be a weight from 0 to 1, not %', new.value using errcode = '22023';
  end if;
  return new;
end
$$;
drop trigger if exists _210_check_health_settings on iot_private.settings;
create trigger _210_check_health_settings before insert or update on iot_private.settings
  for each row execute function iot_private.tg_settings__check_health_settings();

create or replace function iot_private.health_status(score numeric) returns text
  language sql immutable
  set search_path = pg_catalog, pg_temp
as $$
  select case when score is null then null when score >= 90 then 'EXCELLENT' when score >= 75 then 'GOOD'
              when score >= 50 then 'FAIR' when score >= 30 then 'POOR' else 'CRITICAL' end
$$;

create or replace function iot_private.health_trend(change numeric) returns text
  language sql immutable
  set search_path = pg_catalog, pg_temp
as $$
  select case when change is null then null when change > 5 then 'IMPROVING' when change >= -5 then 'STABLE'
              when change >= -10 then 'DEGRADING' else 'RAPIDLY_DEGRADING' end
$$;

-- Deviation arithmetic shared by the rollup path and the raw reference. No SET clauses, so that
-- PostgreSQL inlines them into the queries.
create or replace function iot_private.bucket_deviation_sum(
  lo double precision, hi double precision, n bigint, vmin double precision, vmax double precision, vsum double precision)
  returns double precision language sql immutable
as $$
  -- A bucket wholly inside the range: 0; wholly outside: exact from its sums; straddling: null.
  select case when (lo is null or vmin >= lo) and (hi is null or vmax <= hi) then 0
              when hi is not null and vmin > hi then vsum - hi * n
              when lo is not null and vmax < lo then lo * n - vsum end
$$;

create or replace function iot_private.reading_deviation(lo double precision, hi double precision, value double precision)
  returns double precision language sql immutable
as $$
  select case when lo is not null and value < lo then lo - value
              when hi is not null and value > hi then value - hi else 0 end
$$;

create or replace function iot_private.range_max_deviation(lo double precision, hi double precision)
  returns double precision language sql immutable
as $$
  select case when lo is not null and hi is not null then hi - lo else coalesce(nullif(abs(coalesce(lo, hi)), 0), 1) end
$$;

-- Active channels of the work centers with their normal range (channel's own, else the type's).
create or replace function iot_private.ranged_channels(work_center_ids uuid[])
  returns table (work_center_id uuid, device_id uuid, device_code text, sensor_type text, lo double precision, hi double precision)
  language sql stable
as $$
  select d.work_center_id, d.id, d.device_code, c.sensor_type,
         coalesce(c.normal_min, st.normal_min), coalesce(c.normal_max, st.normal_max)
  from iot.device_channels c
  join iot.iot_devices d on d.id = c.device_id
  join iot.sensor_types st on st.sensor_type = c.sensor_type
  where c.is_active and d.is_active and d.work_center_id = any (work_center_ids)
    and coalesce(c.normal_min, st.normal_min, c.normal_max, st.normal_max) is not null
$$;

-- Rows of rollup 1m or 1h for these devices and sensor types with buckets in [from_time, to_time)
-- (both on the rollup's bucket grid): stored rows below the rollup's watermark `mark`, raw readings
-- aggregated at and above it, exactly what iot_private.sensor_readings_1m/_1h return there. Inlined (SQL, no SET clause): called with
-- constants, every bound is known when the caller is planned, so only the chunks or partitions of
-- the range are planned and read (the views' run-time watermark left every raw partition in the plan).
create or replace function iot_private.rollup_rows(rollup_name text, devices uuid[], types text[],
                                                   from_time timestamptz, to_time timestamptz, mark timestamptz)
  returns table (bucket timestamptz, device_id uuid, sensor_type text, reading_count bigint,
                 value_min double precision, value_max double precision, value_sum double precision)
  language sql stable
as $$
  select b.bucket, b.device_id, b.sensor_type, b.reading_count, b.value_min, b.value_max, b.value_sum
  from iot_private.sensor_readings_1m_stored b
  where rollup_name = '1m' and b.device_id = any (devices) and b.sensor_type = any (types)
    and b.bucket >= from_time and b.bucket < least(to_time, mark)
  union all
  select b.bucket, b.device_id, b.sensor_type, b.reading_count, b.value_min, b.value_max, b.value_sum
  from iot_private.sensor_readings_1h_stored b
  where rollup_name = '1h' and b.device_id = any (devices) and b.sensor_type = any (types)
    and b.bucket >= from_time and b.bucket < least(to_time, mark)
  union all
  select date_bin(iot_private.rollup_width(rollup_name), r.time, timestamptz '2000-01-01 00:00Z'), r.device_id, r.sensor_type,
         count(*), min(r.value), max(r.value), sum(r.value)
  from iot_private.sensor_readings r
  where r.device_id = any (devices) and r.sensor_type = any (types)
    and r.time >= greatest(from_time, mark) and r.time < to_time
  group by 1, 2, 3
$$;
comment on function iot_private.rollup_rows(text, uuid[], text[], timestamptz, timestamptz, timestamptz) is
  'Rollup 1m/1h rows of the devices and sensor types in [from_time, to_time): stored below the watermark, live from raw readings above; for callers that plan with constants.';

-- Sensor health per channel, exact, from the rollups: an hour (or minute) wholly inside the range
-- contributes 0 and one wholly outside contributes exactly from its sums; only hours that straddle
-- a bound are read by the minute, and only minutes that straddle one are read from raw readings.
-- PL/pgSQL so that each statement is planned with the window's bounds, the channels' devices and
-- sensor types and the rollups' watermarks as constants (custom plans): only the rollup chunks or
-- partitions of the window are planned and read, by index, and raw readings only above each
-- watermark (iot_private.rollup_rows). As one SQL function these were unknown when it was planned,
-- and the 1-minute rollup was read whole (4.4 s for 300 channels at 51.8 M readings on tier 1).
-- No JIT: compiling cost more (1.8 s) than whole runs of this query.
create or replace function iot_private.channel_sensor_health(work_center_ids uuid[], at timestamptz)
  returns table (work_center_id uuid, device_id uuid, device_code text, sensor_type text, readings bigint,
                 avg_deviation double precision, max_deviation double precision, score numeric)
  language plpgsql stable
  set search_path = pg_catalog, pg_temp
  set jit = off
  set plan_cache_mode = force_custom_plan
as $$
#variable_conflict use_column
declare
  win_hi constant timestamptz := date_bin('1 minute', at, timestamptz '2000-01-01 00:00Z');
  win_lo constant timestamptz := win_hi - interval '24 hours';
  -- The window's whole hours are [first_hour, last_hour); minutes outside them are its ragged ends.
  first_hour constant timestamptz := date_bin('1 hour', win_lo - interval '1 microsecond', timestamptz '2000-01-01 00:00Z') + interval '1 hour';
  last_hour constant timestamptz := greatest(first_hour, date_bin('1 hour', win_hi, timestamptz '2000-01-01 00:00Z'));
  straddle_lo timestamptz;
  straddle_hi timestamptz;
  -- The channels' devices and sensor types, as constants in every rollup read: the rollup tables'
  -- key (tiers 2-3: device, sensor type, bucket) and tier 1's (device, bucket) index then serve it.
  devices uuid[];
  types text[];
  straddle_devices uuid[];
  mark_1m constant timestamptz := iot_private.rollup_watermark('1m');
  mark_1h constant timestamptz := iot_private.rollup_watermark('1h');
begin
  select array_agg(distinct c.device_id), array_agg(distinct c.sensor_type) into devices, types
  from iot_private.ranged_channels(work_center_ids) c;
  -- Hours that straddle a bound of their channel's range (read by the minute below): their span.
  with ch as materialized (select * from iot_private.ranged_channels(work_center_ids))
  select min(b.bucket), max(b.bucket) + interval '1 hour', array_agg(distinct b.device_id)
    into straddle_lo, straddle_hi, straddle_devices
  from ch
  join iot_private.rollup_rows('1h', devices, types, first_hour, last_hour, mark_1h) b
    on b.device_id = ch.device_id and b.sensor_type = ch.sensor_type
  where iot_private.bucket_deviation_sum(ch.lo, ch.hi, b.reading_count, b.value_min, b.value_max, b.value_sum) is null;

  return query
  with ch as materialized (
    select * from iot_private.ranged_channels(work_center_ids)
  ), hours as materialized (
    -- Whole hours inside the window, from the 1-hour rollup: usually all a channel needs.
    select b.device_id, b.sensor_type, ch.lo, ch.hi, b.bucket, b.reading_count as n,
           iot_private.bucket_deviation_sum(ch.lo, ch.hi, b.reading_count, b.value_min, b.value_max, b.value_sum) as dev_sum
    from ch
    join iot_private.rollup_rows('1h', devices, types, first_hour, last_hour, mark_1h) b
      on b.device_id = ch.device_id and b.sensor_type = ch.sensor_type
  ), minute_hours as (
    -- The (channel, hour) pairs read by the minute: the window's ragged ends and the straddling hours.
    select ch.device_id, ch.sensor_type, ch.lo, ch.hi, date_bin('1 hour', win_lo, timestamptz '2000-01-01 00:00Z') as hour
    from ch where win_lo < first_hour
    union
    select ch.device_id, ch.sensor_type, ch.lo, ch.hi, last_hour from ch where last_hour < win_hi
    union
    select h.device_id, h.sensor_type, h.lo, h.hi, h.bucket from hours h where h.dev_sum is null
  ), minutes as (
    -- Only the minutes needed: the window's ragged ends, and the straddling hours' span on their devices.
    select * from iot_private.rollup_rows('1m', devices, types, win_lo, first_hour, mark_1m)
    union all
    select * from iot_private.rollup_rows('1m', devices, types, last_hour, win_hi, mark_1m)
    union all
    select * from iot_private.rollup_rows('1m', straddle_devices, types, straddle_lo, straddle_hi, mark_1m)
  ), buckets as materialized (
    -- Joined on (channel, hour) equality: one hashed pass over the minutes read (range joins gave
    -- nested loops that ran for minutes).
    select b.device_id, b.sensor_type, m.lo, m.hi, b.bucket, b.reading_count as n,
           iot_private.bucket_deviation_sum(m.lo, m.hi, b.reading_count, b.value_min, b.value_max, b.value_sum) as dev_sum
    from minute_hours m
    join minutes b
      on b.device_id = m.device_id and b.sensor_type = m.sensor_type
     and date_bin('1 hour', b.bucket, timestamptz '2000-01-01 00:00Z') = m.hour
  ), parts as (
    select device_id, sensor_type, n, dev_sum from hours where dev_sum is not null
    union all
    select device_id, sensor_type, n, dev_sum from buckets
  ), whole_minutes as materialized (
    select device_id, sensor_type, sum(n)::bigint as n, coalesce(sum(dev_sum), 0) as dev_sum
    from parts group by 1, 2
  ), straddling as materialized (
    -- Minutes that straddle a bound, from raw readings (index on device, time).
    select s.device_id, s.sensor_type,
           sum(iot_private.reading_deviation(s.lo, s.hi, r.value)) as dev_sum
    from buckets s
    join iot_private.sensor_readings r
      on r.device_id = s.device_id and r.sensor_type = s.sensor_type and r.time >= s.bucket and r.time < s.bucket + interval '1 minute'
    where s.dev_sum is null
    group by 1, 2
  ), per_channel as (
    select ch.work_center_id, ch.device_id, ch.device_code, ch.sensor_type, ch.lo, ch.hi, w.n,
           (w.dev_sum + coalesce(st.dev_sum, 0)) / w.n as avg_dev
    from ch
    join whole_minutes w using (device_id, sensor_type)
    left join straddling st using (device_id, sensor_type)
  )
  select p.work_center_id, p.device_id, p.device_code, p.sensor_type, p.n, p.avg_dev,
         iot_private.range_max_deviation(p.lo, p.hi),
         round(greatest(0, 100 - p.avg_dev / iot_private.range_max_deviation(p.lo, p.hi) * 100)::numeric, 2)
  from per_channel p;
end
$$;
comment on function iot_private.channel_sensor_health(uuid[], timestamptz) is
  'Sensor health of each ranged channel of the work centers over the 24 h before at (whole minutes), exact, from the rollups; equals channel_sensor_health_raw.';

-- The same figures straight from raw readings: the reference the rollup path is tested and
-- benchmarked against (npm run bench:health).
create or replace function iot_private.channel_sensor_health_raw(work_center_ids uuid[], at timestamptz)
  returns table (work_center_id uuid, device_id uuid, device_code text, sensor_type text, readings bigint,
                 avg_deviation double precision, max_deviation double precision, score numeric)
  language sql stable
  set search_path = pg_catalog, pg_temp
as $$
  with ch as (
    select * from iot_private.ranged_channels(work_center_ids)
  ), per_channel as (
    select ch.work_center_id, ch.device_id, ch.device_code, ch.sensor_type, ch.lo, ch.hi, count(*) as n,
           avg(iot_private.reading_deviation(ch.lo, ch.hi, r.value)) as avg_dev
    from ch
    join iot_private.sensor_readings r on r.device_id = ch.device_id and r.sensor_type = ch.sensor_type
     and r.time >= date_bin('1 minute', at, timestamptz '2000-01-01 00:00Z') - interval '24 hours'
     and r.time < date_bin('1 minute', at, timestamptz '2000-01-01 00:00Z')
    group by 1, 2, 3, 4, 5, 6
  )
  select p.work_center_id, p.device_id, p.device_code, p.sensor_type, p.n, p.avg_dev,
         iot_private.range_max_deviation(p.lo, p.hi),
         round(greatest(0, 100 - p.avg_dev / iot_private.range_max_deviation(p.lo, p.hi) * 100)::numeric, 2)
  from per_channel p
$$;

-- All five dimensions and the derived fields for the given work centers at `at` (nothing stored).
-- Named columns (not the table's row type), so the column order of the stored table does not matter.
drop function if exists iot_private.compute_health_scores(uuid[], timestamptz);
create function iot_private.compute_health_scores(work_center_ids uuid[], at timestamptz)
  returns table (score_timestamp timestamptz, tenant_id uuid, work_center_id uuid,
                 overall_health_score numeric, sensor_health_score numeric, oee_health_score numeric,
                 quality_health_score numeric, reliability_health_score numeric, performance_health_score numeric,
                 health_status text, health_score_7d_avg numeric, health_score_30d_avg numeric,
                 health_score_change_7d numeric, trend_direction text, risk_factors jsonb, recommended_action text,
                 details jsonb, anomaly_detected boolean, anomaly_severity text, anomaly_type text)
  language sql stable
  set search_path = pg_catalog, pg_temp
as $$
  with wc as (
    select w.id, w.tenant_id, w.work_center_code from iot.work_centers w where w.id = any (work_center_ids)
  ), sensor as (
    select s.work_center_id, round(avg(s.score), 2) as score,
           jsonb_agg(jsonb_build_object('deviceCode', s.device_code, 'sensorType', s.sensor_type, 'score', s.score,
                     'avgDeviation', round(s.avg_deviation::numeric, 4), 'readings', s.readings) order by s.score)
             filter (where s.score < 100) as channels
    from iot_private.channel_sensor_health(work_center_ids, at) s group by 1
  ), oee7 as (
    select * from iot.oee_for(work_center_ids, at - interval '7 days', at)
  ), oee_base as (
    select * from iot.oee_for(work_center_ids, at - interval '30 days', at - interval '7 days')
  ), spc as (
    select w.id as work_center_id,
           count(a.*) filter (where a.severity = 'HIGH') as high, count(a.*) filter (where a.severity = 'LOW') as low,
           exists (select 1 from iot.spc_control_limits l join iot.device_channels c on c.id = l.channel_id
                   join iot.iot_devices d on d.id = c.device_id where d.work_center_id = w.id and l.is_active) as has_limits
    from wc w left join iot.spc_alerts a on a.work_center_id = w.id and a.detected_at > at - interval '7 days' and a.detected_at <= at
    group by w.id
  ), anomalies as (
    -- The window's threshold and anomaly events: how many, the highest severity, and the code of
    -- the latest event with it.
    select e.work_center_id, count(*) as n,
           (array_agg(e.severity order by array_position(array['INFO', 'WARNING', 'ERROR', 'CRITICAL'], e.severity) desc,
                      e.event_timestamp desc))[1] as severity,
           (array_agg(coalesce(e.event_code, e.event_type)
                      order by array_position(array['INFO', 'WARNING', 'ERROR', 'CRITICAL'], e.severity) desc,
                      e.event_timestamp desc))[1] as type
    from iot_private.equipment_events e
    where e.work_center_id = any (work_center_ids)
      and e.event_type in ('ANOMALY_DETECTED', 'SENSOR_OUT_OF_RANGE')
      and e.event_timestamp > at - interval '24 hours' and e.event_timestamp <= at
    group by e.work_center_id
  ), breakdowns as (
    select w.id as work_center_id, count(m.*) as n
    from wc w left join iot.maintenance_records m on m.work_center_id = w.id and m.maintenance_type = 'BREAKDOWN'
      and m.started_at > at - interval '30 days' and m.started_at <= at
    group by w.id
  ), dims as (
    select w.id, w.tenant_id,
           s.score as sensor_score, s.channels,
           case when o.oee is not null then round(least(100, o.oee / 0.85 * 100), 2) end as oee_score,
           case when q.has_limits or q.high + q.low > 0 then greatest(0, 100 - 10 * q.high - 5 * q.low) end::numeric as quality_score,
           q.high, q.low,
           greatest(0, 100 - 20 * b.n)::numeric as reliability_score, b.n as breakdowns,
           case when o.performance is not null then
             round(greatest(0, least(100, 100 * o.performance
               - greatest(0, coalesce((o.avg_cycle_time_seconds / nullif(ob.avg_cycle_time_seconds, 0) - 1) * 100, 0)))), 2)
           end as performance_score,
           o.oee, o.performance, o.avg_cycle_time_seconds as ct7, ob.avg_cycle_time_seconds as ct_base
    from wc w
    left join sensor s on s.work_center_id = w.id
    left join oee7 o on o.work_center_id = w.id
    left join oee_base ob on ob.work_center_id = w.id
    join spc q on q.work_center_id = w.id
    join breakdowns b on b.work_center_id = w.id
  ), weighted as (
    select d.*,
           round((coalesce(0.30 * d.sensor_score, 0) + coalesce(0.25 * d.oee_score, 0) + coalesce(0.20 * d.quality_score, 0)
                  + coalesce(0.15 * d.reliability_score, 0) + coalesce(0.10 * d.performance_score, 0))
                 / nullif((case when d.sensor_score is null then 0 else 0.30 end) + (case when d.oee_score is null then 0 else 0.25 end)
                        + (case when d.quality_score is null then 0 else 0.20 end) + (case when d.reliability_score is null then 0 else 0.15 end)
                        + (case when d.performance_score is null then 0 else 0.10 end), 0), 2) as overall,
           (case when d.sensor_score is null then 0 else 0.30 end) + (case when d.oee_score is null then 0 else 0.25 end)
             + (case when d.quality_score is null then 0 else 0.20 end) + (case when d.reliability_score is null then 0 else 0.15 end)
             + (case when d.performance_score is null then 0 else 0.10 end) as weight_total
    from dims d
  ), scored as (
    -- Below the minimum scored weight: no overall score (the dimensions are kept).
    select w.id, w.tenant_id, w.sensor_score, w.channels, w.oee_score, w.quality_score, w.high, w.low,
           w.reliability_score, w.breakdowns, w.performance_score, w.oee, w.performance, w.ct7, w.ct_base,
           w.weight_total, m.min_weight,
           case when w.weight_total >= m.min_weight then w.overall end as overall
    from weighted w
    cross join (select coalesce((select s.value::numeric from iot_private.settings s where s.key = 'health_min_scored_weight'),
                                0.40) as min_weight) m
  ), history as (
    select s.id,
           (select avg(v) from (select h.overall_health_score as v from iot_private.equipment_health_scores h
                                 where h.work_center_id = s.id and h.score_timestamp > at - interval '7 days' and h.score_timestamp < at
                                 union all select s.overall) x) as avg7,
           (select avg(v) from (select h.overall_health_score as v from iot_private.equipment_health_scores h
                                 where h.work_center_id = s.id and h.score_timestamp > at - interval '30 days' and h.score_timestamp < at
                                 union all select s.overall) x) as avg30,
           coalesce(
             (select h.overall_health_score from iot_private.equipment_health_scores h
               where h.work_center_id = s.id and h.score_timestamp <= at - interval '7 days' and h.score_timestamp > at - interval '8 days'
                 and h.overall_health_score is not null order by h.score_timestamp desc limit 1),
             (select h.overall_health_score from iot_private.equipment_health_scores h
               where h.work_center_id = s.id and h.score_timestamp > at - interval '7 days' and h.score_timestamp <= at - interval '1 day'
                 and h.overall_health_score is not null order by h.score_timestamp limit 1)) as baseline
    from scored s
  )
  select at, s.tenant_id, s.id,
         s.overall, s.sensor_score, s.oee_score, s.quality_score, s.reliability_score, s.performance_score,
         iot_private.health_status(s.overall),
         round(h.avg7, 2), round(h.avg30, 2), round(s.overall - h.baseline, 2),
         iot_private.health_trend(s.overall - h.baseline),
         coalesce((
           select jsonb_agg(f order by (f ->> 'pointsLost')::numeric desc)
           from (
             select jsonb_build_object('dimension', dim, 'score', score, 'weight', round(w / s.weight_total, 4),
                                       'pointsLost', round((100 - score) * w / s.weight_total, 2)) ||
                    case when dim = 'sensor' and s.channels is not null then jsonb_build_object('channels', s.channels) else '{}' end ||
                    case when dim = 'quality' then jsonb_build_object('highAlerts', s.high, 'lowAlerts', s.low) else '{}' end ||
                    case when dim = 'reliability' then jsonb_build_object('breakdowns30d', s.breakdowns) else '{}' end as f
             from (values ('sensor', s.sensor_score, 0.30), ('oee', s.oee_score, 0.25), ('quality', s.quality_score, 0.20),
                          ('reliability', s.reliability_score, 0.15), ('performance', s.performance_score, 0.10)) v(dim, score, w)
             where score is not null and score < 100
           ) x), '[]'),
         case iot_private.health_status(s.overall)
           when 'CRITICAL' then 'Stop and inspect now: schedule immediate maintenance.'
           when 'POOR' then 'Plan maintenance within days; check the dimensions that cost the most points.'
           when 'FAIR' then 'Watch closely; plan an inspection at the next planned stop.'
           when 'GOOD' then 'Normal operation; keep the maintenance schedule.'
           when 'EXCELLENT' then 'No action needed.'
           else format('Not enough data to score (weight %s of the %s needed). Missing: %s. Check that sensors report and production runs are recorded.',
                       s.weight_total, s.min_weight,
                       concat_ws('; ',
                         case when s.sensor_score is null then 'readings in the last 24 h from active channels with a normal range (sensor health)' end,
                         case when s.oee_score is null then 'production runs in the last 7 days (OEE and performance health)' end,
                         case when s.quality_score is null then 'SPC control limits (quality health)' end))
         end,
         jsonb_build_object('weightsUsed', s.weight_total, 'minScoredWeight', s.min_weight, 'oee7d', s.oee,
                            'performance7d', s.performance, 'cycleTime7dSeconds', s.ct7,
                            'cycleTimeBaselineSeconds', s.ct_base, 'anomalyEvents24h', coalesce(a.n, 0)),
         a.n is not null, a.severity, a.type
  from scored s join history h on h.id = s.id
  left join anomalies a on a.work_center_id = s.id
$$;

-- Stores scores at `at` for the given work centers (null = all active). A second run for the same
-- instant writes nothing. Returns how many were stored.
create or replace function iot_private.store_health_scores(work_center_ids uuid[], at timestamptz)
  returns integer language plpgsql
  set search_path = pg_catalog, pg_temp
as $$
declare
  stored integer;
begin
  perform iot_private.ensure_partitions('equipment_health_scores', at, at);
  insert into iot_private.equipment_health_scores
    (score_timestamp, tenant_id, work_center_id, overall_health_score, sensor_health_score, oee_health_score,
     quality_health_score, reliability_health_score, performance_health_score, health_status, health_score_7d_avg,
     health_score_30d_avg, health_score_change_7d, trend_direction, risk_factors, recommended_action, details,
     anomaly_detected, anomaly_severity, anomaly_type)
  select c.score_timestamp, c.tenant_id, c.work_center_id, c.overall_health_score, c.sensor_health_score, c.oee_health_score,
         c.quality_health_score, c.reliability_health_score, c.performance_health_score, c.health_status, c.health_score_7d_avg,
         c.health_score_30d_avg, c.health_score_change_7d, c.trend_direction, c.risk_factors, c.recommended_action, c.details,
         c.anomaly_detected, c.anomaly_severity, c.anomaly_type
  from iot_private.compute_health_scores(
    coalesce(work_center_ids, array(select id from iot.work_centers where is_active)), at) c
  on conflict do nothing;
  get diagnostics stored = row_count;
  return stored;
end
$$;

create or replace function iot.calculate_equipment_health_score(work_center_id uuid, at timestamptz default now())
  returns iot.equipment_health_scores
  language plpgsql volatile security definer
  set search_path = pg_catalog, pg_temp
as $$
declare
  result iot.equipment_health_scores;
begin
  if not exists (select 1 from iot.work_centers w
                 where w.id = calculate_equipment_health_score.work_center_id and w.tenant_id = any (iot.current_tenant_ids())) then
    raise exception 'work center % not found', work_center_id using errcode = 'IOT04';
  end if;
  perform iot_private.store_health_scores(array[work_center_id], at);
  perform iot_private.raise_predictive_alerts(array[work_center_id], at);
  select * into result from iot.equipment_health_scores h
   where h.work_center_id = calculate_equipment_health_score.work_center_id and h.score_timestamp = at;
  return result;
end
$$;
comment on function iot.calculate_equipment_health_score(uuid, timestamptz) is
  'Computes, stores and returns the health score of a work center at an instant (default now). Idempotent per instant.';

-- Filtered history for the API (equipmentHealthScores).
create or replace function iot.equipment_health_scores(
  health_status text default null, work_center_id uuid default null, since timestamptz default null, until timestamptz default null)
  returns setof iot.equipment_health_scores
  language sql stable
  set search_path = pg_catalog, pg_temp
as $$
  select h.* from iot.equipment_health_scores h
  where (equipment_health_scores.health_status is null or h.health_status = equipment_health_scores.health_status)
    and (equipment_health_scores.work_center_id is null or h.work_center_id = equipment_health_scores.work_center_id)
    and (since is null or h.score_timestamp >= since)
    and (until is null or h.score_timestamp <= until)
  order by h.score_timestamp desc
$$;
comment on function iot.equipment_health_scores(text, uuid, timestamptz, timestamptz) is
  'Health scores, newest first, filtered by status, work center and date range.';

do $$
begin
  create type iot.health_trend_point as (
    work_center_id uuid, bucket timestamptz, avg_score numeric, min_score numeric, max_score numeric, samples integer
  );
exception when duplicate_object then null;
end $$;

create or replace function iot.equipment_health_trends(
  bucket text default 'day', since timestamptz default now() - interval '30 days', until timestamptz default now(),
  work_center_id uuid default null)
  returns setof iot.health_trend_point
  language plpgsql stable
  set search_path = pg_catalog, pg_temp
as $$
begin
  if bucket not in ('hour', 'day', 'week', 'month') then
    raise exception 'bucket must be hour, day, week or month, not %', bucket using errcode = 'IOT03';
  end if;
  perform iot.check_time_range(since, until, interval '3660 days');
  return query
    select h.work_center_id, date_trunc(bucket, h.score_timestamp, 'UTC'), round(avg(h.overall_health_score), 2),
           min(h.overall_health_score), max(h.overall_health_score), count(*)::integer
    from iot.equipment_health_scores h
    where h.score_timestamp >= since and h.score_timestamp <= until
      and (equipment_health_trends.work_center_id is null or h.work_center_id = equipment_health_trends.work_center_id)
    group by 1, 2 order by 1, 2;
end
$$;
comment on function iot.equipment_health_trends(text, timestamptz, timestamptz, uuid) is
  'Average, minimum and maximum health score per work center per hour, day, week or month (UTC).';

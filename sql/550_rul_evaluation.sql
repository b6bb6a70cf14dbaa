-- Remaining-useful-life evaluation: the predictive-maintenance RUL estimator (sql/540) measured on
-- run-to-failure telemetry (NASA C-MAPSS FD001, test/eval/cmapss.test.ts).
--
-- Three pieces, all over iot_private.sensor_readings (the product's data path):
--  1. iot_private.rul_from_health_series(): the estimator of sql/540 on any series: least-squares
--     line through the last `fit_window` points; if it falls, RUL = time until it reaches
--     `threshold` from the latest value; bounds: value +/- 1.96 residual SD at slope -/+ 1.96 SE (no bound when
--     that slope might not be falling). anchor_on_fit = true starts from the fitted line's value at
--     the last point instead of the last raw value (a variant measured beside it, not used by 540).
--     sql/540 gates the same line by its minimum number and span of scores (8 over 12 h by default);
--     here the calibrated fit_window of cycles stands in for them.
--  2. iot_private.rul_health_index(): a degradation index per work center and time step. Each
--     sensor is standardised against the fleet's healthy baseline (first `baseline_steps` steps of
--     the calibration engines), signed so it rises with wear, and averaged over sensors:
--       degradation = avg_s( direction_s * (value_s - baseline_mean_s) / baseline_sd_s )
--     and mapped to a health scale where the healthy fleet is 100 and the fleet's mean degradation at
--     failure is 30 (the product's CRITICAL bound):  health = 100 - 70 * degradation / degradation_at_failure.
--     A step is one cycle: step index = round((time - since) / step).
--  3. iot_private.calibrate_rul(): fits the baseline, directions and degradation at failure on
--     run-to-failure (training) engines, then picks the failure threshold and fit window from grids by
--     the RMSE of capped predictions on those engines cut short at several points. Test engines'
--     truth is never used. iot_private.estimate_rul() applies a calibration to engines.

create table if not exists iot_private.rul_calibrations (
  calibration            text primary key,
  sensor_types           text[] not null,
  directions             double precision[] not null,
  baseline_mean          double precision[] not null,
  baseline_sd            double precision[] not null,
  degradation_at_failure double precision not null,
  threshold              double precision not null,
  fit_window             integer not null,
  rul_cap                double precision,
  step                   interval not null,
  details                jsonb not null default '{}',
  calibrated_at          timestamptz not null default now(),
  constraint rul_calibrations_arrays_match check (
    cardinality(sensor_types) = cardinality(directions) and cardinality(sensor_types) = cardinality(baseline_mean)
    and cardinality(sensor_types) = cardinality(baseline_sd)),
  constraint rul_calibrations_window_positive check (fit_window >= 3),
  constraint rul_calibrations_step_positive check (step > interval '0')
);
comment on table iot_private.rul_calibrations is
  'Health-index and RUL-estimator calibrations fitted on run-to-failure engines (sql/550_rul_evaluation.sql).';

-- 1. The estimator --------------------------------------------------------------------------------
create or replace function iot_private.rul_from_health_series(
  times double precision[], health double precision[], threshold double precision, fit_window integer,
  anchor_on_fit boolean default false,
  out rul double precision, out rul_lower double precision, out rul_upper double precision,
  out slope double precision, out points integer, out current_health double precision)
  language sql immutable parallel safe
  set search_path = pg_catalog, pg_temp
as $$
  with pts as (
    select u.t, u.h
    from unnest(times, health) as u(t, h)
    where u.t is not null and u.h is not null
    order by u.t desc
    limit greatest(fit_window, 0)
  ), fit as (
    select count(*)::integer as n, regr_slope(p.h, p.t) as slope, regr_intercept(p.h, p.t) as icpt,
           regr_sxx(p.h, p.t) as sxx, regr_syy(p.h, p.t) as syy, regr_sxy(p.h, p.t) as sxy, max(p.t) as t_last,
           (array_agg(p.h order by p.t desc))[1] as h_last
    from pts p
  ), st as (
    select f.*,
           case when f.n > 2 and f.sxx > 0 then sqrt(greatest(f.syy - f.sxy * f.sxy / f.sxx, 0) / (f.n - 2)) / sqrt(f.sxx) end as se,
           case when f.n > 2 and f.sxx > 0 then sqrt(greatest(f.syy - f.sxy * f.sxy / f.sxx, 0) / (f.n - 2)) end as resid_sd,
           case when anchor_on_fit and f.slope is not null then f.icpt + f.slope * f.t_last else f.h_last end as h_now
    from fit f
  )
  select case when s.n >= 3 and s.slope < 0 then greatest(0, (s.h_now - threshold) / -s.slope) end,
         -- Same bounds as sql/540: the value's scatter (+/- 1.96 residual SD) at the slope -/+ 1.96 SE.
         case when s.n >= 3 and s.se is not null and s.slope - 1.96 * s.se < 0
              then greatest(0, (s.h_now - 1.96 * s.resid_sd - threshold) / -(s.slope - 1.96 * s.se)) end,
         case when s.n >= 3 and s.se is not null and s.slope + 1.96 * s.se < 0
              then greatest(0, (s.h_now + 1.96 * s.resid_sd - threshold) / -(s.slope + 1.96 * s.se)) end,
         s.slope, s.n, s.h_now
  from st s
$$;
comment on function iot_private.rul_from_health_series(double precision[], double precision[], double precision, integer, boolean) is
  'The sql/540 RUL estimator on a series: least-squares line over the last fit_window points extrapolated to threshold; bounds: the value +/- 1.96 residual SD at the slope -/+ 1.96 SE, as in sql/540. RUL in the units of times.';

-- 2. The health index ----------------------------------------------------------------------------
create or replace function iot_private.rul_health_index(calibration text, work_center_ids uuid[], since timestamptz)
  returns table (work_center_id uuid, step_index integer, "time" timestamptz, sensors integer,
                 degradation double precision, health double precision)
  language sql stable
  set search_path = pg_catalog, pg_temp
as $$
  with c as (
    select * from iot_private.rul_calibrations k where k.calibration = rul_health_index.calibration
  ), s as (
    select u.sensor_type, u.dir, u.mu, u.sd
    from c cross join lateral unnest(c.sensor_types, c.directions, c.baseline_mean, c.baseline_sd) as u(sensor_type, dir, mu, sd)
  ), z as (
    select d.work_center_id, r.time, count(*)::integer as n, avg(s.dir * (r.value - s.mu) / s.sd) as degradation
    from iot_private.sensor_readings r
    join iot.iot_devices d on d.id = r.device_id
    join s on s.sensor_type = r.sensor_type
    where d.work_center_id = any (work_center_ids) and r.time >= since and r.quality = 'GOOD'
    group by d.work_center_id, r.time
  )
  select z.work_center_id, round(extract(epoch from z.time - since) / extract(epoch from c.step))::integer, z.time, z.n,
         z.degradation, 100 - 70 * z.degradation / c.degradation_at_failure
  from z cross join c
$$;
comment on function iot_private.rul_health_index(text, uuid[], timestamptz) is
  'Degradation index per work center and time step from the calibrated sensors (fleet-baseline z-scores, signed, averaged); health = 100 healthy, 30 = the fleet''s mean at failure.';

-- 3. Estimates and calibration --------------------------------------------------------------------
-- RUL (in steps) of each work center at its last step, or at `at_step` when given; rul_capped is
-- min(rul, cap), and the cap when the line does not fall.
create or replace function iot_private.estimate_rul(
  calibration text, work_center_ids uuid[], since timestamptz,
  threshold double precision default null, fit_window integer default null, anchor_on_fit boolean default false)
  returns table (work_center_id uuid, last_step integer, health double precision, slope double precision,
                 rul double precision, rul_lower double precision, rul_upper double precision, rul_capped double precision)
  language sql stable
  set search_path = pg_catalog, pg_temp
as $$
  with c as (
    select * from iot_private.rul_calibrations k where k.calibration = estimate_rul.calibration
  ), series as (
    select h.work_center_id, max(h.step_index) as last_step,
           array_agg(h.step_index::double precision order by h.step_index) as t, array_agg(h.health order by h.step_index) as y
    from iot_private.rul_health_index(calibration, work_center_ids, since) h
    group by h.work_center_id
  )
  select s.work_center_id, s.last_step, e.current_health, e.slope, e.rul, e.rul_lower, e.rul_upper,
         least(coalesce(e.rul, c.rul_cap, 'Infinity'), coalesce(c.rul_cap, 'Infinity'))
  from series s cross join c
  cross join lateral iot_private.rul_from_health_series(s.t, s.y, coalesce(estimate_rul.threshold, c.threshold),
                                                        coalesce(estimate_rul.fit_window, c.fit_window), anchor_on_fit) e
$$;

-- Fits a calibration on run-to-failure work centers (each one's last step is its failure) and
-- returns it. Threshold and window: the pair with the lowest RMSE of capped RUL against capped
-- truth over every engine cut at each of `cut_ruls` steps before failure (cuts leaving fewer than
-- `min_history` steps are skipped).
create or replace function iot_private.calibrate_rul(
  calibration text, work_center_ids uuid[], since timestamptz, step interval, sensor_types text[],
  baseline_steps integer default 30, failure_steps integer default 5,
  thresholds double precision[] default array[30, 35, 40, 45, 50, 55, 60, 65, 70],
  fit_windows integer[] default array[10, 20, 30, 50],
  rul_cap double precision default 125,
  cut_ruls integer[] default array[10, 30, 50, 70, 90, 110, 130],
  min_history integer default 31,
  anchor_on_fit boolean default false)
  returns iot_private.rul_calibrations
  language plpgsql volatile
  set search_path = pg_catalog, pg_temp
as $$
declare
  k iot_private.rul_calibrations;
  best jsonb;
  grid jsonb;
begin
  -- Baseline and direction per sensor: the first baseline_steps of every engine are healthy; the
  -- direction is the sign of the mean shift over the last failure_steps.
  with r as (
    select d.work_center_id, r.sensor_type, r.value,
           round(extract(epoch from r.time - since) / extract(epoch from step))::integer as i
    from iot_private.sensor_readings r
    join iot.iot_devices d on d.id = r.device_id
    where d.work_center_id = any (work_center_ids) and r.time >= since and r.sensor_type = any (calibrate_rul.sensor_types)
      and r.quality = 'GOOD'
  ), last as (
    select r.work_center_id, max(r.i) as n from r group by 1
  ), per as (
    select r.sensor_type,
           avg(r.value) filter (where r.i <= baseline_steps) as mu,
           stddev_samp(r.value) filter (where r.i <= baseline_steps) as sd,
           avg(r.value) filter (where r.i > l.n - failure_steps) as mu_end
    from r join last l using (work_center_id)
    group by r.sensor_type
  )
  select array_agg(p.sensor_type order by p.sensor_type), array_agg(sign(p.mu_end - p.mu) order by p.sensor_type),
         array_agg(p.mu order by p.sensor_type), array_agg(p.sd order by p.sensor_type)
    into k.sensor_types, k.directions, k.baseline_mean, k.baseline_sd
  from per p
  where p.sd > 0;
  if k.sensor_types is null then
    raise exception 'calibrate_rul: no readings of % for the given work centers since %', sensor_types, since;
  end if;

  insert into iot_private.rul_calibrations as x (calibration, sensor_types, directions, baseline_mean, baseline_sd,
      degradation_at_failure, threshold, fit_window, rul_cap, step)
  values (calibrate_rul.calibration, k.sensor_types, k.directions, k.baseline_mean, k.baseline_sd, 1, 30, calibrate_rul.fit_windows[1],
          calibrate_rul.rul_cap, calibrate_rul.step)
  on conflict on constraint rul_calibrations_pkey do update set
    sensor_types = excluded.sensor_types, directions = excluded.directions, baseline_mean = excluded.baseline_mean,
    baseline_sd = excluded.baseline_sd, degradation_at_failure = 1, rul_cap = excluded.rul_cap, step = excluded.step,
    calibrated_at = now();

  -- Mean degradation at failure (over each engine's last failure_steps): that is health 30.
  update iot_private.rul_calibrations x set degradation_at_failure = (
    select avg(e.d) from (
      select h.work_center_id, avg(h.degradation) as d
      from (select h.*, max(h.step_index) over (partition by h.work_center_id) as n
            from iot_private.rul_health_index(calibrate_rul.calibration, work_center_ids, since) h) h
      where h.step_index > h.n - failure_steps
      group by 1) e)
  where x.calibration = calibrate_rul.calibration;

  -- Threshold x window grid on the engines cut short.
  with series as (
    select h.work_center_id, max(h.step_index) as n,
           array_agg(h.step_index::double precision order by h.step_index) as t, array_agg(h.health order by h.step_index) as y
    from iot_private.rul_health_index(calibrate_rul.calibration, work_center_ids, since) h
    group by 1
  ), cuts as (
    select s.work_center_id, s.t, s.y, s.n, cr as true_rul, array_position(s.t, (s.n - cr)::double precision) as pos
    from series s cross join unnest(cut_ruls) cr
  ), runs as (
    select th, w, c.true_rul,
           least(coalesce(e.rul, rul_cap, 'Infinity'), coalesce(rul_cap, 'Infinity')) as pred
    from cuts c
    cross join unnest(thresholds) th
    cross join unnest(fit_windows) w
    cross join lateral iot_private.rul_from_health_series(c.t[greatest(1, c.pos - w + 1):c.pos], c.y[greatest(1, c.pos - w + 1):c.pos],
                                                          th, w, anchor_on_fit) e
    where c.pos is not null and c.pos >= min_history
  ), scored as (
    select th, w, count(*) as cases,
           sqrt(avg(power(pred - least(true_rul, coalesce(rul_cap, 'Infinity')), 2))) as rmse
    from runs group by th, w
  )
  select (select to_jsonb(b) from (select th, w, cases, rmse from scored order by rmse limit 1) b),
         (select jsonb_agg(jsonb_build_object('threshold', th, 'window', w, 'rmse', round(rmse::numeric, 2)) order by rmse) from scored)
    into best, grid;
  if best is null then
    raise exception 'calibrate_rul: no engine long enough to cut (min_history %)', min_history;
  end if;

  update iot_private.rul_calibrations x
     set threshold = (best ->> 'th')::double precision, fit_window = (best ->> 'w')::integer,
         details = jsonb_build_object('engines', cardinality(work_center_ids), 'baselineSteps', baseline_steps,
                                      'failureSteps', failure_steps, 'cutRuls', to_jsonb(cut_ruls), 'anchorOnFit', anchor_on_fit,
                                      'trainRmse', round((best ->> 'rmse')::numeric, 2),
                                      'cases', (best ->> 'cases')::integer, 'grid', grid)
   where x.calibration = calibrate_rul.calibration
  returning * into k;
  return k;
end
$$;
comment on function iot_private.calibrate_rul(text, uuid[], timestamptz, interval, text[], integer, integer, double precision[], integer[], double precision, integer[], integer, boolean) is
  'Fits a health-index + RUL calibration on run-to-failure work centers: fleet baseline, directions, degradation at failure, then threshold and fit window by RMSE on the engines cut short.';

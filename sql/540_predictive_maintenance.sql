-- Predictive-maintenance alerts from the health history, and their workflow.
--
-- Raised by the built-in models (sql/542; per work center the most specific PRODUCTION model of the
-- algorithm, whose model_parameters override the settings named here), at most one alert per work
-- center per run, one open alert per work center and failure mode (raising again updates it):
--   FAILURE_PREDICTION  (HEALTH_TREND)    the latest score is POOR or CRITICAL     alert_reason HEALTH_DEGRADATION
--                       (RANGE_EXCURSION) a ranged channel spent at least minOutsideShare (80%) of its minutes with
--                                         readings (at least minMinutes, 6) of the last excursionHours (2) wholly
--                                         outside its normal range: worn machines leave the range and stay out,
--                                         transient faults come back    alert_reason PERSISTENT_EXCURSION
--                       (HEALTH_TREND)    the 7-day trend is RAPIDLY_DEGRADING     alert_reason RAPID_DEGRADATION
--   RUL_THRESHOLD       (HEALTH_TREND)    the trend predicts the failure threshold within the horizon with at
--                                         least minRulConfidence                   alert_reason RUL_WITHIN_HORIZON
--   ANOMALY_DETECTED    (ANOMALY_RATE)    one channel's ANOMALY_DETECTED events in the last 24 h are at least
--                                         minEvents (3) and improbable at its own rate: P(N >= n) < pValue (0.001)
--                                         for N Poisson with the channel's mean over the baselineDays (7) before
--                                         (plus half an event, so a quiet baseline is not zero), which must hold
--                                         at least minBaselineDays (2) of scores. A machine that always spikes is
--                                         not degrading; one fault that upsets several channels counts once per
--                                         channel; a change in a channel's rate may be     alert_reason ANOMALY_RATE
-- in that order of precedence. Nothing is raised while a maintenance record is open on the work
-- center (it is being repaired), and for postMaintenanceQuietHours (24, the sensor window of the
-- health score) after one ends only a persistent excursion or a trend fitted to scores after the
-- repair can raise (the score and the anomaly counts still hold the hours before the repair).
--
-- Trend (remaining useful life). Least-squares line through the scores of the last trendWindowHours
-- (48: a wear that began a day ago must dominate the line, not be averaged with a week of health)
-- after the last maintenance. It predicts only from at least minTrendPoints (8) scores spanning
-- at least minTrendSpanHours (12): the score's fastest dimension averages the readings of 24 hours,
-- so over minutes it moves only as readings enter and leave that window (3 scores over 3 minutes
-- once extrapolated a 1 % dip into 1-6 h of life on EXCELLENT machines); 12 h is half that window,
-- the least over which a move of the score reflects the machine rather than the window's edges, and
-- 8 scores keep a few stray points from making the line (48 at the default 15-minute interval).
-- If the line falls: RUL = hours until it reaches failureThreshold (30, CRITICAL) from the latest
-- score; bounds: the score +/- 1.96 residual SD reaching the threshold at the slope -/+ 1.96 standard
-- errors (no upper bound when the slope might not be falling). time_to_failure_hours = rul_hours;
-- time_to_failure_uncertainty_hours = half the bounds' width (null without an upper bound).
-- rul_confidence = R^2 of the line (the share of the scores' variation the falling line explains)
--   x least(1, span / (2 x minTrendSpanHours)): a line over the bare minimum span counts half.
-- Failure probability: the larger of
--   the score's: 1 / (1 + exp((score - 35) / 7)) (0.5 at 35, about 0.1 at 50), and
--   the trend's:  rul_confidence x P(RUL <= horizon), RUL taken as normal with SD = uncertainty / 1.96
--                 (logistic approximation of the normal CDF);
-- bounds (confidence_interval_lower/upper): the same at the score -/+ 1.96 residual SDs (or 5 points)
-- and at the RUL's upper / lower bound.
-- Severity follows confidence (a prediction counts only as far as its confidence carries it; a
-- measured status counts as it is):
--   CRITICAL  status CRITICAL, or RUL < 24 h with confidence >= 0.8
--   HIGH      status POOR, or RUL < 72 h with confidence >= 0.65
--   MEDIUM    a persistent excursion, RAPIDLY_DEGRADING, or RUL within the horizon with confidence >=
--             minRulConfidence, or an anomaly count with P < pValue / 100
--   LOW       otherwise.  Urgency follows: IMMEDIATE, URGENT, SOON, ROUTINE.
-- Failure mode: the dimension that cost the most points (risk_factors[0]); for the sensor dimension
-- its worst channel's sensor type: VIBRATION -> BEARING_WEAR, TEMPERATURE -> OVERHEATING, PRESSURE ->
-- PRESSURE_DEVIATION, HUMIDITY -> ENVIRONMENT_DRIFT, other -> SENSOR_DEVIATION; oee OEE_LOSS, quality
-- QUALITY_DRIFT, reliability BREAKDOWN_RISK, performance PERFORMANCE_LOSS, else GENERAL_DEGRADATION.
-- Excursion and anomaly alerts: the same mapping from the channel's sensor type.
-- Plan: required_parts, required_skills, estimated_maintenance_duration_hours and recommended_action
-- from iot.maintenance_catalogue (sql/541); action_checklist: the score's action and the dimensions to check.
-- Business impact: the severity, one level higher for presses (the bottleneck). Estimated downtime:
-- the maintenance duration, x1.5 when CRITICAL (an unplanned stop); estimated_repair_cost = downtime x
-- the `downtime_cost_per_hour` setting (default 500).
-- feature_values: the inputs (dimension scores, status, trend, slope, points, span, R^2, anomaly
-- counts); primary_indicators: the dimensions and channels (or anomalous channels) behind the alert.

insert into iot_private.settings (key, value) values ('downtime_cost_per_hour', '500') on conflict (key) do nothing;

create or replace function iot_private.failure_mode_for_sensor(sensor_type text) returns text
  language sql immutable
  set search_path = pg_catalog, pg_temp
as $$
  select case upper(sensor_type) when 'VIBRATION' then 'BEARING_WEAR' when 'TEMPERATURE' then 'OVERHEATING'
              when 'PRESSURE' then 'PRESSURE_DEVIATION' when 'HUMIDITY' then 'ENVIRONMENT_DRIFT' else 'SENSOR_DEVIATION' end
$$;

-- Normal CDF, logistic approximation (max error about 0.01): enough for a probability shown to 2 digits.
create or replace function iot_private.normal_cdf(x double precision) returns double precision
  language sql immutable
  set search_path = pg_catalog, pg_temp
as $$ select 1 / (1 + exp(-1.702 * greatest(-30, least(30, x)))) $$;

-- P(N >= n) for N ~ Poisson(lambda), lambda > 0 (terms in logs; n capped at 200, far past any alert).
create or replace function iot_private.poisson_upper_tail(n integer, lambda double precision) returns double precision
  language sql immutable
  set search_path = pg_catalog, pg_temp
as $$
  select case when n <= 0 then 1 else greatest(0, 1 - (
    select sum(exp(-lambda + k * ln(lambda) - (select coalesce(sum(ln(i)), 0) from generate_series(1, k) i)))
    from generate_series(0, least(n, 200) - 1) k)) end
$$;

create or replace function iot_private.raise_predictive_alerts(work_center_ids uuid[], at timestamptz)
  returns integer language plpgsql
  set search_path = pg_catalog, pg_temp
as $$
declare
  n integer;
begin
  perform iot_private.ensure_builtin_models(array(
    select distinct w.tenant_id from iot.work_centers w where work_center_ids is null or w.id = any (work_center_ids)));

  with wc as (
    select w.id as work_center_id, w.tenant_id, w.work_center_type, tm.id as trend_model_id, tm.version as trend_version,
           tm.algorithm as trend_algorithm, am.id as anomaly_model_id, am.version as anomaly_version, am.algorithm as anomaly_algorithm,
           iot_private.model_param(tm.model_parameters, 'minTrendPoints', iot_private.setting_numeric('predictive_min_trend_points', 8)) as min_points,
           iot_private.model_param(tm.model_parameters, 'minTrendSpanHours', iot_private.setting_numeric('predictive_min_trend_span_hours', 12)) as min_span,
           iot_private.model_param(tm.model_parameters, 'trendWindowHours', iot_private.setting_numeric('predictive_trend_window_hours', 168)) as window_hours,
           iot_private.model_param(tm.model_parameters, 'failureThreshold', iot_private.setting_numeric('predictive_failure_threshold', 30)) as threshold,
           iot_private.model_param(tm.model_parameters, 'minRulConfidence', iot_private.setting_numeric('predictive_min_rul_confidence', 0.5)) as min_conf,
           iot_private.model_param(tm.model_parameters, 'postMaintenanceQuietHours',
             iot_private.setting_numeric('predictive_post_maintenance_quiet_hours', 24)) as quiet_hours,
           coalesce(tm.prediction_horizon_hours, iot_private.setting_numeric('predictive_horizon_hours', 168)) as horizon,
           iot_private.model_param(am.model_parameters, 'minEvents', iot_private.setting_numeric('anomaly_alert_min_events', 3)) as min_events,
           iot_private.model_param(am.model_parameters, 'pValue', iot_private.setting_numeric('anomaly_alert_p_value', 0.001)) as p_value,
           xm.id as excursion_model_id, xm.version as excursion_version, xm.algorithm as excursion_algorithm,
           iot_private.model_param(xm.model_parameters, 'excursionHours', iot_private.setting_numeric('excursion_alert_hours', 2)) as excursion_hours,
           iot_private.model_param(xm.model_parameters, 'minOutsideShare', iot_private.setting_numeric('excursion_alert_min_outside_share', 0.8)) as min_share,
           iot_private.model_param(xm.model_parameters, 'minMinutes', iot_private.setting_numeric('excursion_alert_min_minutes', 6)) as min_minutes,
           iot_private.model_param(am.model_parameters, 'baselineDays', iot_private.setting_numeric('anomaly_alert_baseline_days', 7)) as baseline_days,
           iot_private.model_param(am.model_parameters, 'minBaselineDays', iot_private.setting_numeric('anomaly_alert_min_baseline_days', 2)) as min_baseline_days,
           mr.under_maintenance, mr.last_ended
    from iot.work_centers w
    left join lateral (
      select m.* from iot.predictive_maintenance_models m
      where m.tenant_id = w.tenant_id and m.algorithm = 'LINEAR_TREND_REGRESSION' and m.deployment_status = 'PRODUCTION'
        and (m.work_center_id = w.id or (m.work_center_id is null and (m.work_center_type = w.work_center_type or m.work_center_type is null)))
      order by m.work_center_id is not null desc, m.work_center_type is not null desc, m.failure_mode is null desc limit 1) tm on true
    left join lateral (
      select m.* from iot.predictive_maintenance_models m
      where m.tenant_id = w.tenant_id and m.algorithm = 'Z_SCORE' and m.deployment_status = 'PRODUCTION'
        and (m.work_center_id = w.id or (m.work_center_id is null and (m.work_center_type = w.work_center_type or m.work_center_type is null)))
      order by m.work_center_id is not null desc, m.work_center_type is not null desc, m.failure_mode is null desc limit 1) am on true
    left join lateral (
      select m.* from iot.predictive_maintenance_models m
      where m.tenant_id = w.tenant_id and m.algorithm = 'RANGE_PERSISTENCE' and m.deployment_status = 'PRODUCTION'
        and (m.work_center_id = w.id or (m.work_center_id is null and (m.work_center_type = w.work_center_type or m.work_center_type is null)))
      order by m.work_center_id is not null desc, m.work_center_type is not null desc, m.failure_mode is null desc limit 1) xm on true
    cross join lateral (
      select bool_or(r.started_at <= at and (r.ended_at is null or r.ended_at > at)) as under_maintenance,
             max(r.ended_at) filter (where r.ended_at <= at) as last_ended
      from iot.maintenance_records r where r.work_center_id = w.id and r.started_at <= at) mr
    where w.is_active and (work_center_ids is null or w.id = any (work_center_ids))
      and (tm.id is not null or am.id is not null or xm.id is not null)
  ), latest as (
    select wc.*, h.score_timestamp, h.overall_health_score as score, h.health_status, h.trend_direction, h.risk_factors,
           h.recommended_action as score_action, h.health_score_change_7d, h.sensor_health_score, h.oee_health_score,
           h.quality_health_score, h.reliability_health_score, h.performance_health_score,
           coalesce(wc.last_ended > at - make_interval(secs => wc.quiet_hours * 3600), false) as quiet
    from wc
    cross join lateral (
      select * from iot_private.equipment_health_scores x
      where x.work_center_id = wc.work_center_id and x.score_timestamp <= at and x.score_timestamp > at - interval '1 day'
        and x.overall_health_score is not null
      order by x.score_timestamp desc limit 1) h
    where not coalesce(wc.under_maintenance, false)
  ), fit as (
    select l.work_center_id, count(*) as points,
           extract(epoch from max(x.score_timestamp) - min(x.score_timestamp)) / 3600 as span,
           regr_slope(x.overall_health_score, extract(epoch from x.score_timestamp) / 3600) as slope,
           regr_r2(x.overall_health_score, extract(epoch from x.score_timestamp) / 3600) as r2,
           regr_sxx(x.overall_health_score, extract(epoch from x.score_timestamp) / 3600) as sxx,
           regr_syy(x.overall_health_score, extract(epoch from x.score_timestamp) / 3600) as syy,
           regr_sxy(x.overall_health_score, extract(epoch from x.score_timestamp) / 3600) as sxy
    from latest l
    join iot_private.equipment_health_scores x on x.work_center_id = l.work_center_id
     and x.score_timestamp <= at and x.score_timestamp > at - make_interval(secs => l.window_hours * 3600)
     and x.score_timestamp > coalesce(l.last_ended, '-infinity') and x.overall_health_score is not null
    where l.trend_model_id is not null
    group by 1
  ), trend as (
    select f.*, case when f.points > 2 and f.sxx > 0 then sqrt(greatest(f.syy - f.sxy * f.sxy / f.sxx, 0) / (f.points - 2)) end as resid_sd
    from fit f
  ), anomaly_channels as (
    select l.work_center_id, e.iot_device_id, e.sensor_type,
           count(*) filter (where e.event_timestamp > at - interval '24 hours') as recent,
           count(*) filter (where e.event_timestamp <= at - interval '24 hours') as before
    from latest l
    join iot_private.equipment_events e on e.work_center_id = l.work_center_id and e.event_type = 'ANOMALY_DETECTED'
     and e.event_timestamp <= at and e.event_timestamp > at - interval '24 hours' - make_interval(days => l.baseline_days::int)
    where l.anomaly_model_id is not null and not l.quiet
    group by 1, 2, 3
  ), history as (
    -- Days of scores the anomaly baseline rests on.
    select l.work_center_id,
           extract(epoch from (at - interval '24 hours') - min(x.score_timestamp)) / 86400 as days
    from latest l
    join iot_private.equipment_health_scores x on x.work_center_id = l.work_center_id
     and x.score_timestamp <= at - interval '24 hours' and x.score_timestamp > at - interval '24 hours' - make_interval(days => l.baseline_days::int)
    where l.anomaly_model_id is not null and not l.quiet
    group by 1
  ), anomalies as (
    -- Per work center its most improbable channel.
    select distinct on (c.work_center_id) c.work_center_id, c.iot_device_id, c.sensor_type as top_sensor, c.recent, c.before,
           (c.before + 0.5) / greatest(h.days, 1) as baseline_per_day, h.days as baseline_days_seen,
           iot_private.poisson_upper_tail(c.recent::integer, (c.before + 0.5) / greatest(h.days, 1)) as p_tail
    from anomaly_channels c join history h using (work_center_id)
    where c.recent > 0
    order by c.work_center_id, 8
  ), excursion_channels as materialized (
    -- The handful of ranged channels first: the minute rollups are then read per channel by index.
    select ch.*, l.excursion_hours from iot_private.ranged_channels(array(select l.work_center_id from latest l where l.excursion_model_id is not null)) ch
    join latest l on l.work_center_id = ch.work_center_id
  ), excursions as (
    select ch.work_center_id, ch.device_id, ch.device_code, ch.sensor_type, m.minutes, m.outside
    from excursion_channels ch
    cross join lateral (
      select count(*) as minutes,
             count(*) filter (where (ch.lo is not null and b.value_max < ch.lo) or (ch.hi is not null and b.value_min > ch.hi)) as outside
      from iot_private.sensor_readings_1m b
      where b.device_id = ch.device_id and b.sensor_type = ch.sensor_type
        and b.bucket >= at - make_interval(secs => ch.excursion_hours * 3600) and b.bucket < at) m
    where m.minutes > 0
  ), excursion as (
    select distinct on (x.work_center_id) x.*, x.outside::numeric / x.minutes as share
    from excursions x join latest l using (work_center_id)
    where x.outside >= l.min_minutes and x.outside::numeric / x.minutes >= l.min_share
    order by x.work_center_id, x.outside::numeric / x.minutes desc, x.outside desc
  ), estimates as (
    select l.*, t.points, t.span, t.slope, t.r2, t.resid_sd, t.sxx,
           coalesce(a.recent, 0) as anomalies_24h, a.top_sensor, a.iot_device_id as anomalous_device, a.p_tail,
           a.baseline_per_day as anomaly_baseline_per_day, a.baseline_days_seen,
           x.sensor_type as excursion_sensor, x.device_code as excursion_device, x.share as excursion_share, x.minutes as excursion_minutes,
           (t.points >= l.min_points and t.span >= l.min_span and t.slope < 0) as predicts
    from latest l
    left join trend t using (work_center_id)
    left join anomalies a using (work_center_id)
    left join excursion x using (work_center_id)
  ), ruls as (
    select e.*,
           case when e.predicts then greatest(0, (e.score - e.threshold) / -e.slope) end as rul,
           case when e.predicts and e.resid_sd is not null and e.slope - 1.96 * e.resid_sd / sqrt(nullif(e.sxx, 0)) < 0
                then greatest(0, (e.score - 1.96 * e.resid_sd - e.threshold) / -(e.slope - 1.96 * e.resid_sd / sqrt(nullif(e.sxx, 0)))) end as rul_lower,
           case when e.predicts and e.resid_sd is not null and e.slope + 1.96 * e.resid_sd / sqrt(nullif(e.sxx, 0)) < 0
                then greatest(0, (e.score + 1.96 * e.resid_sd - e.threshold) / -(e.slope + 1.96 * e.resid_sd / sqrt(nullif(e.sxx, 0)))) end as rul_upper,
           case when e.predicts then round((coalesce(e.r2, 0) * least(1, e.span / (2 * e.min_span)))::numeric, 4) end as confidence,
           (1.96 * coalesce(e.resid_sd, 5))::numeric as score_margin
    from estimates e
  ), candidates as (
    select r.*,
           case when not r.quiet and r.trend_model_id is not null and r.health_status in ('POOR', 'CRITICAL') then 'HEALTH_DEGRADATION'
                when r.excursion_sensor is not null then 'PERSISTENT_EXCURSION'
                when not r.quiet and r.trend_model_id is not null and r.trend_direction = 'RAPIDLY_DEGRADING' then 'RAPID_DEGRADATION' end as health_reason,
           r.rul <= r.horizon and r.confidence >= r.min_conf as rul_alert,
           r.anomaly_model_id is not null and not r.quiet and r.baseline_days_seen >= r.min_baseline_days
             and r.anomalies_24h >= r.min_events and r.p_tail < r.p_value as anomaly_alert
    from ruls r
  ), chosen as (
    select c.*,
           coalesce(c.health_reason, case when c.rul_alert then 'RUL_WITHIN_HORIZON' when c.anomaly_alert then 'ANOMALY_RATE' end) as reason
    from candidates c
  ), typed as (
    select c.*,
           case when c.reason in ('HEALTH_DEGRADATION', 'PERSISTENT_EXCURSION', 'RAPID_DEGRADATION') then 'FAILURE_PREDICTION'
                when c.reason = 'RUL_WITHIN_HORIZON' then 'RUL_THRESHOLD' else 'ANOMALY_DETECTED' end as alert_type,
           case when c.reason = 'ANOMALY_RATE' then
                  case when c.top_sensor is not null then iot_private.failure_mode_for_sensor(c.top_sensor) else 'ANOMALOUS_BEHAVIOUR' end
                when c.reason = 'PERSISTENT_EXCURSION' then iot_private.failure_mode_for_sensor(c.excursion_sensor)
                else case c.risk_factors -> 0 ->> 'dimension'
                  when 'sensor' then iot_private.failure_mode_for_sensor(c.risk_factors -> 0 -> 'channels' -> 0 ->> 'sensorType')
                  when 'oee' then 'OEE_LOSS' when 'quality' then 'QUALITY_DRIFT'
                  when 'reliability' then 'BREAKDOWN_RISK' when 'performance' then 'PERFORMANCE_LOSS' else 'GENERAL_DEGRADATION' end
           end as failure_mode,
           case c.reason when 'ANOMALY_RATE' then c.anomaly_model_id when 'PERSISTENT_EXCURSION' then c.excursion_model_id else c.trend_model_id end as model_id,
           case c.reason when 'ANOMALY_RATE' then c.anomaly_version when 'PERSISTENT_EXCURSION' then c.excursion_version else c.trend_version end as model_version,
           case c.reason when 'ANOMALY_RATE' then c.anomaly_algorithm when 'PERSISTENT_EXCURSION' then c.excursion_algorithm else c.trend_algorithm end as algorithm,
           case when c.rul_upper is not null and c.rul_lower is not null then round(((c.rul_upper - c.rul_lower) / 2)::numeric, 1) end as uncertainty
    from chosen c
    where c.reason is not null
  ), graded as (
    select t.*,
           greatest(1 / (1 + exp((t.score - 35) / 7)),
                    coalesce(t.confidence * iot_private.normal_cdf((t.horizon - t.rul) / greatest(coalesce(t.uncertainty / 1.96, t.rul), 1)), 0)) as p,
           greatest(1 / (1 + exp((t.score + t.score_margin - 35) / 7)),
                    coalesce(t.confidence * iot_private.normal_cdf((t.horizon - t.rul_upper) / greatest(coalesce(t.uncertainty / 1.96, t.rul), 1)), 0)) as p_lo,
           greatest(1 / (1 + exp((t.score - t.score_margin - 35) / 7)),
                    coalesce(t.confidence * iot_private.normal_cdf((t.horizon - coalesce(t.rul_lower, 0)) / greatest(coalesce(t.uncertainty / 1.96, t.rul), 1)), 0)) as p_hi,
           case when t.health_status = 'CRITICAL' or (t.rul < 24 and t.confidence >= 0.8) then 'CRITICAL'
                when t.health_status = 'POOR' or (t.rul < 72 and t.confidence >= 0.65) then 'HIGH'
                when t.reason = 'PERSISTENT_EXCURSION' or t.trend_direction = 'RAPIDLY_DEGRADING' or (t.rul <= t.horizon and t.confidence >= t.min_conf)
                     or (t.reason = 'ANOMALY_RATE' and t.p_tail < t.p_value / 100)
                  then 'MEDIUM'
                else 'LOW' end as severity
    from typed t
  ), planned as (
    select g.*, p.required_parts, p.required_skills, p.estimated_maintenance_duration_hours as duration, p.recommended_action as plan_action
    from graded g
    left join lateral iot_private.maintenance_plan(g.tenant_id, g.work_center_type, g.failure_mode) p on true
  ), upserted as (
    insert into iot.predictive_maintenance_alerts as a (
      tenant_id, work_center_id, model_id, model_version, algorithm_used, alert_type, alert_reason, predicted_failure_mode,
      severity, urgency, failure_probability, confidence_interval_lower, confidence_interval_upper,
      rul_hours, rul_lower_hours, rul_upper_hours, rul_confidence, predicted_failure_timestamp,
      time_to_failure_hours, time_to_failure_uncertainty_hours, health_score_at_alert, business_impact,
      estimated_downtime_hours, estimated_repair_cost, description, recommended_action, action_checklist,
      required_parts, required_skills, estimated_maintenance_duration_hours, feature_values, primary_indicators, alert_timestamp)
    select g.tenant_id, g.work_center_id, g.model_id, g.model_version::text, g.algorithm, g.alert_type, g.reason, g.failure_mode,
           g.severity,
           case g.severity when 'CRITICAL' then 'IMMEDIATE' when 'HIGH' then 'URGENT' when 'MEDIUM' then 'SOON' else 'ROUTINE' end,
           round(g.p::numeric, 4), round(least(g.p, g.p_lo)::numeric, 4), round(greatest(g.p, g.p_hi)::numeric, 4),
           round(g.rul::numeric, 1), round(g.rul_lower::numeric, 1), round(g.rul_upper::numeric, 1), g.confidence,
           at + make_interval(secs => g.rul * 3600),
           round(g.rul::numeric, 1), g.uncertainty, g.score,
           case when g.work_center_type = 'PRESS' then
                  case g.severity when 'LOW' then 'MEDIUM' when 'MEDIUM' then 'HIGH' else 'CRITICAL' end
                else g.severity end,
           dt.hours, round(dt.hours * iot_private.setting_numeric('downtime_cost_per_hour', 500), 2),
           format('%s (%s): health %s (%s), trend %s%s', replace(lower(g.alert_type), '_', ' '), replace(lower(g.reason), '_', ' '),
                  g.score, g.health_status, coalesce(lower(g.trend_direction), 'unknown'),
                  case when g.rul is not null then format(', about %s h to the failure threshold (confidence %s)', round(g.rul), round(g.confidence, 2))
                       when g.reason = 'ANOMALY_RATE' then format(', %s %s anomalies in 24 h', g.anomalies_24h, g.top_sensor)
                       when g.reason = 'PERSISTENT_EXCURSION' then format(', %s of %s outside its normal range for %s%% of %s minutes',
                                                                          g.excursion_sensor, g.excursion_device, round(100 * g.excursion_share), g.excursion_minutes)
                       else '' end),
           coalesce(g.plan_action, g.score_action),
           case when g.score_action is not null then jsonb_build_array(g.score_action) else '[]' end ||
             coalesce((select jsonb_agg(format('Check %s (%s points lost)', f ->> 'dimension', f ->> 'pointsLost'))
                       from jsonb_array_elements(g.risk_factors) f), '[]'),
           g.required_parts, g.required_skills, g.duration,
           jsonb_build_object('scoreAt', g.score_timestamp, 'overallHealthScore', g.score, 'healthStatus', g.health_status,
                              'trendDirection', g.trend_direction, 'healthScoreChange7d', g.health_score_change_7d,
                              'sensorHealthScore', g.sensor_health_score, 'oeeHealthScore', g.oee_health_score,
                              'qualityHealthScore', g.quality_health_score, 'reliabilityHealthScore', g.reliability_health_score,
                              'performanceHealthScore', g.performance_health_score,
                              'slopePerHour', round(g.slope::numeric, 4), 'trendPoints', g.points, 'trendSpanHours', round(g.span::numeric, 1),
                              'trendR2', round(g.r2::numeric, 4), 'anomalies24h', g.anomalies_24h, 'anomalySensorType', g.top_sensor,
                              'anomalyBaselinePerDay', round(g.anomaly_baseline_per_day::numeric, 2),
                              'anomalyTailProbability', g.p_tail, 'excursionSensorType', g.excursion_sensor,
                              'excursionOutsideShare', round(g.excursion_share, 4)),
           case when g.reason = 'ANOMALY_RATE' then jsonb_build_array(jsonb_build_object('sensorType', g.top_sensor, 'deviceId', g.anomalous_device,
                                                                      'anomalies24h', g.anomalies_24h, 'baselinePerDay', round(g.anomaly_baseline_per_day::numeric, 2)))
                when g.reason = 'PERSISTENT_EXCURSION' then jsonb_build_array(jsonb_build_object('sensorType', g.excursion_sensor,
                                                                      'deviceCode', g.excursion_device, 'outsideShare', round(g.excursion_share, 4)))
                else coalesce((
                  select jsonb_agg(i order by o)
                  from (select jsonb_build_object('dimension', f ->> 'dimension', 'score', (f ->> 'score')::numeric,
                                                  'pointsLost', (f ->> 'pointsLost')::numeric) ||
                               case when f ? 'channels' then jsonb_build_object('channels', f -> 'channels') else '{}' end as i, o
                        from jsonb_array_elements(g.risk_factors) with ordinality x(f, o) where o <= 3) y), '[]') end,
           at
    from planned g
    cross join lateral (select round(coalesce(g.duration, 4) * case when g.severity = 'CRITICAL' then 1.5 else 1 end, 1) as hours) dt
    on conflict (work_center_id, predicted_failure_mode) where status <> 'RESOLVED' do update set
      model_id = excluded.model_id, model_version = excluded.model_version, algorithm_used = excluded.algorithm_used,
      alert_type = excluded.alert_type, alert_reason = excluded.alert_reason, severity = excluded.severity, urgency = excluded.urgency,
      failure_probability = excluded.failure_probability, confidence_interval_lower = excluded.confidence_interval_lower,
      confidence_interval_upper = excluded.confidence_interval_upper, rul_hours = excluded.rul_hours,
      rul_lower_hours = excluded.rul_lower_hours, rul_upper_hours = excluded.rul_upper_hours, rul_confidence = excluded.rul_confidence,
      predicted_failure_timestamp = excluded.predicted_failure_timestamp, time_to_failure_hours = excluded.time_to_failure_hours,
      time_to_failure_uncertainty_hours = excluded.time_to_failure_uncertainty_hours,
      health_score_at_alert = excluded.health_score_at_alert, business_impact = excluded.business_impact,
      estimated_downtime_hours = excluded.estimated_downtime_hours, estimated_repair_cost = excluded.estimated_repair_cost,
      description = excluded.description, recommended_action = excluded.recommended_action, action_checklist = excluded.action_checklist,
      required_parts = excluded.required_parts, required_skills = excluded.required_skills,
      estimated_maintenance_duration_hours = excluded.estimated_maintenance_duration_hours,
      feature_values = excluded.feature_values, primary_indicators = excluded.primary_indicators,
      updated_at = now()
    where (a.severity, a.alert_type, a.failure_probability, a.rul_hours, a.rul_confidence)
          is distinct from (excluded.severity, excluded.alert_type, excluded.failure_probability, excluded.rul_hours, excluded.rul_confidence)
    returning 1
  )
  select count(*) into n from upserted;
  return n;
end
$$;

-- Workflow ---------------------------------------------------------------------------------------
-- Allowed: OPEN -> ACKNOWLEDGED -> SCHEDULED -> IN_PROGRESS -> RESOLVED, ACKNOWLEDGED -> IN_PROGRESS,
-- and any open state -> RESOLVED (a false alarm is resolved too). Anything else: error IOT02.

-- Checks the step and moves the alert, recording who and when for the new status.
create or replace function iot_private.transition_alert(alert_id uuid, next_status text)
  returns iot.predictive_maintenance_alerts
  language plpgsql
  set search_path = pg_catalog, pg_temp
as $$
declare
  a iot.predictive_maintenance_alerts;
begin
  select * into a from iot.predictive_maintenance_alerts x
   where x.id = alert_id and x.tenant_id = any (iot.current_tenant_ids()) for update;
  if a.id is null then
    raise exception 'predictive maintenance alert % not found', alert_id using errcode = 'IOT04';
  end if;
  if not ((a.status, next_status) in (('OPEN', 'ACKNOWLEDGED'), ('ACKNOWLEDGED', 'SCHEDULED'), ('ACKNOWLEDGED', 'IN_PROGRESS'),
                                     ('SCHEDULED', 'IN_PROGRESS'))
          or (next_status = 'RESOLVED' and a.status <> 'RESOLVED')) then
    raise exception 'alert % is %, it cannot become %', alert_id, a.status, next_status
      using errcode = 'IOT02', hint = 'OPEN -> ACKNOWLEDGED -> SCHEDULED -> IN_PROGRESS -> RESOLVED';
  end if;
  update iot.predictive_maintenance_alerts x set
    status = next_status,
    acknowledged_by = case when next_status = 'ACKNOWLEDGED' then iot.current_actor() else x.acknowledged_by end,
    acknowledged_at = case when next_status = 'ACKNOWLEDGED' then now() else x.acknowledged_at end,
    scheduled_by = case when next_status = 'SCHEDULED' then iot.current_actor() else x.scheduled_by end,
    started_at = case when next_status = 'IN_PROGRESS' then now() else x.started_at end,
    resolved_by = case when next_status = 'RESOLVED' then iot.current_actor() else x.resolved_by end,
    resolved_at = case when next_status = 'RESOLVED' then now() else x.resolved_at end,
    updated_at = now()
   where x.id = a.id returning * into a;
  return a;
end
$$;

create or replace function iot.acknowledge_predictive_maintenance_alert(alert_id uuid)
  returns iot.predictive_maintenance_alerts
  language sql volatile security definer
  set search_path = pg_catalog, pg_temp
as $$ select * from iot_private.transition_alert(alert_id, 'ACKNOWLEDGED') $$;

create or replace function iot.schedule_predictive_maintenance_alert(alert_id uuid, scheduled_for timestamptz)
  returns iot.predictive_maintenance_alerts
  language plpgsql volatile security definer
  set search_path = pg_catalog, pg_temp
as $$
declare
  a iot.predictive_maintenance_alerts := iot_private.transition_alert(alert_id, 'SCHEDULED');
begin
  update iot.predictive_maintenance_alerts x set scheduled_for = schedule_predictive_maintenance_alert.scheduled_for
   where x.id = a.id returning * into a;
  return a;
end
$$;

create or replace function iot.start_predictive_maintenance_alert(alert_id uuid)
  returns iot.predictive_maintenance_alerts
  language sql volatile security definer
  set search_path = pg_catalog, pg_temp
as $$ select * from iot_private.transition_alert(alert_id, 'IN_PROGRESS') $$;

-- Resolution records what happened. With a failure: prediction_error_hours = actual - predicted
-- failure time; ACCURATE within max(24 h, 20% of the predicted RUL), EARLY when the failure came
-- later than predicted, LATE when it came sooner. Without a failure and without maintenance done on
-- it (no maintenance record linked), the alert was INCORRECT; with maintenance done it cannot be
-- judged (the failure may have been prevented) and accuracy stays empty.
create or replace function iot.resolve_predictive_maintenance_alert(
  alert_id uuid, actual_failure_occurred boolean, actual_failure_date timestamptz default null, resolution_notes text default null)
  returns iot.predictive_maintenance_alerts
  language plpgsql volatile security definer
  set search_path = pg_catalog, pg_temp
as $$
declare
  a iot.predictive_maintenance_alerts := iot_private.transition_alert(alert_id, 'RESOLVED');
  err numeric;
  accuracy text;
begin
  if actual_failure_occurred and actual_failure_date is null then
    raise exception 'actual_failure_date is required when a failure occurred' using errcode = 'IOT02';
  end if;
  if actual_failure_occurred and a.predicted_failure_timestamp is not null then
    err := round((extract(epoch from actual_failure_date - a.predicted_failure_timestamp) / 3600)::numeric, 2);
    accuracy := case when abs(err) <= greatest(24, 0.2 * coalesce(a.rul_hours, 0)) then 'ACCURATE'
                     when err > 0 then 'EARLY' else 'LATE' end;
  elsif not actual_failure_occurred and not exists (select 1 from iot.maintenance_records m where m.alert_id = a.id) then
    accuracy := 'INCORRECT';
  end if;
  update iot.predictive_maintenance_alerts x set
         resolution_notes = resolve_predictive_maintenance_alert.resolution_notes,
         actual_failure_occurred = resolve_predictive_maintenance_alert.actual_failure_occurred,
         actual_failure_date = resolve_predictive_maintenance_alert.actual_failure_date,
         prediction_error_hours = err, prediction_accuracy = accuracy
   where x.id = a.id returning * into a;
  return a;
end
$$;

-- Summary for the maintenance dashboard (predictiveMaintenanceDashboard).
create or replace function iot.predictive_maintenance_dashboard() returns jsonb
  language sql stable
  set search_path = pg_catalog, pg_temp
as $$
  select jsonb_build_object(
    'openAlerts', (select count(*) from iot.predictive_maintenance_alerts where status <> 'RESOLVED'),
    'bySeverity', coalesce((select jsonb_object_agg(severity, n) from (select severity, count(*) n from iot.predictive_maintenance_alerts where status <> 'RESOLVED' group by 1) x), '{}'),
    'byUrgency', coalesce((select jsonb_object_agg(urgency, n) from (select urgency, count(*) n from iot.predictive_maintenance_alerts where status <> 'RESOLVED' group by 1) x), '{}'),
    'byStatus', coalesce((select jsonb_object_agg(status, n) from (select status, count(*) n from iot.predictive_maintenance_alerts group by 1) x), '{}'),
    'estimatedCostOpen', (select coalesce(sum(estimated_repair_cost), 0) from iot.predictive_maintenance_alerts where status <> 'RESOLVED'),
    'predictionAccuracy', coalesce((select jsonb_object_agg(prediction_accuracy, n) from (select prediction_accuracy, count(*) n from iot.predictive_maintenance_alerts where prediction_accuracy is not null group by 1) x), '{}'),
    'equipment', coalesce((
      select jsonb_agg(jsonb_build_object(
               'workCenterId', w.id, 'workCenterCode', w.work_center_code, 'workCenterType', w.work_center_type,
               'healthScore', h.overall_health_score, 'healthStatus', h.health_status, 'trend', h.trend_direction, 'scoredAt', h.score_timestamp,
               'openAlerts', (select count(*) from iot.predictive_maintenance_alerts a where a.work_center_id = w.id and a.status <> 'RESOLVED'),
               'shortestRulHours', (select min(a.rul_hours) from iot.predictive_maintenance_alerts a where a.work_center_id = w.id and a.status <> 'RESOLVED'),
               'highestSeverity', (select a.severity from iot.predictive_maintenance_alerts a where a.work_center_id = w.id and a.status <> 'RESOLVED'
                                   order by array_position(array['CRITICAL', 'HIGH', 'MEDIUM', 'LOW'], a.severity) limit 1))
             order by h.overall_health_score nulls last)
      from iot.work_centers w
      left join lateral (select * from iot.equipment_health_scores x where x.work_center_id = w.id order by x.score_timestamp desc limit 1) h on true
      where w.is_active), '[]'))
$$;
comment on function iot.predictive_maintenance_dashboard() is
  'Open alerts by severity, urgency and status, cost at risk, prediction accuracy, and per equipment its latest health, open alerts and shortest RUL.';

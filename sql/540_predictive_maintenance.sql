-- Predictive-maintenance alerts from the health history, and their workflow.
--
-- Raised (one open alert per work center and failure mode; raising again updates it) when the latest
-- score is POOR or CRITICAL (HEALTH_DEGRADATION), the trend is RAPIDLY_DEGRADING (RAPID_DEGRADATION),
-- or a work center had 3+ ANOMALY_DETECTED events in 24 hours (ANOMALY). The failure mode is the
-- dimension that cost the most points (SENSOR_DEVIATION, OEE_LOSS, QUALITY_DRIFT, BREAKDOWN_RISK,
-- PERFORMANCE_LOSS), or ANOMALOUS_BEHAVIOUR.
--
-- Remaining useful life: least-squares line through the scores of the last 7 days (at least 3);
-- if it falls, RUL = hours until it reaches 30 (CRITICAL). Bounds: the score +/- 1.96 residual SDs
-- reaching 30 at the slope -/+ 1.96 standard errors (no upper bound when the slope might not be
-- falling). time_to_failure_hours = RUL.
-- Failure probability: logistic in the score, p = 1 / (1 + exp((score - 35) / 7)) (0.5 at 35, about 0.1
-- at 50), bounds from score +/- 1.96 x the residual standard deviation of the line (or 5 points).
-- Severity: CRITICAL if CRITICAL status or RUL < 24 h; HIGH if POOR or RUL < 72 h; MEDIUM if rapidly
-- degrading or RUL < 168 h or anomalies; else LOW. Urgency follows: IMMEDIATE, URGENT, SOON, ROUTINE.
-- Business impact: the severity, one level higher for presses (the bottleneck). Estimated downtime
-- hours: PRESS 8, FOLDER 4, BINDER 4, CUTTER 3, other 4, x1.5 for CRITICAL; estimated cost = downtime x
-- the `downtime_cost_per_hour` setting (default 500).

insert into iot_private.settings (key, value) values ('downtime_cost_per_hour', '500') on conflict (key) do nothing;

create or replace function iot_private.raise_predictive_alerts(work_center_ids uuid[], at timestamptz)
  returns integer language plpgsql
  set search_path = pg_catalog, pg_temp
as $$
declare
  n integer;
begin
  with latest as (
    select distinct on (h.work_center_id) h.*
    from iot_private.equipment_health_scores h
    where (work_center_ids is null or h.work_center_id = any (work_center_ids)) and h.time <= at and h.time > at - interval '1 day'
      and h.overall_score is not null
    order by h.work_center_id, h.time desc
  ), fit as (
    select h.work_center_id, count(*) as n,
           regr_slope(h.overall_score, extract(epoch from h.time) / 3600) as slope,
           regr_sxx(h.overall_score, extract(epoch from h.time) / 3600) as sxx,
           regr_syy(h.overall_score, extract(epoch from h.time) / 3600) as syy,
           regr_sxy(h.overall_score, extract(epoch from h.time) / 3600) as sxy
    from iot_private.equipment_health_scores h join latest l using (work_center_id)
    where h.time > at - interval '7 days' and h.time <= at and h.overall_score is not null
    group by 1
  ), stats as (
    select f.*, case when f.n > 2 and f.sxx > 0 then sqrt(greatest(f.syy - f.sxy * f.sxy / f.sxx, 0) / (f.n - 2)) end as resid_sd
    from fit f
  ), anomalies as (
    select e.work_center_id, count(*) as n
    from iot_private.equipment_events e
    where e.event_type = 'ANOMALY_DETECTED' and e.time > at - interval '24 hours' and e.time <= at
      and (work_center_ids is null or e.work_center_id = any (work_center_ids))
    group by 1
  ), candidates as (
    select l.*, w.work_center_type, s.slope, s.resid_sd, s.n as points, coalesce(a.n, 0) as anomaly_count,
           case when l.health_status in ('POOR', 'CRITICAL') then 'HEALTH_DEGRADATION'
                when l.trend_direction = 'RAPIDLY_DEGRADING' then 'RAPID_DEGRADATION'
                when coalesce(a.n, 0) >= 3 then 'ANOMALY' end as alert_type,
           case when l.health_status not in ('POOR', 'CRITICAL') and l.trend_direction is distinct from 'RAPIDLY_DEGRADING'
                then 'ANOMALOUS_BEHAVIOUR'
                else coalesce(case l.risk_factors -> 0 ->> 'dimension'
                  when 'sensor' then 'SENSOR_DEVIATION' when 'oee' then 'OEE_LOSS' when 'quality' then 'QUALITY_DRIFT'
                  when 'reliability' then 'BREAKDOWN_RISK' when 'performance' then 'PERFORMANCE_LOSS' end, 'GENERAL_DEGRADATION')
           end as failure_mode
    from latest l
    join iot.work_centers w on w.id = l.work_center_id
    left join stats s on s.work_center_id = l.work_center_id
    left join anomalies a on a.work_center_id = l.work_center_id
  ), estimates as (
    select c.*,
           case when c.points >= 3 and c.slope < 0 then greatest(0, (c.overall_score - 30) / -c.slope)::numeric end as rul,
           -- Bounds: the score's own scatter (+/- 1.96 residual SD) travelling at the steeper / shallower
           -- slope (+/- 1.96 standard errors). Slope error alone was far too narrow on C-MAPSS.
           case when c.points >= 3 and c.resid_sd is not null and c.slope - 1.96 * c.resid_sd / sqrt(nullif(st.sxx, 0)) < 0
                then greatest(0, (c.overall_score - 1.96 * c.resid_sd - 30) / -(c.slope - 1.96 * c.resid_sd / sqrt(nullif(st.sxx, 0))))::numeric end as rul_lower,
           case when c.points >= 3 and c.resid_sd is not null and c.slope + 1.96 * c.resid_sd / sqrt(nullif(st.sxx, 0)) < 0
                then greatest(0, (c.overall_score + 1.96 * c.resid_sd - 30) / -(c.slope + 1.96 * c.resid_sd / sqrt(nullif(st.sxx, 0))))::numeric end as rul_upper,
           (1.96 * coalesce(c.resid_sd, 5))::numeric as score_margin
    from candidates c left join stats st on st.work_center_id = c.work_center_id
    where c.alert_type is not null
  ), graded as (
    select e.*,
           round((1 / (1 + exp((e.overall_score - 35) / 7)))::numeric, 4) as p,
           round((1 / (1 + exp((e.overall_score + e.score_margin - 35) / 7)))::numeric, 4) as p_lo,
           round((1 / (1 + exp((e.overall_score - e.score_margin - 35) / 7)))::numeric, 4) as p_hi,
           case when e.health_status = 'CRITICAL' or e.rul < 24 then 'CRITICAL'
                when e.health_status = 'POOR' or e.rul < 72 then 'HIGH'
                when e.trend_direction = 'RAPIDLY_DEGRADING' or e.rul < 168 or e.alert_type = 'ANOMALY' then 'MEDIUM'
                else 'LOW' end as severity
    from estimates e
  ), upserted as (
    insert into iot.predictive_maintenance_alerts as a (
      tenant_id, work_center_id, alert_type, failure_mode, severity, urgency, failure_probability, probability_lower,
      probability_upper, remaining_useful_life_hours, rul_lower_hours, rul_upper_hours, predicted_failure_date,
      time_to_failure_hours, health_score_at_alert, business_impact, estimated_downtime_hours, estimated_cost,
      description, recommended_actions, evidence)
    select g.tenant_id, g.work_center_id, g.alert_type, g.failure_mode, g.severity,
           case g.severity when 'CRITICAL' then 'IMMEDIATE' when 'HIGH' then 'URGENT' when 'MEDIUM' then 'SOON' else 'ROUTINE' end,
           g.p, least(g.p, g.p_lo), greatest(g.p, g.p_hi),
           round(g.rul, 1), round(g.rul_lower, 1), round(g.rul_upper, 1), at + make_interval(secs => g.rul * 3600),
           round(g.rul, 1), g.overall_score,
           case when g.work_center_type = 'PRESS' then
                  case g.severity when 'LOW' then 'MEDIUM' when 'MEDIUM' then 'HIGH' else 'CRITICAL' end
                else g.severity end,
           dt.hours, round(dt.hours * coalesce((select value::numeric from iot_private.settings where key = 'downtime_cost_per_hour'), 500), 2),
           format('%s: health %s (%s), trend %s%s', replace(lower(g.alert_type), '_', ' '), g.overall_score, g.health_status,
                  coalesce(lower(g.trend_direction), 'unknown'),
                  case when g.rul is not null then format(', about %s h to critical', round(g.rul)) else '' end),
           jsonb_build_array(g.recommended_action) ||
             coalesce((select jsonb_agg(format('Check %s (%s points lost)', f ->> 'dimension', f ->> 'pointsLost'))
                       from jsonb_array_elements(g.risk_factors) f), '[]'),
           jsonb_build_object('scoreAt', g.time, 'slopePerHour', round(g.slope::numeric, 4), 'points', g.points,
                              'anomalies24h', g.anomaly_count, 'riskFactors', g.risk_factors)
    from graded g
    cross join lateral (select round(case g.work_center_type when 'PRESS' then 8 when 'CUTTER' then 3 else 4 end
                                     * case when g.severity = 'CRITICAL' then 1.5 else 1 end, 1) as hours) dt
    on conflict (work_center_id, failure_mode) where status <> 'RESOLVED' do update set
      alert_type = excluded.alert_type, severity = excluded.severity, urgency = excluded.urgency,
      failure_probability = excluded.failure_probability, probability_lower = excluded.probability_lower,
      probability_upper = excluded.probability_upper, remaining_useful_life_hours = excluded.remaining_useful_life_hours,
      rul_lower_hours = excluded.rul_lower_hours, rul_upper_hours = excluded.rul_upper_hours,
      predicted_failure_date = excluded.predicted_failure_date, time_to_failure_hours = excluded.time_to_failure_hours,
      health_score_at_alert = excluded.health_score_at_alert, business_impact = excluded.business_impact,
      estimated_downtime_hours = excluded.estimated_downtime_hours, estimated_cost = excluded.estimated_cost,
      description = excluded.description, recommended_actions = excluded.recommended_actions, evidence = excluded.evidence,
      updated_at = now()
    where (a.severity, a.failure_probability, a.remaining_useful_life_hours)
          is distinct from (excluded.severity, excluded.failure_probability, excluded.remaining_useful_life_hours)
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
  if actual_failure_occurred and a.predicted_failure_date is not null then
    err := round((extract(epoch from actual_failure_date - a.predicted_failure_date) / 3600)::numeric, 2);
    accuracy := case when abs(err) <= greatest(24, 0.2 * coalesce(a.remaining_useful_life_hours, 0)) then 'ACCURATE'
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
    'estimatedCostOpen', (select coalesce(sum(estimated_cost), 0) from iot.predictive_maintenance_alerts where status <> 'RESOLVED'),
    'predictionAccuracy', coalesce((select jsonb_object_agg(prediction_accuracy, n) from (select prediction_accuracy, count(*) n from iot.predictive_maintenance_alerts where prediction_accuracy is not null group by 1) x), '{}'),
    'equipment', coalesce((
      select jsonb_agg(jsonb_build_object(
               'workCenterId', w.id, 'workCenterCode', w.work_center_code, 'workCenterType', w.work_center_type,
               'healthScore', h.overall_score, 'healthStatus', h.health_status, 'trend', h.trend_direction, 'scoredAt', h.calculated_at,
               'openAlerts', (select count(*) from iot.predictive_maintenance_alerts a where a.work_center_id = w.id and a.status <> 'RESOLVED'),
               'shortestRulHours', (select min(a.remaining_useful_life_hours) from iot.predictive_maintenance_alerts a where a.work_center_id = w.id and a.status <> 'RESOLVED'),
               'highestSeverity', (select a.severity from iot.predictive_maintenance_alerts a where a.work_center_id = w.id and a.status <> 'RESOLVED'
                                   order by array_position(array['CRITICAL', 'HIGH', 'MEDIUM', 'LOW'], a.severity) limit 1))
             order by h.overall_score nulls last)
      from iot.work_centers w
      left join lateral (select * from iot.equipment_health_scores x where x.work_center_id = w.id order by x.calculated_at desc limit 1) h on true
      where w.is_active), '[]'))
$$;
comment on function iot.predictive_maintenance_dashboard() is
  'Open alerts by severity, urgency and status, cost at risk, prediction accuracy, and per equipment its latest health, open alerts and shortest RUL.';

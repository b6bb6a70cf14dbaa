-- Analytics views for SQL users and Grafana (issue 10, part 5): production, OEE, utilisation,
-- equipment health and alert statistics, readable by iot_analyst (SQL logins, the Grafana login).
-- They reuse the OEE, health and alert logic (sql/500_oee.sql, 530_health.sql, 540_...) rather than
-- re-deriving it. Each is a security barrier filtered by iot.current_tenant_ids(), like the telemetry
-- views: a view reads the tables with its owner's rights, which row-level security does not filter,
-- so the tenant filter is written here. The functions they call run as the caller (RLS applies).
-- Hidden from GraphQL (@omit): the API has its own functions for these figures (oeeTrends,
-- productionSummary, workCenterUtilization, predictiveMaintenanceDashboard).

-- Production ---------------------------------------------------------------------------------------
create or replace view iot.production_summary_today with (security_barrier) as
  select f.facility_code, w.work_center_code, p.facility_id, p.work_center_id, p.work_center_name, p.work_center_type,
         p.active_runs, p.scheduled_runs, p.completed_runs_today, p.runs,
         p.total_good_quantity, p.total_scrap_quantity, p.total_rework_quantity, p.planned_quantity,
         p.average_yield, p.attainment, p.current_oee, p.as_of_timestamp
  from iot.production_summary() p
  join iot.work_centers w on w.id = p.work_center_id
  join iot.facilities f on f.id = w.facility_id
  where w.tenant_id = any ((select iot.current_tenant_ids())::uuid[]);

-- OEE ----------------------------------------------------------------------------------------------
-- Per work center and day (facility time zone) of the last 30 days, from iot.oee_trends().
create or replace view iot.oee_daily with (security_barrier) as
  select f.facility_code, w.work_center_code, o.work_center_id, o.work_center_name, w.work_center_type,
         o.calculation_date as day, o.bucket as day_start,
         o.availability_percentage, o.performance_percentage, o.quality_percentage, o.oee_percentage, o.target_oee_percentage,
         o.good_count, o.total_count, o.run_minutes, o.downtime_minutes
  from iot.oee_trends(now() - interval '30 days', now(), 'day') o
  join iot.work_centers w on w.id = o.work_center_id
  join iot.facilities f on f.id = w.facility_id
  where w.tenant_id = any ((select iot.current_tenant_ids())::uuid[]);

-- Per work center, day and shift of the last 30 days. A shift's window runs from the first start to
-- the last end of its runs that day (shifts of one work center do not overlap), and iot.oee_for()
-- computes the OEE of that window, so breakdowns and setups count in the shift they fell in.
create or replace view iot.oee_by_shift with (security_barrier) as
  select f.facility_code, w.work_center_code, w.id as work_center_id, w.name as work_center_name, w.work_center_type,
         s.day, s.shift, s.shift_start, s.shift_end, s.runs,
         round(o.availability * 100, 2) as availability_percentage, round(o.performance * 100, 2) as performance_percentage,
         round(o.quality * 100, 2) as quality_percentage, round(o.oee * 100, 2) as oee_percentage,
         round(o.oee_target * 100, 2) as target_oee_percentage,
         o.good_count, o.total_count, o.run_minutes, o.downtime_minutes
  from iot.work_centers w
  join iot.facilities f on f.id = w.facility_id
  cross join lateral (
    select (r.actual_start at time zone f.timezone)::date as day, coalesce(r.shift, '-') as shift,
           min(r.actual_start) as shift_start, max(coalesce(r.actual_end, now())) as shift_end, count(*)::integer as runs
    from iot.production_runs r
    where r.tenant_id = w.tenant_id and r.work_center_id = w.id and r.status <> 'CANCELLED'
      and r.actual_start is not null and r.actual_start >= now() - interval '30 days'
    group by 1, 2
  ) s
  cross join lateral iot.oee_for(array[w.id], s.shift_start, s.shift_end) o
  where w.tenant_id = any ((select iot.current_tenant_ids())::uuid[]);

-- Utilisation --------------------------------------------------------------------------------------
create or replace view iot.work_center_utilization_today with (security_barrier) as
  select f.facility_code, w.work_center_code, u.work_center_id, u.work_center_name, u.work_center_type, u.status,
         u.current_production_run_id, u.current_oee, u.today_runtime as run_minutes, u.today_downtime as downtime_minutes,
         u.today_setup_time as setup_minutes, u.utilization_percentage, u.active_run_progress
  from iot.work_center_utilization() u
  join iot.work_centers w on w.id = u.work_center_id
  join iot.facilities f on f.id = w.facility_id
  where w.tenant_id = any ((select iot.current_tenant_ids())::uuid[]);

-- Equipment health ---------------------------------------------------------------------------------
-- One row per active work center: its latest stored score (null when never scored) and its open
-- predictive-maintenance alerts. The risk is the dimension that cost the most points (risk_factors[0]).
create or replace view iot.equipment_health_overview with (security_barrier) as
  select f.facility_code, w.work_center_code, w.id as work_center_id, w.name as work_center_name, w.work_center_type,
         h.score_timestamp, h.overall_health_score, h.health_status, h.trend_direction, h.health_score_change_7d,
         h.sensor_health_score, h.oee_health_score, h.quality_health_score, h.reliability_health_score, h.performance_health_score,
         h.risk_factors -> 0 ->> 'dimension' as top_risk_dimension,
         (h.risk_factors -> 0 ->> 'pointsLost')::numeric as top_risk_points_lost,
         h.anomaly_detected, h.anomaly_severity, h.recommended_action,
         coalesce(a.open_alerts, 0) as open_alerts, a.highest_open_severity, a.shortest_rul_hours, a.highest_failure_probability
  from iot.work_centers w
  join iot.facilities f on f.id = w.facility_id
  left join lateral (
    select x.* from iot.equipment_health_scores x where x.work_center_id = w.id order by x.score_timestamp desc limit 1
  ) h on true
  left join lateral (
    select count(*)::integer as open_alerts,
           (array_agg(p.severity order by iot.alert_severity_rank(p.severity) desc))[1] as highest_open_severity,
           min(p.rul_hours) as shortest_rul_hours, max(p.failure_probability) as highest_failure_probability
    from iot.predictive_maintenance_alerts p
    where p.tenant_id = w.tenant_id and p.work_center_id = w.id and p.status <> 'RESOLVED'
  ) a on true
  where w.is_active and w.tenant_id = any ((select iot.current_tenant_ids())::uuid[]);

-- Alerts -------------------------------------------------------------------------------------------
-- Every alert of the last 90 days, whatever raised it, on one time line: predictive-maintenance
-- alerts (acknowledged and resolved), equipment events other than INFO (acknowledged, never
-- resolved) and system alerts (resolved, never acknowledged). Severity keeps each source's words.
create or replace view iot.alert_timeline with (security_barrier) as
  select 'PREDICTIVE_MAINTENANCE'::text as source, p.id as alert_id, p.tenant_id, p.work_center_id, p.alert_type,
         p.severity, iot.alert_severity_rank(p.severity) as severity_rank, p.status,
         p.alert_timestamp as raised_at, p.acknowledged_at, p.resolved_at
  from iot.predictive_maintenance_alerts p
  where p.alert_timestamp > now() - interval '90 days' and p.tenant_id = any ((select iot.current_tenant_ids())::uuid[])
  union all
  select 'EQUIPMENT_EVENT', e.id, e.tenant_id, e.work_center_id, e.event_type,
         e.severity, iot.alert_severity_rank(e.severity), case when e.acknowledged then 'ACKNOWLEDGED' else 'OPEN' end,
         e.event_timestamp, e.acknowledged_at, null::timestamptz
  from iot.equipment_events e -- tenant-filtered itself
  where e.severity <> 'INFO' and e.event_timestamp > now() - interval '90 days'
  union all
  select 'SYSTEM', s.id, s.tenant_id, s.work_center_id, s.alert_type,
         s.severity, iot.alert_severity_rank(s.severity), case when s.resolved_at is null then 'OPEN' else 'RESOLVED' end,
         s.raised_at, null::timestamptz, s.resolved_at
  from iot.system_alerts s
  where s.raised_at > now() - interval '90 days' and s.tenant_id = any ((select iot.current_tenant_ids())::uuid[]);

-- Per UTC day raised, source, work center and severity: counts, mean time to acknowledge (MTTA)
-- and to resolve (MTTR) in minutes, over the alerts that were acknowledged / resolved.
create or replace view iot.alert_statistics with (security_barrier) as
  select date_trunc('day', t.raised_at, 'UTC') as day, t.source, t.tenant_id, t.work_center_id,
         f.facility_code, w.work_center_code, t.severity, max(t.severity_rank) as severity_rank,
         count(*)::integer as alert_count,
         count(t.acknowledged_at)::integer as acknowledged_count,
         count(t.resolved_at)::integer as resolved_count,
         count(*) filter (where t.status = 'OPEN')::integer as open_count,
         round((avg(extract(epoch from t.acknowledged_at - t.raised_at)) / 60)::numeric, 2) as mean_time_to_acknowledge_minutes,
         round((avg(extract(epoch from t.resolved_at - t.raised_at)) / 60)::numeric, 2) as mean_time_to_resolve_minutes
  from iot.alert_timeline t
  left join iot.work_centers w on w.id = t.work_center_id
  left join iot.facilities f on f.id = w.facility_id
  group by 1, 2, 3, 4, 5, 6, 7;

-- Open alerts now, by source and severity (the alert distribution panel).
create or replace view iot.open_alerts_by_severity with (security_barrier) as
  select t.source, t.severity, max(t.severity_rank) as severity_rank, count(*)::integer as open_count,
         min(t.raised_at) as oldest_raised_at
  from iot.alert_timeline t
  where t.status not in ('RESOLVED', 'ACKNOWLEDGED') or (t.source = 'PREDICTIVE_MAINTENANCE' and t.status <> 'RESOLVED')
  group by 1, 2;

-- How well predictions came true (iot.resolve_predictive_maintenance_alert judges each resolved
-- alert ACCURATE, EARLY, LATE or INCORRECT; alerts resolved with maintenance done stay unjudged).
create or replace view iot.prediction_accuracy with (security_barrier) as
  select p.predicted_failure_mode as failure_mode, w.work_center_type,
         count(*)::integer as resolved_alerts,
         count(p.prediction_accuracy)::integer as judged_alerts,
         count(*) filter (where p.prediction_accuracy = 'ACCURATE')::integer as accurate,
         count(*) filter (where p.prediction_accuracy = 'EARLY')::integer as early,
         count(*) filter (where p.prediction_accuracy = 'LATE')::integer as late,
         count(*) filter (where p.prediction_accuracy = 'INCORRECT')::integer as incorrect,
         round(100.0 * count(*) filter (where p.prediction_accuracy = 'ACCURATE') / nullif(count(p.prediction_accuracy), 0), 2)
           as accuracy_percentage,
         round(avg(abs(p.prediction_error_hours)), 2) as mean_absolute_error_hours
  from iot.predictive_maintenance_alerts p
  join iot.work_centers w on w.id = p.work_center_id
  where p.status = 'RESOLVED' and p.tenant_id = any ((select iot.current_tenant_ids())::uuid[])
  group by 1, 2;

-- Documentation: every view and column ------------------------------------------------------------
comment on view iot.production_summary_today is E'@omit\nProduction of each active work center today (facility time zone): runs now, units of the runs started today, yield, attainment and today''s OEE in percent (iot.production_summary()).';
comment on view iot.oee_daily is E'@omit\nOEE per work center and day (facility time zone) of the last 30 days, in percent, with the target (iot.oee_trends()). Days without production are left out.';
comment on view iot.oee_by_shift is E'@omit\nOEE per work center, day (facility time zone) and shift of the last 30 days, in percent: iot.oee_for() over the window from the shift''s first run start to its last run end.';
comment on view iot.work_center_utilization_today is E'@omit\nEach active work center now (IDLE, RUNNING, DOWN, SETUP) and its run, down and setup minutes and utilisation today (iot.work_center_utilization()).';
comment on view iot.equipment_health_overview is E'@omit\nEach active work center''s latest health score with status, trend, the dimension that costs most, and its open predictive-maintenance alerts.';
comment on view iot.alert_timeline is E'@omit\nEvery alert of the last 90 days on one time line: predictive-maintenance alerts, equipment events other than INFO, and system alerts, with when each was raised, acknowledged and resolved.';
comment on view iot.alert_statistics is E'@omit\nAlerts of the last 90 days per UTC day, source, work center and severity: counts, mean time to acknowledge and to resolve in minutes.';
comment on view iot.open_alerts_by_severity is E'@omit\nAlerts raised in the last 90 days and open now (not resolved; equipment events and system alerts: not acknowledged either) by source and severity, with the oldest.';
comment on view iot.prediction_accuracy is E'@omit\nResolved predictive-maintenance alerts per failure mode and work center type: how many were judged ACCURATE, EARLY, LATE or INCORRECT, the accuracy and the mean absolute error of the predicted failure time.';

do $$
declare
  c text[];
  docs text[][] := array[
    -- shared by several views
    ['*', 'facility_code', 'Facility code of the work center.'],
    ['*', 'work_center_code', 'Work center code, unique within its facility.'],
    ['*', 'work_center_id', 'The work center (iot.work_centers.id).'],
    ['*', 'work_center_name', 'Work center name.'],
    ['*', 'work_center_type', 'PRESS, FOLDER, CUTTER, BINDER...'],
    ['*', 'facility_id', 'The facility (iot.facilities.id).'],
    ['*', 'tenant_id', 'The tenant the rows belong to.'],
    ['*', 'availability_percentage', 'Run time / planned time, in percent.'],
    ['*', 'performance_percentage', 'Ideal cycle time x units / run time, at most 100, in percent; null without an ideal cycle time.'],
    ['*', 'quality_percentage', 'Good units / all units, in percent.'],
    ['*', 'oee_percentage', 'Availability x performance x quality, in percent.'],
    ['*', 'target_oee_percentage', 'The work center''s OEE target, in percent.'],
    ['*', 'good_count', 'Good units (runs partly inside the window count pro rata).'],
    ['*', 'total_count', 'Good, scrap and rework units (pro rata).'],
    ['*', 'run_minutes', 'Planned time less downtime, in minutes.'],
    ['*', 'downtime_minutes', 'Breakdown minutes inside runs plus setup minutes, in minutes.'],
    ['*', 'current_oee', 'OEE in percent of the facility''s current day so far; null when the work center has not produced today.'],
    ['*', 'severity', 'Severity in the source''s words: LOW, MEDIUM, HIGH, CRITICAL (alerts) or WARNING, ERROR, CRITICAL (events).'],
    ['*', 'severity_rank', 'Severity on one scale 1-4 (iot.alert_severity_rank): LOW 1, MEDIUM/WARNING 2, HIGH/ERROR 3, CRITICAL 4.'],
    ['*', 'source', 'What raised the alert: PREDICTIVE_MAINTENANCE, EQUIPMENT_EVENT or SYSTEM.'],
    -- production_summary_today
    ['production_summary_today', 'active_runs', 'Runs in SETUP, RUNNING or PAUSED now.'],
    ['production_summary_today', 'scheduled_runs', 'Runs PLANNED.'],
    ['production_summary_today', 'completed_runs_today', 'Runs completed since midnight (facility time zone).'],
    ['production_summary_today', 'runs', 'Runs started today (not cancelled).'],
    ['production_summary_today', 'total_good_quantity', 'Good units of the runs started today.'],
    ['production_summary_today', 'total_scrap_quantity', 'Scrap units of the runs started today.'],
    ['production_summary_today', 'total_rework_quantity', 'Rework units of the runs started today.'],
    ['production_summary_today', 'planned_quantity', 'Planned units of the runs started today.'],
    ['production_summary_today', 'average_yield', 'Good units / all units of the runs started today, in percent.'],
    ['production_summary_today', 'attainment', 'Good units / planned units of the runs started today, in percent.'],
    ['production_summary_today', 'as_of_timestamp', 'When the figures were computed (now).'],
    -- oee_daily
    ['oee_daily', 'day', 'The day, in the facility''s time zone.'],
    ['oee_daily', 'day_start', 'Midnight starting the day in the facility''s time zone, as a timestamp (for charts).'],
    -- oee_by_shift
    ['oee_by_shift', 'day', 'Day the shift''s runs started, in the facility''s time zone.'],
    ['oee_by_shift', 'shift', 'Shift label of the runs (production_runs.shift); - for runs without one.'],
    ['oee_by_shift', 'shift_start', 'First start of the shift''s runs that day.'],
    ['oee_by_shift', 'shift_end', 'Last end of the shift''s runs that day (now for a run still going).'],
    ['oee_by_shift', 'runs', 'Production runs of the shift that day (not cancelled).'],
    -- work_center_utilization_today
    ['work_center_utilization_today', 'status', 'Now: DOWN (an open breakdown), SETUP, RUNNING or IDLE.'],
    ['work_center_utilization_today', 'current_production_run_id', 'The active production run, if any.'],
    ['work_center_utilization_today', 'setup_minutes', 'Setup minutes of the runs started today.'],
    ['work_center_utilization_today', 'utilization_percentage', 'Run minutes / minutes since midnight (facility time zone), in percent.'],
    ['work_center_utilization_today', 'active_run_progress', 'Units made / planned units of the active run, in percent.'],
    -- equipment_health_overview
    ['equipment_health_overview', 'score_timestamp', 'When the latest score was computed; null when the work center was never scored.'],
    ['equipment_health_overview', 'overall_health_score', 'Latest health score 0-100; null when too little was measured to score.'],
    ['equipment_health_overview', 'health_status', 'EXCELLENT >= 90, GOOD >= 75, FAIR >= 50, POOR >= 30, CRITICAL < 30.'],
    ['equipment_health_overview', 'trend_direction', 'IMPROVING, STABLE, DEGRADING or RAPIDLY_DEGRADING over 7 days; null without a baseline.'],
    ['equipment_health_overview', 'health_score_change_7d', 'Score now minus the score 7 days before.'],
    ['equipment_health_overview', 'sensor_health_score', 'Sensor dimension 0-100 (weight 30%).'],
    ['equipment_health_overview', 'oee_health_score', 'OEE dimension 0-100 (weight 25%).'],
    ['equipment_health_overview', 'quality_health_score', 'Quality (SPC) dimension 0-100 (weight 20%).'],
    ['equipment_health_overview', 'reliability_health_score', 'Reliability (breakdowns) dimension 0-100 (weight 15%).'],
    ['equipment_health_overview', 'performance_health_score', 'Performance (cycle time) dimension 0-100 (weight 10%).'],
    ['equipment_health_overview', 'top_risk_dimension', 'The dimension that cost the most points (sensor, oee, quality, reliability, performance).'],
    ['equipment_health_overview', 'top_risk_points_lost', 'Points of the overall score that dimension cost.'],
    ['equipment_health_overview', 'anomaly_detected', 'Threshold or anomaly events in the 24 hours before the score.'],
    ['equipment_health_overview', 'anomaly_severity', 'Highest severity of those events.'],
    ['equipment_health_overview', 'recommended_action', 'What to do, from the score.'],
    ['equipment_health_overview', 'open_alerts', 'Predictive-maintenance alerts not resolved.'],
    ['equipment_health_overview', 'highest_open_severity', 'Highest severity of those alerts.'],
    ['equipment_health_overview', 'shortest_rul_hours', 'Shortest remaining useful life predicted by those alerts, in hours.'],
    ['equipment_health_overview', 'highest_failure_probability', 'Highest failure probability (0-1) of those alerts.'],
    -- alert_timeline
    ['alert_timeline', 'alert_id', 'The alert, event or system alert id in its source table.'],
    ['alert_timeline', 'alert_type', 'The source''s type: alert_type, event_type or system alert_type.'],
    ['alert_timeline', 'status', 'OPEN, ACKNOWLEDGED, SCHEDULED, IN_PROGRESS or RESOLVED (events: OPEN or ACKNOWLEDGED; system alerts: OPEN or RESOLVED).'],
    ['alert_timeline', 'raised_at', 'When it was raised.'],
    ['alert_timeline', 'acknowledged_at', 'When it was acknowledged (never for system alerts).'],
    ['alert_timeline', 'resolved_at', 'When it was resolved (never for equipment events).'],
    -- alert_statistics
    ['alert_statistics', 'day', 'UTC day the alerts were raised.'],
    ['alert_statistics', 'alert_count', 'Alerts raised.'],
    ['alert_statistics', 'acknowledged_count', 'Of those, acknowledged.'],
    ['alert_statistics', 'resolved_count', 'Of those, resolved.'],
    ['alert_statistics', 'open_count', 'Of those, still OPEN (neither acknowledged nor resolved).'],
    ['alert_statistics', 'mean_time_to_acknowledge_minutes', 'Mean minutes from raised to acknowledged, over the acknowledged ones (MTTA).'],
    ['alert_statistics', 'mean_time_to_resolve_minutes', 'Mean minutes from raised to resolved, over the resolved ones (MTTR).'],
    -- open_alerts_by_severity
    ['open_alerts_by_severity', 'open_count', 'Alerts open now.'],
    ['open_alerts_by_severity', 'oldest_raised_at', 'When the oldest of them was raised.'],
    -- prediction_accuracy
    ['prediction_accuracy', 'failure_mode', 'Predicted failure mode (BEARING_WEAR, OVERHEATING, ...).'],
    ['prediction_accuracy', 'resolved_alerts', 'Resolved alerts.'],
    ['prediction_accuracy', 'judged_alerts', 'Of those, judged (failure reported, or none and no maintenance done).'],
    ['prediction_accuracy', 'accurate', 'Failure within max(24 h, 20% of the RUL) of the prediction.'],
    ['prediction_accuracy', 'early', 'Failure came later than predicted.'],
    ['prediction_accuracy', 'late', 'Failure came sooner than predicted.'],
    ['prediction_accuracy', 'incorrect', 'No failure and no maintenance done: a false alarm.'],
    ['prediction_accuracy', 'accuracy_percentage', 'Accurate / judged, in percent.'],
    ['prediction_accuracy', 'mean_absolute_error_hours', 'Mean |actual - predicted failure time| in hours, where a failure was reported.']
  ];
  v text;
  col record;
  doc text;
begin
  foreach v in array array['production_summary_today', 'oee_daily', 'oee_by_shift', 'work_center_utilization_today',
                           'equipment_health_overview', 'alert_timeline', 'alert_statistics', 'open_alerts_by_severity',
                           'prediction_accuracy'] loop
    for col in select a.attname from pg_attribute a
               where a.attrelid = format('iot.%I', v)::regclass and a.attnum > 0 and not a.attisdropped loop
      doc := null;
      foreach c slice 1 in array docs loop
        if c[2] = col.attname and (c[1] = v or (c[1] = '*' and doc is null)) then doc := c[3]; end if;
      end loop;
      if doc is null then
        raise exception 'sql/810_analytics_views.sql: column iot.%.% has no documentation', v, col.attname;
      end if;
      execute format('comment on column iot.%I.%I is %L', v, col.attname, doc);
    end loop;
    execute format('grant select on iot.%I to iot_analyst', v);
  end loop;
end $$;

-- Predictive-maintenance models: the built-in ones every tenant gets, and deployment.
--
-- Scope. A model covers iot.predictive_maintenance_models.deployment_scope: one work center
-- (work_center_id), else every work center of a type (work_center_type), else all; and one failure
-- mode, or any. Per tenant and model type (ANOMALY_DETECTION / FAILURE_PREDICTION / RUL_ESTIMATION)
-- at most one model per scope is PRODUCTION (partial unique index
-- predictive_maintenance_models_one_production_key). deployPredictiveMaintenanceModel(modelId)
-- makes a model PRODUCTION and demotes the one it replaces to STAGING (kept, with its deployed_at,
-- so it can be deployed back).
--
-- Built-in models (run in SQL by sql/540), one row each per tenant, PRODUCTION at scope all/any
-- unless the tenant already has a PRODUCTION model there:
--   HEALTH_TREND  RUL_ESTIMATION     LINEAR_TREND_REGRESSION  trend of the health score -> RUL,
--                                                             FAILURE_PREDICTION and RUL_THRESHOLD alerts
--   ANOMALY_RATE  ANOMALY_DETECTION  Z_SCORE                  rate of ANOMALY_DETECTED events (the z-score
--                                                             detector of sql/510) -> ANOMALY_DETECTED alerts
--   RANGE_EXCURSION FAILURE_PREDICTION RANGE_PERSISTENCE      a channel outside its normal range for hours
--                                                             -> FAILURE_PREDICTION alerts
-- sql/540 uses, per work center, the most specific PRODUCTION model of that algorithm (work center,
-- then its type, then all): its model_parameters override the settings, its
-- prediction_horizon_hours is the horizon. A tenant that deploys another model in the scope
-- demotes the built-in one, which then raises nothing there.

-- Settings: defaults of the built-in models' parameters (documented in sql/540).
insert into iot_private.settings (key, value) values
  ('predictive_min_trend_points', '8'),
  ('predictive_min_trend_span_hours', '12'),
  ('predictive_trend_window_hours', '48'),
  ('predictive_failure_threshold', '30'),
  ('predictive_min_rul_confidence', '0.5'),
  ('predictive_horizon_hours', '168'),
  ('predictive_post_maintenance_quiet_hours', '24'),
  ('anomaly_alert_min_events', '3'),
  ('anomaly_alert_p_value', '0.001'),
  ('excursion_alert_hours', '2'),
  ('excursion_alert_min_outside_share', '0.8'),
  ('excursion_alert_min_minutes', '6'),
  ('anomaly_alert_baseline_days', '7'),
  ('anomaly_alert_min_baseline_days', '2')
on conflict (key) do nothing;

create or replace function iot_private.setting_numeric(setting_key text, fallback numeric) returns numeric
  language sql stable
  set search_path = pg_catalog, pg_temp
as $$
  select coalesce((select case when s.value ~ '^\s*-?[0-9]+(\.[0-9]+)?\s*$' then s.value::numeric end
                   from iot_private.settings s where s.key = setting_key), fallback)
$$;

-- A model parameter if it is a number, else the fallback.
create or replace function iot_private.model_param(params jsonb, param text, fallback numeric) returns numeric
  language sql immutable
  set search_path = pg_catalog, pg_temp
as $$
  select case when jsonb_typeof(params -> param) = 'number' then (params ->> param)::numeric else fallback end
$$;

create or replace function iot_private.builtin_models()
  returns table (code text, model_type text, algorithm text, params jsonb, features jsonb)
  language sql stable
  set search_path = pg_catalog, pg_temp
as $$
  values ('HEALTH_TREND', 'RUL_ESTIMATION', 'LINEAR_TREND_REGRESSION',
          jsonb_build_object('minTrendPoints', iot_private.setting_numeric('predictive_min_trend_points', 8),
                             'minTrendSpanHours', iot_private.setting_numeric('predictive_min_trend_span_hours', 12),
                             'trendWindowHours', iot_private.setting_numeric('predictive_trend_window_hours', 48),
                             'failureThreshold', iot_private.setting_numeric('predictive_failure_threshold', 30),
                             'minRulConfidence', iot_private.setting_numeric('predictive_min_rul_confidence', 0.5),
                             'postMaintenanceQuietHours', iot_private.setting_numeric('predictive_post_maintenance_quiet_hours', 24)),
          '["overall_health_score", "score_timestamp", "health_status", "trend_direction", "risk_factors"]'::jsonb),
         ('ANOMALY_RATE', 'ANOMALY_DETECTION', 'Z_SCORE',
          jsonb_build_object('minEvents', iot_private.setting_numeric('anomaly_alert_min_events', 3),
                             'pValue', iot_private.setting_numeric('anomaly_alert_p_value', 0.001),
                             'baselineDays', iot_private.setting_numeric('anomaly_alert_baseline_days', 7),
                             'minBaselineDays', iot_private.setting_numeric('anomaly_alert_min_baseline_days', 2),
                             'postMaintenanceQuietHours', iot_private.setting_numeric('predictive_post_maintenance_quiet_hours', 24)),
          '["ANOMALY_DETECTED events per channel per 24 h"]'::jsonb),
         ('RANGE_EXCURSION', 'FAILURE_PREDICTION', 'RANGE_PERSISTENCE',
          jsonb_build_object('excursionHours', iot_private.setting_numeric('excursion_alert_hours', 2),
                             'minOutsideShare', iot_private.setting_numeric('excursion_alert_min_outside_share', 0.8),
                             'minMinutes', iot_private.setting_numeric('excursion_alert_min_minutes', 6)),
          '["sensor_readings_1m per ranged channel", "normal_min", "normal_max"]'::jsonb)
$$;

create or replace function iot_private.ensure_builtin_models(tenant_ids uuid[]) returns integer
  language sql
  set search_path = pg_catalog, pg_temp
as $$
  with ins as (
    insert into iot.predictive_maintenance_models (tenant_id, model_code, model_type, algorithm, version, prediction_horizon_hours,
      model_parameters, feature_set, deployment_status, deployed_at, retraining_frequency, evaluation_details)
    select t.id, b.code, b.model_type, b.algorithm, 1, iot_private.setting_numeric('predictive_horizon_hours', 168), b.params, b.features,
           case when exists (select 1 from iot.predictive_maintenance_models m where m.tenant_id = t.id and m.model_type = b.model_type
                               and m.deployment_scope = 'all/any' and m.deployment_status = 'PRODUCTION') then 'STAGING' else 'PRODUCTION' end,
           now(), 'ON_DEMAND', '{"builtIn": true}'::jsonb
    from iot.tenants t cross join iot_private.builtin_models() b
    where t.id = any (tenant_ids)
      and not exists (select 1 from iot.predictive_maintenance_models m where m.tenant_id = t.id and m.model_code = b.code)
    on conflict do nothing
    returning 1
  )
  select count(*)::integer from ins
$$;
comment on function iot_private.ensure_builtin_models(uuid[]) is
  'Registers the built-in HEALTH_TREND, ANOMALY_RATE and RANGE_EXCURSION models for tenants that have none of that code yet.';

-- Existing tenants (an upgrade, or after a restore).
select iot_private.ensure_builtin_models(array(select id from iot.tenants));
-- Built-in rows the upgrade (000006) registered bare get their parameters once.
update iot.predictive_maintenance_models m
   set model_parameters = b.params, feature_set = b.features, evaluation_details = m.evaluation_details || '{"builtIn": true}'
  from iot_private.builtin_models() b
 where m.model_code = b.code and m.version = 1 and m.model_parameters = '{}' and m.algorithm = b.algorithm;

-- deployed_at follows the status whichever way it is set; updated_at on every change.
create or replace function iot_private.predictive_model_stamp() returns trigger
  language plpgsql
  set search_path = pg_catalog, pg_temp
as $$
begin
  if new.deployment_status = 'PRODUCTION' and (tg_op = 'INSERT' or old.deployment_status <> 'PRODUCTION') then
    new.deployed_at := coalesce(case when tg_op = 'INSERT' then new.deployed_at end, now());
  end if;
  if tg_op = 'UPDATE' then
    new.updated_at := now();
  end if;
  return new;
end
$$;
drop trigger if exists predictive_model_stamp on iot.predictive_maintenance_models;
create trigger predictive_model_stamp before insert or update on iot.predictive_maintenance_models
  for each row execute function iot_private.predictive_model_stamp();

create or replace function iot.deploy_predictive_maintenance_model(model_id uuid)
  returns iot.predictive_maintenance_models
  language plpgsql volatile security definer
  set search_path = pg_catalog, pg_temp
as $$
declare
  m iot.predictive_maintenance_models;
begin
  select * into m from iot.predictive_maintenance_models x
   where x.id = model_id and x.tenant_id = any (iot.current_tenant_ids());
  if m.id is null then
    raise exception 'predictive maintenance model % not found', model_id using errcode = 'IOT04';
  end if;
  -- Deployments in one scope take turns, so two at once cannot both see no PRODUCTION model.
  perform pg_advisory_xact_lock(hashtext('iot.deploy_predictive_maintenance_model'),
                                hashtext(m.tenant_id::text || '/' || m.model_type || '/' || m.deployment_scope));
  select * into m from iot.predictive_maintenance_models x where x.id = m.id for update;
  if m.deployment_status = 'PRODUCTION' then
    return m;
  end if;
  update iot.predictive_maintenance_models x set deployment_status = 'STAGING'
   where x.tenant_id = m.tenant_id and x.model_type = m.model_type and x.deployment_scope = m.deployment_scope
     and x.deployment_status = 'PRODUCTION' and x.id <> m.id;
  update iot.predictive_maintenance_models x set deployment_status = 'PRODUCTION'
   where x.id = m.id returning * into m;
  return m;
end
$$;
comment on function iot.deploy_predictive_maintenance_model(uuid) is
  'Makes the model PRODUCTION in its scope (tenant, model type, work center or type or all, failure mode or any); the model it replaces becomes STAGING and is kept. Operators only; IOT04 for a model of another tenant.';

-- next_retraining_at follows from the last retraining and the frequency (ON_DEMAND: none), unless
-- the caller sets it explicitly.
create or replace function iot_private.tg_models__schedule_retraining() returns trigger
  language plpgsql
  set search_path = pg_catalog, pg_temp
as $$
begin
  if tg_op = 'UPDATE' and new.next_retraining_at is distinct from old.next_retraining_at then
    return new;
  end if;
  if tg_op = 'INSERT' and new.next_retraining_at is not null then
    return new;
  end if;
  new.next_retraining_at := new.last_retrained_at + case new.retraining_frequency
    when 'WEEKLY' then interval '7 days' when 'MONTHLY' then interval '1 month'
    when 'QUARTERLY' then interval '3 months' end;
  return new;
end
$$;
drop trigger if exists _100_schedule_retraining on iot.predictive_maintenance_models;
create trigger _100_schedule_retraining
  before insert or update of last_retrained_at, retraining_frequency, next_retraining_at on iot.predictive_maintenance_models
  for each row execute function iot_private.tg_models__schedule_retraining();

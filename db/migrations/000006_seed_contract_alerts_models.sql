-- Predictive-maintenance alerts and models under the seed's contract names and values, in place
-- with their data (renames, value maps, new columns filled); plus the maintenance catalogue that
-- gives alerts their parts, skills and duration. The logic is in sql/540-545.

-- Models ------------------------------------------------------------------------------------------
alter table iot.predictive_maintenance_models rename column model_name to model_code;
alter table iot.predictive_maintenance_models rename column parameters to model_parameters;
alter table iot.predictive_maintenance_models rename column training_data_from to training_data_start;
alter table iot.predictive_maintenance_models rename column training_data_to to training_data_end;
-- The metric columns below are filled from it; what has no column of its own stays here.
alter table iot.predictive_maintenance_models rename column metrics to evaluation_details;
alter table iot.predictive_maintenance_models rename constraint predictive_maintenance_models_name_version_key
  to predictive_maintenance_models_code_version_key;

-- Today's model types were algorithms; the seed separates what a model predicts from how.
alter table iot.predictive_maintenance_models add column algorithm text;
update iot.predictive_maintenance_models set algorithm = case model_type
    when 'HEALTH_TREND_REGRESSION' then 'LINEAR_TREND_REGRESSION' when 'THRESHOLD' then 'HEALTH_THRESHOLD'
    when 'LOGISTIC_REGRESSION' then 'LOGISTIC_REGRESSION' when 'SURVIVAL' then 'SURVIVAL_ANALYSIS'
    when 'ANOMALY_ZSCORE' then 'Z_SCORE' end;
alter table iot.predictive_maintenance_models drop constraint predictive_maintenance_models_type_valid;
update iot.predictive_maintenance_models set model_type = case model_type
    when 'HEALTH_TREND_REGRESSION' then 'RUL_ESTIMATION' when 'SURVIVAL' then 'RUL_ESTIMATION'
    when 'ANOMALY_ZSCORE' then 'ANOMALY_DETECTION' else 'FAILURE_PREDICTION' end;
alter table iot.predictive_maintenance_models alter column algorithm set not null;
alter table iot.predictive_maintenance_models
  add constraint predictive_maintenance_models_type_valid check (model_type in ('ANOMALY_DETECTION', 'FAILURE_PREDICTION', 'RUL_ESTIMATION')),
  add constraint predictive_maintenance_models_algorithm_valid check (algorithm in
    ('ISOLATION_FOREST', 'LSTM', 'RANDOM_FOREST', 'GRADIENT_BOOSTING',
     -- the project's own, run in SQL (sql/540), and the ones today's model types named
     'LINEAR_TREND_REGRESSION', 'Z_SCORE', 'RANGE_PERSISTENCE', 'HEALTH_THRESHOLD', 'LOGISTIC_REGRESSION', 'SURVIVAL_ANALYSIS')),
  -- Not a strict format: today's free-text model names must upgrade as they are.
  add constraint predictive_maintenance_models_code_not_blank check (btrim(model_code) <> '');

alter table iot.predictive_maintenance_models
  add column work_center_id           uuid,
  add column equipment_manufacturer   text,
  add column equipment_model          text,
  add column prediction_horizon_hours numeric not null default 168,
  add column feature_set              jsonb not null default '[]',
  add column training_sample_count    integer,
  add column accuracy_score           numeric(5,4),
  add column precision_score          numeric(5,4),
  add column recall_score             numeric(5,4),
  add column f1_score                 numeric(5,4),
  add column auc_roc                  numeric(5,4),
  add column mean_absolute_error      numeric,
  add column false_positive_rate      numeric(5,4),
  add column false_negative_rate      numeric(5,4),
  add column deployment_status        text not null default 'DEVELOPMENT',
  add column retraining_frequency     text not null default 'ON_DEMAND',
  add column last_retrained_at        timestamptz,
  add column next_retraining_at       timestamptz,
  add column data_drift_detected      boolean not null default false,
  add column concept_drift_detected   boolean not null default false,
  add column feature_importance       jsonb not null default '{}',
  add column updated_at               timestamptz not null default now(),
  add constraint predictive_maintenance_models_work_center_fkey foreign key (tenant_id, work_center_id)
    references iot.work_centers (tenant_id, id) on delete cascade,
  add constraint predictive_maintenance_models_work_center_type_valid check (work_center_type in
    ('PRESS', 'FOLDER', 'CUTTER', 'BINDER', 'STITCHER', 'LAMINATOR', 'PACKAGING', 'OTHER')),
  add constraint predictive_maintenance_models_horizon_positive check (prediction_horizon_hours > 0),
  add constraint predictive_maintenance_models_samples_nonnegative check (training_sample_count >= 0),
  add constraint predictive_maintenance_models_rates_fraction check (
    accuracy_score between 0 and 1 and precision_score between 0 and 1 and recall_score between 0 and 1
    and f1_score between 0 and 1 and auc_roc between 0 and 1
    and false_positive_rate between 0 and 1 and false_negative_rate between 0 and 1),
  add constraint predictive_maintenance_models_mae_nonnegative check (mean_absolute_error >= 0),
  add constraint predictive_maintenance_models_status_valid check (deployment_status in ('DEVELOPMENT', 'TESTING', 'STAGING', 'PRODUCTION')),
  add constraint predictive_maintenance_models_retraining_valid check (retraining_frequency in ('WEEKLY', 'MONTHLY', 'QUARTERLY', 'ON_DEMAND')),
  add constraint predictive_maintenance_models_training_order check (training_data_end >= training_data_start),
  add constraint predictive_maintenance_models_feature_set_array check (jsonb_typeof(feature_set) = 'array'),
  add constraint predictive_maintenance_models_feature_importance_object check (jsonb_typeof(feature_importance) = 'object');

-- Metrics that were keys of the jsonb (either spelling), where they are fractions / non-negative.
create function pg_temp.metric(j jsonb, a text, b text) returns numeric language sql immutable as $$
  select case when jsonb_typeof(j -> a) = 'number' then (j ->> a)::numeric when jsonb_typeof(j -> b) = 'number' then (j ->> b)::numeric end
$$;
update iot.predictive_maintenance_models m set
  accuracy_score = x.acc, precision_score = x.prec, recall_score = x.rec, f1_score = x.f1, auc_roc = x.auc,
  mean_absolute_error = x.mae, false_positive_rate = x.fpr, false_negative_rate = x.fnr
from (
  select id,
         case when v.acc between 0 and 1 then v.acc end as acc, case when v.prec between 0 and 1 then v.prec end as prec,
         case when v.rec between 0 and 1 then v.rec end as rec, case when v.f1 between 0 and 1 then v.f1 end as f1,
         case when v.auc between 0 and 1 then v.auc end as auc, case when v.mae >= 0 then v.mae end as mae,
         case when v.fpr between 0 and 1 then v.fpr end as fpr, case when v.fnr between 0 and 1 then v.fnr end as fnr
  from iot.predictive_maintenance_models,
  lateral (select
    pg_temp.metric(evaluation_details, 'accuracy', 'accuracy_score') as acc,
    pg_temp.metric(evaluation_details, 'precision', 'precision_score') as prec,
    pg_temp.metric(evaluation_details, 'recall', 'recall_score') as rec,
    pg_temp.metric(evaluation_details, 'f1', 'f1_score') as f1,
    pg_temp.metric(evaluation_details, 'aucRoc', 'auc_roc') as auc,
    pg_temp.metric(evaluation_details, 'mae', 'mean_absolute_error') as mae,
    pg_temp.metric(evaluation_details, 'falsePositiveRate', 'false_positive_rate') as fpr,
    pg_temp.metric(evaluation_details, 'falseNegativeRate', 'false_negative_rate') as fnr) v
) x
where x.id = m.id;
drop function pg_temp.metric(jsonb, text, text);

-- is_deployed becomes PRODUCTION; where several were deployed in one scope, the newest stays
-- PRODUCTION and the others become STAGING (kept), as deploy_predictive_maintenance_model does.
update iot.predictive_maintenance_models set deployment_status = 'PRODUCTION' where is_deployed;
alter table iot.predictive_maintenance_models drop column is_deployed;  -- with its consistency check
alter table iot.predictive_maintenance_models add column deployment_scope text generated always as (
    coalesce('work_center:' || work_center_id::text, 'work_center_type:' || work_center_type, 'all')
    || '/' || coalesce(failure_mode, 'any')) stored;
comment on column iot.predictive_maintenance_models.deployment_scope is
  'What the model covers: one work center, else a work-center type, else all; and one failure mode or any. One PRODUCTION model per tenant, model type and scope.';
update iot.predictive_maintenance_models m set deployment_status = 'STAGING'
from (select id, row_number() over (partition by tenant_id, model_type, deployment_scope
                                     order by deployed_at desc nulls last, created_at desc) as k
      from iot.predictive_maintenance_models where deployment_status = 'PRODUCTION') r
where r.id = m.id and r.k > 1;
update iot.predictive_maintenance_models set deployed_at = coalesce(deployed_at, created_at) where deployment_status = 'PRODUCTION';
alter table iot.predictive_maintenance_models
  add constraint predictive_maintenance_models_production_deployed check (deployment_status <> 'PRODUCTION' or deployed_at is not null);
create unique index predictive_maintenance_models_one_production_key
  on iot.predictive_maintenance_models (tenant_id, model_type, deployment_scope) where deployment_status = 'PRODUCTION';
create index predictive_maintenance_models_work_center_idx on iot.predictive_maintenance_models (work_center_id);

-- The built-in models (sql/540), one pair per tenant: each tenant can tune, replace or demote its own,
-- its alerts keep pointing at a row of their own tenant (the composite foreign key and RLS stay as
-- they are), and a shared row would need a null tenant every tenant filter would have to special-case.
insert into iot.predictive_maintenance_models (tenant_id, model_code, model_type, algorithm, version, deployment_status, deployed_at)
select t.id, b.code, b.model_type, b.algorithm, 1,
       case when exists (select 1 from iot.predictive_maintenance_models m where m.tenant_id = t.id and m.model_type = b.model_type
                           and m.deployment_scope = 'all/any' and m.deployment_status = 'PRODUCTION') then 'STAGING' else 'PRODUCTION' end,
       now()
from iot.tenants t
cross join (values ('HEALTH_TREND', 'RUL_ESTIMATION', 'LINEAR_TREND_REGRESSION'),
                   ('ANOMALY_RATE', 'ANOMALY_DETECTION', 'Z_SCORE')) b(code, model_type, algorithm)
on conflict do nothing;

-- Alerts ------------------------------------------------------------------------------------------
alter table iot.predictive_maintenance_alerts rename column failure_mode to predicted_failure_mode;
alter table iot.predictive_maintenance_alerts rename column probability_lower to confidence_interval_lower;
alter table iot.predictive_maintenance_alerts rename column probability_upper to confidence_interval_upper;
alter table iot.predictive_maintenance_alerts rename column predicted_failure_date to predicted_failure_timestamp;
alter table iot.predictive_maintenance_alerts rename column remaining_useful_life_hours to rul_hours;
alter table iot.predictive_maintenance_alerts rename column estimated_cost to estimated_repair_cost;
-- created_at was the instant the alert was raised, which is what alert_timestamp means: one column,
-- not two that always agree (updated_at says when it was last re-raised).
alter table iot.predictive_maintenance_alerts rename column created_at to alert_timestamp;
-- The inputs the alert was raised from.
alter table iot.predictive_maintenance_alerts rename column evidence to feature_values;
alter table iot.predictive_maintenance_alerts rename constraint predictive_maintenance_alerts_probability_range
  to predictive_maintenance_alerts_confidence_interval_range;
alter table iot.predictive_maintenance_alerts rename constraint predictive_maintenance_alerts_rul_nonnegative
  to predictive_maintenance_alerts_rul_hours_nonnegative;

-- Alert types: the seed's three; the finer reason stays in alert_reason.
alter table iot.predictive_maintenance_alerts add column alert_reason text;
alter table iot.predictive_maintenance_alerts drop constraint predictive_maintenance_alerts_alert_type_valid;
update iot.predictive_maintenance_alerts set
  alert_reason = case alert_type when 'ANOMALY' then 'ANOMALY_RATE' when 'THRESHOLD' then 'RUL_WITHIN_HORIZON' else alert_type end,
  alert_type = case alert_type when 'ANOMALY' then 'ANOMALY_DETECTED' when 'THRESHOLD' then 'RUL_THRESHOLD' else 'FAILURE_PREDICTION' end;
alter table iot.predictive_maintenance_alerts alter column alert_reason set not null;
alter table iot.predictive_maintenance_alerts
  add constraint predictive_maintenance_alerts_alert_type_valid check (alert_type in ('FAILURE_PREDICTION', 'ANOMALY_DETECTED', 'RUL_THRESHOLD')),
  add constraint predictive_maintenance_alerts_alert_reason_valid check (alert_reason in
    ('HEALTH_DEGRADATION', 'PERSISTENT_EXCURSION', 'RAPID_DEGRADATION', 'RUL_WITHIN_HORIZON', 'ANOMALY_RATE', 'MODEL_PREDICTION'));

-- recommended_actions (a list) -> recommended_action (the seed's text: the first, main action) and
-- action_checklist (the rest: which dimensions to check).
alter table iot.predictive_maintenance_alerts add column recommended_action text;
update iot.predictive_maintenance_alerts set recommended_action = recommended_actions ->> 0,
                                             recommended_actions = recommended_actions - 0;
alter table iot.predictive_maintenance_alerts rename column recommended_actions to action_checklist;

alter table iot.predictive_maintenance_alerts
  add column time_to_failure_uncertainty_hours numeric,
  add column rul_confidence numeric(5,4),
  add column model_version text,
  add column algorithm_used text,
  add column primary_indicators jsonb not null default '[]',
  add column required_parts text[],
  add column required_skills text[],
  add column estimated_maintenance_duration_hours numeric,
  add constraint predictive_maintenance_alerts_uncertainty_nonnegative check (time_to_failure_uncertainty_hours >= 0),
  add constraint predictive_maintenance_alerts_rul_confidence_fraction check (rul_confidence between 0 and 1),
  add constraint predictive_maintenance_alerts_algorithm_valid check (algorithm_used in
    ('ISOLATION_FOREST', 'LSTM', 'RANDOM_FOREST', 'GRADIENT_BOOSTING',
     'LINEAR_TREND_REGRESSION', 'Z_SCORE', 'RANGE_PERSISTENCE', 'HEALTH_THRESHOLD', 'LOGISTIC_REGRESSION', 'SURVIVAL_ANALYSIS')),
  add constraint predictive_maintenance_alerts_duration_positive check (estimated_maintenance_duration_hours > 0),
  add constraint predictive_maintenance_alerts_primary_indicators_array check (jsonb_typeof(primary_indicators) = 'array');

-- Alerts raised so far came from the built-in rules: link them to their tenant's built-in model.
update iot.predictive_maintenance_alerts a set
  model_id = coalesce(a.model_id, m.id),
  time_to_failure_uncertainty_hours = round((a.rul_upper_hours - a.rul_lower_hours) / 2, 1),
  primary_indicators = coalesce(case when jsonb_typeof(a.feature_values -> 'riskFactors') = 'array' then a.feature_values -> 'riskFactors' end, '[]')
from iot.predictive_maintenance_models m
where m.tenant_id = a.tenant_id and m.version = 1
  and m.model_code = case a.alert_type when 'ANOMALY_DETECTED' then 'ANOMALY_RATE' else 'HEALTH_TREND' end;
update iot.predictive_maintenance_alerts a set model_version = m.version::text, algorithm_used = m.algorithm
from iot.predictive_maintenance_models m where m.id = a.model_id;

-- Maintenance catalogue ---------------------------------------------------------------------------
-- What a repair of a failure mode on a work-center type takes. tenant_id null: a default shipped
-- with the product (sql/541, readable by every tenant, written by nobody but the migration); a
-- tenant's own row for the same type and mode takes precedence. work_center_type null: any type.
create table iot.maintenance_catalogue (
  id                                    uuid primary key default gen_random_uuid(),
  tenant_id                             uuid default iot.current_tenant_id(),
  work_center_type                      text,
  failure_mode                          text not null,
  required_parts                        text[] not null default '{}',
  required_skills                       text[] not null default '{}',
  estimated_maintenance_duration_hours  numeric not null,
  recommended_action                    text,
  created_at                            timestamptz not null default now(),
  updated_at                            timestamptz not null default now(),
  constraint maintenance_catalogue_tenant_fkey foreign key (tenant_id) references iot.tenants (id) on delete cascade,
  constraint maintenance_catalogue_scope_key unique nulls not distinct (tenant_id, work_center_type, failure_mode),
  constraint maintenance_catalogue_work_center_type_valid check (work_center_type in
    ('PRESS', 'FOLDER', 'CUTTER', 'BINDER', 'STITCHER', 'LAMINATOR', 'PACKAGING', 'OTHER')),
  constraint maintenance_catalogue_failure_mode_format check (failure_mode ~ '^[A-Z][A-Z0-9_]{0,62}$'),
  constraint maintenance_catalogue_duration_positive check (estimated_maintenance_duration_hours > 0 and estimated_maintenance_duration_hours <= 720)
);
comment on table iot.maintenance_catalogue is
  'Parts, skills and hours a repair takes, per work-center type (null = any) and failure mode. Rows without a tenant ship with the product; a tenant''s own row overrides them.';
alter table iot.maintenance_catalogue enable row level security;
create policy select_own_or_default on iot.maintenance_catalogue for select
  using (tenant_id is null or tenant_id = any ((select iot.current_tenant_ids())::uuid[]));
create policy insert_own on iot.maintenance_catalogue for insert to iot_operator
  with check (tenant_id = any ((select iot.current_tenant_ids())::uuid[]));
create policy update_own on iot.maintenance_catalogue for update to iot_operator
  using (tenant_id = any ((select iot.current_tenant_ids())::uuid[])) with check (tenant_id = any ((select iot.current_tenant_ids())::uuid[]));
create policy delete_own on iot.maintenance_catalogue for delete to iot_operator
  using (tenant_id = any ((select iot.current_tenant_ids())::uuid[]));

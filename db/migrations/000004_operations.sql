-- Production, maintenance, SPC and predictive maintenance: relational tables with RLS by tenant.

create table iot.production_runs (
  id                        uuid primary key default gen_random_uuid(),
  tenant_id                 uuid not null default iot.current_tenant_id(),
  work_center_id            uuid not null,
  job_number                text,
  product_code              text,
  shift                     text,
  status                    text not null default 'PLANNED',
  planned_start             timestamptz,
  planned_end               timestamptz,
  actual_start              timestamptz,
  actual_end                timestamptz,
  planned_quantity          integer,
  good_count                integer not null default 0,
  scrap_count               integer not null default 0,
  rework_count              integer not null default 0,
  ideal_cycle_time_seconds  numeric,
  setup_minutes             numeric not null default 0,
  notes                     text,
  created_at                timestamptz not null default now(),
  updated_at                timestamptz not null default now(),
  constraint production_runs_tenant_id_id_key unique (tenant_id, id),
  constraint production_runs_work_center_fkey foreign key (tenant_id, work_center_id)
    references iot.work_centers (tenant_id, id) on delete cascade,
  constraint production_runs_status_valid check (status in ('PLANNED', 'SETUP', 'RUNNING', 'PAUSED', 'COMPLETED', 'CANCELLED')),
  constraint production_runs_counts_nonnegative check (good_count >= 0 and scrap_count >= 0 and rework_count >= 0),
  constraint production_runs_planned_quantity_positive check (planned_quantity > 0),
  constraint production_runs_ideal_cycle_time_positive check (ideal_cycle_time_seconds > 0),
  constraint production_runs_setup_nonnegative check (setup_minutes >= 0),
  constraint production_runs_actual_order check (actual_end >= actual_start),
  constraint production_runs_planned_order check (planned_end >= planned_start),
  constraint production_runs_running_has_start check (status not in ('RUNNING', 'PAUSED', 'COMPLETED') or actual_start is not null),
  constraint production_runs_completed_has_end check (status <> 'COMPLETED' or actual_end is not null)
);
comment on table iot.production_runs is 'A job on a work center: counts of good, scrap and rework units feed OEE.';
create index production_runs_work_center_start_idx on iot.production_runs (work_center_id, actual_start desc);

create table iot.maintenance_records (
  id                uuid primary key default gen_random_uuid(),
  tenant_id         uuid not null default iot.current_tenant_id(),
  work_center_id    uuid not null,
  maintenance_type  text not null,
  description       text not null,
  failure_mode      text,
  started_at        timestamptz not null,
  ended_at          timestamptz,
  downtime_minutes  numeric generated always as (extract(epoch from (ended_at - started_at)) / 60) stored,
  performed_by      text,
  cost              numeric(12,2),
  alert_id          uuid,
  created_at        timestamptz not null default now(),
  constraint maintenance_records_tenant_id_id_key unique (tenant_id, id),
  constraint maintenance_records_work_center_fkey foreign key (tenant_id, work_center_id)
    references iot.work_centers (tenant_id, id) on delete cascade,
  constraint maintenance_records_type_valid check (maintenance_type in ('BREAKDOWN', 'PLANNED', 'PREVENTIVE', 'PREDICTIVE', 'INSPECTION')),
  constraint maintenance_records_order check (ended_at >= started_at),
  constraint maintenance_records_cost_nonnegative check (cost >= 0)
);
comment on table iot.maintenance_records is 'Breakdowns and planned maintenance. BREAKDOWN rows count against reliability health and availability.';
create index maintenance_records_work_center_started_idx on iot.maintenance_records (work_center_id, started_at desc);

create table iot.spc_control_limits (
  id                  uuid primary key default gen_random_uuid(),
  tenant_id           uuid not null default iot.current_tenant_id(),
  channel_id          uuid not null,
  center_line         double precision not null,
  sigma               double precision not null,
  upper_control_limit double precision generated always as (center_line + 3 * sigma) stored,
  lower_control_limit double precision generated always as (center_line - 3 * sigma) stored,
  baseline_from       timestamptz not null,
  baseline_to         timestamptz not null,
  sample_count        integer not null,
  is_active           boolean not null default true,
  created_at          timestamptz not null default now(),
  constraint spc_control_limits_tenant_id_id_key unique (tenant_id, id),
  constraint spc_control_limits_channel_fkey foreign key (tenant_id, channel_id)
    references iot.device_channels (tenant_id, id) on delete cascade,
  constraint spc_control_limits_sigma_positive check (sigma > 0),
  constraint spc_control_limits_baseline_order check (baseline_to > baseline_from),
  constraint spc_control_limits_samples_positive check (sample_count > 1)
);
create unique index spc_control_limits_one_active_per_channel on iot.spc_control_limits (channel_id) where is_active;

create table iot.spc_alerts (
  id              uuid primary key default gen_random_uuid(),
  tenant_id       uuid not null default iot.current_tenant_id(),
  work_center_id  uuid not null,
  channel_id      uuid not null,
  control_limit_id uuid not null,
  rule            smallint not null,
  severity        text not null,
  detected_at     timestamptz not null,
  value           double precision,
  details         jsonb not null default '{}',
  acknowledged_at timestamptz,
  acknowledged_by text,
  created_at      timestamptz not null default now(),
  constraint spc_alerts_tenant_id_id_key unique (tenant_id, id),
  constraint spc_alerts_work_center_fkey foreign key (tenant_id, work_center_id)
    references iot.work_centers (tenant_id, id) on delete cascade,
  constraint spc_alerts_channel_fkey foreign key (tenant_id, channel_id)
    references iot.device_channels (tenant_id, id) on delete cascade,
  constraint spc_alerts_control_limit_fkey foreign key (tenant_id, control_limit_id)
    references iot.spc_control_limits (tenant_id, id) on delete cascade,
  constraint spc_alerts_rule_valid check (rule between 1 and 4),
  constraint spc_alerts_severity_valid check (severity in ('HIGH', 'LOW'))
);
create index spc_alerts_work_center_detected_idx on iot.spc_alerts (work_center_id, detected_at desc);

create table iot.predictive_maintenance_models (
  id                  uuid primary key default gen_random_uuid(),
  tenant_id           uuid not null default iot.current_tenant_id(),
  model_name          text not null,
  model_type          text not null,
  version             integer not null default 1,
  work_center_type    text,
  failure_mode        text,
  parameters          jsonb not null default '{}',
  metrics             jsonb not null default '{}',
  training_data_from  timestamptz,
  training_data_to    timestamptz,
  is_deployed         boolean not null default false,
  deployed_at         timestamptz,
  created_at          timestamptz not null default now(),
  constraint predictive_maintenance_models_tenant_id_id_key unique (tenant_id, id),
  constraint predictive_maintenance_models_name_version_key unique (tenant_id, model_name, version),
  constraint predictive_maintenance_models_type_valid check (model_type in
    ('HEALTH_TREND_REGRESSION', 'THRESHOLD', 'LOGISTIC_REGRESSION', 'SURVIVAL', 'ANOMALY_ZSCORE')),
  constraint predictive_maintenance_models_deployed_consistent check (is_deployed = (deployed_at is not null)),
  constraint predictive_maintenance_models_version_positive check (version > 0)
);

create table iot.predictive_maintenance_alerts (
  id                          uuid primary key default gen_random_uuid(),
  tenant_id                   uuid not null default iot.current_tenant_id(),
  work_center_id              uuid not null,
  model_id                    uuid,
  alert_type                  text not null,
  failure_mode                text not null,
  severity                    text not null,
  urgency                     text not null,
  status                      text not null default 'OPEN',
  failure_probability         numeric(5,4) not null,
  probability_lower           numeric(5,4),
  probability_upper           numeric(5,4),
  remaining_useful_life_hours numeric,
  rul_lower_hours             numeric,
  rul_upper_hours             numeric,
  predicted_failure_date      timestamptz,
  time_to_failure_hours       numeric,
  health_score_at_alert       numeric(5,2),
  business_impact             text,
  estimated_downtime_hours    numeric,
  estimated_cost              numeric(12,2),
  description                 text not null,
  recommended_actions         jsonb not null default '[]',
  evidence                    jsonb not null default '{}',
  acknowledged_by             text,
  acknowledged_at             timestamptz,
  scheduled_for               timestamptz,
  scheduled_by                text,
  started_at                  timestamptz,
  resolved_by                 text,
  resolved_at                 timestamptz,
  resolution_notes            text,
  actual_failure_occurred     boolean,
  actual_failure_date         timestamptz,
  prediction_accuracy         text,
  prediction_error_hours      numeric,
  created_at                  timestamptz not null default now(),
  updated_at                  timestamptz not null default now(),
  constraint predictive_maintenance_alerts_tenant_id_id_key unique (tenant_id, id),
  constraint predictive_maintenance_alerts_work_center_fkey foreign key (tenant_id, work_center_id)
    references iot.work_centers (tenant_id, id) on delete cascade,
  constraint predictive_maintenance_alerts_model_fkey foreign key (tenant_id, model_id)
    references iot.predictive_maintenance_models (tenant_id, id) on delete set null (model_id),
  constraint predictive_maintenance_alerts_alert_type_valid check (alert_type in
    ('HEALTH_DEGRADATION', 'RAPID_DEGRADATION', 'ANOMALY', 'MODEL_PREDICTION', 'THRESHOLD')),
  constraint predictive_maintenance_alerts_severity_valid check (severity in ('LOW', 'MEDIUM', 'HIGH', 'CRITICAL')),
  constraint predictive_maintenance_alerts_urgency_valid check (urgency in ('ROUTINE', 'SOON', 'URGENT', 'IMMEDIATE')),
  constraint predictive_maintenance_alerts_status_valid check (status in ('OPEN', 'ACKNOWLEDGED', 'SCHEDULED', 'IN_PROGRESS', 'RESOLVED')),
  constraint predictive_maintenance_alerts_probability_range check (
    failure_probability between 0 and 1
    and (probability_lower is null or probability_lower between 0 and failure_probability)
    and (probability_upper is null or probability_upper between failure_probability and 1)),
  constraint predictive_maintenance_alerts_rul_nonnegative check (remaining_useful_life_hours >= 0),
  constraint predictive_maintenance_alerts_business_impact_valid check (business_impact in ('LOW', 'MEDIUM', 'HIGH', 'CRITICAL')),
  constraint predictive_maintenance_alerts_accuracy_valid check (prediction_accuracy in ('ACCURATE', 'EARLY', 'LATE', 'INCORRECT')),
  constraint predictive_maintenance_alerts_resolved_consistent check ((status = 'RESOLVED') = (resolved_at is not null))
);
-- One open alert per work center and failure mode: re-raising updates it.
create unique index predictive_maintenance_alerts_one_open_key
  on iot.predictive_maintenance_alerts (work_center_id, failure_mode) where status <> 'RESOLVED';
create index predictive_maintenance_alerts_tenant_status_idx on iot.predictive_maintenance_alerts (tenant_id, status);

alter table iot.maintenance_records add constraint maintenance_records_alert_fkey
  foreign key (tenant_id, alert_id) references iot.predictive_maintenance_alerts (tenant_id, id) on delete set null (alert_id);

do $$
declare
  t text;
begin
  foreach t in array array['production_runs', 'maintenance_records', 'spc_control_limits', 'spc_alerts',
                           'predictive_maintenance_models', 'predictive_maintenance_alerts'] loop
    execute format('alter table iot.%I enable row level security', t);
    execute format('create policy select_own on iot.%I for select using (tenant_id = any ((select iot.current_tenant_ids())::uuid[]))', t);
    execute format('create policy insert_own on iot.%I for insert to iot_operator with check (tenant_id = any ((select iot.current_tenant_ids())::uuid[]))', t);
    execute format('create policy update_own on iot.%I for update to iot_operator using (tenant_id = any ((select iot.current_tenant_ids())::uuid[])) with check (tenant_id = any ((select iot.current_tenant_ids())::uuid[]))', t);
    execute format('create policy delete_own on iot.%I for delete to iot_operator using (tenant_id = any ((select iot.current_tenant_ids())::uuid[]))', t);
  end loop;
end $$;

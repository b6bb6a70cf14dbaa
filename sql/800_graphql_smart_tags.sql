-- How the GraphQL API names and exposes things (PostGraphile smart tags). Composite foreign keys
-- (tenant_id, parent_id) would otherwise give names like iotDevicesByTenantIdAndWorkCenterId.

-- Writes that go through functions or jobs, not generic CRUD.
comment on table iot.tenants is E'@omit create,update,delete\nA customer (plant operator). Every registry row and reading belongs to one tenant.';
comment on table iot.sensor_types is E'@omit create,update,delete\nKnown sensor types with default unit and normal operating range.';
comment on table iot.spc_control_limits is E'@omit create,update,delete\nShewhart control limits per channel, computed from a baseline window.';
comment on table iot.spc_alerts is E'@omit create,update,delete\nOut-of-control signals (Western Electric rules 1-4). HIGH and LOW alerts cost quality health points.';
comment on table iot.predictive_maintenance_models is E'@omit create,update,delete\nTrained or rule-based models that raise predictive-maintenance alerts, with their evaluation metrics.';
comment on table iot.predictive_maintenance_alerts is E'@omit create,update,delete\nPredicted failures with probability, remaining useful life and a workflow OPEN -> ACKNOWLEDGED -> SCHEDULED -> IN_PROGRESS -> RESOLVED.';

-- (tenant_id, id) keys exist for composite foreign keys only; id alone is the lookup.
do $$
declare
  r record;
begin
  for r in
    select c.conname, c.conrelid::regclass as tbl
    from pg_constraint c
    where c.connamespace = 'iot'::regnamespace and c.contype = 'u' and c.conname like '%\_tenant\_id\_id\_key'
  loop
    execute format('comment on constraint %I on %s is %L', r.conname, r.tbl, '@omit');
  end loop;
end $$;

do $$
declare
  tags text[][] := array[
    ['work_centers', 'work_centers_facility_fkey', 'facility', 'workCenters'],
    ['iot_devices', 'iot_devices_work_center_fkey', 'workCenter', 'iotDevices'],
    ['iot_devices', 'iot_devices_facility_fkey', 'facility', 'iotDevices'],
    ['device_channels', 'device_channels_device_fkey', 'device', 'channels'],
    ['production_runs', 'production_runs_work_center_fkey', 'workCenter', 'productionRuns'],
    ['maintenance_records', 'maintenance_records_work_center_fkey', 'workCenter', 'maintenanceRecords'],
    ['maintenance_records', 'maintenance_records_alert_fkey', 'alert', 'maintenanceRecords'],
    ['spc_control_limits', 'spc_control_limits_channel_fkey', 'channel', 'spcControlLimits'],
    ['spc_alerts', 'spc_alerts_work_center_fkey', 'workCenter', 'spcAlerts'],
    ['spc_alerts', 'spc_alerts_channel_fkey', 'channel', 'spcAlerts'],
    ['spc_alerts', 'spc_alerts_control_limit_fkey', 'controlLimit', 'spcAlerts'],
    ['predictive_maintenance_alerts', 'predictive_maintenance_alerts_work_center_fkey', 'workCenter', 'predictiveMaintenanceAlerts'],
    ['predictive_maintenance_alerts', 'predictive_maintenance_alerts_model_fkey', 'model', 'alerts']
  ];
  i integer;
begin
  for i in 1 .. array_length(tags, 1) loop
    execute format('comment on constraint %I on iot.%I is %L', tags[i][2], tags[i][1],
                   format(E'@fieldName %s\n@foreignFieldName %s', tags[i][3], tags[i][4]));
  end loop;
end $$;

-- Lets PostGraphile know the shape of its tokens (role, tenant_id, sub, exp, aud).
do $$
begin
  create type iot.jwt_token as (role text, tenant_id uuid, sub text, exp bigint, aud text);
exception when duplicate_object then
  null;
end $$;
comment on type iot.jwt_token is 'Claims of an API token: role (iot_operator or iot_analyst), tenant_id, sub, exp, aud.';

-- Predictive maintenance (issue 6, H3): models are registered and edited through the API (deployed
-- with deployPredictiveMaintenanceModel, never deleted: alerts point at them); the catalogue has full CRUD.
comment on table iot.predictive_maintenance_models is E'@omit delete\nModels that raise predictive-maintenance alerts: the built-in HEALTH_TREND and ANOMALY_RATE (sql/542) and any a tenant registers. One PRODUCTION model per tenant, model type and deployment scope; deployPredictiveMaintenanceModel switches it.';
comment on column iot.predictive_maintenance_models.deployment_scope is E'What the model covers: work_center:<id>, work_center_type:<type> or all, then /<failure mode> or /any.';
comment on constraint maintenance_catalogue_scope_key on iot.maintenance_catalogue is '@omit';
comment on constraint predictive_maintenance_models_work_center_fkey on iot.predictive_maintenance_models is
  E'@fieldName workCenter\n@foreignFieldName predictiveMaintenanceModels';
comment on constraint maintenance_catalogue_tenant_fkey on iot.maintenance_catalogue is
  E'@fieldName tenant\n@foreignFieldName maintenanceCatalogue';

-- facility_id is filled from the work center by a trigger (sql/130_registry_checks.sql): optional on create.
comment on column iot.iot_devices.facility_id is E'@hasDefault\nThe facility of the device''s work center (filled from it; a different value is refused).';

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

-- The seed's contract (../shared/contract/seed-contract.json): the names and values its clients use,
-- restored in place. Forward-only: columns and values are renamed with their data, never dropped
-- and recreated. Alerts and models follow in 000006, units and quality words in 000007.
--
-- The public views over these tables (sql/300_telemetry_api.sql) change their column names, which
-- CREATE OR REPLACE VIEW cannot do: drop them here; sql/ recreates them (and the functions that
-- return their row types) right after the migrations.
drop view if exists iot.sensor_readings cascade;
drop view if exists iot.equipment_events cascade;
drop view if exists iot.equipment_health_scores cascade;

-- Sensor types in the contract's upper case ------------------------------------------------------
alter table iot.sensor_types drop constraint sensor_types_sensor_type_format;
alter table iot.device_channels drop constraint device_channels_sensor_type_format;
update iot.sensor_types set sensor_type = upper(sensor_type) where sensor_type <> upper(sensor_type);  -- cascades to channels
alter table iot.sensor_types add constraint sensor_types_sensor_type_format check (sensor_type ~ '^[A-Z][A-Z0-9_]{0,62}$');
alter table iot.device_channels add constraint device_channels_sensor_type_format check (sensor_type ~ '^[A-Z][A-Z0-9_]{0,62}$');
comment on column iot.sensor_types.sensor_type is 'Upper case, as the seed spells it (TEMPERATURE, VIBRATION, ...). Payloads may use any case.';

update iot_private.sensor_readings set sensor_type = upper(sensor_type) where sensor_type <> upper(sensor_type);
update iot_private.equipment_events set sensor_type = upper(sensor_type) where sensor_type <> upper(sensor_type);
do $$
declare
  t text;
begin
  -- Rollup tables always exist; per-channel state tables exist once sql/ has run (upgrades).
  foreach t in array array['sensor_readings_1m_rollup', 'sensor_readings_1h_rollup', 'sensor_readings_1d_rollup',
                           'channel_event_state'] loop
    if to_regclass('iot_private.' || t) is not null then
      execute format('update iot_private.%I set sensor_type = upper(sensor_type) where sensor_type <> upper(sensor_type)', t);
    end if;
  end loop;
end $$;

-- Readings: what the seed's columns mean ----------------------------------------------------------
-- production_run_id: the run active on the work center at the reading's time (set per batch);
-- metadata: what a payload carried beyond the contract (null when nothing). Nullable without a
-- default, so adding them rewrites nothing.
alter table iot_private.sensor_readings add column production_run_id uuid;
alter table iot_private.sensor_readings add column metadata jsonb;
comment on column iot_private.sensor_readings.production_run_id is 'The production run active on the work center at this time, set by the ingest batch.';
comment on column iot_private.sensor_readings.metadata is 'Payload fields beyond the contract, the raw quality word, the original value and unit when converted; null when nothing.';

-- Equipment events: the seed's names and severities ----------------------------------------------
alter table iot_private.equipment_events rename column time to event_timestamp;
alter table iot_private.equipment_events rename column device_id to iot_device_id;
alter table iot_private.equipment_events rename column message to event_description;
alter table iot_private.equipment_events rename column details to metadata;
alter table iot_private.equipment_events add column event_code text;
alter table iot_private.equipment_events add column production_run_id uuid;
alter table iot_private.equipment_events drop constraint equipment_events_severity_valid;
update iot_private.equipment_events
   set severity = case severity when 'LOW' then 'INFO' when 'MEDIUM' then 'WARNING' when 'HIGH' then 'ERROR' else severity end
 where severity in ('LOW', 'MEDIUM', 'HIGH');
alter table iot_private.equipment_events add constraint equipment_events_severity_valid
  check (severity in ('INFO', 'WARNING', 'ERROR', 'CRITICAL'));
alter table iot_private.equipment_events add constraint equipment_events_event_code_format
  check (event_code ~ '^[A-Z][A-Z0-9_]{0,62}$');
comment on column iot_private.equipment_events.event_code is 'A stable machine-readable code (TEMPERATURE_HIGH, PRESSURE_ANOMALY, HEARTBEAT_TIMEOUT, ...).';

-- Health scores: the seed's names, an id, and the window's anomalies ------------------------------
alter table iot_private.equipment_health_scores rename column time to score_timestamp;
alter table iot_private.equipment_health_scores rename column overall_score to overall_health_score;
alter table iot_private.equipment_health_scores rename column score_7day_avg to health_score_7d_avg;
alter table iot_private.equipment_health_scores rename column score_30day_avg to health_score_30d_avg;
alter table iot_private.equipment_health_scores rename column score_change_7day to health_score_change_7d;
alter table iot_private.equipment_health_scores rename constraint equipment_health_scores_overall_range
  to equipment_health_scores_overall_health_score_range;
-- A volatile default on ADD COLUMN would rewrite every chunk under one lock; fill, then default.
alter table iot_private.equipment_health_scores add column id uuid;
update iot_private.equipment_health_scores set id = gen_random_uuid();
alter table iot_private.equipment_health_scores alter column id set default gen_random_uuid();
alter table iot_private.equipment_health_scores alter column id set not null;
create unique index equipment_health_scores_id_score_timestamp_key
  on iot_private.equipment_health_scores (id, score_timestamp);
alter table iot_private.equipment_health_scores add column anomaly_detected boolean not null default false;
alter table iot_private.equipment_health_scores add column anomaly_severity text;
alter table iot_private.equipment_health_scores add column anomaly_type text;
alter table iot_private.equipment_health_scores add constraint equipment_health_scores_anomaly_severity_valid
  check (anomaly_severity in ('INFO', 'WARNING', 'ERROR', 'CRITICAL'));
alter table iot_private.equipment_health_scores add constraint equipment_health_scores_anomaly_consistent
  check (anomaly_detected = (anomaly_severity is not null));

-- Devices: device_name, and the facility the seed's clients filter by ----------------------------
alter table iot.iot_devices rename column name to device_name;
alter table iot.iot_devices add column facility_id uuid;
update iot.iot_devices d set facility_id = w.facility_id from iot.work_centers w where w.id = d.work_center_id;
alter table iot.iot_devices alter column facility_id set not null;
alter table iot.iot_devices add constraint iot_devices_facility_fkey foreign key (tenant_id, facility_id)
  references iot.facilities (tenant_id, id) on delete cascade;
create index iot_devices_facility_id_idx on iot.iot_devices (facility_id);
comment on column iot.iot_devices.facility_id is 'The facility of the device''s work center (filled from it; a different value is refused).';

-- OEE result types take the seed's field names (ProductionSummary, OEETrend, WorkCenterUtilization);
-- sql/500_oee.sql creates the new types and the functions returning them.
drop type if exists iot.oee_trend_point cascade;
drop type if exists iot.production_summary_row cascade;
drop type if exists iot.work_center_utilization_row cascade;

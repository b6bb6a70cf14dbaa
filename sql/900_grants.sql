-- Privileges, re-applied after every migrate. Functions are not executable by PUBLIC unless
-- granted here; writes are column-listed so nobody can set tenant_id, ids or computed columns.

revoke all on all functions in schema iot from public;
revoke all on all functions in schema iot_private from public;
revoke all on all tables in schema iot_private from public;

grant usage on schema iot to iot_anonymous, iot_operator, iot_analyst;
grant execute on function iot.timescale_tier() to iot_anonymous, iot_operator, iot_analyst;

-- Readers: everything in iot, tenant-filtered by RLS or by the views themselves.
grant select on all tables in schema iot to iot_operator, iot_analyst;
grant execute on function
  iot.current_tenant_ids(), iot.current_tenant_id(), iot.current_actor(),
  iot.check_time_range(timestamptz, timestamptz, interval),
  iot.device_readings(uuid, timestamptz, timestamptz, text),
  iot.sensor_history(uuid, text, timestamptz, timestamptz, text),
  iot.device_channels_latest_reading(iot.device_channels),
  iot.oee_for(uuid[], timestamptz, timestamptz),
  iot.facility_today_start(uuid),
  iot.work_center_oee(uuid, timestamptz, timestamptz),
  iot.oee_trends(timestamptz, timestamptz, text, uuid),
  iot.production_summary(timestamptz, timestamptz, uuid),
  iot.work_center_utilization(timestamptz, timestamptz),
  iot.equipment_health_scores(text, uuid, timestamptz, timestamptz),
  iot.equipment_health_trends(text, timestamptz, timestamptz, uuid),
  iot.predictive_maintenance_dashboard()
  to iot_operator, iot_analyst;

-- Operators: maintain the registry and operations data of their tenant.
grant insert (facility_code, name, timezone, address),
      update (facility_code, name, timezone, address, updated_at)
  on iot.facilities to iot_operator;
grant insert (facility_id, work_center_code, name, work_center_type, ideal_cycle_time_seconds, oee_target, is_active),
      update (work_center_code, name, work_center_type, ideal_cycle_time_seconds, oee_target, is_active, updated_at)
  on iot.work_centers to iot_operator;
grant insert (work_center_id, facility_id, device_code, device_name, device_type, connection_type, connection_config, is_active, heartbeat_timeout_seconds),
      update (work_center_id, facility_id, device_code, device_name, device_type, connection_type, connection_config, is_active, heartbeat_timeout_seconds, updated_at)
  on iot.iot_devices to iot_operator;
grant insert (device_id, sensor_type, unit, protocol_address, scale, value_offset, normal_min, normal_max, is_active),
      update (unit, protocol_address, scale, value_offset, normal_min, normal_max, is_active, updated_at)
  on iot.device_channels to iot_operator;
grant insert (work_center_id, job_number, product_code, shift, status, planned_start, planned_end, actual_start, actual_end,
              planned_quantity, good_count, scrap_count, rework_count, ideal_cycle_time_seconds, setup_minutes, notes),
      update (job_number, product_code, shift, status, planned_start, planned_end, actual_start, actual_end,
              planned_quantity, good_count, scrap_count, rework_count, ideal_cycle_time_seconds, setup_minutes, notes, updated_at)
  on iot.production_runs to iot_operator;
grant insert (work_center_id, maintenance_type, description, failure_mode, started_at, ended_at, performed_by, cost, alert_id),
      update (maintenance_type, description, failure_mode, started_at, ended_at, performed_by, cost, alert_id)
  on iot.maintenance_records to iot_operator;
grant delete on iot.facilities, iot.work_centers, iot.iot_devices, iot.device_channels,
                iot.production_runs, iot.maintenance_records to iot_operator;
grant execute on function
  iot.acknowledge_equipment_event(uuid),
  iot.record_equipment_event(uuid, text, text, text, jsonb, text, uuid),
  iot.calculate_equipment_health_score(uuid, timestamptz),
  iot.acknowledge_predictive_maintenance_alert(uuid),
  iot.schedule_predictive_maintenance_alert(uuid, timestamptz),
  iot.start_predictive_maintenance_alert(uuid),
  iot.resolve_predictive_maintenance_alert(uuid, boolean, timestamptz, text),
  iot.compute_spc_control_limits(uuid, timestamptz, timestamptz),
  iot.acknowledge_spc_alert(uuid)
  to iot_operator;

-- Predictive maintenance (issue 6, H3): models operators register and deploy, the maintenance
-- catalogue they edit (shipped defaults, tenant_id null, are read-only by the RLS policies).
grant insert (model_code, model_type, algorithm, version, work_center_id, work_center_type, equipment_manufacturer, equipment_model,
              failure_mode, prediction_horizon_hours, model_parameters, feature_set, training_data_start, training_data_end,
              training_sample_count, accuracy_score, precision_score, recall_score, f1_score, auc_roc, mean_absolute_error,
              false_positive_rate, false_negative_rate, deployment_status, retraining_frequency, last_retrained_at, next_retraining_at,
              data_drift_detected, concept_drift_detected, feature_importance, evaluation_details),
      update (equipment_manufacturer, equipment_model, prediction_horizon_hours, model_parameters, feature_set,
              training_data_start, training_data_end, training_sample_count, accuracy_score, precision_score, recall_score, f1_score,
              auc_roc, mean_absolute_error, false_positive_rate, false_negative_rate, deployment_status, retraining_frequency,
              last_retrained_at, next_retraining_at, data_drift_detected, concept_drift_detected, feature_importance, evaluation_details)
  on iot.predictive_maintenance_models to iot_operator;
grant insert (work_center_type, failure_mode, required_parts, required_skills, estimated_maintenance_duration_hours, recommended_action),
      update (work_center_type, failure_mode, required_parts, required_skills, estimated_maintenance_duration_hours, recommended_action, updated_at),
      delete
  on iot.maintenance_catalogue to iot_operator;
grant execute on function iot.deploy_predictive_maintenance_model(uuid) to iot_operator;

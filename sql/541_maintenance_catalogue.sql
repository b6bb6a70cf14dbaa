-- The maintenance catalogue's shipped defaults (tenant_id null) and the lookup alerts use.
--
-- Failure modes are the ones sql/540 names: from the worst channel of the sensor dimension
-- (VIBRATION -> BEARING_WEAR, TEMPERATURE -> OVERHEATING, PRESSURE -> PRESSURE_DEVIATION, HUMIDITY ->
-- ENVIRONMENT_DRIFT, other -> SENSOR_DEVIATION) or from the dimension that cost the most points
-- (OEE_LOSS, QUALITY_DRIFT, BREAKDOWN_RISK, PERFORMANCE_LOSS), ANOMALOUS_BEHAVIOUR, GENERAL_DEGRADATION.
-- Defaults are re-applied on every migrate, so a release can correct them; a tenant edits its own
-- rows (GraphQL createMaintenanceCatalogue / updateMaintenanceCatalogue...), which take precedence.

insert into iot.maintenance_catalogue as c (tenant_id, work_center_type, failure_mode, required_parts, required_skills,
                                            estimated_maintenance_duration_hours, recommended_action)
values
  (null, null, 'BEARING_WEAR', '{"Bearing set","Bearing grease"}', '{"Mechanical fitter","Vibration analysis"}', 4,
   'Inspect and replace the worn bearings; check alignment and lubrication.'),
  (null, 'PRESS', 'BEARING_WEAR', '{"Cylinder bearing set","Drive-side bearing set","Bearing grease"}', '{"Mechanical fitter","Vibration analysis"}', 6,
   'Replace the cylinder bearings; check cylinder alignment and the drive gears.'),
  (null, 'FOLDER', 'BEARING_WEAR', '{"Roller bearing set","Drive belt"}', '{"Mechanical fitter"}', 4,
   'Replace the folding-roller bearings and the drive belt; check roller gaps.'),
  (null, 'CUTTER', 'BEARING_WEAR', '{"Knife-drive bearing set","Bearing grease"}', '{"Mechanical fitter","Vibration analysis"}', 4,
   'Replace the knife-drive bearings; check the knife bar guides.'),
  (null, 'BINDER', 'BEARING_WEAR', '{"Spine-roller bearing set","Clamp-carriage bearings"}', '{"Mechanical fitter"}', 5,
   'Replace the spine-roller and clamp-carriage bearings.'),
  (null, null, 'OVERHEATING', '{"Cooling fan","Air filter","Heat-sink compound"}', '{"Electrician","Mechanical fitter"}', 3,
   'Clean or replace the cooling fan and filters; check motor current and lubrication.'),
  (null, 'PRESS', 'OVERHEATING', '{"Ink-roller cooling unit service kit","Cooling water filter"}', '{"Mechanical fitter","Refrigeration technician"}', 4,
   'Service the roller cooling unit; check coolant flow and the drive motor.'),
  (null, 'BINDER', 'OVERHEATING', '{"Glue-pot thermostat","Heating element"}', '{"Electrician"}', 3,
   'Check the glue-pot thermostat and heating elements.'),
  (null, null, 'PRESSURE_DEVIATION', '{"Seal kit","Hydraulic hose","Pressure regulator"}', '{"Hydraulics technician"}', 3,
   'Find and fix the leak: seals, hoses, regulator; top up and bleed the system.'),
  (null, 'CUTTER', 'PRESSURE_DEVIATION', '{"Clamp-cylinder seal kit","Hydraulic oil","Pressure regulator"}', '{"Hydraulics technician"}', 4,
   'Reseal the clamp cylinder and check the clamp pressure regulator.'),
  (null, 'PRESS', 'PRESSURE_DEVIATION', '{"Vacuum pump service kit","Air hose","Pressure regulator"}', '{"Pneumatics technician"}', 3,
   'Service the feeder vacuum/blower pump and air lines.'),
  (null, null, 'ENVIRONMENT_DRIFT', '{}', '{"Facilities technician"}', 2,
   'Check room climate control (humidity) and its sensors.'),
  (null, null, 'SENSOR_DEVIATION', '{"Replacement sensor"}', '{"Instrument technician"}', 1.5,
   'Check the channel''s sensor, wiring and calibration; compare with a reference instrument.'),
  (null, null, 'OEE_LOSS', '{}', '{"Process engineer","Machine operator"}', 2,
   'Review stops, speed losses and scrap of the last week with the operators.'),
  (null, null, 'QUALITY_DRIFT', '{"Calibration kit"}', '{"Quality technician","Machine operator"}', 2,
   'Recalibrate; check the process parameters behind the SPC alerts.'),
  (null, null, 'BREAKDOWN_RISK', '{"Wear-parts kit"}', '{"Mechanical fitter","Electrician"}', 6,
   'Full inspection: the machine broke down repeatedly this month.'),
  (null, null, 'PERFORMANCE_LOSS', '{"Drive belt","Lubricant"}', '{"Mechanical fitter"}', 3,
   'Check drives, belts and lubrication: cycle time is rising.'),
  (null, null, 'ANOMALOUS_BEHAVIOUR', '{}', '{"Maintenance technician"}', 2,
   'Inspect the machine: its sensors show unusual spikes and steps.'),
  (null, null, 'GENERAL_DEGRADATION', '{}', '{"Maintenance technician"}', 4,
   'Inspect the machine at the next planned stop.')
on conflict on constraint maintenance_catalogue_scope_key do update set
  required_parts = excluded.required_parts, required_skills = excluded.required_skills,
  estimated_maintenance_duration_hours = excluded.estimated_maintenance_duration_hours,
  recommended_action = excluded.recommended_action, updated_at = now()
where (c.required_parts, c.required_skills, c.estimated_maintenance_duration_hours, c.recommended_action)
      is distinct from (excluded.required_parts, excluded.required_skills, excluded.estimated_maintenance_duration_hours, excluded.recommended_action);

-- The catalogue row for a tenant's work-center type and failure mode: the tenant's own before the
-- shipped default, a type-specific row before an any-type one; GENERAL_DEGRADATION's when the mode
-- has none. Not granted to API roles (it takes any tenant as an argument).
create or replace function iot_private.maintenance_plan(tenant uuid, work_center_type text, failure_mode text)
  returns table (required_parts text[], required_skills text[], estimated_maintenance_duration_hours numeric, recommended_action text)
  language sql stable
  set search_path = pg_catalog, pg_temp
as $$
  select c.required_parts, c.required_skills, c.estimated_maintenance_duration_hours, c.recommended_action
  from iot.maintenance_catalogue c
  where (c.tenant_id = tenant or c.tenant_id is null)
    and (c.work_center_type = maintenance_plan.work_center_type or c.work_center_type is null)
    and c.failure_mode in (maintenance_plan.failure_mode, 'GENERAL_DEGRADATION')
  order by c.failure_mode = maintenance_plan.failure_mode desc, c.tenant_id is not null desc, c.work_center_type is not null desc
  limit 1
$$;
comment on function iot_private.maintenance_plan(uuid, text, text) is
  'Parts, skills, hours and action for a failure mode on a work-center type: the tenant''s catalogue row, else the shipped default.';

-- Alerts raised before the catalogue existed (an upgrade) get their plan once.
update iot.predictive_maintenance_alerts a
   set (required_parts, required_skills, estimated_maintenance_duration_hours) = (
     select p.required_parts, p.required_skills, p.estimated_maintenance_duration_hours
     from iot.work_centers w, lateral iot_private.maintenance_plan(a.tenant_id, w.work_center_type, a.predicted_failure_mode) p
     where w.id = a.work_center_id)
 where a.required_skills is null;

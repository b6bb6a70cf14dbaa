-- Heartbeat watchdog (devices__check_heartbeats job): one HEARTBEAT_TIMEOUT event per silence.
-- A device that has been heard from before, is active, and has been silent longer than its
-- heartbeat_timeout_seconds gets an event, unless it already has one since its last heartbeat.
create or replace function iot_private.check_device_heartbeats() returns integer
  language plpgsql
  set search_path = pg_catalog, pg_temp
as $$
declare
  raised integer;
begin
  perform iot_private.ensure_partitions('equipment_events', now(), now());
  insert into iot_private.equipment_events (tenant_id, work_center_id, device_id, event_type, severity, message, details)
  select d.tenant_id, d.work_center_id, d.id, 'HEARTBEAT_TIMEOUT', 'HIGH',
         format('device %s silent since %s (timeout %s s)', d.device_code,
                to_char(d.last_heartbeat at time zone 'UTC', 'YYYY-MM-DD HH24:MI:SS"Z"'), d.heartbeat_timeout_seconds),
         jsonb_build_object('lastHeartbeat', d.last_heartbeat, 'timeoutSeconds', d.heartbeat_timeout_seconds)
  from iot.iot_devices d
  where d.is_active
    and d.connection_type <> 'REST_API'
    and d.last_heartbeat < now() - make_interval(secs => d.heartbeat_timeout_seconds)
    and not exists (
      select 1 from iot_private.equipment_events e
      where e.device_id = d.id and e.event_type = 'HEARTBEAT_TIMEOUT' and e.time >= d.last_heartbeat
    );
  get diagnostics raised = row_count;
  return raised;
end
$$;

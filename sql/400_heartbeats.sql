-- Heartbeat watchdog (devices__check_heartbeats job): one HEARTBEAT_TIMEOUT event per silence.
-- A device that has been heard from before, is active, and has been silent longer than its
-- heartbeat_timeout_seconds gets an event, unless it already has one since its last heartbeat.
-- Severity WARNING (the data stops, the machine may be fine), code HEARTBEAT_TIMEOUT. A device
-- heard from again after its last timeout gets one recovery event (STARTUP, code HEARTBEAT_RESTORED,
-- INFO), whatever protocol it speaks; its next silence raises the next timeout. Returns the timeouts.
create or replace function iot_private.check_device_heartbeats() returns integer
  language plpgsql
  set search_path = pg_catalog, pg_temp
as $$
declare
  raised integer;
begin
  perform iot_private.ensure_partitions('equipment_events', now(), now());
  -- Recoveries first: a device silent again since its recovery must still get its recovery event.
  insert into iot_private.equipment_events
    (tenant_id, work_center_id, iot_device_id, event_type, event_code, severity, event_description, metadata)
  select d.tenant_id, d.work_center_id, d.id, 'STARTUP', 'HEARTBEAT_RESTORED', 'INFO',
         format('device %s heard from again at %s after a silence reported at %s', d.device_code,
                to_char(d.last_heartbeat at time zone 'UTC', 'YYYY-MM-DD HH24:MI:SS"Z"'),
                to_char(t.event_timestamp at time zone 'UTC', 'YYYY-MM-DD HH24:MI:SS"Z"')),
         jsonb_build_object('heardAt', d.last_heartbeat, 'silenceReportedAt', t.event_timestamp)
  from iot.iot_devices d
  cross join lateral (
    select e.event_timestamp from iot_private.equipment_events e
    where e.iot_device_id = d.id and e.event_type = 'HEARTBEAT_TIMEOUT'
    order by e.event_timestamp desc limit 1
  ) t
  where d.is_active and d.last_heartbeat > t.event_timestamp
    and not exists (
      select 1 from iot_private.equipment_events r
      where r.iot_device_id = d.id and r.event_code = 'HEARTBEAT_RESTORED' and r.event_timestamp >= t.event_timestamp
    );
  insert into iot_private.equipment_events
    (tenant_id, work_center_id, iot_device_id, event_type, event_code, severity, event_description, metadata)
  select d.tenant_id, d.work_center_id, d.id, 'HEARTBEAT_TIMEOUT', 'HEARTBEAT_TIMEOUT', 'WARNING',
         format('device %s silent since %s (timeout %s s)', d.device_code,
                to_char(d.last_heartbeat at time zone 'UTC', 'YYYY-MM-DD HH24:MI:SS"Z"'), d.heartbeat_timeout_seconds),
         jsonb_build_object('lastHeartbeat', d.last_heartbeat, 'timeoutSeconds', d.heartbeat_timeout_seconds)
  from iot.iot_devices d
  where d.is_active
    and d.last_heartbeat < now() - make_interval(secs => d.heartbeat_timeout_seconds)
    and not exists (
      select 1 from iot_private.equipment_events e
      where e.iot_device_id = d.id and e.event_type = 'HEARTBEAT_TIMEOUT' and e.event_timestamp >= d.last_heartbeat
    );
  get diagnostics raised = row_count;
  return raised;
end
$$;

-- Ingestors cache the registry, units, unit aliases and quality words; tell them when these change
-- (one NOTIFY per statement, coalesced by PostgreSQL within a transaction).
create or replace function iot_private.tg_registry__notify_changed() returns trigger
  language plpgsql
  set search_path = pg_catalog, pg_temp
as $$
begin
  perform pg_notify('iot_registry_changed', tg_table_name);
  return null;
end
$$;

do $$
declare
  t text;
begin
  foreach t in array array['facilities', 'work_centers', 'iot_devices', 'device_channels',
                           'units', 'unit_aliases', 'quality_words'] loop
    execute format('drop trigger if exists _900_notify_registry_changed on iot.%I', t);
    execute format('create trigger _900_notify_registry_changed after insert or delete or truncate %s on iot.%I
                    for each statement execute function iot_private.tg_registry__notify_changed()',
      -- The sink updates iot_devices.last_heartbeat every batch: that is not a registry change.
      case when t = 'iot_devices'
        then 'or update of tenant_id, work_center_id, device_code, connection_type, connection_config, is_active'
        else 'or update' end, t);
  end loop;
end $$;

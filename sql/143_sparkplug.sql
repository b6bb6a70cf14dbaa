-- Sparkplug B devices (src/ingest/sparkplug): an MQTT device whose connection_config holds
-- sparkplug: { groupId, edgeNodeId, deviceId? } is read from spBv1.0 topics (no deviceId: the edge
-- node's own metrics); its channels' protocol_address is the Sparkplug metric name.
-- Checked by the registry's connection_config trigger (sql/130_registry_checks.sql) beside
-- iot_private.connection_config_problem (db/migrations/000002), error IOT01 naming the field:
--  - sparkplug is an object, only on MQTT devices;
--  - groupId and edgeNodeId are non-empty strings, deviceId one when given, none holding / + or #
--    (they are MQTT topic levels);
-- and one active device per Sparkplug identity across all tenants (the ingestor reads one broker
-- namespace: two devices for one group/node/device would split or duplicate its readings).

create or replace function iot_private.sparkplug_config_problem(connection_type text, config jsonb) returns text
  language plpgsql immutable
  set search_path = pg_catalog, pg_temp
as $$
declare
  s jsonb := config -> 'sparkplug';
  v jsonb;
  field text;
begin
  if s is null then
    return null;
  end if;
  if connection_type is distinct from 'MQTT' then
    return format('%s connection_config.sparkplug is only for MQTT devices (Sparkplug B runs over MQTT)', connection_type);
  end if;
  if jsonb_typeof(s) <> 'object' then
    return 'MQTT connection_config.sparkplug must be an object {groupId, edgeNodeId, deviceId?}';
  end if;
  foreach field in array array['groupId', 'edgeNodeId', 'deviceId'] loop
    v := s -> field;
    if v is null and field = 'deviceId' then
      continue;
    end if;
    if v is null or jsonb_typeof(v) <> 'string' or (v #>> '{}') = '' or (v #>> '{}') ~ '[/+#]' then
      return format('MQTT connection_config.sparkplug.%s must be a non-empty string without /, + or #%s', field,
                    case when field = 'deviceId' then ' (leave it out for the edge node''s own metrics)' else '' end);
    end if;
  end loop;
  return null;
end
$$;
comment on function iot_private.sparkplug_config_problem(text, jsonb) is
  'Why a device''s connection_config.sparkplug {groupId, edgeNodeId, deviceId?} is not valid for its connection type, or null.';

-- Checked by the registry's one connection_config trigger (sql/130_registry_checks.sql); the
-- separate trigger and function of an earlier build are removed.
drop trigger if exists _120_check_sparkplug on iot.iot_devices;
drop function if exists iot_private.tg_iot_devices__check_sparkplug();

create unique index if not exists iot_devices_sparkplug_identity_key on iot.iot_devices (
  (connection_config #>> '{sparkplug,groupId}'), (connection_config #>> '{sparkplug,edgeNodeId}'),
  (coalesce(connection_config #>> '{sparkplug,deviceId}', '')))
  where connection_type = 'MQTT' and is_active and connection_config ? 'sparkplug';
comment on index iot.iot_devices_sparkplug_identity_key is
  'One active device per Sparkplug B group/edge node/device (deviceId absent: the edge node''s own metrics).';

-- OPC UA registry checks (error IOT01, the message naming the field):
--  - a channel of an OPC_UA device has a NodeId in protocol_address (or none yet): the OPC UA text
--    form [ns=<0-65535>; | nsu=<uri>;] then i=<0-4294967295> | s=<text> | g=<guid> | b=<base64>;
--  - an OPC_UA device's connection_config holds no password: passwords live in the ingestor's
--    environment and connection_config.passwordEnv names the variable (the registry is readable by
--    every operator and analyst of the tenant, and copied into backups).

create or replace function iot_private.opcua_node_id_problem(node_id text) returns text
  language plpgsql immutable
  set search_path = pg_catalog, pg_temp
as $$
declare
  m text[];
begin
  m := regexp_match(node_id, '^(?:ns=([0-9]{1,5});|nsu=[^;]+;)?(i=([0-9]{1,10})|s=.+|g=[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}|b=[A-Za-z0-9+/]+={0,2})$');
  if m is null then
    return format('protocol_address %L is not an OPC UA NodeId such as ns=2;s=Press1.Temperature or ns=3;i=1001', node_id);
  end if;
  if m[1] is not null and m[1]::integer > 65535 then
    return format('protocol_address %L: the namespace index must be 0 to 65535', node_id);
  end if;
  if m[3] is not null and m[3]::bigint > 4294967295 then
    return format('protocol_address %L: a numeric identifier must be 0 to 4294967295', node_id);
  end if;
  return null;
end
$$;
comment on function iot_private.opcua_node_id_problem(text) is
  'Why a text is not an OPC UA NodeId in its text form (ns=2;s=Press1.Temperature, ns=3;i=1001, nsu=urn:x;g=..., b=...), or null when it is.';

create or replace function iot_private.tg_device_channels__check_opcua_address() returns trigger
  language plpgsql security definer
  set search_path = pg_catalog, pg_temp
as $$
declare
  d record;
  problem text;
begin
  if new.protocol_address is null then
    return new;  -- not addressed yet: the ingestor reports the channel as not read
  end if;
  select device_code, connection_type into d from iot.iot_devices where id = new.device_id and tenant_id = new.tenant_id;
  if d.connection_type is distinct from 'OPC_UA' then
    return new;
  end if;
  problem := iot_private.opcua_node_id_problem(new.protocol_address);
  if problem is not null then
    raise exception 'device %: channel %: %', d.device_code, new.sensor_type, problem using errcode = 'IOT01';
  end if;
  return new;
end
$$;
comment on function iot_private.tg_device_channels__check_opcua_address() is
  'Refuses (IOT01) a channel of an OPC_UA device whose protocol_address is not an OPC UA NodeId.';
drop trigger if exists _110_check_opcua_address on iot.device_channels;
create trigger _110_check_opcua_address before insert or update of protocol_address, device_id on iot.device_channels
  for each row execute function iot_private.tg_device_channels__check_opcua_address();

create or replace function iot_private.tg_iot_devices__check_opcua() returns trigger
  language plpgsql security definer
  set search_path = pg_catalog, pg_temp
as $$
declare
  c record;
  problem text;
begin
  if new.connection_type <> 'OPC_UA' then
    return new;
  end if;
  if new.connection_config ? 'password' then
    raise exception 'device %: OPC_UA connection_config.password is refused: put the password in an environment variable of the ingestor and name it in connection_config.passwordEnv',
      new.device_code using errcode = 'IOT01';
  end if;
  -- A device switched to OPC UA: its channels' addresses must be NodeIds from now on.
  if tg_op = 'UPDATE' and old.connection_type is distinct from new.connection_type then
    for c in select sensor_type, protocol_address from iot.device_channels
              where device_id = new.id and tenant_id = new.tenant_id and protocol_address is not null loop
      problem := iot_private.opcua_node_id_problem(c.protocol_address);
      if problem is not null then
        raise exception 'device %: channel %: %', new.device_code, c.sensor_type, problem using errcode = 'IOT01';
      end if;
    end loop;
  end if;
  return new;
end
$$;
comment on function iot_private.tg_iot_devices__check_opcua() is
  'Refuses (IOT01) an OPC_UA device whose connection_config holds a password, or that becomes OPC_UA with a channel address that is not a NodeId.';
drop trigger if exists _110_check_opcua on iot.iot_devices;
create trigger _110_check_opcua before insert or update of connection_type, connection_config on iot.iot_devices
  for each row execute function iot_private.tg_iot_devices__check_opcua();

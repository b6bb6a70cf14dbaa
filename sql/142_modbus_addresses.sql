-- Modbus addresses and poller settings, checked when they are saved (error IOT01, the message names
-- the field). The grammar is the poller's (src/ingest/modbus/address.ts):
--   <holding|input|coil|discrete>:<0-based offset, decimal or 0x hex>[:<int16|uint16|int32|uint32|float32>[:<byte order>]]
-- byte order AB|BA for 16-bit types, ABCD|CDAB|BADC|DCBA for 32-bit ones, BE|LE for either; coils
-- and discrete inputs take neither. An empty address is allowed (the channel is not polled and the
-- poller says so in a dead letter): a device can be switched to MODBUS before its channels are addressed.

create or replace function iot_private.modbus_address_problem(address text) returns text
  language plpgsql immutable
  set search_path = pg_catalog, pg_temp
as $$
declare
  m text[];
  off integer;
  typ text;
  ord text;
  width integer;
begin
  if address is null or btrim(address) = '' then
    return null;
  end if;
  m := regexp_match(btrim(address),
         '^(holding|input|coil|discrete):(0x[0-9a-f]{1,4}|[0-9]{1,5})(?::([a-z0-9]+)(?::([a-z]+))?)?$', 'i');
  if m is null then
    return format('protocol_address %L does not match <holding|input|coil|discrete>:<0-based offset>[:<int16|uint16|int32|uint32|float32>[:<byte order>]]', address);
  end if;
  off := case when lower(m[2]) like '0x%' then ('x' || lpad(substr(m[2], 3), 8, '0'))::bit(32)::integer else m[2]::integer end;
  if off > 65535 then
    return format('protocol_address %L: offset %s is beyond 65535', address, off);
  end if;
  if lower(m[1]) in ('coil', 'discrete') then
    if m[3] is not null then
      return format('protocol_address %L: a %s is one bit and takes no data type or byte order', address, lower(m[1]));
    end if;
    return null;
  end if;
  typ := lower(coalesce(m[3], 'uint16'));
  if typ not in ('int16', 'uint16', 'int32', 'uint32', 'float32') then
    return format('protocol_address %L: data type %L is not one of int16, uint16, int32, uint32, float32', address, m[3]);
  end if;
  width := case when typ like '%16' then 1 else 2 end;
  ord := upper(m[4]);
  if ord is not null and ord not in ('BE', 'LE') and not (
       (width = 1 and ord in ('AB', 'BA')) or (width = 2 and ord in ('ABCD', 'CDAB', 'BADC', 'DCBA'))) then
    return format('protocol_address %L: byte order %L does not fit %s (use %s, BE or LE)', address, m[4], typ,
                  case width when 1 then 'AB, BA' else 'ABCD, CDAB, BADC, DCBA' end);
  end if;
  if off + width - 1 > 65535 then
    return format('protocol_address %L: %s at %s runs past register 65535', address, typ, off);
  end if;
  return null;
end
$$;
comment on function iot_private.modbus_address_problem(text) is
  'Why a Modbus protocol_address is not valid (src/ingest/modbus/address.ts grammar), or null when it is (or is empty).';

-- The poller's own connection_config keys (host, port, unitId and pollIntervalMs are checked by
-- iot_private.connection_config_problem).
create or replace function iot_private.modbus_config_problem(config jsonb) returns text
  language plpgsql immutable
  set search_path = pg_catalog, pg_temp
as $$
declare
  v jsonb;
begin
  v := config -> 'timeoutMs';
  if v is not null and (jsonb_typeof(v) <> 'number' or (v #>> '{}')::numeric <= 0 or (v #>> '{}')::numeric > 86400000) then
    return 'MODBUS connection_config.timeoutMs must be a positive number of milliseconds';
  end if;
  v := config -> 'faultThreshold';
  if v is not null and (jsonb_typeof(v) <> 'number' or (v #>> '{}')::numeric not between 1 and 1000 or (v #>> '{}')::numeric % 1 <> 0) then
    return 'MODBUS connection_config.faultThreshold must be an integer from 1 to 1000';
  end if;
  v := config -> 'maxGap';
  if v is not null and (jsonb_typeof(v) <> 'number' or (v #>> '{}')::numeric not between 0 and 124 or (v #>> '{}')::numeric % 1 <> 0) then
    return 'MODBUS connection_config.maxGap must be an integer from 0 to 124';
  end if;
  return null;
end
$$;
comment on function iot_private.modbus_config_problem(jsonb) is
  'Why a MODBUS device''s poller settings (timeoutMs, faultThreshold, maxGap) are not valid, or null.';

create or replace function iot_private.tg_device_channels__check_modbus_address() returns trigger
  language plpgsql security definer
  set search_path = pg_catalog, pg_temp
as $$
declare
  d record;
  problem text;
begin
  select i.device_code, i.connection_type into d from iot.iot_devices i where i.id = new.device_id;
  if d.connection_type is distinct from 'MODBUS' then
    return new;
  end if;
  problem := iot_private.modbus_address_problem(new.protocol_address);
  if problem is not null then
    raise exception 'device % channel %: %', d.device_code, new.sensor_type, problem using errcode = 'IOT01';
  end if;
  return new;
end
$$;
comment on function iot_private.tg_device_channels__check_modbus_address() is
  'Refuses (IOT01) a channel of a MODBUS device whose protocol_address the poller cannot read.';
drop trigger if exists _110_check_modbus_address on iot.device_channels;
create trigger _110_check_modbus_address before insert or update of protocol_address, device_id on iot.device_channels
  for each row execute function iot_private.tg_device_channels__check_modbus_address();

create or replace function iot_private.tg_iot_devices__check_modbus() returns trigger
  language plpgsql security definer
  set search_path = pg_catalog, pg_temp
as $$
declare
  problem text;
  c record;
begin
  if new.connection_type <> 'MODBUS' then
    return new;
  end if;
  problem := iot_private.modbus_config_problem(new.connection_config);
  if problem is not null then
    raise exception 'device %: %', new.device_code, problem using errcode = 'IOT01';
  end if;
  if tg_op = 'UPDATE' and old.connection_type is distinct from 'MODBUS' then
    for c in select ch.sensor_type, ch.protocol_address from iot.device_channels ch where ch.device_id = new.id loop
      problem := iot_private.modbus_address_problem(c.protocol_address);
      if problem is not null then
        raise exception 'device % channel %: %', new.device_code, c.sensor_type, problem using errcode = 'IOT01',
          hint = 'clear or fix the channel''s protocol_address before switching the device to MODBUS';
      end if;
    end loop;
  end if;
  return new;
end
$$;
comment on function iot_private.tg_iot_devices__check_modbus() is
  'Refuses (IOT01) MODBUS poller settings the poller cannot use, and a switch to MODBUS while a channel holds an address that is not a Modbus one.';
drop trigger if exists _110_check_modbus on iot.iot_devices;
create trigger _110_check_modbus before insert or update of connection_type, connection_config on iot.iot_devices
  for each row execute function iot_private.tg_iot_devices__check_modbus();

-- The plant registry: facilities, work centers, devices and their channels.
-- Children repeat tenant_id and reference (tenant_id, id) of their parent, so a row can never
-- point across tenants and RLS needs no joins.

create table iot.facilities (
  id            uuid primary key default gen_random_uuid(),
  tenant_id     uuid not null default iot.current_tenant_id() references iot.tenants (id) on delete cascade,
  facility_code text not null,
  name          text not null,
  timezone      text not null default 'UTC',
  address       text,
  created_at    timestamptz not null default now(),
  updated_at    timestamptz not null default now(),
  constraint facilities_tenant_id_id_key unique (tenant_id, id),
  -- MQTT topics name the facility by code alone, so codes are unique across tenants.
  constraint facilities_facility_code_key unique (facility_code),
  constraint facilities_facility_code_format check (facility_code ~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$'),
  -- An unknown zone fails here with PostgreSQL's own 'time zone "X" not recognized'.
  constraint facilities_timezone_valid check (timestamptz '2000-01-01 00:00Z' at time zone timezone is not null)
);
comment on table iot.facilities is 'A plant site. facility_code appears in MQTT topics and is unique across tenants.';

create table iot.work_centers (
  id                        uuid primary key default gen_random_uuid(),
  tenant_id                 uuid not null default iot.current_tenant_id(),
  facility_id               uuid not null,
  work_center_code          text not null,
  name                      text not null,
  work_center_type          text not null,
  ideal_cycle_time_seconds  numeric,
  oee_target                numeric not null default 0.85,
  is_active                 boolean not null default true,
  created_at                timestamptz not null default now(),
  updated_at                timestamptz not null default now(),
  constraint work_centers_tenant_id_id_key unique (tenant_id, id),
  constraint work_centers_facility_fkey foreign key (tenant_id, facility_id)
    references iot.facilities (tenant_id, id) on delete cascade,
  constraint work_centers_code_per_facility_key unique (facility_id, work_center_code),
  constraint work_centers_code_format check (work_center_code ~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$'),
  constraint work_centers_type_valid check (work_center_type in
    ('PRESS', 'FOLDER', 'CUTTER', 'BINDER', 'STITCHER', 'LAMINATOR', 'PACKAGING', 'OTHER')),
  constraint work_centers_ideal_cycle_time_positive check (ideal_cycle_time_seconds > 0),
  constraint work_centers_oee_target_fraction check (oee_target > 0 and oee_target <= 1)
);
comment on table iot.work_centers is 'A machine or line (press, folder, cutter, binder...) that health scores and OEE are computed for.';
comment on column iot.work_centers.ideal_cycle_time_seconds is 'Seconds per unit at rated speed; OEE performance uses it when a run gives none.';
comment on column iot.work_centers.oee_target is 'OEE target as a fraction (0.85 = world class).';
create index work_centers_facility_id_idx on iot.work_centers (facility_id);

create table iot.iot_devices (
  id                         uuid primary key default gen_random_uuid(),
  tenant_id                  uuid not null default iot.current_tenant_id(),
  work_center_id             uuid not null,
  device_code                text not null,
  name                       text,
  device_type                text not null default 'SENSOR',
  connection_type            text not null default 'MQTT',
  connection_config          jsonb not null default '{}',
  is_active                  boolean not null default true,
  last_heartbeat             timestamptz,
  heartbeat_timeout_seconds  integer not null default 300,
  created_at                 timestamptz not null default now(),
  updated_at                 timestamptz not null default now(),
  constraint iot_devices_tenant_id_id_key unique (tenant_id, id),
  constraint iot_devices_work_center_fkey foreign key (tenant_id, work_center_id)
    references iot.work_centers (tenant_id, id) on delete cascade,
  constraint iot_devices_device_code_per_tenant_key unique (tenant_id, device_code),
  constraint iot_devices_device_code_format check (device_code ~ '^[A-Za-z0-9][A-Za-z0-9_.:-]{0,62}$'),
  constraint iot_devices_device_type_valid check (device_type in ('SENSOR', 'PRESS_COUNTER', 'TEMPERATURE_MONITOR', 'SCALE')),
  constraint iot_devices_connection_type_valid check (connection_type in ('MQTT', 'REST_API', 'OPC_UA', 'MODBUS')),
  constraint iot_devices_connection_config_object check (jsonb_typeof(connection_config) = 'object'),
  constraint iot_devices_heartbeat_timeout_positive check (heartbeat_timeout_seconds > 0)
);
comment on table iot.iot_devices is 'A sensor, counter or PLC on a work center. device_code is the deviceId in MQTT payloads.';
comment on column iot.iot_devices.connection_config is
  'Per connection_type: MQTT {topic?, qos?}; OPC_UA {endpointUrl, securityMode?, securityPolicy?, samplingIntervalMs?}; MODBUS {host, port?, unitId?, pollIntervalMs?}; REST_API {}.';
comment on column iot.iot_devices.last_heartbeat is 'Arrival time of the latest batch that held a reading from this device.';
create index iot_devices_work_center_id_idx on iot.iot_devices (work_center_id);

-- Error IOT01: connection_config does not fit its connection_type. The message names the field.
create or replace function iot_private.connection_config_problem(connection_type text, config jsonb)
  returns text language plpgsql immutable
  set search_path = pg_catalog, pg_temp
as $$
declare
  v jsonb;
begin
  case connection_type
  when 'MQTT' then
    v := config -> 'topic';
    if v is not null and jsonb_typeof(v) <> 'string' then return 'MQTT connection_config.topic must be a string'; end if;
    v := config -> 'qos';
    if v is not null and not (v in ('0', '1', '2')) then return 'MQTT connection_config.qos must be 0, 1 or 2'; end if;
  when 'OPC_UA' then
    v := config -> 'endpointUrl';
    if v is null or jsonb_typeof(v) <> 'string' or v ->> 0 !~ '^opc\.tcp://[^/\s]+' then
      return 'OPC_UA connection_config.endpointUrl must be a string like opc.tcp://host:4840/path';
    end if;
    v := config -> 'securityMode';
    if v is not null and not (v in ('"None"', '"Sign"', '"SignAndEncrypt"')) then
      return 'OPC_UA connection_config.securityMode must be None, Sign or SignAndEncrypt';
    end if;
    v := config -> 'samplingIntervalMs';
    if v is not null and (jsonb_typeof(v) <> 'number' or (v #>> '{}')::numeric <= 0) then
      return 'OPC_UA connection_config.samplingIntervalMs must be a positive number';
    end if;
  when 'MODBUS' then
    v := config -> 'host';
    if v is null or jsonb_typeof(v) <> 'string' or btrim(v #>> '{}') = '' then
      return 'MODBUS connection_config.host must be a non-empty string';
    end if;
    v := config -> 'port';
    if v is not null and (jsonb_typeof(v) <> 'number' or (v #>> '{}')::numeric not between 1 and 65535
                          or (v #>> '{}')::numeric % 1 <> 0) then
      return 'MODBUS connection_config.port must be an integer from 1 to 65535';
    end if;
    v := config -> 'unitId';
    if v is not null and (jsonb_typeof(v) <> 'number' or (v #>> '{}')::numeric not between 0 and 255
                          or (v #>> '{}')::numeric % 1 <> 0) then
      return 'MODBUS connection_config.unitId must be an integer from 0 to 255';
    end if;
    v := config -> 'pollIntervalMs';
    if v is not null and (jsonb_typeof(v) <> 'number' or (v #>> '{}')::numeric <= 0) then
      return 'MODBUS connection_config.pollIntervalMs must be a positive number';
    end if;
  else
    null; -- REST_API: nothing required
  end case;
  return null;
end
$$;

create or replace function iot_private.tg_iot_devices__check_connection_config() returns trigger
  language plpgsql
  set search_path = pg_catalog, pg_temp
as $$
declare
  problem text := iot_private.connection_config_problem(new.connection_type, new.connection_config);
begin
  if problem is not null then
    raise exception 'device %: %', new.device_code, problem using errcode = 'IOT01';
  end if;
  return new;
end
$$;

create trigger _100_check_connection_config
  before insert or update of connection_type, connection_config on iot.iot_devices
  for each row execute function iot_private.tg_iot_devices__check_connection_config();

-- Sensor types with their default unit and normal range (the seed's thresholds). Channels may
-- override the range; the SENSOR_*_MIN/MAX environment variables override these defaults at migrate.
create table iot.sensor_types (
  sensor_type  text primary key,
  description  text not null,
  default_unit text not null,
  normal_min   double precision,
  normal_max   double precision,
  constraint sensor_types_sensor_type_format check (sensor_type ~ '^[a-z][a-z0-9_]{0,62}$'),
  constraint sensor_types_normal_range_ordered check (normal_min < normal_max)
);
insert into iot.sensor_types (sensor_type, description, default_unit, normal_min, normal_max) values
  ('temperature', 'Temperature', '°F', 60, 75),
  ('vibration', 'Vibration velocity (RMS)', 'mm/s', 0, 2.5),
  ('pressure', 'Pressure', 'PSI', 80, 120),
  ('speed', 'Machine speed', 'sheets/h', null, null),
  ('count', 'Cumulative unit counter', 'units', null, null),
  ('humidity', 'Relative humidity', '%RH', 35, 60),
  ('power', 'Electrical power', 'kW', null, null),
  ('weight', 'Weight (scale)', 'kg', null, null);

create table iot.device_channels (
  id                uuid primary key default gen_random_uuid(),
  tenant_id         uuid not null default iot.current_tenant_id(),
  device_id         uuid not null,
  sensor_type       text not null references iot.sensor_types (sensor_type) on update cascade,
  unit              text not null,
  protocol_address  text,
  scale             double precision not null default 1,
  value_offset      double precision not null default 0,
  normal_min        double precision,
  normal_max        double precision,
  is_active         boolean not null default true,
  created_at        timestamptz not null default now(),
  updated_at        timestamptz not null default now(),
  constraint device_channels_tenant_id_id_key unique (tenant_id, id),
  constraint device_channels_device_fkey foreign key (tenant_id, device_id)
    references iot.iot_devices (tenant_id, id) on delete cascade,
  -- A reading names its channel by (deviceId, sensorType).
  constraint device_channels_sensor_type_per_device_key unique (device_id, sensor_type),
  constraint device_channels_sensor_type_format check (sensor_type ~ '^[a-z][a-z0-9_]{0,62}$'),
  constraint device_channels_unit_not_blank check (btrim(unit) <> ''),
  constraint device_channels_scale_nonzero check (scale <> 0 and scale = scale),
  constraint device_channels_normal_range_ordered check (normal_min < normal_max)
);
comment on table iot.device_channels is
  'One measured quantity of a device (temperature, vibration, pressure, speed, count...). value = raw * scale + value_offset for polled protocols.';
comment on column iot.device_channels.protocol_address is 'Where a polled protocol reads it: an OPC UA NodeId (ns=2;s=Press.Temp) or a Modbus address (holding:40001).';
comment on column iot.device_channels.normal_min is 'Lower end of the normal operating range; null = use the sensor type default.';
comment on column iot.device_channels.normal_max is 'Upper end of the normal operating range; null = use the sensor type default.';

-- Row-level security: a tenant sees and changes only its own rows.
do $$
declare
  t text;
begin
  foreach t in array array['facilities', 'work_centers', 'iot_devices', 'device_channels'] loop
    execute format('alter table iot.%I enable row level security', t);
    execute format('create policy select_own on iot.%I for select using (tenant_id = any ((select iot.current_tenant_ids())::uuid[]))', t);
    execute format('create policy insert_own on iot.%I for insert to iot_operator with check (tenant_id = any ((select iot.current_tenant_ids())::uuid[]))', t);
    execute format('create policy update_own on iot.%I for update to iot_operator using (tenant_id = any ((select iot.current_tenant_ids())::uuid[])) with check (tenant_id = any ((select iot.current_tenant_ids())::uuid[]))', t);
    execute format('create policy delete_own on iot.%I for delete to iot_operator using (tenant_id = any ((select iot.current_tenant_ids())::uuid[]))', t);
  end loop;
end $$;

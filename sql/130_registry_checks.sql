-- Registry checks that run as triggers. They are security definer because the caller (an API
-- operator) has no access to iot_private, where the checks live; the search_path is pinned.

create or replace function iot_private.tg_iot_devices__check_connection_config() returns trigger
  language plpgsql security definer
  set search_path = pg_catalog, pg_temp
as $$
declare
  -- connection_config_problem (migration 000002) knows each type's keys; sparkplug_config_problem
  -- (sql/143_sparkplug.sql) the MQTT device's optional `sparkplug` key.
  problem text := coalesce(iot_private.connection_config_problem(new.connection_type, new.connection_config),
                           iot_private.sparkplug_config_problem(new.connection_type, new.connection_config));
begin
  if problem is not null then
    raise exception 'device %: %', new.device_code, problem using errcode = 'IOT01';
  end if;
  return new;
end
$$;

-- facility_id is the work center's facility: filled when left out; a different one is refused
-- (error IOT01) rather than stored inconsistent.
create or replace function iot_private.tg_iot_devices__set_facility() returns trigger
  language plpgsql security definer
  set search_path = pg_catalog, pg_temp
as $$
declare
  wc_facility uuid;
begin
  select w.facility_id into wc_facility from iot.work_centers w
   where w.id = new.work_center_id and w.tenant_id = new.tenant_id;
  if wc_facility is null then
    return new;  -- the foreign key reports the unknown work center
  end if;
  if new.facility_id is not null and new.facility_id <> wc_facility
     and (tg_op = 'INSERT' or new.facility_id is distinct from old.facility_id) then
    raise exception 'device %: facility_id % is not the facility of work center %', new.device_code, new.facility_id, new.work_center_id
      using errcode = 'IOT01';
  end if;
  new.facility_id := wc_facility;
  return new;
end
$$;
drop trigger if exists _050_set_facility on iot.iot_devices;
create trigger _050_set_facility before insert or update of work_center_id, facility_id on iot.iot_devices
  for each row execute function iot_private.tg_iot_devices__set_facility();

-- A work center moved to another facility takes its devices along.
create or replace function iot_private.tg_work_centers__move_devices() returns trigger
  language plpgsql security definer
  set search_path = pg_catalog, pg_temp
as $$
begin
  update iot.iot_devices d set facility_id = new.facility_id
   where d.work_center_id = new.id and d.facility_id <> new.facility_id;
  return null;
end
$$;
drop trigger if exists _500_move_devices on iot.work_centers;
create trigger _500_move_devices after update of facility_id on iot.work_centers
  for each row when (old.facility_id is distinct from new.facility_id)
  execute function iot_private.tg_work_centers__move_devices();

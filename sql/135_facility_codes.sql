-- Facility codes are unique across tenants because MQTT topics name a facility by code alone
-- (facility/{facilityCode}/...). The unique constraint's own error (23505, naming
-- facilities_facility_code_key) told tenant B that some other tenant had the code (issue 7,
-- finding 13). This check answers the same for every taken code, the caller's own or another
-- tenant's: error IOT10 "facility code X is not available". One answer for both cases means no
-- branch, wording or timing can tell them apart; a tenant sees its own facilities anyway.
-- Which tenant's facility a topic reaches is decided by who registered the code first: bind each
-- device's broker credentials to its facility's topics (deploy/mosquitto/acl) and create them
-- only after the facility is registered by the right tenant.
-- The check is for tenant callers (API sessions, SET ROLE to an API role). The owner's own sessions
-- (seeds, migrations, an administrator in psql) see every tenant anyway and keep the constraint's
-- plain behaviour, so `insert ... on conflict (facility_code) do update` upserts still work there
-- (a BEFORE trigger runs before ON CONFLICT is resolved and would refuse them).
create or replace function iot_private.tg_facilities__check_code_available() returns trigger
  language plpgsql security definer  -- sees every tenant's facilities (RLS shows only the caller's)
  set search_path = pg_catalog, pg_temp
as $$
begin
  if tg_op = 'UPDATE' and new.facility_code is not distinct from old.facility_code then
    return new;
  end if;
  -- (The role setting is the session's SET ROLE, unchanged inside this security definer function.)
  if coalesce(pg_catalog.current_setting('role', true), 'none') not in ('iot_operator', 'iot_analyst', 'iot_anonymous') then
    return new;
  end if;
  -- Two transactions claiming the same code queue here, so the second one sees the first's row
  -- (a fresh snapshot per statement) and gets IOT10 instead of the constraint's 23505.
  perform pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtext('iot.facilities.facility_code'), pg_catalog.hashtext(new.facility_code));
  if exists (select 1 from iot.facilities f where f.facility_code = new.facility_code and f.id <> new.id) then
    raise exception 'facility code % is not available', new.facility_code
      using errcode = 'IOT10',
            hint = 'Facility codes are unique across all tenants because MQTT topics carry no tenant; choose another code.';
  end if;
  return new;
end
$$;
drop trigger if exists _040_check_code_available on iot.facilities;
create trigger _040_check_code_available before insert or update of facility_code on iot.facilities
  for each row execute function iot_private.tg_facilities__check_code_available();

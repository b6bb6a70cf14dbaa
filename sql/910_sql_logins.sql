-- SQL logins for analysts (psql, notebooks, BI tools): one call makes a login that sees its
-- tenants' rows in schema iot and finds those names without a schema prefix.
--   select iot_private.set_analyst_login('alice', array['demo'], 'a long password');
-- Security invoker: creating roles needs a caller that may create roles (a superuser, or the
-- database owner holding CREATEROLE); nobody else may execute it. `iot analyst-login` calls it.

create or replace function iot_private.set_analyst_login(login_name text, tenant_codes text[], login_password text default null)
  returns void
  language plpgsql
  set search_path = pg_catalog, pg_temp
as $$
declare
  existing pg_catalog.pg_roles%rowtype;
  unknown text[];
begin
  if login_name is null or login_name !~ '^[a-z_][a-z0-9_]{0,62}$' then
    raise exception 'analyst login name % is invalid: expected lower-case letters, digits and _ (at most 63)', pg_catalog.quote_literal(login_name)
      using errcode = '22023';
  end if;
  if login_name like 'pg\_%' or login_name in ('iot_authenticator', 'iot_anonymous', 'iot_operator', 'iot_analyst') then
    raise exception 'analyst login name % is reserved', login_name using errcode = '42939';
  end if;
  if coalesce(pg_catalog.cardinality(tenant_codes), 0) = 0 then
    raise exception 'an analyst login needs at least one tenant code' using errcode = '22023';
  end if;
  select array_agg(c) into unknown
    from pg_catalog.unnest(tenant_codes) c
   where not exists (select 1 from iot.tenants t where t.tenant_code = c);
  if unknown is not null then
    raise exception 'no tenant with code %', pg_catalog.array_to_string(unknown, ', ')
      using errcode = 'IOT04', hint = 'tenant codes are in iot.tenants.tenant_code';
  end if;

  select * into existing from pg_catalog.pg_roles r where r.rolname = login_name;
  if found then
    -- Such roles see every tenant whatever the mapping says: refuse rather than mislead.
    if existing.rolsuper or existing.rolbypassrls
       or existing.oid = (select d.datdba from pg_catalog.pg_database d where d.datname = pg_catalog.current_database()) then
      raise exception 'role % is a superuser, bypasses row security or owns the database: it cannot be an analyst login limited to tenants', login_name
        using errcode = '42939';
    end if;
    execute pg_catalog.format('alter role %I login', login_name);
  elsif login_password is null then
    raise exception 'a new analyst login needs a password' using errcode = '22023';
  else
    execute pg_catalog.format('create role %I login', login_name);
  end if;
  if login_password is not null then
    execute pg_catalog.format('alter role %I password %L', login_name, login_password);
  end if;
  execute pg_catalog.format('grant iot_analyst to %I', login_name);
  -- Unqualified names (`select * from sensor_readings`) resolve in iot, then public (extensions).
  execute pg_catalog.format('alter role %I in database %I set search_path = iot, public', login_name, pg_catalog.current_database());

  -- Exactly these tenants from now on.
  delete from iot_private.sql_role_tenants m where m.role_name = login_name::name;
  insert into iot_private.sql_role_tenants (role_name, tenant_id)
  select login_name::name, t.id from iot.tenants t where t.tenant_code = any (tenant_codes);
end
$$;
comment on function iot_private.set_analyst_login(text, text[], text) is
  'Creates or updates a SQL LOGIN role for an analyst: member of iot_analyst, mapped to exactly the given tenants in iot_private.sql_role_tenants, search_path iot so unqualified names work. A null password keeps the existing one.';

revoke all on function iot_private.set_analyst_login(text, text[], text) from public;

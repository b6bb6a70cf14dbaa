-- Which tenants the caller may see: the one function every tenant filter goes through.
--  - API sessions: the API's login is a member of iot_authenticator and each request switches to
--    one of the API roles (SET ROLE); the tenant comes from the verified JWT claim only then.
--  - Superusers and the database owner (the embedded default login, migrations, the worker and the
--    ingestors) see every tenant: they can read the raw tables anyway, and an analyst who connects
--    with the only login a new install has must not find empty views beside full registry tables.
--  - Any other login (analysts, Grafana) sees the tenants mapped to it in iot_private.sql_role_tenants;
--    it could set the JWT setting itself, so that setting is ignored for it.
create or replace function iot.current_tenant_ids() returns uuid[]
  language sql stable security definer
  set search_path = pg_catalog, pg_temp
as $$
  select case
    when pg_catalog.pg_has_role(session_user, 'iot_authenticator', 'member')
         and pg_catalog.current_setting('role', true) in ('iot_anonymous', 'iot_operator', 'iot_analyst') then
      coalesce(array_remove(array[nullif(pg_catalog.current_setting('jwt.claims.tenant_id', true), '')::uuid], null), '{}')
    when exists (select 1 from pg_catalog.pg_roles r where r.rolname = session_user and r.rolsuper)
         or pg_catalog.pg_has_role(session_user,
              (select d.datdba from pg_catalog.pg_database d where d.datname = pg_catalog.current_database()), 'member') then
      coalesce((select array_agg(t.id) from iot.tenants t), '{}')
    else
      coalesce((
        select array_agg(distinct t.id)
        from iot_private.sql_role_tenants m
        join iot.tenants t on m.tenant_id is null or t.id = m.tenant_id
        where pg_catalog.pg_has_role(session_user, m.role_name, 'member')
      ), '{}')
  end
$$;
comment on function iot.current_tenant_ids() is
  'Tenants the caller may see: the JWT tenant claim for API requests, every tenant for superusers and the database owner, iot_private.sql_role_tenants for other SQL logins.';

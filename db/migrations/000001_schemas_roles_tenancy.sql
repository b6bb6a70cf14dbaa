-- Schemas, roles and the one function every tenant check goes through.
-- The migrate runner sets `iot.tier` (1, 2 or 3) for this transaction; see src/lib/db/tier.ts.

create schema iot;  -- exposed through GraphQL and to analysts
-- iot_private (raw hypertables, staging, dead letters, ingest state; never exposed) is made by the
-- migrate runner before this file, because it keeps its migration log there.

comment on schema iot is 'Plant telemetry: registry, events, health, alerts, and tenant-filtered telemetry views.';
comment on schema iot_private is 'Internal: raw telemetry, rollups, staging, dead letters. Not exposed.';

-- Roles are cluster-wide, so create them only when missing (many databases may share a cluster).
do $$
declare
  r text;
begin
  foreach r in array array['iot_authenticator', 'iot_anonymous', 'iot_operator', 'iot_analyst'] loop
    if not exists (select 1 from pg_roles where rolname = r) then
      execute format('create role %I nologin', r);
    end if;
  end loop;
end $$;

-- The API connects as a member of iot_authenticator and switches to the role in the JWT.
grant iot_anonymous, iot_operator, iot_analyst to iot_authenticator;
do $$
begin
  if not pg_has_role(current_user, 'iot_authenticator', 'member') then
    execute format('grant iot_authenticator to %I', current_user);
  end if;
end $$;

revoke all on schema iot_private from public;
grant usage on schema iot to iot_anonymous, iot_operator, iot_analyst;

-- Deployment facts fixed at first migrate (tier) and tunables read by SQL functions.
create table iot_private.settings (
  key        text primary key,
  value      text not null,
  updated_at timestamptz not null default now()
);
comment on table iot_private.settings is 'Key/value settings: timescale_tier (fixed at first migrate) and tunables read by SQL.';

insert into iot_private.settings (key, value) values ('timescale_tier', current_setting('iot.tier'));

do $$
begin
  if current_setting('iot.tier')::int < 3 then
    create extension if not exists timescaledb;
  end if;
end $$;

create table iot.tenants (
  id          uuid primary key default gen_random_uuid(),
  tenant_code text not null,
  name        text not null,
  created_at  timestamptz not null default now(),
  constraint tenants_tenant_code_key unique (tenant_code),
  constraint tenants_tenant_code_format check (tenant_code ~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$'),
  constraint tenants_name_not_blank check (btrim(name) <> '')
);

-- SQL logins (analysts, Grafana) see the tenants mapped to them here; a null tenant_id means all tenants.
create table iot_private.sql_role_tenants (
  role_name name not null,
  tenant_id uuid references iot.tenants (id) on delete cascade,
  constraint sql_role_tenants_key unique nulls not distinct (role_name, tenant_id)
);
comment on table iot_private.sql_role_tenants is
  'Which tenants a direct SQL login (analyst, Grafana) may see. tenant_id null = every tenant.';

-- The single source of "which tenants may the caller see".
-- API sessions (members of iot_authenticator) get the tenant from the verified JWT claim, which
-- PostGraphile sets as jwt.claims.tenant_id. Any other login could set that setting itself, so it is
-- ignored for them and their tenants come from iot_private.sql_role_tenants instead.
create function iot.current_tenant_ids() returns uuid[]
  language sql stable security definer
  set search_path = pg_catalog, pg_temp
as $$
  select case
    when pg_catalog.pg_has_role(session_user, 'iot_authenticator', 'member') then
      coalesce(array_remove(array[nullif(current_setting('jwt.claims.tenant_id', true), '')::uuid], null), '{}')
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
  'Tenants the caller may see: the JWT tenant claim for API sessions, iot_private.sql_role_tenants for SQL logins.';

create function iot.current_tenant_id() returns uuid
  language sql stable
  set search_path = pg_catalog, pg_temp
as $$ select (iot.current_tenant_ids())[1] $$;
comment on function iot.current_tenant_id() is 'The caller''s tenant when it has exactly one in scope (API sessions); used as a default on insert.';

alter table iot.tenants enable row level security;
create policy select_own on iot.tenants for select using (id = any ((select iot.current_tenant_ids())::uuid[]));

-- Run by the one-shot `grafana-grant` service after every successful `migrate` (the iot_analyst role
-- and iot_private.sql_role_tenants only exist once the app has migrated). Idempotent, so it is safe on
-- every `docker compose up`; it also (re)sets the password, so changing GRAFANA_DB_PASSWORD in .env
-- and running `docker compose up -d` rotates it.
\set ON_ERROR_STOP on
set client_min_messages = warning;
\getenv grafana_password GRAFANA_DB_PASSWORD

-- The init script normally made the login; this covers volumes created before it existed.
select format('create role grafana login password %L', :'grafana_password')
where not exists (select from pg_roles where rolname = 'grafana') \gexec
alter role grafana with login password :'grafana_password';

-- Dashboards only read; a runaway query (a year at 1-minute resolution) is cut off.
alter role grafana set default_transaction_read_only = on;
alter role grafana set statement_timeout = '60s';

-- Read access to the iot schema (views filter by tenant) ...
grant iot_analyst to grafana;
-- ... and every tenant. For a per-tenant Grafana, map the role to tenant ids instead of null.
insert into iot_private.sql_role_tenants (role_name, tenant_id) values ('grafana', null)
on conflict do nothing;

-- Per-tenant NOTIFY channel names that SQL logins cannot name (issue 7, finding 11).
-- LISTEN needs no privilege: any login may listen on any channel it can spell, and channels named
-- after the tenant id ('iot_events:<tenant uuid>') let an analyst of tenant B hear tenant A's events
-- (and NOTIFY forged ones to A's dashboards). So each tenant's channels carry a random key instead,
-- kept here in iot_private, which SQL logins cannot read. The ingest batch function and the event
-- trigger look the key up per batch/event; the API looks it up once per tenant and caches it
-- (src/server/notify-channels.ts). Rotating a leaked key: delete the tenant's row, restart the API.
-- (A table in sql/ rather than db/migrations: its rows are regenerable keys, not data worth a
-- migration; `if not exists` keeps the keys across every migrate.)
create table if not exists iot_private.notify_channels (
  tenant_id   uuid not null,
  channel_key text not null,
  created_at  timestamptz not null default now(),
  constraint notify_channels_pkey primary key (tenant_id),
  constraint notify_channels_tenant_fkey foreign key (tenant_id) references iot.tenants (id) on delete cascade,
  constraint notify_channels_channel_key_key unique (channel_key),
  constraint notify_channels_channel_key_format check (channel_key ~ '^[0-9a-f]{32}$')
);
comment on table iot_private.notify_channels is
  'Random per-tenant key of the NOTIFY channels iot_readings:<key> and iot_events:<key>, so SQL logins cannot LISTEN to another tenant.';
revoke all on iot_private.notify_channels from public;

-- The channel for one kind of notice of one tenant: '<prefix>:<key>' (45 bytes at most, under
-- PostgreSQL's 63-byte channel limit). The key is made on first use (122 random bits from
-- gen_random_uuid, which uses the server's strong random source).
create or replace function iot_private.notify_channel(prefix text, tenant uuid) returns text
  language plpgsql volatile security definer
  set search_path = pg_catalog, pg_temp
as $$
declare
  key text;
begin
  if prefix is null or prefix !~ '^[a-z_]{1,20}$' then
    raise exception 'notify channel prefix % is invalid: expected 1 to 20 lower-case letters or _', pg_catalog.quote_nullable(prefix)
      using errcode = '22023';
  end if;
  select c.channel_key into key from iot_private.notify_channels c where c.tenant_id = tenant;
  if key is null then
    if not exists (select 1 from iot.tenants t where t.id = tenant) then
      raise exception 'no tenant %', tenant using errcode = 'IOT04';
    end if;
    insert into iot_private.notify_channels (tenant_id, channel_key)
    values (tenant, pg_catalog.replace(pg_catalog.gen_random_uuid()::text, '-', ''))
    on conflict (tenant_id) do nothing;
    select c.channel_key into key from iot_private.notify_channels c where c.tenant_id = tenant;
  end if;
  return prefix || ':' || key;
end
$$;
comment on function iot_private.notify_channel(text, uuid) is
  'NOTIFY channel <prefix>:<random tenant key> for a tenant (made on first use). Only the schema owner (ingestors, worker, API) may call it.';
revoke all on function iot_private.notify_channel(text, uuid) from public;

-- Existing tenants get their key now, so the first batch after an upgrade does not insert it.
insert into iot_private.notify_channels (tenant_id, channel_key)
select t.id, replace(gen_random_uuid()::text, '-', '') from iot.tenants t
on conflict (tenant_id) do nothing;

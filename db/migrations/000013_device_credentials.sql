-- Device API keys for REST ingest (issue 9, part 4): a key authenticates exactly one REST_API
-- device, and the REST endpoint lets it write only that device's channels.
--
-- The key is `iotk_<key id, 32 hex>_<secret, 43 base64url characters = 32 bytes>`. Only the key id,
-- a 16-byte salt and sha256(salt || secret) are stored; the key itself is returned once, at creation.
-- A fast hash is right here (not scrypt): the secret is 32 random bytes, not a password a person
-- chose, so there is nothing to guess from a dictionary, and 2^244 tries are out of reach however
-- fast each one is. A slow hash would only make every request cost the server tens of milliseconds.
-- The secret is made from two gen_random_uuid() (PostgreSQL's strong random source: 244 random bits),
-- hashed into 32 bytes, so keys can be made from psql as well as from `iot device-key`.

create table iot_private.device_api_keys (
  id          uuid primary key default gen_random_uuid(),
  tenant_id   uuid not null,
  device_id   uuid not null,
  label       text,
  salt        bytea not null,
  key_hash    bytea not null,
  created_at  timestamptz not null default now(),
  revoked_at  timestamptz,
  constraint device_api_keys_tenant_id_id_key unique (tenant_id, id),
  constraint device_api_keys_device_fkey foreign key (tenant_id, device_id)
    references iot.iot_devices (tenant_id, id) on delete cascade,
  constraint device_api_keys_salt_size check (octet_length(salt) = 16),
  constraint device_api_keys_hash_size check (octet_length(key_hash) = 32),
  constraint device_api_keys_label_size check (length(label) <= 200)
);
create index device_api_keys_device_id_idx on iot_private.device_api_keys (device_id);
comment on table iot_private.device_api_keys is
  'API keys of REST_API devices: key id, salt and sha256(salt || secret) only; the key is shown once when made. A revoked key (revoked_at set) is refused within REST_INGEST_KEY_CACHE_MS.';
comment on column iot_private.device_api_keys.id is 'The key id: the 32 hex characters after iotk_ in the key.';
comment on column iot_private.device_api_keys.key_hash is 'sha256(salt || the 32 secret bytes of the key).';
comment on column iot_private.device_api_keys.revoked_at is 'When the key was revoked; null while it is valid.';

-- Never exposed; RLS as every relational table has, so a role granted it by mistake sees nothing.
alter table iot_private.device_api_keys enable row level security;
create policy select_own on iot_private.device_api_keys for select
  using (tenant_id = any ((select iot.current_tenant_ids())::uuid[]));

-- Makes a key for a REST_API device, for the owner (the CLI, psql). Returns it once.
create function iot_private.create_device_api_key(device uuid, key_label text default null,
  out key_id uuid, out api_key text)
  language plpgsql volatile security definer
  set search_path = pg_catalog, pg_temp
as $$
declare
  d record;
  secret bytea;
  key_salt bytea;
begin
  select x.id, x.tenant_id, x.device_code, x.connection_type into d from iot.iot_devices x where x.id = device;
  if not found then
    raise exception 'no device with id %', device using errcode = 'P0002';
  end if;
  if d.connection_type <> 'REST_API' then
    raise exception 'device % has connection type %, not REST_API: API keys are only for REST_API devices', d.device_code, d.connection_type
      using errcode = '22023', hint = 'update iot.iot_devices set connection_type = ''REST_API'' first, if this device posts over HTTP';
  end if;
  secret := sha256(decode(replace(gen_random_uuid()::text || gen_random_uuid()::text, '-', ''), 'hex'));
  key_salt := substring(decode(replace(gen_random_uuid()::text, '-', ''), 'hex') from 1 for 16);
  insert into iot_private.device_api_keys (tenant_id, device_id, label, salt, key_hash)
  values (d.tenant_id, d.id, key_label, key_salt, sha256(key_salt || secret))
  returning id into key_id;
  api_key := 'iotk_' || replace(key_id::text, '-', '') || '_' ||
             rtrim(translate(encode(secret, 'base64'), '+/', '-_'), '=');
end
$$;
comment on function iot_private.create_device_api_key(uuid, text) is
  'Makes an API key for a REST_API device and returns it (key_id, api_key) once; only its salted SHA-256 is kept. 22023 when the device is not REST_API, P0002 when there is no such device.';

create function iot_private.revoke_device_api_key(key uuid) returns boolean
  language sql volatile security definer
  set search_path = pg_catalog, pg_temp
as $$
  with gone as (
    update iot_private.device_api_keys set revoked_at = now() where id = key and revoked_at is null returning 1
  )
  select exists (select 1 from gone)
$$;
comment on function iot_private.revoke_device_api_key(uuid) is
  'Revokes an API key (true when it was valid until now). The REST endpoint refuses it within REST_INGEST_KEY_CACHE_MS.';

-- The same for API operators (GraphQL mutations createDeviceApiKey, revokeDeviceApiKey): only for
-- devices of their own tenant; another tenant's device is "no device", as if it did not exist.
create function iot.create_device_api_key(device_id uuid, label text default null,
  out key_id uuid, out api_key text)
  language plpgsql volatile security definer
  set search_path = pg_catalog, pg_temp
as $$
begin
  if not exists (select 1 from iot.iot_devices d
                 where d.id = create_device_api_key.device_id and d.tenant_id = any (iot.current_tenant_ids())) then
    raise exception 'no device with id % in your tenant', create_device_api_key.device_id using errcode = 'P0002';
  end if;
  select k.key_id, k.api_key into key_id, api_key
  from iot_private.create_device_api_key(create_device_api_key.device_id, create_device_api_key.label) k;
end
$$;
comment on function iot.create_device_api_key(uuid, text) is
  'Makes an API key for a REST_API device of your tenant; the key (api_key) is returned this once and never again. POST readings with it to /ingest/readings (Authorization: Bearer <api_key>).';

create function iot.revoke_device_api_key(key_id uuid) returns boolean
  language plpgsql volatile security definer
  set search_path = pg_catalog, pg_temp
as $$
begin
  if not exists (select 1 from iot_private.device_api_keys k
                 where k.id = revoke_device_api_key.key_id and k.tenant_id = any (iot.current_tenant_ids())) then
    raise exception 'no API key with id % in your tenant', revoke_device_api_key.key_id using errcode = 'P0002';
  end if;
  return iot_private.revoke_device_api_key(revoke_device_api_key.key_id);
end
$$;
comment on function iot.revoke_device_api_key(uuid) is
  'Revokes an API key of a device of your tenant (true when it was valid until now); the REST endpoint refuses it within seconds.';

revoke all on function iot_private.create_device_api_key(uuid, text) from public;
revoke all on function iot_private.revoke_device_api_key(uuid) from public;
revoke all on function iot.create_device_api_key(uuid, text) from public;
revoke all on function iot.revoke_device_api_key(uuid) from public;
grant execute on function iot.create_device_api_key(uuid, text) to iot_operator;
grant execute on function iot.revoke_device_api_key(uuid) to iot_operator;

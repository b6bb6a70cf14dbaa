-- Live events (issue 8): what the database needs to push every change to dashboards over
-- LISTEN/NOTIFY (the notices themselves are sent by sql/600_live_events.sql and sql/110_ingest.sql).

-- SPC: a stable name for each control chart, the seed's spcNewMeasurement(parameterCode).
-- Default <device_code>.<SENSOR_TYPE> (PRESS-A-01.TEMPERATURE); a recomputed limit keeps the code
-- of the channel's previous one (trigger in sql/600_live_events.sql). Existing rows: back-filled.
alter table iot.spc_control_limits add column parameter_code text;
update iot.spc_control_limits l
   set parameter_code = d.device_code || '.' || c.sensor_type
  from iot.device_channels c
  join iot.iot_devices d on d.id = c.device_id
 where c.id = l.channel_id;
alter table iot.spc_control_limits alter column parameter_code set not null;
alter table iot.spc_control_limits add constraint spc_control_limits_parameter_code_format
  check (parameter_code ~ '^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$');
-- Device codes are unique per tenant and a channel has one active limit, so the defaults never collide.
create unique index spc_control_limits_parameter_code_active_key
  on iot.spc_control_limits (tenant_id, parameter_code) where is_active;
comment on column iot.spc_control_limits.parameter_code is
  'Name of the control chart, unique per tenant among active limits (spcNewMeasurement(parameterCode)). Default <device code>.<SENSOR TYPE>; a recomputed limit keeps the code of the channel''s previous limit.';

-- Payloads too big for one NOTIFY (PostgreSQL refuses 8000 bytes and more). The notice then
-- carries this row's id; each API instance fetches it once through iot_private.live_event_payload().
-- Rows are needed for seconds; the live_events__prune job deletes those older than an hour.
create table iot_private.live_event_outbox (
  id          bigint generated always as identity,
  tenant_id   uuid not null,
  kind        text not null,
  payload     jsonb not null,
  created_at  timestamptz not null default now(),
  constraint live_event_outbox_pkey primary key (id),
  constraint live_event_outbox_tenant_fkey foreign key (tenant_id) references iot.tenants (id) on delete cascade,
  constraint live_event_outbox_kind_format check (kind ~ '^[a-z_]{1,20}$')
);
create index live_event_outbox_created_at_idx on iot_private.live_event_outbox (created_at);
comment on table iot_private.live_event_outbox is
  'Live-event payloads of 7,900 bytes or more, NOTIFYed by id ({"outbox": id}); read once per API instance with iot_private.live_event_payload(id); pruned after an hour.';
revoke all on iot_private.live_event_outbox from public;

-- sensorReadingUpdated: at most one notice per device per live_reading_interval_ms. One row per
-- device, written at most once per ingest batch (never per reading), after the device's heartbeat
-- row is locked, so parallel sink writers take the two locks in the same order. Trailing notices
-- for devices that fell silent: iot_private.flush_live_readings() (sql/600_live_events.sql).
create table iot_private.live_reading_state (
  device_id        uuid not null,
  tenant_id        uuid not null,
  last_notified_at timestamptz not null,
  pending_count    bigint not null default 0,
  notified         boolean not null default true,
  constraint live_reading_state_pkey primary key (device_id),
  constraint live_reading_state_device_fkey foreign key (tenant_id, device_id)
    references iot.iot_devices (tenant_id, id) on delete cascade,
  constraint live_reading_state_pending_nonnegative check (pending_count >= 0)
) with (fillfactor = 50);  -- every batch updates its devices' rows: room for HOT updates in place
comment on table iot_private.live_reading_state is
  'Per device: when its last live-readings notice was sent and how many readings were stored since (pending_count; when notified, the count that notice carried).';
comment on column iot_private.live_reading_state.notified is
  'True when the latest batch sent a notice (pending_count is then the count it carried, and the next batch starts from 0).';
revoke all on iot_private.live_reading_state from public;

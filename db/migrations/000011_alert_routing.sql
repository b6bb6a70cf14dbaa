-- Alert routing (issue 8, part 5): rules per tenant, one delivery row per rule, alert and recipient,
-- and the seed's system alerts. The logic (matching, rendering, triggers, grants) is in
-- sql/700_alert_routing.sql; this file holds the tables and their policies.

-- Who the maintenance team is, per tenant: the default rules send to these. Null: not configured,
-- and the default rules that need it exist but are disabled until it is set.
alter table iot.tenants
  add column maintenance_team_email text,
  add column maintenance_team_phone text,
  add constraint tenants_maintenance_team_email_format
    check (maintenance_team_email ~ '^[^@[:space:]<>,;"]+@[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$'),
  add constraint tenants_maintenance_team_phone_format check (maintenance_team_phone ~ '^\+[1-9][0-9]{6,14}$');
comment on column iot.tenants.maintenance_team_email is 'E-mail address of the maintenance team: the default e-mail alert rules send to it (null: those rules are disabled).';
comment on column iot.tenants.maintenance_team_phone is 'Phone number (E.164, +4930123456) of the maintenance team on call: the default SMS rule sends to it (null: that rule is disabled).';

create table iot.alert_routing_rules (
  id            uuid primary key default gen_random_uuid(),
  tenant_id     uuid not null default iot.current_tenant_id(),
  name          text not null,
  source        text not null,
  event_types   text[],
  min_severity  text not null default 'INFO',
  urgencies     text[],
  channel       text not null,
  recipients    text[] not null default '{}',
  is_enabled    boolean not null default true,
  builtin_key   text,
  created_at    timestamptz not null default now(),
  updated_at    timestamptz not null default now(),
  constraint alert_routing_rules_tenant_fkey foreign key (tenant_id) references iot.tenants (id) on delete cascade,
  constraint alert_routing_rules_tenant_id_id_key unique (tenant_id, id),
  constraint alert_routing_rules_name_key unique (tenant_id, name),
  constraint alert_routing_rules_builtin_key_key unique (tenant_id, builtin_key),
  constraint alert_routing_rules_name_not_blank check (btrim(name) <> '' and length(name) <= 200),
  constraint alert_routing_rules_source_valid check (source in ('EQUIPMENT_EVENT', 'PREDICTIVE_ALERT', 'SYSTEM_ALERT')),
  constraint alert_routing_rules_min_severity_valid check (min_severity in
    ('INFO', 'WARNING', 'ERROR', 'LOW', 'MEDIUM', 'HIGH', 'CRITICAL')),
  constraint alert_routing_rules_urgencies_valid check (urgencies <@ array['ROUTINE', 'SOON', 'URGENT', 'IMMEDIATE']
    and cardinality(urgencies) > 0),
  constraint alert_routing_rules_event_types_size check (cardinality(event_types) between 1 and 50),
  constraint alert_routing_rules_channel_valid check (channel in ('EMAIL', 'SMS', 'WEBHOOK')),
  constraint alert_routing_rules_recipients_size check (cardinality(recipients) <= 50),
  constraint alert_routing_rules_enabled_has_recipients check (not is_enabled or cardinality(recipients) > 0)
);
create index alert_routing_rules_tenant_source_idx on iot.alert_routing_rules (tenant_id, source) where is_enabled;

-- The rules every tenant gets (sql/700 copies them for new tenants; below for existing ones).
-- contact: which maintenance_team_* column of the tenant gives the recipient.
create table iot_private.default_alert_routing_rules (
  builtin_key  text primary key,
  name         text not null,
  source       text not null,
  min_severity text not null,
  urgencies    text[],
  channel      text not null,
  contact      text not null,
  constraint default_alert_routing_rules_contact_valid check (contact in ('email', 'phone'))
);
comment on table iot_private.default_alert_routing_rules is
  'The alert routing rules each tenant starts with (the seed''s routing: e-mail critical events to the maintenance team, SMS for immediate-urgency alerts).';
insert into iot_private.default_alert_routing_rules values
  ('MAINTENANCE_EMAIL_CRITICAL_EVENTS', 'Maintenance team e-mail: critical equipment events', 'EQUIPMENT_EVENT', 'CRITICAL', null, 'EMAIL', 'email'),
  ('MAINTENANCE_EMAIL_CRITICAL_ALERTS', 'Maintenance team e-mail: critical predictive-maintenance alerts', 'PREDICTIVE_ALERT', 'CRITICAL', null, 'EMAIL', 'email'),
  ('MAINTENANCE_EMAIL_SYSTEM_ALERTS', 'Maintenance team e-mail: critical and high system alerts', 'SYSTEM_ALERT', 'HIGH', null, 'EMAIL', 'email'),
  ('MAINTENANCE_SMS_IMMEDIATE_ALERTS', 'Maintenance team SMS: immediate-urgency predictive-maintenance alerts', 'PREDICTIVE_ALERT', 'LOW', array['IMMEDIATE'], 'SMS', 'phone');

insert into iot.alert_routing_rules (tenant_id, name, source, min_severity, urgencies, channel, recipients, is_enabled, builtin_key)
select t.id, d.name, d.source, d.min_severity, d.urgencies, d.channel, '{}', false, d.builtin_key
from iot.tenants t cross join iot_private.default_alert_routing_rules d
on conflict do nothing;

create table iot.alert_deliveries (
  id              uuid primary key default gen_random_uuid(),
  tenant_id       uuid not null,
  rule_id         uuid,
  source          text not null,
  source_id       uuid not null,
  channel         text not null,
  recipient       text not null,
  status          text not null default 'PENDING',
  attempts        integer not null default 0,
  last_error      text,
  created_at      timestamptz not null default now(),
  last_attempt_at timestamptz,
  sent_at         timestamptz,
  constraint alert_deliveries_tenant_fkey foreign key (tenant_id) references iot.tenants (id) on delete cascade,
  constraint alert_deliveries_tenant_id_id_key unique (tenant_id, id),
  -- A deleted rule keeps its history; the delivery just no longer names it.
  constraint alert_deliveries_rule_fkey foreign key (tenant_id, rule_id)
    references iot.alert_routing_rules (tenant_id, id) on delete set null (rule_id),
  -- One delivery per rule, alert and recipient, however often the alert is routed.
  constraint alert_deliveries_dedupe_key unique (rule_id, source, source_id, recipient),
  constraint alert_deliveries_source_valid check (source in ('EQUIPMENT_EVENT', 'PREDICTIVE_ALERT', 'SYSTEM_ALERT')),
  constraint alert_deliveries_channel_valid check (channel in ('EMAIL', 'SMS', 'WEBHOOK')),
  constraint alert_deliveries_status_valid check (status in ('PENDING', 'SENT', 'FAILED', 'SUPPRESSED')),
  constraint alert_deliveries_attempts_nonnegative check (attempts >= 0),
  constraint alert_deliveries_sent_consistent check ((status = 'SENT') = (sent_at is not null))
);
create index alert_deliveries_tenant_created_idx on iot.alert_deliveries (tenant_id, created_at desc);
create index alert_deliveries_source_idx on iot.alert_deliveries (source, source_id);
create index alert_deliveries_pending_idx on iot.alert_deliveries (created_at) where status = 'PENDING';

create table iot.system_alerts (
  id              uuid primary key default gen_random_uuid(),
  tenant_id       uuid not null,
  alert_type      text not null,
  severity        text not null,
  work_center_id  uuid,
  iot_device_id   uuid,
  message         text not null,
  details         jsonb not null default '{}',
  raised_at       timestamptz not null default now(),
  last_seen_at    timestamptz not null default now(),
  occurrences     integer not null default 1,
  resolved_at     timestamptz,
  constraint system_alerts_tenant_fkey foreign key (tenant_id) references iot.tenants (id) on delete cascade,
  constraint system_alerts_tenant_id_id_key unique (tenant_id, id),
  constraint system_alerts_work_center_fkey foreign key (tenant_id, work_center_id)
    references iot.work_centers (tenant_id, id) on delete cascade,
  constraint system_alerts_iot_device_fkey foreign key (tenant_id, iot_device_id)
    references iot.iot_devices (tenant_id, id) on delete cascade,
  constraint system_alerts_alert_type_valid check (alert_type in
    ('HEALTH_CRITICAL', 'MQTT_BROKER_CONNECTION_LOST', 'HEALTH_CALCULATION_FAILED', 'HEARTBEAT_TIMEOUT')),
  -- The seed's severities, fixed per type (contract `alerting`).
  constraint system_alerts_severity_matches_type check (severity = case alert_type
    when 'HEALTH_CRITICAL' then 'CRITICAL' when 'MQTT_BROKER_CONNECTION_LOST' then 'HIGH'
    when 'HEALTH_CALCULATION_FAILED' then 'MEDIUM' when 'HEARTBEAT_TIMEOUT' then 'LOW' end),
  constraint system_alerts_message_not_blank check (btrim(message) <> ''),
  constraint system_alerts_occurrences_positive check (occurrences > 0),
  constraint system_alerts_resolved_order check (resolved_at >= raised_at)
);
-- One open alert per type and subject (tenant, work center, device): raising it again counts it.
create unique index system_alerts_one_open_key
  on iot.system_alerts (tenant_id, alert_type, work_center_id, iot_device_id) nulls not distinct where resolved_at is null;
create index system_alerts_tenant_raised_idx on iot.system_alerts (tenant_id, raised_at desc);

alter table iot.alert_routing_rules enable row level security;
create policy select_own on iot.alert_routing_rules for select using (tenant_id = any ((select iot.current_tenant_ids())::uuid[]));
create policy insert_own on iot.alert_routing_rules for insert to iot_operator with check (tenant_id = any ((select iot.current_tenant_ids())::uuid[]));
create policy update_own on iot.alert_routing_rules for update to iot_operator
  using (tenant_id = any ((select iot.current_tenant_ids())::uuid[])) with check (tenant_id = any ((select iot.current_tenant_ids())::uuid[]));
create policy delete_own on iot.alert_routing_rules for delete to iot_operator using (tenant_id = any ((select iot.current_tenant_ids())::uuid[]));

alter table iot.alert_deliveries enable row level security;
create policy select_own on iot.alert_deliveries for select using (tenant_id = any ((select iot.current_tenant_ids())::uuid[]));

alter table iot.system_alerts enable row level security;
create policy select_own on iot.system_alerts for select using (tenant_id = any ((select iot.current_tenant_ids())::uuid[]));

-- Time-series tables. On tiers 1-2 they are TimescaleDB hypertables; on tier 3 (plain PostgreSQL)
-- they are range-partitioned by time, with partitions made ahead by iot_private.ensure_partitions().
-- Hypertables and partitioned tables carry no row-level security: they live here in iot_private
-- and are reached through tenant-filtered views in iot (sql/300_telemetry_api.sql).

create table iot_private.sensor_readings (
  time        timestamptz not null,
  tenant_id   uuid not null,
  device_id   uuid not null,
  sensor_type text not null,
  value       double precision not null,
  unit        text not null,
  quality     text not null default 'GOOD',
  constraint sensor_readings_quality_valid check (quality in ('GOOD', 'UNCERTAIN', 'BAD')),
  constraint sensor_readings_value_finite check (value not in ('NaN', 'Infinity', '-Infinity'))
) partition by range (time);

create table iot_private.equipment_events (
  id              uuid not null default gen_random_uuid(),
  time            timestamptz not null default now(),
  tenant_id       uuid not null,
  work_center_id  uuid not null,
  device_id       uuid,
  sensor_type     text,
  event_type      text not null,
  severity        text not null,
  message         text not null,
  details         jsonb not null default '{}',
  acknowledged    boolean not null default false,
  acknowledged_by text,
  acknowledged_at timestamptz,
  constraint equipment_events_event_type_valid check (event_type in
    ('STARTUP', 'SHUTDOWN', 'ERROR', 'WARNING', 'MAINTENANCE_REQUIRED', 'SENSOR_OUT_OF_RANGE',
     'HEARTBEAT_TIMEOUT', 'ANOMALY_DETECTED')),
  constraint equipment_events_severity_valid check (severity in ('INFO', 'LOW', 'MEDIUM', 'HIGH', 'CRITICAL')),
  constraint equipment_events_ack_consistent check (acknowledged = (acknowledged_at is not null))
) partition by range (time);

create table iot_private.equipment_health_scores (
  time                      timestamptz not null,
  tenant_id                 uuid not null,
  work_center_id            uuid not null,
  overall_score             numeric(5,2),
  sensor_health_score       numeric(5,2),
  oee_health_score          numeric(5,2),
  quality_health_score      numeric(5,2),
  reliability_health_score  numeric(5,2),
  performance_health_score  numeric(5,2),
  health_status             text,
  score_7day_avg            numeric(5,2),
  score_30day_avg           numeric(5,2),
  score_change_7day         numeric(6,2),
  trend_direction           text,
  risk_factors              jsonb not null default '[]',
  recommended_action        text,
  details                   jsonb not null default '{}',
  constraint equipment_health_scores_status_valid check (health_status in ('EXCELLENT', 'GOOD', 'FAIR', 'POOR', 'CRITICAL')),
  constraint equipment_health_scores_trend_valid check (trend_direction in ('IMPROVING', 'STABLE', 'DEGRADING', 'RAPIDLY_DEGRADING')),
  constraint equipment_health_scores_overall_range check (overall_score between 0 and 100)
) partition by range (time);

-- Partition plan for tier 3 (also records what each table is partitioned by).
create table iot_private.partitioned_tables (
  table_name  text primary key,
  granularity text not null,
  constraint partitioned_tables_granularity_valid check (granularity in ('day', 'week', 'month'))
);
insert into iot_private.partitioned_tables values
  ('sensor_readings', 'day'), ('equipment_events', 'month'), ('equipment_health_scores', 'month');

-- Tiers 1-2: turn the partitioned shells into hypertables (TimescaleDB cannot convert a
-- partitioned table, so recreate them as plain tables with the same definition first).
do $$
declare
  t record;
  chunk interval;
begin
  if current_setting('iot.tier')::int = 3 then
    return;
  end if;
  for t in select table_name, granularity from iot_private.partitioned_tables loop
    execute format('alter table iot_private.%I rename to %I', t.table_name, t.table_name || '_shell');
    execute format('create table iot_private.%I (like iot_private.%I including all)', t.table_name, t.table_name || '_shell');
    execute format('drop table iot_private.%I', t.table_name || '_shell');
    chunk := case t.granularity when 'day' then interval '1 day' when 'week' then interval '7 days' else interval '30 days' end;
    perform create_hypertable(format('iot_private.%I', t.table_name)::regclass, 'time', chunk_time_interval => chunk);
  end loop;
end $$;

-- A QoS 1 redelivery stores one row: (device, sensor, time) is the reading's identity.
create unique index sensor_readings_device_sensor_time_key
  on iot_private.sensor_readings (device_id, time desc, sensor_type);
create index sensor_readings_tenant_time_idx on iot_private.sensor_readings (tenant_id, time desc);

create index equipment_events_work_center_time_idx on iot_private.equipment_events (work_center_id, time desc);
create index equipment_events_tenant_time_idx on iot_private.equipment_events (tenant_id, time desc);
create unique index equipment_events_id_time_key on iot_private.equipment_events (id, time);
create index equipment_events_open_idx on iot_private.equipment_events (work_center_id, event_type)
  where not acknowledged;

create unique index equipment_health_scores_work_center_time_key
  on iot_private.equipment_health_scores (work_center_id, time desc);

comment on table iot_private.sensor_readings is 'Raw telemetry. Read it through iot.sensor_readings (tenant-filtered).';
comment on table iot_private.equipment_events is 'Equipment events (thresholds, anomalies, heartbeats, operator events). Read through iot.equipment_events.';
comment on table iot_private.equipment_health_scores is 'Health score history per work center. Read through iot.equipment_health_scores.';

-- Rollup tables for tiers 2-3 (tier 1 uses continuous aggregates instead, see sql/200_rollups.sql).
-- value_sum and value_sum_sq let coarser buckets and averages be merged exactly.
do $$
declare
  g text;
begin
  foreach g in array array['1m', '1h', '1d'] loop
    execute format($f$
      create table iot_private.%I (
        bucket       timestamptz not null,
        tenant_id    uuid not null,
        device_id    uuid not null,
        sensor_type  text not null,
        reading_count bigint not null,
        value_sum    double precision not null,
        value_sum_sq double precision not null,
        value_min    double precision not null,
        value_max    double precision not null,
        constraint %I primary key (device_id, sensor_type, bucket)
      )$f$, 'sensor_readings_' || g || '_rollup', 'sensor_readings_' || g || '_rollup_pkey');
    execute format('create index %I on iot_private.%I (tenant_id, bucket desc)',
      'sensor_readings_' || g || '_rollup_tenant_bucket_idx', 'sensor_readings_' || g || '_rollup');
  end loop;
end $$;

-- How far each rollup is complete: raw rows before the watermark are folded in.
create table iot_private.rollup_watermarks (
  rollup_name text primary key,
  watermark   timestamptz not null,
  updated_at  timestamptz not null default now()
);

-- Anything the ingestors could not store, with the reason. Never silently dropped.
create table iot_private.ingest_dead_letters (
  id          bigint generated always as identity primary key,
  received_at timestamptz not null default now(),
  tenant_id   uuid,  -- known when the topic named a registered facility
  source      text not null,
  topic       text,
  payload     text,
  reason      text not null,
  constraint ingest_dead_letters_source_valid check (source in ('MQTT', 'OPC_UA', 'MODBUS', 'REST_API', 'SINK'))
);
create index ingest_dead_letters_received_at_idx on iot_private.ingest_dead_letters (received_at desc);
comment on table iot_private.ingest_dead_letters is 'Payloads and readings that could not be stored, with the reason. Read through iot.ingest_dead_letters (admins).';

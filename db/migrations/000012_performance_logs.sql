-- The seed's performance logs (issue 8, part 6): what the API and the processes did, kept in SQL
-- for DBAs and Grafana beside /metrics (which only holds the present). Plain tables: rows are
-- written in buffered batches (src/lib/perf-log.ts), rolled up hourly into
-- performance_metrics_cache and pruned by age (workers/performance__*.ts), so they stay bounded
-- without partitions. No foreign key to iot.tenants: a log row must never refuse a batch; rows of a
-- deleted tenant go with age. Functions, grants and the GraphQL @omit are in sql/720_performance_logs.sql.

create table iot.api_performance_log (
  id              bigint generated always as identity,
  logged_at       timestamptz not null default now(),
  tenant_id       uuid,
  role            text,
  actor           text,
  operation_name  text,
  operation_type  text,
  duration_ms     double precision not null,
  http_status     smallint,
  error_count     integer not null default 0,
  first_error     text,
  request_bytes   integer,
  response_bytes  integer,
  instance        text not null,
  constraint api_performance_log_pkey primary key (id),
  constraint api_performance_log_operation_type_valid check (operation_type in ('query', 'mutation', 'subscription')),
  constraint api_performance_log_duration_valid check (duration_ms >= 0),
  constraint api_performance_log_errors_valid check (error_count >= 0),
  constraint api_performance_log_clipped check (char_length(operation_name) <= 200 and char_length(first_error) <= 2000)
);
create index api_performance_log_logged_at_idx on iot.api_performance_log (logged_at);
create index api_performance_log_tenant_logged_at_idx on iot.api_performance_log (tenant_id, logged_at desc);
comment on column iot.api_performance_log.id is 'Row number, in the order rows were written.';
comment on column iot.api_performance_log.logged_at is 'When the request finished (the response was sent).';
comment on column iot.api_performance_log.tenant_id is 'Tenant of the caller''s token; null for anonymous callers and refused tokens.';
comment on column iot.api_performance_log.role is 'API role of the caller (iot_operator, iot_analyst, iot_anonymous); null when the token was refused (HTTP 401).';
comment on column iot.api_performance_log.actor is 'The token''s sub claim (user), when it has one.';
comment on column iot.api_performance_log.operation_name is 'GraphQL operation name (operationName, else the name in the document, clipped to 200 characters); null for anonymous operations.';
comment on column iot.api_performance_log.operation_type is 'query, mutation or subscription; null when the document could not be read.';
comment on column iot.api_performance_log.duration_ms is 'From the request''s arrival to the last byte of the response, in milliseconds.';
comment on column iot.api_performance_log.http_status is 'HTTP status of the response (200 also for GraphQL errors; 400 refused document, 401 token, 413 too large, 499 client gone).';
comment on column iot.api_performance_log.error_count is 'Number of GraphQL errors in the response.';
comment on column iot.api_performance_log.first_error is 'First GraphQL error message, clipped to 2000 characters.';
comment on column iot.api_performance_log.request_bytes is 'Size of the request body (Content-Length), when sent.';
comment on column iot.api_performance_log.response_bytes is 'Size of the response body in bytes.';
comment on column iot.api_performance_log.instance is 'Which API process answered: host:pid.';

create table iot.query_performance_log (
  id              bigint generated always as identity,
  logged_at       timestamptz not null default now(),
  tenant_id       uuid,
  role            text,
  actor           text,
  operation_name  text,
  operation_type  text,
  duration_ms     double precision not null,
  threshold_ms    integer not null,
  http_status     smallint,
  error_count     integer not null default 0,
  first_error     text,
  query_text      text,
  query_sha256    text,
  variable_names  text[],
  instance        text not null,
  constraint query_performance_log_pkey primary key (id),
  constraint query_performance_log_operation_type_valid check (operation_type in ('query', 'mutation', 'subscription')),
  constraint query_performance_log_duration_valid check (duration_ms >= 0 and threshold_ms >= 0),
  constraint query_performance_log_sha256_valid check (query_sha256 ~ '^[0-9a-f]{64}$'),
  constraint query_performance_log_clipped check (char_length(operation_name) <= 200 and char_length(first_error) <= 2000
    and char_length(query_text) <= 16000)
);
create index query_performance_log_logged_at_idx on iot.query_performance_log (logged_at);
create index query_performance_log_tenant_logged_at_idx on iot.query_performance_log (tenant_id, logged_at desc);
comment on column iot.query_performance_log.id is 'Row number, in the order rows were written.';
comment on column iot.query_performance_log.logged_at is 'When the slow request finished.';
comment on column iot.query_performance_log.tenant_id is 'Tenant of the caller''s token; null for anonymous callers.';
comment on column iot.query_performance_log.role is 'API role of the caller.';
comment on column iot.query_performance_log.actor is 'The token''s sub claim (user), when it has one.';
comment on column iot.query_performance_log.operation_name is 'GraphQL operation name.';
comment on column iot.query_performance_log.operation_type is 'query, mutation or subscription.';
comment on column iot.query_performance_log.duration_ms is 'From the request''s arrival to the last byte of the response, in milliseconds.';
comment on column iot.query_performance_log.threshold_ms is 'API_SLOW_QUERY_MS when it was logged: requests slower than this are written here.';
comment on column iot.query_performance_log.http_status is 'HTTP status of the response.';
comment on column iot.query_performance_log.error_count is 'Number of GraphQL errors in the response.';
comment on column iot.query_performance_log.first_error is 'First GraphQL error message, clipped to 2000 characters.';
comment on column iot.query_performance_log.query_text is 'The GraphQL document, clipped to 16000 characters. Variables are not kept (they may hold personal data): only their names.';
comment on column iot.query_performance_log.query_sha256 is 'SHA-256 (hex) of the whole document: group by it to find the same slow query sent many times.';
comment on column iot.query_performance_log.variable_names is 'Names of the variables sent with it (values are not kept).';
comment on column iot.query_performance_log.instance is 'Which API process answered: host:pid.';

create table iot.system_resource_metrics (
  id                  bigint generated always as identity,
  sampled_at          timestamptz not null default now(),
  instance            text not null,
  component           text not null,
  cpu_percent         double precision,
  rss_bytes           bigint,
  heap_used_bytes     bigint,
  heap_total_bytes    bigint,
  event_loop_lag_ms   double precision,
  load_average_1m     double precision,
  db_connections      integer,
  db_size_bytes       bigint,
  notify_queue_usage  double precision,
  constraint system_resource_metrics_pkey primary key (id),
  constraint system_resource_metrics_values_valid check (cpu_percent >= 0 and rss_bytes >= 0 and heap_used_bytes >= 0
    and event_loop_lag_ms >= 0 and db_connections >= 0 and notify_queue_usage between 0 and 1)
);
create index system_resource_metrics_sampled_at_idx on iot.system_resource_metrics (sampled_at);
create index system_resource_metrics_instance_sampled_at_idx on iot.system_resource_metrics (instance, sampled_at desc);
comment on column iot.system_resource_metrics.id is 'Row number, in the order rows were written.';
comment on column iot.system_resource_metrics.sampled_at is 'When the sample was taken.';
comment on column iot.system_resource_metrics.instance is 'Which process: host:pid.';
comment on column iot.system_resource_metrics.component is 'What the process runs (api, worker, ingest, all for `iot start`).';
comment on column iot.system_resource_metrics.cpu_percent is 'CPU used by the process since the previous sample, in percent of one core (user + system).';
comment on column iot.system_resource_metrics.rss_bytes is 'Resident memory of the process, in bytes.';
comment on column iot.system_resource_metrics.heap_used_bytes is 'JavaScript heap in use, in bytes.';
comment on column iot.system_resource_metrics.heap_total_bytes is 'JavaScript heap reserved, in bytes.';
comment on column iot.system_resource_metrics.event_loop_lag_ms is 'Event loop delay (p99 since the previous sample), in milliseconds: above ~100 ms the process is overloaded.';
comment on column iot.system_resource_metrics.load_average_1m is 'Load average of the host over one minute (0 on Windows).';
comment on column iot.system_resource_metrics.db_connections is 'Connections to this database (pg_stat_database.numbackends) when sampled.';
comment on column iot.system_resource_metrics.db_size_bytes is 'Size of this database (pg_database_size) when sampled, in bytes.';
comment on column iot.system_resource_metrics.notify_queue_usage is 'Fill of the NOTIFY queue (pg_notification_queue_usage(), 0..1): near 1 a listener is stuck and NOTIFY will fail.';

create table iot.performance_metrics_cache (
  id            bigint generated always as identity,
  bucket_start  timestamptz not null,
  bucket_width  interval not null default interval '1 hour',
  tenant_id     uuid,
  source        text not null,
  metric_key    text not null,
  unit          text not null,
  sample_count  bigint not null,
  error_count   bigint not null default 0,
  avg_value     double precision,
  p50_value     double precision,
  p95_value     double precision,
  p99_value     double precision,
  max_value     double precision,
  computed_at   timestamptz not null default now(),
  constraint performance_metrics_cache_pkey primary key (id),
  constraint performance_metrics_cache_bucket_key unique nulls not distinct (source, metric_key, tenant_id, bucket_start),
  constraint performance_metrics_cache_source_valid check (source in ('api', 'slow_query', 'system')),
  constraint performance_metrics_cache_counts_valid check (sample_count >= 0 and error_count >= 0)
);
create index performance_metrics_cache_tenant_bucket_idx on iot.performance_metrics_cache (tenant_id, bucket_start desc);
create index performance_metrics_cache_bucket_idx on iot.performance_metrics_cache (bucket_start);
comment on column iot.performance_metrics_cache.id is 'Row number.';
comment on column iot.performance_metrics_cache.bucket_start is 'Start of the hour summarised (UTC).';
comment on column iot.performance_metrics_cache.bucket_width is 'Length of the bucket (one hour).';
comment on column iot.performance_metrics_cache.tenant_id is 'Tenant summarised; null for rows over the whole installation (system resources, anonymous API calls).';
comment on column iot.performance_metrics_cache.source is 'What was summarised: api (api_performance_log), slow_query (query_performance_log), system (system_resource_metrics).';
comment on column iot.performance_metrics_cache.metric_key is 'api and slow_query: "<operation type>:<operation name>" (name "(anonymous)" when none); system: "<component>:<column>" (e.g. api:cpu_percent).';
comment on column iot.performance_metrics_cache.unit is 'Unit of the *_value columns: ms, percent, bytes, ratio.';
comment on column iot.performance_metrics_cache.sample_count is 'Rows summarised (requests, or samples).';
comment on column iot.performance_metrics_cache.error_count is 'api and slow_query: requests with at least one GraphQL error or an HTTP status of 400 or more. 0 for system.';
comment on column iot.performance_metrics_cache.avg_value is 'Mean over the bucket.';
comment on column iot.performance_metrics_cache.p50_value is 'Median over the bucket.';
comment on column iot.performance_metrics_cache.p95_value is '95th percentile over the bucket.';
comment on column iot.performance_metrics_cache.p99_value is '99th percentile over the bucket.';
comment on column iot.performance_metrics_cache.max_value is 'Largest value in the bucket.';
comment on column iot.performance_metrics_cache.computed_at is 'When this row was (re)computed; a bucket is recomputed while late rows may still arrive.';

-- Row-level security: a tenant's analysts see their tenant's rows; rows over the whole
-- installation (no tenant) only callers who see every tenant (sql/720_performance_logs.sql).
alter table iot.api_performance_log enable row level security;
alter table iot.query_performance_log enable row level security;
alter table iot.system_resource_metrics enable row level security;
alter table iot.performance_metrics_cache enable row level security;

-- The seed's performance logs (db/migrations/000012_performance_logs.sql): who may read them,
-- the hourly roll-up, pruning, and the database figures /metrics collects on scrape.
-- Written by the API's and the workers' own login (the owner, which RLS does not filter); read by
-- analysts (SQL logins and API tokens) for their tenants. Not in the GraphQL API (@omit): they are
-- for DBAs and Grafana, and a query text of one user is not for another's dashboard.

comment on table iot.api_performance_log is E'@omit\nOne row per GraphQL request over HTTP: operation, duration, status, errors, caller. Written in batches (PERF_LOG_FLUSH_MS / PERF_LOG_FLUSH_ROWS), pruned by age (workers/performance__prune_logs.ts).';
comment on table iot.query_performance_log is E'@omit\nGraphQL requests slower than API_SLOW_QUERY_MS, with their document (clipped) and its SHA-256. Written in batches, pruned by age.';
comment on table iot.system_resource_metrics is E'@omit\nSamples of each process (CPU, memory, event loop delay) and of the database (connections, size, NOTIFY queue), every sample interval (10 s by default). Pruned by age.';
comment on table iot.performance_metrics_cache is E'@omit\nHourly summaries (count, errors, mean, p50/p95/p99, max) of the three performance logs, by tenant and operation or metric. Kept longer than the logs.';

-- True when the caller sees every tenant (superusers, the owner, SQL logins mapped to all tenants):
-- only they see the rows over the whole installation. Security definer so that the count of
-- tenants is not itself filtered by the caller's row security.
create or replace function iot_private.sees_every_tenant() returns boolean
  language sql stable security definer
  set search_path = pg_catalog, pg_temp
as $$
  select not exists (select 1 from iot.tenants t where t.id <> all (iot.current_tenant_ids()))
$$;
comment on function iot_private.sees_every_tenant() is
  'True when iot.current_tenant_ids() holds every tenant: such callers also see performance rows with no tenant (whole installation).';

do $$
declare
  t text;
begin
  foreach t in array array['api_performance_log', 'query_performance_log', 'performance_metrics_cache'] loop
    execute format('drop policy if exists select_own on iot.%I', t);
    execute format($p$create policy select_own on iot.%I for select using (
      tenant_id = any ((select iot.current_tenant_ids())::uuid[]) or (tenant_id is null and (select iot_private.sees_every_tenant())))$p$, t);
  end loop;
end $$;
drop policy if exists select_installation on iot.system_resource_metrics;
create policy select_installation on iot.system_resource_metrics for select using ((select iot_private.sees_every_tenant()));

-- Hourly summaries of the hours in [from_time, to_time) (rounded down to whole hours, UTC), written
-- again when re-run: a bucket is recomputed while rows may still arrive for it. Returns the rows written.
create or replace function iot_private.rollup_performance_metrics(from_time timestamptz, to_time timestamptz) returns integer
  language plpgsql
  set search_path = pg_catalog, pg_temp
as $$
declare
  lo timestamptz := date_bin(interval '1 hour', from_time, timestamptz '2000-01-01 00:00Z');
  hi timestamptz := date_bin(interval '1 hour', to_time, timestamptz '2000-01-01 00:00Z');
  written integer;
begin
  if from_time is null or to_time is null or hi - lo > interval '31 days' then
    raise exception 'performance roll-up range % to % is missing or longer than 31 days', from_time, to_time
      using errcode = '22023', hint = 'roll up at most a month per call';
  end if;
  with requests as (
    select 'api'::text as source, logged_at, tenant_id, operation_type, operation_name, duration_ms, error_count, http_status
      from iot.api_performance_log where logged_at >= lo and logged_at < hi
    union all
    select 'slow_query', logged_at, tenant_id, operation_type, operation_name, duration_ms, error_count, http_status
      from iot.query_performance_log where logged_at >= lo and logged_at < hi
  ), samples as (
    select s.sampled_at, s.component, v.metric, v.unit, v.value
      from iot.system_resource_metrics s
      cross join lateral (values
        ('cpu_percent', 'percent', s.cpu_percent),
        ('rss_bytes', 'bytes', s.rss_bytes::double precision),
        ('heap_used_bytes', 'bytes', s.heap_used_bytes::double precision),
        ('event_loop_lag_ms', 'ms', s.event_loop_lag_ms),
        ('db_connections', 'count', s.db_connections::double precision),
        ('db_size_bytes', 'bytes', s.db_size_bytes::double precision),
        ('notify_queue_usage', 'ratio', s.notify_queue_usage)) v(metric, unit, value)
     where s.sampled_at >= lo and s.sampled_at < hi and v.value is not null
  ), summaries as (
    select date_bin(interval '1 hour', r.logged_at, timestamptz '2000-01-01 00:00Z') as bucket_start, r.tenant_id, r.source,
           coalesce(r.operation_type, 'unknown') || ':' || coalesce(r.operation_name, '(anonymous)') as metric_key, 'ms' as unit,
           count(*) as sample_count, count(*) filter (where r.error_count > 0 or r.http_status >= 400) as error_count,
           avg(r.duration_ms) as avg_value,
           percentile_cont(0.5) within group (order by r.duration_ms) as p50_value,
           percentile_cont(0.95) within group (order by r.duration_ms) as p95_value,
           percentile_cont(0.99) within group (order by r.duration_ms) as p99_value,
           max(r.duration_ms) as max_value
      from requests r
     group by 1, 2, 3, 4
    union all
    select date_bin(interval '1 hour', s.sampled_at, timestamptz '2000-01-01 00:00Z'), null::uuid, 'system',
           s.component || ':' || s.metric, s.unit, count(*), 0,
           avg(s.value), percentile_cont(0.5) within group (order by s.value), percentile_cont(0.95) within group (order by s.value),
           percentile_cont(0.99) within group (order by s.value), max(s.value)
      from samples s
     group by 1, 4, 5
  )
  insert into iot.performance_metrics_cache as c (bucket_start, tenant_id, source, metric_key, unit, sample_count, error_count,
                                                 avg_value, p50_value, p95_value, p99_value, max_value, computed_at)
  select bucket_start, tenant_id, source, metric_key, unit, sample_count, error_count, avg_value, p50_value, p95_value, p99_value, max_value, now()
    from summaries
  on conflict on constraint performance_metrics_cache_bucket_key do update
    set unit = excluded.unit, sample_count = excluded.sample_count, error_count = excluded.error_count,
        avg_value = excluded.avg_value, p50_value = excluded.p50_value, p95_value = excluded.p95_value,
        p99_value = excluded.p99_value, max_value = excluded.max_value, computed_at = excluded.computed_at;
  get diagnostics written = row_count;
  return written;
end
$$;
comment on function iot_private.rollup_performance_metrics(timestamptz, timestamptz) is
  'Writes (or rewrites) the hourly performance_metrics_cache rows of the hours in [from_time, to_time), UTC, from the three performance logs. Returns the rows written. At most 31 days per call.';

-- Deletes log rows older than logs_before and cache rows older than cache_before, the oldest first,
-- at most max_rows per table per call (short transactions; the caller loops). Returns the rows deleted.
create or replace function iot_private.prune_performance_logs(logs_before timestamptz, cache_before timestamptz, max_rows integer default 10000)
  returns integer
  language plpgsql
  set search_path = pg_catalog, pg_temp
as $$
declare
  n integer;
  total integer := 0;
begin
  delete from iot.api_performance_log where id in (
    select id from iot.api_performance_log where logged_at < logs_before order by logged_at limit max_rows);
  get diagnostics n = row_count; total := total + n;
  delete from iot.query_performance_log where id in (
    select id from iot.query_performance_log where logged_at < logs_before order by logged_at limit max_rows);
  get diagnostics n = row_count; total := total + n;
  delete from iot.system_resource_metrics where id in (
    select id from iot.system_resource_metrics where sampled_at < logs_before order by sampled_at limit max_rows);
  get diagnostics n = row_count; total := total + n;
  delete from iot.performance_metrics_cache where id in (
    select id from iot.performance_metrics_cache where bucket_start < cache_before order by bucket_start limit max_rows);
  get diagnostics n = row_count; total := total + n;
  return total;
end
$$;
comment on function iot_private.prune_performance_logs(timestamptz, timestamptz, integer) is
  'Deletes performance log rows older than logs_before and performance_metrics_cache rows older than cache_before, at most max_rows per table per call, oldest first. Returns the rows deleted.';

-- What /metrics collects from the database at each scrape, in one round trip: the NOTIFY queue's
-- fill, graphile-worker jobs with an error (by task), and alerts raised (by type and severity).
create or replace function iot_private.monitoring_counts() returns jsonb
  language plpgsql stable
  set search_path = pg_catalog, pg_temp
as $$
declare
  failed jsonb := '[]';
  alerts jsonb;
begin
  if to_regclass('graphile_worker.jobs') is not null then
    execute $q$select coalesce(jsonb_agg(jsonb_build_object('task', task_identifier, 'failing', failing, 'failed', failed)), '[]')
      from (select task_identifier, count(*) filter (where attempts < max_attempts) as failing,
                   count(*) filter (where attempts >= max_attempts) as failed
              from graphile_worker.jobs where last_error is not null group by 1) s$q$ into failed;
  end if;
  select coalesce(jsonb_agg(jsonb_build_object('type', type, 'severity', severity, 'n', n)), '[]') into alerts from (
    select a.alert_type as type, a.severity, count(*) as n from iot.predictive_maintenance_alerts a group by 1, 2
    union all
    select 'SPC_RULE_' || s.rule, s.severity, count(*) from iot.spc_alerts s group by 1, 2
  ) x;
  return jsonb_build_object('notify_queue_usage', pg_notification_queue_usage(), 'jobs', failed, 'alerts', alerts,
    'maintenance', (select coalesce(jsonb_agg(jsonb_build_object('source', m.source, 'job', m.job_name)), '[]')
                      from iot_private.failed_maintenance_jobs() m));
end
$$;
comment on function iot_private.monitoring_counts() is
  'Database figures for /metrics: NOTIFY queue fill (0..1), graphile-worker jobs with last_error by task (still retrying / out of attempts), alerts by type and severity (predictive_maintenance_alerts, spc_alerts), maintenance jobs failing (failed_maintenance_jobs).';

grant select on iot.api_performance_log, iot.query_performance_log, iot.system_resource_metrics, iot.performance_metrics_cache to iot_analyst;
grant execute on function iot_private.sees_every_tenant() to iot_anonymous, iot_operator, iot_analyst;

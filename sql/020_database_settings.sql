-- Settings of this database for every new session (API, ingestors, worker, Grafana, analysts).
-- jit off: the rollup views (sql/200) union stored rows with a live aggregate of raw readings above a
-- watermark only known at run time, so the planner estimates millions of rows and PostgreSQL's JIT
-- compiled with inlining and optimisation: measured on tier 2 at 51.8 million readings (bench:query),
-- the per-minute query of all devices took 597 ms, of which ~580 ms compiling, and 15 ms with jit off;
-- the daily and timeline dashboards the same. The hot ingest functions already set it themselves.
-- Needs the database's owner (or a superuser); a migrator without it gets a warning saying what to run.
do $$
begin
  execute pg_catalog.format('alter database %I set jit = off', pg_catalog.current_database());
exception when insufficient_privilege then
  raise warning 'jit stays on for database %: run "alter database % set jit = off" as its owner (rollup queries compile for hundreds of ms otherwise)',
    pg_catalog.current_database(), pg_catalog.current_database();
end
$$;

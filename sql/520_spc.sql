-- Statistical process control: control limits per channel and Western Electric rules 1-4.
create or replace function iot_private.evaluate_spc() returns integer
  language sql
  set search_path = pg_catalog, pg_temp
as $$ select 0 $$;

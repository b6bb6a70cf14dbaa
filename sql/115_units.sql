-- The ingestors cache units, unit aliases and quality words with the registry (src/ingest/registry.ts):
-- tell them when those change, on the registry's channel (one NOTIFY per statement).
create or replace function iot_private.tg_units__notify_changed() returns trigger
  language plpgsql
  set search_path = pg_catalog, pg_temp
as $$
begin
  perform pg_notify('iot_registry_changed', tg_table_name);
  return null;
end
$$;

do $$
declare
  t text;
begin
  foreach t in array array['units', 'unit_aliases', 'quality_words'] loop
    execute format('drop trigger if exists _900_notify_registry_changed on iot.%I', t);
    execute format('create trigger _900_notify_registry_changed after insert or update or delete or truncate on iot.%I
                    for each statement execute function iot_private.tg_units__notify_changed()', t);
  end loop;
end $$;

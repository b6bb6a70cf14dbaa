-- Placeholders for functions that later files define, so that functions referring to them can be
-- created in any order. Each is replaced by `create or replace` in its own file.
do $$
begin
  if to_regprocedure('iot_private.detect_batch_events()') is null then
    create function iot_private.detect_batch_events() returns integer language sql as 'select 0';
  end if;
end $$;

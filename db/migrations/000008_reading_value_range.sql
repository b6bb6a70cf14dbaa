-- A reading's value is 0 or of magnitude 1e-15 to 1e15 (issue 7). Outside it, 1.8e308 made the
-- rollups' sum(value * value) overflow and 5e-324 made it underflow, which stopped the rollup
-- refresh of every tenant and every later batch of that channel. Why these bounds: inValueRange in
-- src/ingest/mqtt-payload.ts, which refuses such values at parse time with the value as sent.
--
-- The constraint must not hold the table for a scan. Every migration runs in one transaction, and
-- ADD CONSTRAINT takes an ACCESS EXCLUSIVE lock until it commits, so a validating scan here would
-- block ingest and every query for its duration. So:
--   - an empty table (a new database) gets the constraint validated at once: nothing to scan;
--   - a table with readings gets it NOT VALID (no scan: the lock lasts a moment, and from the
--     commit on every new row is checked); iot_private.validate_reading_value_range()
--     (sql/200_rollups.sql), which the rollups__refresh job calls before each refresh, then moves any
--     stored value outside the range to the dead letters and validates it under SHARE UPDATE
--     EXCLUSIVE, which lets ingest and queries go on.
-- The lock is asked for with a short lock_timeout, retried: queued behind a long query, an ACCESS
-- EXCLUSIVE request would block everyone else behind it.
-- Tier 1: TimescaleDB checks a new CHECK constraint against compressed chunks even when it is NOT
-- VALID (and refuses it if one row there violates it), so on that tier the values outside the range
-- are moved to the dead letters first, as validate_reading_value_range() does on the others.
do $$
declare
  empty boolean := not exists (select 1 from iot_private.sensor_readings);
  attempt integer := 0;
  lock_timeout_before text := current_setting('lock_timeout');
  moved bigint;
begin
  if not empty and current_setting('iot.tier') = '1' then
    with out_of_range as (
      delete from iot_private.sensor_readings
      where not (value = 0 or (abs(value) >= 1e-15::float8 and abs(value) <= 1e15::float8))
      returning *
    ), kept as (
      insert into iot_private.ingest_dead_letters (tenant_id, source, payload, reason)
      select tenant_id, 'SINK',
             json_build_object('deviceId', device_id, 'sensorType', sensor_type, 'value', value, 'unit', unit,
                               'quality', quality, 'timestamp', time, 'metadata', metadata)::text,
             format('value %s is outside the accepted range (0, or a magnitude from 1e-15 to 1e15); '
                    'moved here from iot_private.sensor_readings when the range was introduced', value)
      from out_of_range
      returning 1
    )
    select count(*) into moved from kept;
    if moved > 0 then
      raise warning 'migration 000008: moved % stored readings with values outside 0 or 1e-15..1e15 to iot_private.ingest_dead_letters', moved;
    end if;
  end if;
  loop
    begin
      perform set_config('lock_timeout', '2s', true);
      if empty then
        alter table iot_private.sensor_readings add constraint sensor_readings_value_range
          check (value = 0 or (abs(value) >= 1e-15::float8 and abs(value) <= 1e15::float8));
      else
        alter table iot_private.sensor_readings add constraint sensor_readings_value_range
          check (value = 0 or (abs(value) >= 1e-15::float8 and abs(value) <= 1e15::float8)) not valid;
      end if;
      exit;
    exception when lock_not_available then
      attempt := attempt + 1;
      if attempt >= 30 then
        raise exception 'migration 000008: could not lock iot_private.sensor_readings for 30 attempts of 2 s; a long query holds it (see pg_stat_activity); run the migration again when it has ended';
      end if;
      raise warning 'migration 000008: iot_private.sensor_readings is in use; retrying in 1 s (attempt % of 30)', attempt;
      perform pg_sleep(1);
    end;
  end loop;
  perform set_config('lock_timeout', lock_timeout_before, true);
end $$;

comment on constraint sensor_readings_value_range on iot_private.sensor_readings is
  'A value is 0 or of magnitude 1e-15 to 1e15, so float8 sums of squares in the rollups cannot overflow or underflow.';

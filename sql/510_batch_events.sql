-- Threshold (SENSOR_OUT_OF_RANGE, with hysteresis) and anomaly (ANOMALY_DETECTED) events, per batch.
-- Called by iot_private.ingest_staged_readings() with the batch still in pg_temp.reading_staging.
create or replace function iot_private.detect_batch_events() returns integer
  language sql
  set search_path = pg_catalog, pg_temp
as $$ select 0 $$;

-- Events after the readings' commit. The sink commits a batch (readings, heartbeats, live NOTIFYs)
-- first, so that dashboards get the readings without waiting for the event detector, then runs
-- the detector in a second transaction on the same connection: detect_stored_events() below, over
-- the batch's channels as stored. Should the sink die between the two transactions, nothing is
-- lost: the detector reads stored readings newer than each channel's state.last_time, so the next
-- batch of the channel takes up what was missed (up to an hour before its first reading), and the
-- events__catch_up job (every minute) judges whatever stays unjudged for 30 seconds (a channel
-- that fell silent right after the crash). A reading is judged once however the two race: the
-- detector locks the channels' state rows before it reads them and takes only readings newer than
-- their last_time (sql/510_batch_events.sql).

-- The stored readings of the given channels not yet judged, from from_times (inclusive; back to
-- the channel's state.last_time when that is newer, at most `gap` earlier) to to_times, through the
-- detector. Returns the number of events raised.
create or replace function iot_private.detect_stored_events(
  device_ids uuid[], sensor_types text[], from_times timestamptz[], to_times timestamptz[],
  gap interval default interval '1 hour') returns integer
  language plpgsql
  set search_path = pg_catalog, pg_temp
  set jit = off
as $$
begin
  -- The events and the state they advance commit together; should a crash lose this commit, the
  -- readings are judged again (above). So this transaction need not wait for its WAL flush.
  perform set_config('synchronous_commit', 'off', true);
  perform iot_private.create_reading_staging();
  delete from pg_temp.reading_staging;  -- empty unless called in the batch's own transaction
  insert into pg_temp.reading_staging (time, tenant_id, device_id, sensor_type, value, unit, quality, metadata)
  select r.time, r.tenant_id, r.device_id, r.sensor_type, r.value, r.unit, r.quality, r.metadata
  from unnest(device_ids, sensor_types, from_times, to_times) as k (device_id, sensor_type, from_time, to_time)
  left join iot_private.channel_event_state e on e.device_id = k.device_id and e.sensor_type = k.sensor_type
  cross join lateral (
    select case when e.last_time is null then k.from_time
                when e.last_time >= k.from_time then e.last_time + interval '1 microsecond'
                else greatest(k.from_time - gap, e.last_time + interval '1 microsecond') end as lo
  ) b
  join iot_private.sensor_readings r
    on r.device_id = k.device_id and r.sensor_type = k.sensor_type and r.time >= b.lo and r.time <= k.to_time
  -- BAD readings are never judged (and do not advance last_time): not loaded, not looked for again.
  where r.quality <> 'BAD';
  if not found then
    return 0;
  end if;
  return iot_private.detect_batch_events();
end
$$;
comment on function iot_private.detect_stored_events(uuid[], text[], timestamptz[], timestamptz[], interval) is
  'Runs the threshold and anomaly detector (detect_batch_events) over the stored readings of the given channels in [from_time, to_time], reaching back up to `gap` for readings stored but never judged (newer than the channel''s state.last_time). Returns the number of events raised.';

-- Channels with readings stored more than `settle` ago (and within `lookback`) that the detector
-- never judged (newer than their state.last_time, or no state at all): a sink that died between
-- its two transactions, or rows written by other means. They are judged now, oldest first per
-- channel, as the sink would have. Returns the number of events raised.
create or replace function iot_private.catch_up_events(
  lookback interval default interval '1 hour', settle interval default interval '30 seconds',
  out channels integer, out raised integer)
  language plpgsql
  set search_path = pg_catalog, pg_temp
as $$
declare
  devices uuid[];
  types text[];
begin
  select array_agg(c.device_id), array_agg(c.sensor_type) into devices, types
  from iot.device_channels c
  join iot.iot_devices d on d.id = c.device_id
  left join iot_private.channel_event_state e on e.device_id = c.device_id and e.sensor_type = c.sensor_type
  where c.is_active and d.is_active
    and exists (select 1 from iot_private.sensor_readings r
                where r.device_id = c.device_id and r.sensor_type = c.sensor_type
                  and r.time > greatest(e.last_time, now() - lookback) and r.time <= now() - settle
                  and r.quality <> 'BAD')
    -- (greatest ignores a null last_time: a channel never judged is looked at over `lookback`.)
  ;
  channels := coalesce(cardinality(devices), 0);
  raised := 0;
  if channels > 0 then
    raised := iot_private.detect_stored_events(devices, types,
      array_fill(now() - lookback, array[channels]), array_fill(now(), array[channels]), interval '0');
  end if;
end
$$;
comment on function iot_private.catch_up_events(interval, interval) is
  'Judges (threshold and anomaly events) the stored readings older than `settle` and within `lookback` that the detector never saw (a sink that died between its two transactions); run every minute by the events__catch_up job.';

-- Dead letters are bounded and never lost (issue 7): what is stored of a topic and payload is
-- clipped, so their original size and SHA-256 are kept beside them; a payload whose text had to be
-- escaped (U+0000, invalid UTF-8) keeps a base64 copy of its first bytes; the rate limit's summary
-- rows say how many dead letters of a source they stand for. Existing rows keep nulls (sizes
-- unknown) and suppressed_count 0.
alter table iot_private.ingest_dead_letters
  add column topic_bytes integer,
  add column topic_sha256 text,
  add column payload_bytes integer,
  add column payload_sha256 text,
  add column payload_base64 text,
  add column source_key text,
  add column reason_class text,
  add column suppressed_count integer not null default 0;

-- NOT VALID: enforced for every new row, without scanning (and locking) a large table at upgrade.
alter table iot_private.ingest_dead_letters
  add constraint ingest_dead_letters_sizes_valid
    check (coalesce(topic_bytes, 0) >= 0 and coalesce(payload_bytes, 0) >= 0) not valid,
  add constraint ingest_dead_letters_sha256_valid
    check (coalesce(topic_sha256, repeat('0', 64)) ~ '^[0-9a-f]{64}$'
       and coalesce(payload_sha256, repeat('0', 64)) ~ '^[0-9a-f]{64}$') not valid,
  add constraint ingest_dead_letters_suppressed_valid check (suppressed_count >= 0) not valid,
  add constraint ingest_dead_letters_clipped
    check (octet_length(topic) <= 65536 and octet_length(payload) <= 262144 and octet_length(payload_base64) <= 349528
       and octet_length(reason) <= 32768) not valid;

comment on column iot_private.ingest_dead_letters.topic_bytes is 'Size of the topic as received (UTF-8 bytes); topic holds at most INGEST_DEAD_LETTER_MAX_TOPIC_BYTES of it.';
comment on column iot_private.ingest_dead_letters.topic_sha256 is 'SHA-256 (hex) of the whole topic as received.';
comment on column iot_private.ingest_dead_letters.payload_bytes is 'Size of the payload as received (bytes); payload holds at most INGEST_DEAD_LETTER_MAX_PAYLOAD_BYTES of it.';
comment on column iot_private.ingest_dead_letters.payload_sha256 is 'SHA-256 (hex) of the whole payload as received.';
comment on column iot_private.ingest_dead_letters.payload_base64 is 'The payload''s first bytes exactly as received, set when its text had to be escaped (U+0000 written as \u0000, invalid UTF-8 as U+FFFD).';
comment on column iot_private.ingest_dead_letters.source_key is 'What the dead-letter rate limit counts by: facility/<code>, topic/<first level>, device/<id>, tenant/<id>.';
comment on column iot_private.ingest_dead_letters.reason_class is 'Short class of the reason (timestamp, value, payload, registry, topic, size, rate_limited...), as in /metrics.';
comment on column iot_private.ingest_dead_letters.suppressed_count is 'On a rate-limit summary row (reason_class rate_limited): how many dead letters of source_key it stands for, counted but not stored one by one. 0 on every other row.';

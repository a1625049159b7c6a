-- Keys and headers are copied from Kafka records, and a record may carry any bytes: NUL, which
-- Postgres refuses in text (22021) and jsonb (22P05), or invalid UTF-8. A record that cannot be
-- stored cannot be parked or dead-lettered, and would stop its partition. Keys and headers are
-- therefore bytea from here on. Headers use the length-prefixed form of
-- saga_messaging::headers::Headers::encode: per header int4 name length, name, int4 value length
-- (-1 for null), value; the UPDATEs below write exactly that from the old JSON objects.

ALTER TABLE outbox ALTER COLUMN message_key DROP NOT NULL;
ALTER TABLE outbox ALTER COLUMN message_key TYPE BYTEA USING convert_to(message_key, 'UTF8');
ALTER TABLE outbox ADD COLUMN header_bytes BYTEA NOT NULL DEFAULT ''::bytea;
UPDATE outbox SET header_bytes = coalesce((
    SELECT string_agg(int4send(octet_length(convert_to(key, 'UTF8'))) || convert_to(key, 'UTF8')
                      || int4send(octet_length(convert_to(value, 'UTF8'))) || convert_to(value, 'UTF8'),
                      ''::bytea ORDER BY key)
    FROM jsonb_each_text(headers)), ''::bytea)
WHERE headers <> '{}'::jsonb;
ALTER TABLE outbox DROP COLUMN headers;
ALTER TABLE outbox RENAME COLUMN header_bytes TO headers;
ALTER TABLE outbox ALTER COLUMN headers DROP DEFAULT;

ALTER TABLE parked ALTER COLUMN message_key TYPE BYTEA USING convert_to(message_key, 'UTF8');
ALTER TABLE parked ADD COLUMN header_bytes BYTEA NOT NULL DEFAULT ''::bytea;
UPDATE parked SET header_bytes = coalesce((
    SELECT string_agg(int4send(octet_length(convert_to(key, 'UTF8'))) || convert_to(key, 'UTF8')
                      || int4send(octet_length(convert_to(value, 'UTF8'))) || convert_to(value, 'UTF8'),
                      ''::bytea ORDER BY key)
    FROM jsonb_each_text(headers)), ''::bytea)
WHERE headers <> '{}'::jsonb;
ALTER TABLE parked DROP COLUMN headers;
ALTER TABLE parked RENAME COLUMN header_bytes TO headers;
ALTER TABLE parked ALTER COLUMN headers DROP DEFAULT;

-- Event ids are compared as UUIDs, so that the same id spelled in upper case is the same event.
-- A message that could not be decoded has no event id, but is still parked for its order.
ALTER TABLE parked ALTER COLUMN event_id DROP NOT NULL;
ALTER TABLE parked ALTER COLUMN event_id TYPE UUID USING event_id::uuid;
ALTER TABLE parked ALTER COLUMN event_type DROP NOT NULL;

-- A record is parked at most once: a redelivered record that could not be decoded (so has no
-- event id to deduplicate by) finds its row here.
CREATE UNIQUE INDEX parked_by_source ON parked (source_topic, source_partition, source_offset);

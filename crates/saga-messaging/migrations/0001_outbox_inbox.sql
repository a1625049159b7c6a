-- Shared by every service database: the transactional outbox and the consumer inbox.
-- Versions below 100 belong to saga-messaging; each service numbers its own from 100.

-- Events written in the same transaction as the state change that produced them. The relay
-- publishes unpublished rows in id order and then stamps published_at.
CREATE TABLE outbox (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id     UUID        NOT NULL UNIQUE,
    event_type   TEXT        NOT NULL,
    topic        TEXT        NOT NULL,
    message_key  TEXT        NOT NULL,
    payload      BYTEA       NOT NULL,
    headers      JSONB       NOT NULL DEFAULT '{}'::jsonb,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    published_at TIMESTAMPTZ
);
-- The relay only ever looks for what is left to publish: keep that lookup tiny.
CREATE INDEX outbox_unpublished ON outbox (id) WHERE published_at IS NULL;

-- Every event this service has handled, recorded in the handling transaction: a redelivered
-- event finds its id here and is skipped.
CREATE TABLE inbox (
    event_id     UUID        PRIMARY KEY,
    event_type   TEXT        NOT NULL,
    topic        TEXT        NOT NULL,
    kafka_partition INT      NOT NULL,
    kafka_offset BIGINT      NOT NULL,
    processed_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

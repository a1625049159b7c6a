-- Messages a service could not handle yet, per order. While an order has a row here, later
-- messages of that order wait here too (WAITING) and are released in order when the head
-- succeeds. RETRYING rows have a record on <service>.retry; DEAD ones on <service>.dlq.
CREATE TABLE parked (
    id               BIGINT      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    order_id         TEXT        NOT NULL,
    event_id         TEXT        NOT NULL UNIQUE,
    event_type       TEXT        NOT NULL,
    status           TEXT        NOT NULL CHECK (status IN ('RETRYING', 'DEAD', 'WAITING')),
    source_topic     TEXT        NOT NULL,
    source_partition INT         NOT NULL,
    source_offset    BIGINT      NOT NULL,
    source_timestamp BIGINT,
    message_key      TEXT,
    payload          BYTEA       NOT NULL,
    headers          JSONB       NOT NULL,
    attempts         INT         NOT NULL DEFAULT 0,
    error_kind       TEXT,
    error            TEXT,
    first_failed_at  TIMESTAMPTZ,
    last_failed_at   TIMESTAMPTZ,
    parked_at        TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX parked_by_order ON parked (order_id, id);

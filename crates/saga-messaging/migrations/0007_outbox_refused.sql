-- Outbox rows the broker refused for good (their topic does not exist, the service may not write
-- it, the record is too large): moved here with the error, so that the relay goes on with every
-- other row instead of starting over on one forever. `sagactl outbox` lists them and sends them
-- again once the cause is fixed.
CREATE TABLE outbox_refused (
    id           BIGINT      PRIMARY KEY,
    event_id     UUID        NOT NULL,
    event_type   TEXT        NOT NULL,
    topic        TEXT        NOT NULL,
    message_key  BYTEA,
    payload      BYTEA       NOT NULL,
    headers      BYTEA       NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL,
    refused_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    error        TEXT        NOT NULL
);

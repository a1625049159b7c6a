-- An order and where its saga stands. Lines and address are kept as the customer sent them.
CREATE TABLE orders (
    order_id            UUID        PRIMARY KEY,
    customer_id         TEXT        NOT NULL,
    status              TEXT        NOT NULL CHECK (status IN ('PENDING', 'CONFIRMED', 'CANCELLED')),
    cancellation_reason TEXT        CHECK (cancellation_reason IN ('PAYMENT_DECLINED', 'OUT_OF_STOCK', 'SHIPPING_FAILED')),
    currency            TEXT        NOT NULL,
    total_cents         BIGINT      NOT NULL CHECK (total_cents >= 0),
    payment_method      TEXT        NOT NULL,
    items               JSONB       NOT NULL,
    shipping_address    JSONB       NOT NULL,
    created_at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    CHECK ((status = 'CANCELLED') = (cancellation_reason IS NOT NULL))
);

-- Idempotency-Key: the first request with a key wins; a replay with the same body gets the same
-- order, with another body a 422.
CREATE TABLE idempotency_keys (
    idempotency_key TEXT        PRIMARY KEY,
    request         JSONB       NOT NULL,
    order_id        UUID        NOT NULL REFERENCES orders (order_id),
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Every saga event of every order, from all four topics: what GET /orders/{id}/timeline shows.
CREATE TABLE timeline (
    event_id        UUID        PRIMARY KEY,
    order_id        TEXT        NOT NULL,
    event_type      TEXT        NOT NULL,
    producer        TEXT        NOT NULL,
    causation_id    UUID,
    occurred_at     TIMESTAMPTZ NOT NULL,
    topic           TEXT        NOT NULL,
    kafka_partition INT         NOT NULL,
    kafka_offset    BIGINT      NOT NULL,
    trace_id        TEXT,
    detail          JSONB       NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX timeline_by_order ON timeline (order_id);

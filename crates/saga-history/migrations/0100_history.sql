-- The read side's database: the log of every event the four topics carried, the views folded
-- from it, and how far each partition has been read. Everything here can be rebuilt from the
-- topics, which keep every record.

-- Append-only: one row per record read, repeats included (the fold counts an event once).
CREATE TABLE event_log (
    topic          TEXT        NOT NULL,
    kafka_partition INT        NOT NULL,
    kafka_offset   BIGINT      NOT NULL,
    record_key     TEXT,
    event_id       TEXT        NOT NULL,
    event_type     TEXT        NOT NULL,
    order_id       UUID        NOT NULL,
    producer       TEXT        NOT NULL,
    occurred_at    TIMESTAMPTZ NOT NULL,
    -- The record's timestamp (when the relay produced it), if it had one.
    recorded_at    TIMESTAMPTZ,
    trace_id       TEXT,
    -- The writer's record name: an older major's, for an upcast event.
    written_as     TEXT        NOT NULL,
    -- The event as its current type, as JSON (what the fold reads back).
    event          JSONB       NOT NULL,
    PRIMARY KEY (topic, kafka_partition, kafka_offset)
);
-- One order's events (its history, its time travel), and read-your-writes by event id.
CREATE INDEX event_log_by_order ON event_log (order_id, occurred_at);
CREATE INDEX event_log_by_event ON event_log (event_id);

-- Where each partition's reading stands: the next offset to read. Written in the transaction of
-- the rows it covers.
CREATE TABLE checkpoints (
    topic           TEXT   NOT NULL,
    kafka_partition INT    NOT NULL,
    next_offset     BIGINT NOT NULL,
    PRIMARY KEY (topic, kafka_partition)
);

-- Each placed order as it stands now: what the order list filters and pages through.
CREATE TABLE order_view (
    order_id            UUID        PRIMARY KEY,
    customer_id         TEXT        NOT NULL,
    status              TEXT        NOT NULL,
    cancellation_reason TEXT,
    compensation        TEXT,
    currency            TEXT        NOT NULL,
    total_cents         BIGINT      NOT NULL,
    placed_at           TIMESTAMPTZ NOT NULL,
    last_event_at       TIMESTAMPTZ NOT NULL,
    events              INT         NOT NULL
);
-- Newest first, by customer, by status: keyset pages stay index scans on a million orders.
CREATE INDEX order_view_placed ON order_view (placed_at DESC, order_id DESC);
CREATE INDEX order_view_customer ON order_view (customer_id, placed_at DESC, order_id DESC);
CREATE INDEX order_view_status ON order_view (status, placed_at DESC, order_id DESC);

-- Each placed order's state from each moment it changed on: the whole system as of any time is
-- the latest row of each order at or before it.
CREATE TABLE order_versions (
    order_id            UUID        NOT NULL,
    valid_from          TIMESTAMPTZ NOT NULL,
    status              TEXT        NOT NULL,
    cancellation_reason TEXT,
    currency            TEXT        NOT NULL,
    authorized_cents    BIGINT      NOT NULL,
    refunded_cents      BIGINT      NOT NULL,
    -- Units held per SKU at that moment: {"SKU-1": 2}.
    held                JSONB       NOT NULL,
    PRIMARY KEY (order_id, valid_from)
);
CREATE INDEX order_versions_valid_from ON order_versions (valid_from);

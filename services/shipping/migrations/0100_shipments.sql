-- One shipment per order: scheduled, or failed for a destination this service does not serve.
CREATE TABLE shipments (
    order_id       UUID        PRIMARY KEY,
    shipment_id    UUID        NOT NULL UNIQUE,
    status         TEXT        NOT NULL CHECK (status IN ('SCHEDULED', 'FAILED')),
    country        TEXT        NOT NULL,
    address        JSONB       NOT NULL,
    items          JSONB       NOT NULL,
    failure_reason TEXT,
    created_at     TIMESTAMPTZ NOT NULL DEFAULT now()
);

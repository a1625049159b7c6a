-- Units per SKU. A reservation moves units from available (on_hand - reserved) to reserved; the
-- constraint makes overselling impossible, whatever the code does.
CREATE TABLE stock (
    sku        TEXT        PRIMARY KEY,
    on_hand    BIGINT      NOT NULL CHECK (on_hand >= 0),
    reserved   BIGINT      NOT NULL DEFAULT 0 CHECK (reserved >= 0),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    CHECK (reserved <= on_hand)
);

-- What each paid order holds (or was refused), so that a release gives back exactly that.
CREATE TABLE reservations (
    order_id   UUID        PRIMARY KEY,
    status     TEXT        NOT NULL CHECK (status IN ('RESERVED', 'FAILED', 'RELEASED')),
    items      JSONB       NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

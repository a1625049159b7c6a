-- One payment per order (the business key), whatever happens upstream.
CREATE TABLE payments (
    order_id       UUID        PRIMARY KEY,
    payment_id     UUID        NOT NULL UNIQUE,
    status         TEXT        NOT NULL CHECK (status IN ('AUTHORIZED', 'DECLINED', 'REFUNDED')),
    amount_cents   BIGINT      NOT NULL CHECK (amount_cents >= 0),
    currency       TEXT        NOT NULL,
    payment_method TEXT        NOT NULL,
    decline_reason TEXT,
    refund_reason  TEXT,
    created_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at     TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Orders Payment will not charge any more: cancelled (OrderCancelled), or found past their
-- deadline when their OrderPlaced arrived. A late OrderPlaced is then never charged.
CREATE TABLE closed_orders (
    order_id  UUID        PRIMARY KEY,
    reason    TEXT        NOT NULL,
    closed_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Orders Inventory will not reserve for any more: cancelled (OrderCancelled), or found past
-- their deadline when their PaymentAuthorized arrived.
CREATE TABLE closed_orders (
    order_id  UUID        PRIMARY KEY,
    reason    TEXT        NOT NULL,
    closed_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Orders a participant (Payment, Inventory, Shipping) will not act for any more: cancelled
-- (OrderCancelled), or found past their deadline when the request to act for them arrived. A
-- reply that comes after that is never acted on.
-- IF NOT EXISTS: Payment and Inventory databases migrated before this table moved here have it
-- from their own migration 101.
CREATE TABLE IF NOT EXISTS closed_orders (
    order_id  UUID        PRIMARY KEY,
    reason    TEXT        NOT NULL,
    closed_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

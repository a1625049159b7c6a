-- Every order has a deadline: still PENDING then, it is cancelled (TIMED_OUT). Order also keeps
-- what the other services reported doing and undoing, so that a cancellation's compensation is
-- tracked to the end (compensation PENDING until every step taken is undone, then COMPLETED).

ALTER TABLE orders DROP CONSTRAINT IF EXISTS orders_cancellation_reason_check;
ALTER TABLE orders ADD CONSTRAINT orders_cancellation_reason_check CHECK (cancellation_reason IN
    ('PAYMENT_DECLINED', 'OUT_OF_STOCK', 'SHIPPING_FAILED', 'TIMED_OUT', 'UNKNOWN'));

ALTER TABLE orders
    ADD COLUMN deadline_at        TIMESTAMPTZ,
    ADD COLUMN placed_event_id    UUID,
    ADD COLUMN charged            BOOLEAN NOT NULL DEFAULT false,
    ADD COLUMN refunded           BOOLEAN NOT NULL DEFAULT false,
    ADD COLUMN reserved           BOOLEAN NOT NULL DEFAULT false,
    ADD COLUMN released           BOOLEAN NOT NULL DEFAULT false,
    ADD COLUMN shipped            BOOLEAN NOT NULL DEFAULT false,
    ADD COLUMN shipment_cancelled BOOLEAN NOT NULL DEFAULT false,
    ADD COLUMN compensation       TEXT CHECK (compensation IN ('PENDING', 'COMPLETED'));

-- Orders placed before deadlines: the default deadline, and their history from the timeline.
UPDATE orders o SET
    deadline_at = o.created_at + interval '30 seconds',
    placed_event_id = (SELECT t.event_id FROM timeline t
                       WHERE t.order_id = o.order_id::text AND t.event_type = 'OrderPlaced' LIMIT 1),
    charged  = EXISTS (SELECT 1 FROM timeline t WHERE t.order_id = o.order_id::text AND t.event_type = 'PaymentAuthorized'),
    refunded = EXISTS (SELECT 1 FROM timeline t WHERE t.order_id = o.order_id::text AND t.event_type = 'PaymentRefunded'),
    reserved = EXISTS (SELECT 1 FROM timeline t WHERE t.order_id = o.order_id::text AND t.event_type = 'StockReserved'),
    released = EXISTS (SELECT 1 FROM timeline t WHERE t.order_id = o.order_id::text AND t.event_type = 'StockReleased'),
    shipped  = EXISTS (SELECT 1 FROM timeline t WHERE t.order_id = o.order_id::text AND t.event_type = 'ShipmentScheduled');
UPDATE orders SET compensation = CASE
    WHEN (charged AND NOT refunded) OR (reserved AND NOT released) OR (shipped AND NOT shipment_cancelled)
      OR (cancellation_reason = 'SHIPPING_FAILED' AND NOT (refunded AND released))
      OR (cancellation_reason = 'OUT_OF_STOCK' AND NOT refunded)
    THEN 'PENDING' ELSE 'COMPLETED' END
WHERE status = 'CANCELLED';
ALTER TABLE orders ALTER COLUMN deadline_at SET NOT NULL;

-- What the deadline scanner and the stuck-saga gauges look at: small, whatever the history.
CREATE INDEX orders_pending_by_deadline ON orders (deadline_at) WHERE status = 'PENDING';
CREATE INDEX orders_compensation_pending ON orders (updated_at) WHERE compensation = 'PENDING';

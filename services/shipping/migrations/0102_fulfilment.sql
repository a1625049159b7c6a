-- A shipment is FULFILLING while its fulfilment runs (allocate, label, pickup against the
-- carrier: a workflow instance, workflow = 'fulfilment'); `steps` lists the steps done, for
-- GET /shipments/{order_id}.
ALTER TABLE shipments DROP CONSTRAINT IF EXISTS shipments_status_check;
ALTER TABLE shipments ADD CONSTRAINT shipments_status_check
    CHECK (status IN ('FULFILLING', 'SCHEDULED', 'FAILED', 'CANCELLED'));
ALTER TABLE shipments ADD COLUMN steps JSONB NOT NULL DEFAULT '[]'::jsonb;

-- The stand-in carrier's own records (what a carrier's API keeps on its side): the answer it
-- gave under each idempotency key, so that a key asked again gets the same answer.
CREATE TABLE standin_carrier_calls (
    idempotency_key TEXT        PRIMARY KEY,
    call            TEXT        NOT NULL,
    attempts        INT         NOT NULL DEFAULT 1,
    answer          JSONB,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- A scheduled shipment can be called off when its order is cancelled (ShipmentCancelled).
ALTER TABLE shipments DROP CONSTRAINT IF EXISTS shipments_status_check;
ALTER TABLE shipments ADD CONSTRAINT shipments_status_check
    CHECK (status IN ('SCHEDULED', 'FAILED', 'CANCELLED'));
ALTER TABLE shipments ADD COLUMN updated_at TIMESTAMPTZ NOT NULL DEFAULT now();


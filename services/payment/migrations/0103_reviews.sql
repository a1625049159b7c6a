-- A risky order's payment waits for a reviewer (IN_REVIEW) before it is authorized or declined;
-- the review itself is a workflow instance (workflow_instances, workflow = 'payment_review').
ALTER TABLE payments DROP CONSTRAINT IF EXISTS payments_status_check;
ALTER TABLE payments ADD CONSTRAINT payments_status_check
    CHECK (status IN ('AUTHORIZED', 'DECLINED', 'REFUNDED', 'IN_REVIEW'));

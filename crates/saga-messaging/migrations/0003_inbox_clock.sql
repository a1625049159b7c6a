-- When each message was handled, to the microsecond: now() is the transaction's start, the same
-- for a retried message and the waiting messages it releases in one transaction.
ALTER TABLE inbox ALTER COLUMN processed_at SET DEFAULT clock_timestamp();

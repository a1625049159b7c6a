-- Finished instances (waiting for nothing) by when they last moved: what retention deletes once
-- they are older than the inbox's window (RETENTION_HOURS), with their journal, steps and timers.
CREATE INDEX IF NOT EXISTS workflow_instances_finished
    ON workflow_instances (workflow, updated_at) WHERE waiting_for IS NULL;

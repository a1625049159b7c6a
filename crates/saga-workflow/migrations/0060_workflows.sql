-- Durable workflows inside this service (saga-workflow). An instance is named by its workflow and
-- its order; its state is the workflow's own JSON, `label` names that state for operators and
-- metrics, and `waiting_for` says what it waits on (NULL once it has ended).
CREATE TABLE IF NOT EXISTS workflow_instances (
    workflow     TEXT        NOT NULL,
    instance_id  UUID        NOT NULL,
    state        JSONB       NOT NULL,
    label        TEXT        NOT NULL,
    waiting_for  TEXT,
    version      INT         NOT NULL DEFAULT 0,
    traceparent  TEXT,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (workflow, instance_id)
);
CREATE INDEX IF NOT EXISTS workflow_instances_waiting
    ON workflow_instances (workflow, created_at) WHERE waiting_for IS NOT NULL;

-- Every input that moved an instance, in order: what happened to it, and why.
CREATE TABLE IF NOT EXISTS workflow_journal (
    workflow    TEXT        NOT NULL,
    instance_id UUID        NOT NULL,
    version     INT         NOT NULL,
    input       JSONB       NOT NULL,
    label       TEXT        NOT NULL,
    emitted     TEXT[]      NOT NULL DEFAULT '{}',
    at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (workflow, instance_id, version)
);

-- Durable timers: one row per instance and timer name. A timer fires once (FIRED) unless it is
-- cancelled first (CANCELLED); replicas share due timers with FOR UPDATE SKIP LOCKED.
CREATE TABLE IF NOT EXISTS workflow_timers (
    workflow    TEXT        NOT NULL,
    instance_id UUID        NOT NULL,
    timer       TEXT        NOT NULL,
    due_at      TIMESTAMPTZ NOT NULL,
    status      TEXT        NOT NULL DEFAULT 'PENDING'
                CHECK (status IN ('PENDING', 'FIRED', 'CANCELLED')),
    fired_at    TIMESTAMPTZ,
    PRIMARY KEY (workflow, instance_id, timer)
);
CREATE INDEX IF NOT EXISTS workflow_timers_due
    ON workflow_timers (workflow, due_at) WHERE status = 'PENDING';

-- Steps: work with an effect outside this database (a carrier's API), run by the step runner,
-- never inside a consumer's transaction. A claimed step is leased (due_at moves past the call's
-- timeout), so a runner killed mid-call leaves it to be claimed again; its effect runs under an
-- idempotency key of workflow, instance and step, so running it again repeats nothing.
CREATE TABLE IF NOT EXISTS workflow_steps (
    workflow    TEXT        NOT NULL,
    instance_id UUID        NOT NULL,
    step        TEXT        NOT NULL,
    status      TEXT        NOT NULL DEFAULT 'PENDING'
                CHECK (status IN ('PENDING', 'DONE', 'FAILED', 'DROPPED')),
    attempts    INT         NOT NULL DEFAULT 0,
    due_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_error  TEXT,
    result      JSONB,
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (workflow, instance_id, step)
);
CREATE INDEX IF NOT EXISTS workflow_steps_due
    ON workflow_steps (workflow, due_at) WHERE status = 'PENDING';

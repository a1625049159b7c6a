-- What the redrive test's reactions did: one row per applied reaction.
CREATE TABLE effects (
    event_id   TEXT NOT NULL,
    order_id   TEXT NOT NULL
);

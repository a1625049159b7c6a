-- What the test reactions did: one row per applied reaction.
CREATE TABLE effects (
    event_id   TEXT NOT NULL,
    order_id   TEXT NOT NULL,
    event_type TEXT NOT NULL
);

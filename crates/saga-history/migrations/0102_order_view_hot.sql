-- An order's row in `order_view` changes with every event it gets, and until it ends only
-- `last_event_at` and `events` change. When no indexed column changes and the page has room,
-- Postgres rewrites the row in place (a HOT update) and writes no index entry; otherwise every
-- one of the table's six indexes gets a new entry. `last_event_at` was a key of the index of
-- unsettled sagas, so no update was HOT. That index now holds just the ids of the unsettled
-- rows (a few hundred while sagas run; the stuck page sorts them by quiet time itself), and
-- pages keep a fifth free for the row's next version.
DROP INDEX order_view_unsettled;
CREATE INDEX order_view_unsettled ON order_view (order_id)
    WHERE status = 'PENDING' OR compensation = 'PENDING';
ALTER TABLE order_view SET (fillfactor = 80);

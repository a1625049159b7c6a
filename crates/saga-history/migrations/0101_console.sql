-- What the console asks of the views beside what the API asks: cancelled orders by reason (a
-- filter of the orders page, paged like the others), and the sagas that have not ended, by how
-- long they have been quiet (the stuck page). Both indexes are partial: they hold only the rows
-- their question is about.
CREATE INDEX order_view_reason ON order_view (cancellation_reason, placed_at DESC, order_id DESC)
    WHERE cancellation_reason IS NOT NULL;
CREATE INDEX order_view_unsettled ON order_view (last_event_at)
    WHERE status = 'PENDING' OR compensation = 'PENDING';

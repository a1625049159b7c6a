-- The cleaner deletes inbox entries past retention every minute. Without an index on their age
-- that is a scan of the whole inbox (millions of rows at a few hundred sagas a second). Entries
-- are appended in time order, so a BRIN index finds the old ones for almost nothing, and costs
-- next to nothing to keep up to date on insert.
CREATE INDEX inbox_processed_at ON inbox USING brin (processed_at);

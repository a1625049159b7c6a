-- A published row is deleted at once instead of stamped and deleted days later: an UPDATE
-- rewrites the whole row (payload included) and its index entries, a DELETE only marks it. The
-- topic is the record of what was published; recovery looks there, not here.
DELETE FROM outbox WHERE published_at IS NOT NULL;
DROP INDEX IF EXISTS outbox_unpublished;
ALTER TABLE outbox DROP COLUMN published_at;

-- Which record each event was written as: a major-1 OrderPlaced is upcast before it is recorded,
-- and the timeline says so. Entries recorded before have none.
ALTER TABLE timeline ADD COLUMN schema TEXT;

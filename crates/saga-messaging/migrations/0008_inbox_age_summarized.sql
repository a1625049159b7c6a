-- The inbox's BRIN index (0006) only helps for the block ranges it has summarised, and without
-- autosummarize a range is summarised only when VACUUM runs, which an insert-mostly table seldom
-- gets. Every range filled since then matches any query, so the cleaner's "nothing is past
-- retention yet" read the whole tail of the table: 5,906 pages and 475,888 rows of Order's inbox,
-- every minute. With autosummarize, autovacuum summarises each range as soon as the next one
-- starts; the ranges already filled are summarised here, once.
ALTER INDEX inbox_processed_at SET (autosummarize = on);
SELECT brin_summarize_new_values('inbox_processed_at');

-- A region's citizens are too many to list in a draft. A draft part that reaches them names the
-- highest citizen subscriber id when it was held; once approved, the leader writes their
-- deliveries in batches of a few thousand, each batch in its own transaction with the cursor
-- (the highest citizen subscriber id written so far), so that the first messages leave while the
-- rest are written, and a leader that stops resumes where the last batch ended.
-- NULL: the part reaches no citizen (its recipients are all listed).
ALTER TABLE draft_parts ADD COLUMN citizens_through INTEGER;
-- About how many citizens' addresses it reaches, when held (shown to the communications office).
ALTER TABLE draft_parts ADD COLUMN citizens INTEGER NOT NULL DEFAULT 0;
-- NULL until approved; then the cursor, equal to citizens_through once every batch is written.
ALTER TABLE draft_parts ADD COLUMN citizens_done INTEGER;
-- When approved: parts are written out in this order, so a citizen reads statements in the order
-- they were approved.
ALTER TABLE draft_parts ADD COLUMN citizens_queued_at INTEGER;
CREATE INDEX draft_parts_citizens_due ON draft_parts (citizens_queued_at, id)
    WHERE citizens_done IS NOT NULL AND citizens_done < citizens_through;

-- Citizens are read in batches by id, and a sign-up finds an address already subscribed.
CREATE INDEX subscribers_citizens ON subscribers (id) WHERE citizen_services IS NOT NULL;
CREATE INDEX addresses_channel_address ON addresses (channel, address);

-- Notices telling the communications office that a draft waits go through the outbox like every
-- other message: a delivery may now be a notice about a draft (`draft_id`), and a message may
-- carry buttons (Telegram's Approve, Reject and Open).
--
-- A delivery of a message is once per (update, channel, recipient); a notice is once per
-- (draft, channel, recipient), so that an approver who also hears the update on the same
-- address, or a second draft of the same update, still gets the notice. SQLite cannot drop the
-- table's UNIQUE constraint: the table is rebuilt (nothing refers to it), its rows, its id
-- sequence and every index kept.

-- JSON rows of buttons shown under the message where the channel can; NULL for none.
ALTER TABLE messages ADD COLUMN buttons TEXT;

CREATE TABLE deliveries_new (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    message_id      INTEGER NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    update_id       INTEGER NOT NULL,
    incident_id     INTEGER NOT NULL,
    -- NULL once the subscriber is deleted; the history stays. NULL for a notice.
    address_id      INTEGER REFERENCES addresses (id) ON DELETE SET NULL,
    subscriber_name TEXT    NOT NULL,
    channel         TEXT    NOT NULL,
    recipient       TEXT    NOT NULL,
    state           TEXT    NOT NULL CHECK (state IN ('pending', 'sending', 'sent', 'failed', 'gone', 'cancelled')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    lease_until     INTEGER,
    locked_by       TEXT,
    last_error      TEXT,
    provider_id     TEXT,
    origin_at       INTEGER NOT NULL,
    created_at      INTEGER NOT NULL,
    sent_at         INTEGER,
    provider        TEXT,
    segments        INTEGER,
    report_status   TEXT,
    report_error    TEXT,
    report_at       INTEGER,
    -- The draft this delivery tells the communications office about; NULL for a delivery of
    -- the message to a subscriber.
    draft_id        INTEGER REFERENCES drafts (id) ON DELETE CASCADE
);
INSERT INTO deliveries_new (id, message_id, update_id, incident_id, address_id, subscriber_name, channel,
                            recipient, state, attempts, next_attempt_at, lease_until, locked_by, last_error,
                            provider_id, origin_at, created_at, sent_at, provider, segments, report_status,
                            report_error, report_at)
SELECT id, message_id, update_id, incident_id, address_id, subscriber_name, channel,
       recipient, state, attempts, next_attempt_at, lease_until, locked_by, last_error,
       provider_id, origin_at, created_at, sent_at, provider, segments, report_status,
       report_error, report_at
FROM deliveries;
-- Ids of pruned deliveries are not given again (email Message-IDs carry them).
DELETE FROM sqlite_sequence WHERE name = 'deliveries_new';
INSERT INTO sqlite_sequence (name, seq) SELECT 'deliveries_new', seq FROM sqlite_sequence WHERE name = 'deliveries';
DROP TABLE deliveries;
ALTER TABLE deliveries_new RENAME TO deliveries;

CREATE UNIQUE INDEX deliveries_once ON deliveries (update_id, channel, recipient) WHERE draft_id IS NULL;
CREATE UNIQUE INDEX deliveries_notice_once ON deliveries (draft_id, channel, recipient) WHERE draft_id IS NOT NULL;
CREATE INDEX deliveries_due ON deliveries (channel, next_attempt_at, id) WHERE state = 'pending';
CREATE INDEX deliveries_leased ON deliveries (lease_until) WHERE state = 'sending';
CREATE INDEX deliveries_thread ON deliveries (incident_id, channel, recipient, id);
CREATE INDEX deliveries_address ON deliveries (address_id) WHERE address_id IS NOT NULL;
CREATE INDEX deliveries_prunable ON deliveries (created_at) WHERE state IN ('sent', 'failed', 'gone', 'cancelled');
CREATE INDEX deliveries_live ON deliveries (recipient, channel, id) WHERE state IN ('pending', 'sending');
CREATE INDEX deliveries_provider_message ON deliveries (provider, provider_id) WHERE provider IS NOT NULL;

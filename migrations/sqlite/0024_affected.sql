-- The people whose appointments an incident affects: a list a booking system (or an operator)
-- attaches to an open incident, one row per person, each told the approved public statements
-- about it with their own detail ("your appointment at 11:30 in Foligno"). A row is known by a
-- keyed digest of who it names (fiscal code, mobile, email), unique per incident, so that a
-- second upload of the same rows sends nobody twice and a changed detail replaces the old one.
-- The fiscal code is kept sealed; the channel and address it is reached on are chosen when the
-- row is stored. The list lives while the incident is open and `affected.retention` after it
-- ends, then it is deleted with its deliveries.
CREATE TABLE affected (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    incident_id  INTEGER NOT NULL REFERENCES incidents (id) ON DELETE CASCADE,
    digest       TEXT    NOT NULL,
    fiscal_code  TEXT,
    mobile       TEXT,
    email        TEXT,
    language     TEXT    NOT NULL,
    detail       TEXT    NOT NULL DEFAULT '',
    channel      TEXT    NOT NULL,
    recipient    TEXT    NOT NULL,
    -- The row hears public statements of updates from this one on: the latest published when it
    -- was stored (0: every one).
    since_update INTEGER NOT NULL DEFAULT 0,
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL
);
CREATE UNIQUE INDEX affected_once ON affected (incident_id, digest);
CREATE INDEX affected_writing ON affected (incident_id, channel, language, id);

-- A delivery to a row of a list carries the row and its detail (filled into the message when it
-- is sent). Each row hears each statement once per channel, whoever else shares its address: the
-- unique rule of other deliveries (update, channel, recipient) leaves them out. A second channel
-- only when App IO refused the row (not on IO, or the service turned off): the row moves to its
-- next way and hears the statement there.
ALTER TABLE deliveries ADD COLUMN affected_id INTEGER REFERENCES affected (id) ON DELETE CASCADE;
ALTER TABLE deliveries ADD COLUMN detail TEXT;
DROP INDEX deliveries_once;
CREATE UNIQUE INDEX deliveries_once ON deliveries (update_id, channel, recipient)
    WHERE draft_id IS NULL AND affected_id IS NULL;
CREATE UNIQUE INDEX deliveries_affected_once ON deliveries (affected_id, update_id, channel)
    WHERE affected_id IS NOT NULL;

-- An upload is checked row by row as it arrives and staged here in batches; only once the whole
-- body has been read and found well formed is it merged into the list, in one transaction, so a
-- malformed upload writes nothing. Rows staged by an upload that never finished are deleted by
-- retention.
CREATE TABLE affected_staging (
    upload      TEXT    NOT NULL,
    seq         INTEGER NOT NULL,
    digest      TEXT    NOT NULL,
    fiscal_code TEXT,
    mobile      TEXT,
    email       TEXT,
    language    TEXT    NOT NULL,
    detail      TEXT    NOT NULL,
    channel     TEXT    NOT NULL,
    recipient   TEXT    NOT NULL,
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (upload, seq)
);
CREATE INDEX affected_staging_digest ON affected_staging (upload, digest, seq);
CREATE INDEX affected_staging_age ON affected_staging (created_at);

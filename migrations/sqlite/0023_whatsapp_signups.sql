-- WhatsApp: citizens may sign up by it (their number confirmed by a code sent as an
-- authentication template), and the channel counts the people it reached in a rolling day (the
-- number's messaging limit) from the deliveries it sent.
--
-- SQLite cannot change a CHECK constraint: `signups` is rebuilt (nothing refers to it), its rows,
-- its id sequence and its indexes kept.

CREATE TABLE signups_new (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    token_sha256 TEXT    NOT NULL UNIQUE,
    channel      TEXT    NOT NULL CHECK (channel IN ('email', 'sms', 'whatsapp')),
    address      TEXT,
    address_key  TEXT    NOT NULL,
    language     TEXT    NOT NULL,
    services     TEXT    NOT NULL,
    code_sha256  TEXT,
    attempts     INTEGER NOT NULL DEFAULT 0,
    -- The address this one takes over from (a citizen moving to another channel).
    replaces     INTEGER,
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL,
    used_at      INTEGER
);
INSERT INTO signups_new (id, token_sha256, channel, address, address_key, language, services,
                         code_sha256, attempts, replaces, created_at, expires_at, used_at)
SELECT id, token_sha256, channel, address, address_key, language, services,
       code_sha256, attempts, replaces, created_at, expires_at, used_at
  FROM signups;
DELETE FROM sqlite_sequence WHERE name = 'signups_new';
INSERT INTO sqlite_sequence (name, seq) SELECT 'signups_new', seq FROM sqlite_sequence WHERE name = 'signups';
DROP TABLE signups;
ALTER TABLE signups_new RENAME TO signups;
CREATE INDEX signups_address ON signups (address_key, created_at);
CREATE INDEX signups_expires ON signups (expires_at);

-- The people a channel reached in the last day (counted from the window's entries alone), and
-- whether one person is among them.
CREATE INDEX deliveries_sent ON deliveries (channel, sent_at, recipient) WHERE state = 'sent';
CREATE INDEX deliveries_reached ON deliveries (channel, recipient, sent_at) WHERE state = 'sent';

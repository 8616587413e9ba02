-- Citizens subscribe themselves from the status page.

-- The status-page services a citizen follows (a JSON array of their ids); NULL for every other
-- subscriber. Their subscriptions are written from these and the services' current matchers.
-- (The origin column stays 'api': widening its CHECK would mean rebuilding the table in SQLite.)
ALTER TABLE subscribers ADD COLUMN citizen_services TEXT;

-- A sign-up waiting for its confirmation: the link sent by email, or the code sent by SMS.
-- Only digests of the token and the code are kept; the address is cleared once used, and the row
-- goes when it expires. `address_key` (a keyed digest of the address) counts sign-ups per
-- address without keeping the address itself.
CREATE TABLE signups (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    token_sha256 TEXT    NOT NULL UNIQUE,
    channel      TEXT    NOT NULL CHECK (channel IN ('email', 'sms')),
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
-- A Telegram sign-up replacing a citizen's contact: erased when the chat binds.
ALTER TABLE chat_invites ADD COLUMN replaces INTEGER;

CREATE INDEX signups_address ON signups (address_key, created_at);
CREATE INDEX signups_expires ON signups (expires_at);

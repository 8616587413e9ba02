-- Chats (Telegram) bind themselves to a subscriber with an invite, and manage what they follow.

-- 'admin': given by the API or the configuration file, which keeps such addresses in step.
-- 'chat': a chat bound itself with an invite; the configuration file leaves it alone.
ALTER TABLE addresses ADD COLUMN origin TEXT NOT NULL DEFAULT 'admin' CHECK (origin IN ('admin', 'chat'));
-- A chat may speak another language than its subscriber (/lingua).
ALTER TABLE addresses ADD COLUMN language TEXT;

-- Services a chat follows on top of its subscriber's subscriptions, or has muted (/subscribe,
-- /unsubscribe).
CREATE TABLE address_services (
    address_id INTEGER NOT NULL REFERENCES addresses (id) ON DELETE CASCADE,
    service    TEXT    NOT NULL,
    mode       TEXT    NOT NULL CHECK (mode IN ('follow', 'mute')),
    PRIMARY KEY (address_id, service)
);

-- Single-use invites that bind a chat to a subscriber. Only a digest of the token is kept.
CREATE TABLE chat_invites (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    token_sha256  TEXT    NOT NULL UNIQUE,
    subscriber_id INTEGER NOT NULL REFERENCES subscribers (id) ON DELETE CASCADE,
    channel       TEXT    NOT NULL,
    created_by    TEXT    NOT NULL,
    created_at    INTEGER NOT NULL,
    expires_at    INTEGER NOT NULL,
    used_at       INTEGER,
    used_by       TEXT
);

-- Messages to one recipient on one channel go out in the order they were written, whatever
-- incident they belong to: a chat reads "CUP down", "portal down", "CUP back" in that order.
-- The claim looks up the earliest live delivery per recipient here.
CREATE INDEX deliveries_live ON deliveries (recipient, channel, id) WHERE state IN ('pending', 'sending');

-- Duties one process at a time performs (the incident engine and router, pruning), held by
-- renewing a time lease; and token buckets that pace a channel for the whole deployment.
CREATE TABLE leases (
    name   TEXT PRIMARY KEY,
    holder TEXT    NOT NULL,
    until  INTEGER NOT NULL
);

CREATE TABLE rate_buckets (
    name       TEXT PRIMARY KEY,
    -- Thousandths of a token, so that sub-token refills add up exactly.
    millitokens INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);

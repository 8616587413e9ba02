-- Duties one process at a time performs (the incident engine and router, pruning), held by
-- renewing a time lease; and token buckets that pace a channel for the whole deployment.
CREATE TABLE leases (
    name   TEXT PRIMARY KEY,
    holder TEXT    NOT NULL,
    until  BIGINT NOT NULL
);

CREATE TABLE rate_buckets (
    name       TEXT PRIMARY KEY,
    -- Thousandths of a token, so that sub-token refills add up exactly.
    millitokens BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

-- API tokens created while the service runs (the first start, `banditore token create`, the API,
-- the console), beside those of the configuration. Only the SHA-256 of the secret is kept.
-- A revoked token stays, for the audit trail; its name may then be given to a new token, so the
-- name is unique among the live tokens only.
CREATE TABLE api_tokens (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    name          TEXT    NOT NULL,
    -- Comma-separated roles: ingest, viewer, operator, communicator, admin.
    roles         TEXT    NOT NULL,
    -- Hex SHA-256 of the secret.
    secret_sha256 TEXT    NOT NULL UNIQUE,
    created_at    INTEGER NOT NULL,
    created_by    TEXT    NOT NULL,
    revoked_at    INTEGER,
    revoked_by    TEXT,
    -- Written every few seconds by the replica that saw the token used, not on every request.
    last_used_at  INTEGER
);
CREATE UNIQUE INDEX api_tokens_live_name ON api_tokens (name) WHERE revoked_at IS NULL;

-- Banditore schema, SQLite. Times are Unix milliseconds (INTEGER); label maps are JSON text.
-- Ids that leave the database (incident numbers, unsubscribe links, Message-IDs) use
-- AUTOINCREMENT so that a deleted row's id is never given to another.

-- Key/value settings the service keeps for itself (the generated unsubscribe key).
CREATE TABLE settings (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

-- Every signal received, in arrival order. `processed_at` is set by the incident engine.
CREATE TABLE signals (
    id           INTEGER PRIMARY KEY,
    received_at  INTEGER NOT NULL,
    source       TEXT    NOT NULL,
    fingerprint  TEXT    NOT NULL,
    status       TEXT    NOT NULL CHECK (status IN ('firing', 'resolved')),
    severity     TEXT    NOT NULL,
    service      TEXT    NOT NULL,
    component    TEXT,
    labels       TEXT    NOT NULL,
    annotations  TEXT    NOT NULL,
    summary      TEXT    NOT NULL,
    starts_at    INTEGER,
    ends_at      INTEGER,
    url          TEXT,
    processed_at INTEGER,
    outcome      TEXT,
    incident_id  INTEGER
);
CREATE INDEX signals_unprocessed ON signals (id) WHERE processed_at IS NULL;
CREATE INDEX signals_prunable ON signals (received_at) WHERE processed_at IS NOT NULL;
CREATE INDEX signals_incident ON signals (incident_id);

CREATE TABLE incidents (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    group_key         TEXT    NOT NULL,
    title             TEXT    NOT NULL,
    status            TEXT    NOT NULL,
    severity          TEXT    NOT NULL,
    origin            TEXT    NOT NULL CHECK (origin IN ('signals', 'manual')),
    labels            TEXT    NOT NULL,
    opened_at         INTEGER NOT NULL,
    resolved_at       INTEGER,
    -- JSON of what subscribers were last told; NULL until the first notice.
    announced         TEXT,
    last_announced_at INTEGER,
    -- When the engine must look at this incident again (group wait, interval, hold-down).
    eval_at           INTEGER,
    -- Receive time of the earliest signal not yet announced: the start of the latency clock.
    pending_since     INTEGER,
    last_seq          INTEGER NOT NULL DEFAULT 0
);
-- At most one open incident per group key.
CREATE UNIQUE INDEX incidents_open_key ON incidents (group_key) WHERE resolved_at IS NULL;
CREATE INDEX incidents_eval ON incidents (eval_at) WHERE eval_at IS NOT NULL;
CREATE INDEX incidents_opened ON incidents (opened_at);

-- The current state of each fingerprint within an incident.
CREATE TABLE alerts (
    id            INTEGER PRIMARY KEY,
    incident_id   INTEGER NOT NULL REFERENCES incidents (id) ON DELETE CASCADE,
    fingerprint   TEXT    NOT NULL,
    source        TEXT    NOT NULL,
    firing        INTEGER NOT NULL,
    severity      TEXT    NOT NULL,
    peak_severity TEXT    NOT NULL,
    service       TEXT    NOT NULL,
    component     TEXT,
    labels        TEXT    NOT NULL,
    annotations   TEXT    NOT NULL,
    summary       TEXT    NOT NULL,
    url           TEXT,
    starts_at     INTEGER,
    first_seen_at INTEGER NOT NULL,
    last_seen_at  INTEGER NOT NULL,
    resolved_at   INTEGER,
    UNIQUE (incident_id, fingerprint)
);
CREATE INDEX alerts_fingerprint ON alerts (fingerprint);

CREATE TABLE incident_updates (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    incident_id   INTEGER NOT NULL REFERENCES incidents (id) ON DELETE CASCADE,
    seq           INTEGER NOT NULL,
    kind          TEXT    NOT NULL CHECK (kind IN ('opened', 'updated', 'resolved')),
    status        TEXT    NOT NULL,
    severity      TEXT    NOT NULL,
    body          TEXT,
    author        TEXT,
    created_at    INTEGER NOT NULL,
    -- Receive time of the first signal behind this update (or of the API request).
    origin_at     INTEGER NOT NULL,
    -- What the update says, frozen when it is written: the title and the signals (JSON) as
    -- they were, so that an update routed late still tells its own moment.
    title         TEXT    NOT NULL,
    signals       TEXT    NOT NULL,
    -- 1 for the record of an incident closed before anyone was told: never routed.
    silent        INTEGER NOT NULL DEFAULT 0,
    routed_at     INTEGER,
    UNIQUE (incident_id, seq)
);
CREATE INDEX updates_unrouted ON incident_updates (id) WHERE routed_at IS NULL;

CREATE TABLE subscribers (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    name       TEXT    NOT NULL,
    language   TEXT    NOT NULL,
    audience   TEXT    NOT NULL,
    -- 'api' or 'config'; config subscribers are keyed by name and kept in step with the file.
    origin     TEXT    NOT NULL CHECK (origin IN ('api', 'config')),
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE UNIQUE INDEX subscribers_config_name ON subscribers (name) WHERE origin = 'config';

CREATE TABLE addresses (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    subscriber_id   INTEGER NOT NULL REFERENCES subscribers (id) ON DELETE CASCADE,
    channel         TEXT    NOT NULL,
    address         TEXT    NOT NULL,
    unsubscribed_at INTEGER,
    gone_at         INTEGER,
    gone_reason     TEXT,
    UNIQUE (subscriber_id, channel, address)
);

CREATE TABLE subscriptions (
    id            INTEGER PRIMARY KEY,
    subscriber_id INTEGER NOT NULL REFERENCES subscribers (id) ON DELETE CASCADE,
    position      INTEGER NOT NULL,
    matchers      TEXT    NOT NULL,
    min_severity  TEXT    NOT NULL,
    channels      TEXT    NOT NULL
);
CREATE INDEX subscriptions_subscriber ON subscriptions (subscriber_id);

-- Text rendered once per (update, channel, language, audience), frozen.
CREATE TABLE messages (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    update_id  INTEGER NOT NULL REFERENCES incident_updates (id) ON DELETE CASCADE,
    channel    TEXT    NOT NULL,
    language   TEXT    NOT NULL,
    audience   TEXT    NOT NULL,
    subject    TEXT,
    body       TEXT    NOT NULL,
    html       TEXT,
    created_at INTEGER NOT NULL,
    UNIQUE (update_id, channel, language, audience)
);

-- One row per recipient of a message: the outbox.
CREATE TABLE deliveries (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    message_id      INTEGER NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    update_id       INTEGER NOT NULL,
    incident_id     INTEGER NOT NULL,
    -- NULL once the subscriber is deleted; the history stays.
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
    UNIQUE (update_id, channel, recipient)
);
CREATE INDEX deliveries_due ON deliveries (channel, next_attempt_at, id) WHERE state = 'pending';
CREATE INDEX deliveries_leased ON deliveries (lease_until) WHERE state = 'sending';
CREATE INDEX deliveries_thread ON deliveries (incident_id, channel, recipient, id);
CREATE INDEX deliveries_incident ON deliveries (incident_id, id);
CREATE INDEX deliveries_address ON deliveries (address_id) WHERE address_id IS NOT NULL;
CREATE INDEX deliveries_prunable ON deliveries (created_at) WHERE state IN ('sent', 'failed', 'gone', 'cancelled');

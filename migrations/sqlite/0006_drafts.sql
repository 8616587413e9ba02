-- Public statements wait for the communications office: a draft per update and audience, one
-- part per rendered message (channel and language) with the recipients it will go to, every
-- edit kept as a version, and an audit log of who decided what.
CREATE TABLE drafts (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    incident_id INTEGER NOT NULL REFERENCES incidents (id) ON DELETE CASCADE,
    update_id   INTEGER NOT NULL REFERENCES incident_updates (id) ON DELETE CASCADE,
    audience    TEXT    NOT NULL,
    policy      TEXT    NOT NULL CHECK (policy IN ('approval', 'approval_with_timeout')),
    state       TEXT    NOT NULL CHECK (state IN ('pending', 'approved', 'rejected', 'superseded')),
    -- approval_with_timeout: published by itself at this time if nobody decided.
    publish_at  INTEGER,
    -- The earlier drafts of the incident this one replaces (never published).
    combined    INTEGER NOT NULL DEFAULT 0,
    created_at  INTEGER NOT NULL,
    decided_at  INTEGER,
    decided_by  TEXT,
    reason      TEXT,
    UNIQUE (update_id, audience)
);
CREATE INDEX drafts_open ON drafts (state, publish_at);
CREATE INDEX drafts_incident ON drafts (incident_id, audience);

CREATE TABLE draft_parts (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    draft_id    INTEGER NOT NULL REFERENCES drafts (id) ON DELETE CASCADE,
    message_id  INTEGER NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    channel     TEXT    NOT NULL,
    language    TEXT    NOT NULL,
    -- JSON array of [address id, address, subscriber name]: who gets it once approved.
    recipients  TEXT    NOT NULL,
    state       TEXT    NOT NULL CHECK (state IN ('pending', 'approved', 'rejected')),
    -- 1: the text as rendered (the message); higher: an edit in draft_versions.
    version     INTEGER NOT NULL DEFAULT 1,
    UNIQUE (draft_id, channel, language)
);

CREATE TABLE draft_versions (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    part_id    INTEGER NOT NULL REFERENCES draft_parts (id) ON DELETE CASCADE,
    version    INTEGER NOT NULL,
    subject    TEXT,
    body       TEXT    NOT NULL,
    edited_by  TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    UNIQUE (part_id, version)
);

CREATE TABLE audit_log (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    at          INTEGER NOT NULL,
    actor       TEXT    NOT NULL,
    action      TEXT    NOT NULL,
    incident_id INTEGER,
    draft_id    INTEGER,
    -- JSON: what the action changed (a diff, channels, recipients, a reason).
    detail      TEXT    NOT NULL
);
CREATE INDEX audit_log_incident ON audit_log (incident_id, id);

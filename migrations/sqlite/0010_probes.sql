-- Banditore's own probes: what each replica last saw of each probe, and what the leader declared
-- from them (so that a new leader does not declare the same outage again). Silences set through
-- the API, and the window that kept an incident quiet.
CREATE TABLE probe_observations (
    probe          TEXT    NOT NULL,
    instance       TEXT    NOT NULL,
    state          TEXT    NOT NULL CHECK (state IN ('up', 'down', 'unknown')),
    detail         TEXT    NOT NULL,
    cert_days_left INTEGER,
    observed_at    INTEGER NOT NULL,
    PRIMARY KEY (probe, instance)
);

CREATE TABLE probe_verdicts (
    subject    TEXT    PRIMARY KEY,
    state      TEXT    NOT NULL CHECK (state IN ('up', 'down')),
    detail     TEXT    NOT NULL,
    changed_at INTEGER NOT NULL
);

CREATE TABLE silences (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    -- JSON array of matcher strings, such as ["service=\"cup\""].
    matchers   TEXT    NOT NULL,
    starts_at  INTEGER NOT NULL,
    ends_at    INTEGER NOT NULL,
    comment    TEXT    NOT NULL,
    created_by TEXT    NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX silences_ends ON silences (ends_at);

ALTER TABLE incidents ADD COLUMN maintenance TEXT;

-- Heartbeats ([[heartbeats]] in the configuration): when each one's monitor last pinged and when
-- it is due again, and what Banditore declared. The configuration says what a heartbeat is; this
-- table keeps only its clock and state, so every replica reads and writes the same ones.
-- `state`: `new` (never pinged; its clock started at `created_at`), `up`, `late` (declared
-- silent: its alarm is firing) or `failed` (its monitor reported a failure).
-- `due_at`: when it becomes late if no ping comes (the last ping, or the start of its clock, plus
-- its period and grace). Moving `new`/`up` to `late` is one conditional UPDATE in the transaction
-- that stores the alarm's signal, so replicas checking at once declare it once.
CREATE TABLE heartbeats (
    name         TEXT    PRIMARY KEY,
    state        TEXT    NOT NULL CHECK (state IN ('new', 'up', 'late', 'failed')),
    created_at   BIGINT  NOT NULL,
    last_ping_at BIGINT,
    due_at       BIGINT  NOT NULL,
    changed_at   BIGINT  NOT NULL,
    pings        BIGINT  NOT NULL DEFAULT 0,
    -- What the monitor said with its last failure report, cleaned, at most 1,000 characters.
    detail       TEXT    NOT NULL DEFAULT ''
);

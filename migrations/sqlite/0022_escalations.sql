-- Escalation: a desk's own policy (JSON, as written: [{"after": "5m", "channels": ["sms"]}]),
-- NULL for its audience's, and the ladder of each incident and desk: one row per step that
-- waits, written when the desk is first sent a message about the incident, due at that moment
-- plus the step's delay. A step leaves `waiting` once: `fired` (its channels were sent the
-- incident's latest update), `acknowledged` (the desk said "seen" first) or `resolved` (the
-- incident ended first). The conditional update out of `waiting` is what keeps two replicas that
-- both believe they lead from firing a step twice.
ALTER TABLE subscribers ADD COLUMN escalation TEXT;
CREATE TABLE escalations (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    incident_id   INTEGER NOT NULL REFERENCES incidents (id) ON DELETE CASCADE,
    subscriber_id INTEGER NOT NULL REFERENCES subscribers (id) ON DELETE CASCADE,
    step          INTEGER NOT NULL,
    channels      TEXT    NOT NULL,
    due_at        INTEGER NOT NULL,
    state         TEXT    NOT NULL CHECK (state IN ('waiting', 'fired', 'acknowledged', 'resolved')),
    changed_at    INTEGER NOT NULL
);
CREATE UNIQUE INDEX escalations_step ON escalations (incident_id, subscriber_id, step);
CREATE INDEX escalations_due ON escalations (due_at) WHERE state = 'waiting';

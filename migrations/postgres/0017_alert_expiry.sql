-- Prometheus, posting to Banditore's Alertmanager API, re-sends each firing alert with an end
-- time a few evaluation intervals ahead and stops when the alert stops: an alert not re-sent by
-- then has resolved. Its firing lasts this long after it was last seen (the end time it was
-- last given, less when it was received), so that a re-send which only moves the end time
-- forward needs no write beyond the last-seen time. NULL: the alert fires until its sender
-- resolves it (every other source).
ALTER TABLE alerts ADD COLUMN expires_after_ms BIGINT;
CREATE INDEX alerts_expiring ON alerts (last_seen_at)
    WHERE firing = 1 AND expires_after_ms IS NOT NULL;

-- Heartbeats defined through the API (`POST /api/v1/heartbeats`) beside the configuration's.
-- `origin`: `config` (the row follows `[[heartbeats]]`: a start forgets it once it is no longer
-- configured) or `api` (its definition is `definition`, the JSON the API accepted; only the API
-- changes or deletes it). `defined_by`: who last defined it through the API, for the console.
ALTER TABLE heartbeats ADD COLUMN origin TEXT NOT NULL DEFAULT 'config'
    CHECK (origin IN ('config', 'api'));
ALTER TABLE heartbeats ADD COLUMN definition TEXT;
ALTER TABLE heartbeats ADD COLUMN defined_by TEXT;

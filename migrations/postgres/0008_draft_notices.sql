-- When the communications office was told a draft is waiting (NULL: not yet).
ALTER TABLE drafts ADD COLUMN announced_at BIGINT;
CREATE INDEX drafts_unannounced ON drafts (id) WHERE announced_at IS NULL;

-- What a replica's check found, as JSON data (its kind, status code, statuses expected…), so
-- that the leader's signal carries it for templates to put into each reader's words. NULL in
-- rows written before.
ALTER TABLE probe_observations ADD COLUMN finding TEXT;

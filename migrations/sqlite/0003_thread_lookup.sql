-- `deliveries_incident (incident_id, id)` let the planner answer "the earliest live delivery to
-- this recipient" by walking the incident's deliveries in id order, thousands of rows per
-- lookup after a large fan-out. `deliveries_thread (incident_id, channel, recipient, id)` answers
-- it in one step and serves every query by incident as well.
DROP INDEX deliveries_incident;

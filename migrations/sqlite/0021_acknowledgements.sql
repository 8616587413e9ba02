-- Acknowledgements: a desk (a subscriber) said it has seen an incident, by the link in an email,
-- the button under a Telegram message, a reply to a text or a key pressed during a call. One row
-- per desk and incident, the first that came: later ones change nothing, and none re-opens
-- anything. The names and the address are copied, so the record outlives the subscriber.
-- `first_sent_at`: when the desk's first message about the incident was handed to a provider,
-- for the time it took to acknowledge.
CREATE TABLE acknowledgements (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    incident_id     INTEGER NOT NULL REFERENCES incidents (id) ON DELETE CASCADE,
    subscriber_id   INTEGER REFERENCES subscribers (id) ON DELETE SET NULL,
    subscriber_name TEXT    NOT NULL,
    address_id      INTEGER REFERENCES addresses (id) ON DELETE SET NULL,
    channel         TEXT    NOT NULL,
    recipient       TEXT    NOT NULL,
    delivery_id     INTEGER,
    first_sent_at   INTEGER,
    acked_at        INTEGER NOT NULL
);
CREATE UNIQUE INDEX acknowledgements_desk ON acknowledgements (incident_id, subscriber_id);
-- A reply to a text names only the number: the latest incident texted to it is found here.
CREATE INDEX deliveries_texted ON deliveries (recipient, id) WHERE channel = 'sms' AND state = 'sent';

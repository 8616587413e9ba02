-- WhatsApp: citizens may sign up by it (their number confirmed by a code sent as an
-- authentication template), and the channel counts the people it reached in a rolling day (the
-- number's messaging limit) from the deliveries it sent.

ALTER TABLE signups DROP CONSTRAINT signups_channel_check;
ALTER TABLE signups ADD CONSTRAINT signups_channel_check
    CHECK (channel IN ('email', 'sms', 'whatsapp'));

-- The people a channel reached in the last day (counted from the window's entries alone), and
-- whether one person is among them.
CREATE INDEX deliveries_sent ON deliveries (channel, sent_at, recipient) WHERE state = 'sent';
CREATE INDEX deliveries_reached ON deliveries (channel, recipient, sent_at) WHERE state = 'sent';

-- Notices telling the communications office that a draft waits go through the outbox like every
-- other message: a delivery may now be a notice about a draft (`draft_id`), and a message may
-- carry buttons (Telegram's Approve, Reject and Open).
--
-- A delivery of a message is once per (update, channel, recipient); a notice is once per
-- (draft, channel, recipient), so that an approver who also hears the update on the same
-- address, or a second draft of the same update, still gets the notice.

-- JSON rows of buttons shown under the message where the channel can; NULL for none.
ALTER TABLE messages ADD COLUMN buttons TEXT;

-- The draft this delivery tells the communications office about; NULL for a delivery of the
-- message to a subscriber.
ALTER TABLE deliveries ADD COLUMN draft_id BIGINT REFERENCES drafts (id) ON DELETE CASCADE;
ALTER TABLE deliveries DROP CONSTRAINT deliveries_update_id_channel_recipient_key;
CREATE UNIQUE INDEX deliveries_once ON deliveries (update_id, channel, recipient) WHERE draft_id IS NULL;
CREATE UNIQUE INDEX deliveries_notice_once ON deliveries (draft_id, channel, recipient) WHERE draft_id IS NOT NULL;

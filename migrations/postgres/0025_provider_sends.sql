-- The sends of one provider within a window, for a channel that reads their statuses back
-- (App IO): `OutboxStore::unsettled`.
CREATE INDEX deliveries_sent_by_provider ON deliveries (provider, sent_at) WHERE state = 'sent';

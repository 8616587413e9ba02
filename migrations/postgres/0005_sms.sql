-- SMS: which provider took each delivery, how many segments it cost, and what the network
-- later reported through the provider's delivery callback.
ALTER TABLE deliveries ADD COLUMN provider TEXT;
ALTER TABLE deliveries ADD COLUMN segments INTEGER;
ALTER TABLE deliveries ADD COLUMN report_status TEXT;
ALTER TABLE deliveries ADD COLUMN report_error TEXT;
ALTER TABLE deliveries ADD COLUMN report_at BIGINT;
CREATE INDEX deliveries_provider_message ON deliveries (provider, provider_id) WHERE provider IS NOT NULL;

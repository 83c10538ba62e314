-- Digests: which outbox message carries each delivery and at which mail detail
-- level it was written; which feed files the admin list has been told about.

-- Set in the transaction that stores the digest and flips the delivery from
-- pending to queued; the delivery follows its message to sent or failed.
ALTER TABLE deliveries ADD COLUMN outbox_id BIGINT REFERENCES outbox (id);
ALTER TABLE deliveries ADD COLUMN detail TEXT;
CREATE INDEX deliveries_by_outbox ON deliveries (outbox_id);
-- Settling copies a delivery's routed audit row into its sent/failed row.
CREATE INDEX audit_by_delivery ON audit_log (delivery_id);

-- When the admin email about this file (rejected, or too many quarantined rows)
-- was stored in the outbox. Files finished before this migration were reported
-- on the console by the run that took them: they are not mailed now.
ALTER TABLE feed_files ADD COLUMN notified_at TIMESTAMPTZ;
UPDATE feed_files SET notified_at = finished_at WHERE finished_at IS NOT NULL;

-- Retention: when the raw copy of a feed file was deleted by the purge job (the
-- ledger row stays, so the file's history and sha256 remain).
ALTER TABLE feed_files ADD COLUMN purged_at TEXT;

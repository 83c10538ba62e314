-- The address keys of stored mentions computed again at the store's next opening
-- (Store::finish_upgrades): since postcodes have one parser (domain::Postcode), a
-- value too short to have an inward code is kept compact (M65A, not M 65A), so the
-- keys written before for such values no longer match the keys the link stage
-- computes. Valid postcodes' keys do not change.
INSERT INTO store_upgrades (name)
    SELECT 'mention_address_keys' WHERE EXISTS (SELECT 1 FROM mentions)
    ON CONFLICT (name) DO NOTHING;

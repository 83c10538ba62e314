-- Each mention's written address as a household key (addr:LINE|POSTCODE, as
-- link::family::written_address_key normalises it), kept at ingest, and lookups by
-- it and by UPRN: where the rules find the children living at an address without
-- reading every child in its postcode.
ALTER TABLE mentions ADD COLUMN address_key TEXT;
CREATE INDEX mentions_by_address_key ON mentions (address_key);
CREATE INDEX mentions_by_uprn ON mentions (uprn);

-- Work a migration leaves to the store's next opening, where Rust code does it
-- (Store::finish_upgrades): here, the keys of the mentions stored before.
CREATE TABLE store_upgrades (
    name            TEXT    PRIMARY KEY
);
INSERT INTO store_upgrades (name)
    SELECT 'mention_address_keys' WHERE EXISTS (SELECT 1 FROM mentions);

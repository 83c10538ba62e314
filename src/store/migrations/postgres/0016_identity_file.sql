-- The feed file that last changed what a mention says of who someone is (names, date
-- of birth, sex, address, identifiers, role, school), as distinct from last_file_id,
-- the last file that named the mention at all. A pupil's new attendance mark moves
-- last_file_id and leaves identity_file_id alone, so the next incremental link does
-- not compare that pupil again. No index: the link reads every mention anyway, and an
-- index would cost every insert of a first ingest.
ALTER TABLE mentions ADD COLUMN identity_file_id BIGINT;
UPDATE mentions SET identity_file_id = last_file_id;

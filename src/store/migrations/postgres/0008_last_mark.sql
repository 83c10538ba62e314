-- The date of each pupil mention's latest attendance mark, kept at ingest, so that
-- linking need not scan every mark for it (a person's home is the address of their
-- latest mention).
ALTER TABLE mentions ADD COLUMN last_mark_on DATE;
UPDATE mentions SET last_mark_on = (
    SELECT MAX(a.date) FROM attendance_marks a WHERE a.mention_id = mentions.id
) WHERE kind = 'attendance';

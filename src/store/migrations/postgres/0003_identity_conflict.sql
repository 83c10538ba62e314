-- A mention key (a case-system person id, a UPN) seen with two different people's
-- details: a date of birth and a forename that both differ. Linking keeps such a
-- mention apart and flags it instead of merging everyone it resembles.
ALTER TABLE mentions ADD COLUMN identity_conflict BOOLEAN NOT NULL DEFAULT FALSE;

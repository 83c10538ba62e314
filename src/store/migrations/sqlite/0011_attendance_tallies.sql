-- Incremental attendance counting for the evaluate stage.
--
-- pupil_schools: each pupil mention's schools with the date of its latest mark
-- there, kept at ingest, so that the count can start from the pupils marked since
-- a window began instead of scanning every mark.
CREATE TABLE pupil_schools (
    mention_id      INTEGER NOT NULL,
    school_urn      INTEGER NOT NULL,
    last_mark_on    TEXT    NOT NULL,
    PRIMARY KEY (mention_id, school_urn)
) WITHOUT ROWID;
INSERT INTO pupil_schools (mention_id, school_urn, last_mark_on)
    SELECT mention_id, school_urn, MAX(date) FROM attendance_marks
    GROUP BY mention_id, school_urn;

-- The feed file that last wrote marks for the school day: a mark written for a day
-- an evaluation has already counted makes the next one recount that school.
ALTER TABLE school_days ADD COLUMN file_id INTEGER;

-- What the last evaluation counted: each school's window (bfrom = the baseline's
-- first day, wfrom = the window's first, wto = its last) ...
CREATE TABLE attendance_tally_windows (
    school_urn      INTEGER PRIMARY KEY,
    bfrom           TEXT    NOT NULL,
    wfrom           TEXT    NOT NULL,
    wto             TEXT    NOT NULL
);
-- ... each pupil's counts in them (packed as `Store::attendance_counts` reads
-- them; marks = how many marks fell in the baseline and window) ...
CREATE TABLE attendance_tallies (
    mention_id      INTEGER NOT NULL,
    school_urn      INTEGER NOT NULL,
    window_packed   INTEGER NOT NULL,
    baseline_packed INTEGER NOT NULL,
    marks           INTEGER NOT NULL,
    PRIMARY KEY (mention_id, school_urn)
) WITHOUT ROWID;
-- ... and for which window lengths, up to which feed file. No row: the next
-- evaluation counts everything.
CREATE TABLE attendance_tally_state (
    id              INTEGER PRIMARY KEY CHECK (id = 1),
    window_days     INTEGER NOT NULL,
    baseline_days   INTEGER NOT NULL,
    file_id         INTEGER NOT NULL
);

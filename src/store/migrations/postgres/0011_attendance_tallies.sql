-- Incremental attendance counting for the evaluate stage.
--
-- pupil_schools: each pupil mention's schools with the date of its latest mark
-- there, kept at ingest, so that the count can start from the pupils marked since
-- a window began instead of scanning every mark.
CREATE TABLE pupil_schools (
    mention_id      BIGINT NOT NULL,
    school_urn      BIGINT NOT NULL,
    last_mark_on    DATE    NOT NULL,
    PRIMARY KEY (mention_id, school_urn)
);
INSERT INTO pupil_schools (mention_id, school_urn, last_mark_on)
    SELECT mention_id, school_urn, MAX(date) FROM attendance_marks
    GROUP BY mention_id, school_urn;

-- The feed file that last wrote marks for the school day: a mark written for a day
-- an evaluation has already counted makes the next one recount that school.
ALTER TABLE school_days ADD COLUMN file_id BIGINT;

-- What the last evaluation counted: each school's window (bfrom = the baseline's
-- first day, wfrom = the window's first, wto = its last) ...
CREATE TABLE attendance_tally_windows (
    school_urn      BIGINT PRIMARY KEY,
    bfrom           DATE    NOT NULL,
    wfrom           DATE    NOT NULL,
    wto             DATE    NOT NULL
);
-- ... each pupil's counts in them (packed as `Store::attendance_counts` reads
-- them; marks = how many marks fell in the baseline and window) ...
CREATE TABLE attendance_tallies (
    mention_id      BIGINT NOT NULL,
    school_urn      BIGINT NOT NULL,
    window_packed   BIGINT NOT NULL,
    baseline_packed BIGINT NOT NULL,
    marks           BIGINT NOT NULL,
    PRIMARY KEY (mention_id, school_urn)
);
-- ... and for which window lengths, up to which feed file. No row: the next
-- evaluation counts everything.
CREATE TABLE attendance_tally_state (
    id              BIGINT PRIMARY KEY CHECK (id = 1),
    window_days     BIGINT NOT NULL,
    baseline_days   BIGINT NOT NULL,
    file_id         BIGINT NOT NULL
);

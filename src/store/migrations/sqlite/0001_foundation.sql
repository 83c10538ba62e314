-- Foundation: the feed ledger, person mentions, the four feed kinds' records and
-- the quarantine. Dates are ISO text, instants are RFC 3339 text in UTC.

-- One row per raw file taken from a source. status: fetched (held in the state
-- dir, not yet ingested) | ingested | rejected.
CREATE TABLE feed_files (
    id              INTEGER PRIMARY KEY,
    source          TEXT    NOT NULL,
    kind            TEXT    NOT NULL,
    original_name   TEXT    NOT NULL,
    raw_path        TEXT    NOT NULL,
    origin          TEXT    NOT NULL,
    sha256          TEXT    NOT NULL,
    size            INTEGER NOT NULL,
    fetched_at      TEXT    NOT NULL,
    status          TEXT    NOT NULL CHECK (status IN ('fetched', 'ingested', 'rejected')),
    reason          TEXT,
    rows_read       INTEGER NOT NULL DEFAULT 0,
    records         INTEGER NOT NULL DEFAULT 0,
    quarantined     INTEGER NOT NULL DEFAULT 0,
    finished_at     TEXT
);
-- The same content is ingested at most once per source.
CREATE UNIQUE INDEX feed_files_ingested_once ON feed_files (source, sha256) WHERE status = 'ingested';
CREATE INDEX feed_files_by_source ON feed_files (source, status);

-- Conditional-GET validators of the last successful HTTP fetch, per source.
CREATE TABLE http_validators (
    source          TEXT PRIMARY KEY,
    etag            TEXT,
    last_modified   TEXT,
    updated_at      TEXT NOT NULL
);

-- One row per distinct person mention (source + mention key of feeds.md).
CREATE TABLE mentions (
    id              INTEGER PRIMARY KEY,
    source          TEXT    NOT NULL,
    kind            TEXT    NOT NULL,
    mention_key     TEXT    NOT NULL,
    role            TEXT    NOT NULL,
    forename        TEXT,
    surname         TEXT,
    dob             TEXT,
    gender          TEXT,
    address_line1   TEXT,
    postcode        TEXT,
    postcode_valid  BOOLEAN,
    uprn            INTEGER,
    upn             TEXT,
    upn_valid       BOOLEAN,
    nhs_number      TEXT,
    nhs_valid       BOOLEAN,
    school_urn      INTEGER,
    first_file_id   INTEGER NOT NULL REFERENCES feed_files (id),
    last_file_id    INTEGER NOT NULL REFERENCES feed_files (id),
    UNIQUE (source, mention_key)
);

CREATE TABLE attendance_marks (
    mention_id      INTEGER NOT NULL REFERENCES mentions (id),
    school_urn      INTEGER NOT NULL,
    date            TEXT    NOT NULL,
    session         TEXT    NOT NULL,
    mark            TEXT    NOT NULL,
    category        TEXT    NOT NULL,
    file_id         INTEGER NOT NULL,
    PRIMARY KEY (mention_id, school_urn, date, session)
) WITHOUT ROWID;

CREATE TABLE da_persons (
    source          TEXT    NOT NULL,
    notification_id TEXT    NOT NULL,
    person_key      TEXT    NOT NULL,
    incident_at     TEXT    NOT NULL,
    role            TEXT    NOT NULL,
    mention_id      INTEGER NOT NULL REFERENCES mentions (id),
    address_line1   TEXT    NOT NULL,
    postcode        TEXT    NOT NULL,
    uprn            INTEGER,
    dash_risk       TEXT,
    crime_ref       TEXT,
    school_urn      INTEGER,
    file_id         INTEGER NOT NULL,
    PRIMARY KEY (source, notification_id, person_key)
);

CREATE TABLE housing_notices (
    source          TEXT    NOT NULL,
    notice_id       TEXT    NOT NULL,
    notice_type     TEXT    NOT NULL,
    served_on       TEXT    NOT NULL,
    possession_date TEXT,
    tenure          TEXT,
    address_line1   TEXT    NOT NULL,
    postcode        TEXT    NOT NULL,
    uprn            INTEGER,
    children_in_household INTEGER,
    mention_id      INTEGER NOT NULL REFERENCES mentions (id),
    file_id         INTEGER NOT NULL,
    PRIMARY KEY (source, notice_id)
);

-- Snapshots upsert; a case missing from a later snapshot keeps its last state.
CREATE TABLE case_members (
    source          TEXT    NOT NULL,
    case_id         TEXT    NOT NULL,
    person_id       TEXT    NOT NULL,
    family_id       TEXT    NOT NULL,
    role            TEXT    NOT NULL,
    mention_id      INTEGER NOT NULL REFERENCES mentions (id),
    referral_date   TEXT    NOT NULL,
    opened_on       TEXT,
    closed_on       TEXT,
    closure_reason  TEXT,
    level           TEXT,
    locality        TEXT,
    lead_professional TEXT,
    file_id         INTEGER NOT NULL,
    PRIMARY KEY (source, case_id, person_id)
);

CREATE TABLE quarantine (
    id              INTEGER PRIMARY KEY,
    file_id         INTEGER NOT NULL REFERENCES feed_files (id),
    row_number      INTEGER NOT NULL,
    column_name     TEXT,
    reason          TEXT    NOT NULL,
    raw             TEXT    NOT NULL
);
CREATE INDEX quarantine_by_file ON quarantine (file_id);

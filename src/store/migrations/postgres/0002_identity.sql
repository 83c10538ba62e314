-- Identity: persons (stable ids, merges recorded as aliases), the mention → person
-- map, the links with their evidence, the review queue, the persisted model, link
-- runs and their flags, households and families. Instants are TIMESTAMPTZ.

-- One row per person id ever handed out. A merged person keeps its row with
-- merged_into set, so an old id still resolves.
CREATE TABLE persons (
    id              BIGINT PRIMARY KEY,
    created_at      TIMESTAMPTZ    NOT NULL,
    merged_into     BIGINT
);

-- Which person each mention belongs to (every linked mention has one row).
CREATE TABLE mention_persons (
    mention_id      BIGINT PRIMARY KEY REFERENCES mentions (id),
    person_id       BIGINT NOT NULL REFERENCES persons (id)
);
CREATE INDEX mention_persons_by_person ON mention_persons (person_id);

-- old id → the id it was merged into (follow the chain to the live id).
CREATE TABLE person_aliases (
    old_id          BIGINT PRIMARY KEY,
    new_id          BIGINT NOT NULL,
    at              TIMESTAMPTZ    NOT NULL
);

-- Kept pairs (band link or review) with their evidence; a < b. weight is NULL for
-- deterministic links (infinite weight).
CREATE TABLE links (
    a               BIGINT NOT NULL REFERENCES mentions (id),
    b               BIGINT NOT NULL REFERENCES mentions (id),
    basis           TEXT    NOT NULL,
    probability     DOUBLE PRECISION NOT NULL,
    weight          DOUBLE PRECISION,
    band            TEXT    NOT NULL CHECK (band IN ('link', 'review', 'no_link')),
    evidence        TEXT    NOT NULL,
    PRIMARY KEY (a, b)
);
CREATE INDEX links_by_b ON links (b);

-- Pairs a person must decide, and every decision ever made (a < b). A decided row
-- is never re-opened by a later run.
CREATE TABLE review_queue (
    a               BIGINT NOT NULL REFERENCES mentions (id),
    b               BIGINT NOT NULL REFERENCES mentions (id),
    probability     DOUBLE PRECISION NOT NULL,
    evidence        TEXT    NOT NULL,
    status          TEXT    NOT NULL CHECK (status IN ('pending', 'accepted', 'rejected')),
    raised_at       TIMESTAMPTZ    NOT NULL,
    decided_by      TEXT,
    decided_at      TIMESTAMPTZ,
    note            TEXT,
    PRIMARY KEY (a, b)
);
CREATE INDEX review_queue_by_status ON review_queue (status);
CREATE INDEX review_queue_by_b ON review_queue (b);

-- The Fellegi–Sunter model as JSON: one row.
CREATE TABLE link_model (
    id              BIGINT PRIMARY KEY CHECK (id = 1),
    model           TEXT    NOT NULL,
    updated_at      TIMESTAMPTZ    NOT NULL
);

-- One row per link run. max_file_id: the newest feed file whose mentions it saw
-- (an incremental run compares mentions changed by later files).
CREATE TABLE link_runs (
    id              BIGSERIAL PRIMARY KEY,
    started_at      TIMESTAMPTZ    NOT NULL,
    finished_at     TIMESTAMPTZ    NOT NULL,
    full_run        BOOLEAN NOT NULL,
    max_file_id     BIGINT NOT NULL,
    mentions        BIGINT NOT NULL,
    candidate_pairs BIGINT NOT NULL,
    link_pairs      BIGINT NOT NULL,
    review_pairs    BIGINT NOT NULL,
    persons         BIGINT NOT NULL,
    households      BIGINT NOT NULL,
    families        BIGINT NOT NULL,
    review_pending  BIGINT NOT NULL,
    flags           BIGINT NOT NULL
);

-- Flags of the latest run (replaced by each run): kind size_cap (a, b, size),
-- reused_case_person_id (a = the mention), large_block (detail = rule, size).
CREATE TABLE link_flags (
    id              BIGSERIAL PRIMARY KEY,
    run_id          BIGINT NOT NULL REFERENCES link_runs (id),
    kind            TEXT    NOT NULL,
    a               BIGINT,
    b               BIGINT,
    size            BIGINT,
    detail          TEXT
);

-- A household per address key (uprn:N, or addr:LINE|POSTCODE normalised); its id
-- stays with the key.
CREATE TABLE households (
    id              BIGINT PRIMARY KEY,
    address_key     TEXT    NOT NULL UNIQUE,
    uprn            BIGINT,
    address_line1   TEXT,
    postcode        TEXT
);

-- Each person's household (their home address); persons without a known address
-- have none.
CREATE TABLE household_members (
    person_id       BIGINT PRIMARY KEY,
    household_id    BIGINT NOT NULL REFERENCES households (id)
);
CREATE INDEX household_members_by_household ON household_members (household_id);

CREATE TABLE families (
    id              BIGINT PRIMARY KEY,
    created_at      TIMESTAMPTZ    NOT NULL,
    merged_into     BIGINT
);

-- via: how the person came into the family: case (the case system's family id),
-- household (lives at the family's address), police (named at the incident address,
-- which is also their own).
CREATE TABLE family_members (
    person_id       BIGINT PRIMARY KEY,
    family_id       BIGINT NOT NULL REFERENCES families (id),
    via             TEXT    NOT NULL CHECK (via IN ('case', 'household', 'police'))
);
CREATE INDEX family_members_by_family ON family_members (family_id);

CREATE TABLE family_aliases (
    old_id          BIGINT PRIMARY KEY,
    new_id          BIGINT NOT NULL,
    at              TIMESTAMPTZ    NOT NULL
);

-- Lookups by mention for the link read.
CREATE INDEX da_persons_by_mention ON da_persons (mention_id);
CREATE INDEX case_members_by_mention ON case_members (mention_id);
CREATE INDEX housing_notices_by_mention ON housing_notices (mention_id);
CREATE INDEX mentions_by_last_file ON mentions (last_file_id);

-- Rules and alerts: the school days each school recorded (the attendance windows
-- count school days, not calendar days), alerts with the facts behind them, the
-- deliveries routing decided, the audit trail of every disclosure, and evaluate
-- runs. Dates are ISO text, instants RFC 3339 text in UTC.

-- A date on which the school recorded any mark: maintained by ingest.
CREATE TABLE school_days (
    school_urn      INTEGER NOT NULL,
    date            TEXT    NOT NULL,
    PRIMARY KEY (school_urn, date)
) WITHOUT ROWID;
INSERT INTO school_days (school_urn, date)
    SELECT DISTINCT school_urn, date FROM attendance_marks;

-- subject: family:ID | pupil:SOURCE/MENTION_KEY | notification:SOURCE/ID |
-- notice:SOURCE/ID (the last two while the record is not linked to a family).
-- fingerprint: sha256 of rule, subject and the facts it was raised on; unique, so
-- the same facts never raise a second alert. revision grows with each escalation.
CREATE TABLE alerts (
    id              INTEGER PRIMARY KEY,
    rule            TEXT    NOT NULL,
    subject         TEXT    NOT NULL,
    fingerprint     TEXT    NOT NULL UNIQUE,
    family_id       INTEGER,
    school_urn      INTEGER,
    locality        TEXT,
    unrouted        TEXT,
    severity        TEXT    NOT NULL CHECK (severity IN ('info', 'priority', 'urgent')),
    status          TEXT    NOT NULL CHECK (status IN ('new', 'sent', 'acknowledged', 'resolved')),
    revision        INTEGER NOT NULL,
    raised_at       TEXT    NOT NULL,
    raised_on       TEXT    NOT NULL,
    updated_at      TEXT    NOT NULL,
    cleared_since   TEXT,
    resolved_at     TEXT,
    acked_by        TEXT,
    acked_at        TEXT,
    ack_note        TEXT,
    explanation     TEXT    NOT NULL
);
CREATE INDEX alerts_by_subject ON alerts (rule, subject);
CREATE INDEX alerts_by_status ON alerts (status);
CREATE INDEX alerts_by_family ON alerts (family_id);

-- The facts behind an alert. fact: a stable key (the record, or a condition of
-- it); episode: what tells two runs of the same condition apart (an attendance
-- window's first day), empty for a record. revision: the one that added it.
CREATE TABLE alert_facts (
    alert_id        INTEGER NOT NULL REFERENCES alerts (id),
    fact            TEXT    NOT NULL,
    episode         TEXT    NOT NULL,
    record_kind     TEXT    NOT NULL,
    record_id       TEXT    NOT NULL,
    person_id       INTEGER,
    revision        INTEGER NOT NULL,
    PRIMARY KEY (alert_id, fact)
);

-- Who is to be told: one row per alert revision, recipient and role, written in
-- the transaction that raised or escalated the alert. kind: new | update.
-- status: pending (not yet in a digest) | queued (in the outbox) | sent | failed.
CREATE TABLE deliveries (
    id              INTEGER PRIMARY KEY,
    alert_id        INTEGER NOT NULL REFERENCES alerts (id),
    revision        INTEGER NOT NULL,
    recipient       TEXT    NOT NULL,
    role            TEXT    NOT NULL,
    kind            TEXT    NOT NULL CHECK (kind IN ('new', 'update')),
    status          TEXT    NOT NULL CHECK (status IN ('pending', 'queued', 'sent', 'failed')),
    created_at      TEXT    NOT NULL,
    UNIQUE (alert_id, revision, recipient, role)
);
CREATE INDEX deliveries_by_status ON deliveries (status);

-- Every disclosure: who was (to be) told what about whom, and why. event: routed
-- (a delivery was decided) | sent (the email left) | failed. person_ids and
-- records are JSON arrays; detail is the mail detail level.
CREATE TABLE audit_log (
    id              INTEGER PRIMARY KEY,
    at              TEXT    NOT NULL,
    event           TEXT    NOT NULL,
    delivery_id     INTEGER,
    alert_id        INTEGER NOT NULL,
    revision        INTEGER NOT NULL,
    rule            TEXT    NOT NULL,
    recipient       TEXT    NOT NULL,
    role            TEXT    NOT NULL,
    family_id       INTEGER,
    person_ids      TEXT    NOT NULL,
    records         TEXT    NOT NULL,
    detail          TEXT    NOT NULL,
    reason          TEXT    NOT NULL
);
CREATE INDEX audit_by_family ON audit_log (family_id);
CREATE INDEX audit_by_recipient ON audit_log (recipient, at);

CREATE TABLE evaluate_runs (
    id              INTEGER PRIMARY KEY,
    started_at      TEXT    NOT NULL,
    finished_at     TEXT    NOT NULL,
    as_of           TEXT    NOT NULL,
    findings        INTEGER NOT NULL,
    raised          INTEGER NOT NULL,
    escalated       INTEGER NOT NULL,
    resolved        INTEGER NOT NULL,
    deliveries      INTEGER NOT NULL,
    unrouted        INTEGER NOT NULL
);

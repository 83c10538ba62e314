-- Rules and alerts: the school days each school recorded (the attendance windows
-- count school days, not calendar days), alerts with the facts behind them, the
-- deliveries routing decided, the audit trail of every disclosure, and evaluate
-- runs. Dates are DATE, instants TIMESTAMPTZ.

-- A date on which the school recorded any mark: maintained by ingest.
CREATE TABLE school_days (
    school_urn      BIGINT NOT NULL,
    date            DATE    NOT NULL,
    PRIMARY KEY (school_urn, date)
);
INSERT INTO school_days (school_urn, date)
    SELECT DISTINCT school_urn, date FROM attendance_marks;

-- subject: family:ID | pupil:SOURCE/MENTION_KEY | notification:SOURCE/ID |
-- notice:SOURCE/ID (the last two while the record is not linked to a family).
-- fingerprint: sha256 of rule, subject and the facts it was raised on; unique, so
-- the same facts never raise a second alert. revision grows with each escalation.
CREATE TABLE alerts (
    id              BIGSERIAL PRIMARY KEY,
    rule            TEXT    NOT NULL,
    subject         TEXT    NOT NULL,
    fingerprint     TEXT    NOT NULL UNIQUE,
    family_id       BIGINT,
    school_urn      BIGINT,
    locality        TEXT,
    unrouted        TEXT,
    severity        TEXT    NOT NULL CHECK (severity IN ('info', 'priority', 'urgent')),
    status          TEXT    NOT NULL CHECK (status IN ('new', 'sent', 'acknowledged', 'resolved')),
    revision        BIGINT NOT NULL,
    raised_at       TIMESTAMPTZ    NOT NULL,
    raised_on       DATE    NOT NULL,
    updated_at      TIMESTAMPTZ    NOT NULL,
    cleared_since   DATE,
    resolved_at     TIMESTAMPTZ,
    acked_by        TEXT,
    acked_at        TIMESTAMPTZ,
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
    alert_id        BIGINT NOT NULL REFERENCES alerts (id),
    fact            TEXT    NOT NULL,
    episode         TEXT    NOT NULL,
    record_kind     TEXT    NOT NULL,
    record_id       TEXT    NOT NULL,
    person_id       BIGINT,
    revision        BIGINT NOT NULL,
    PRIMARY KEY (alert_id, fact)
);

-- Who is to be told: one row per alert revision, recipient and role, written in
-- the transaction that raised or escalated the alert. kind: new | update.
-- status: pending (not yet in a digest) | queued (in the outbox) | sent | failed.
CREATE TABLE deliveries (
    id              BIGSERIAL PRIMARY KEY,
    alert_id        BIGINT NOT NULL REFERENCES alerts (id),
    revision        BIGINT NOT NULL,
    recipient       TEXT    NOT NULL,
    role            TEXT    NOT NULL,
    kind            TEXT    NOT NULL CHECK (kind IN ('new', 'update')),
    status          TEXT    NOT NULL CHECK (status IN ('pending', 'queued', 'sent', 'failed')),
    created_at      TIMESTAMPTZ    NOT NULL,
    UNIQUE (alert_id, revision, recipient, role)
);
CREATE INDEX deliveries_by_status ON deliveries (status);

-- Every disclosure: who was (to be) told what about whom, and why. event: routed
-- (a delivery was decided) | sent (the email left) | failed. person_ids and
-- records are JSON arrays; detail is the mail detail level.
CREATE TABLE audit_log (
    id              BIGSERIAL PRIMARY KEY,
    at              TIMESTAMPTZ    NOT NULL,
    event           TEXT    NOT NULL,
    delivery_id     BIGINT,
    alert_id        BIGINT NOT NULL,
    revision        BIGINT NOT NULL,
    rule            TEXT    NOT NULL,
    recipient       TEXT    NOT NULL,
    role            TEXT    NOT NULL,
    family_id       BIGINT,
    person_ids      TEXT    NOT NULL,
    records         TEXT    NOT NULL,
    detail          TEXT    NOT NULL,
    reason          TEXT    NOT NULL
);
CREATE INDEX audit_by_family ON audit_log (family_id);
CREATE INDEX audit_by_recipient ON audit_log (recipient, at);

CREATE TABLE evaluate_runs (
    id              BIGSERIAL PRIMARY KEY,
    started_at      TIMESTAMPTZ    NOT NULL,
    finished_at     TIMESTAMPTZ    NOT NULL,
    as_of           DATE    NOT NULL,
    findings        BIGINT NOT NULL,
    raised          BIGINT NOT NULL,
    escalated       BIGINT NOT NULL,
    resolved        BIGINT NOT NULL,
    deliveries      BIGINT NOT NULL,
    unrouted        BIGINT NOT NULL
);

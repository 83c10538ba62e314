-- Review decisions as an audit trail: every accept or reject ever recorded, and
-- its withdrawal by `kinlink review undo` (who, when, why). review_queue keeps each
-- pair's standing verdict; a withdrawn decision stays here, never deleted.
-- queued: the pair was pending in the queue when decided (else it was decided with
-- --force). applied_at: when a link run first applied it. restored_at: when a link
-- run, after the withdrawal, put back the person and family ids it had changed.
CREATE TABLE review_decisions (
    id              BIGSERIAL PRIMARY KEY,
    a               BIGINT NOT NULL,
    b               BIGINT NOT NULL,
    verdict         TEXT    NOT NULL CHECK (verdict IN ('accepted', 'rejected')),
    decided_by      TEXT    NOT NULL,
    decided_at      TIMESTAMPTZ NOT NULL,
    note            TEXT,
    queued          BOOLEAN NOT NULL,
    applied_at      TIMESTAMPTZ,
    withdrawn_by    TEXT,
    withdrawn_at    TIMESTAMPTZ,
    withdrawn_note  TEXT,
    restored_at     TIMESTAMPTZ
);
CREATE INDEX review_decisions_by_pair ON review_decisions (a, b);

-- The person and family each mention near a decision held just before the link
-- run that applied it (the mentions of the families on either side, before and
-- after): what the next link run after an undo gives back.
CREATE TABLE review_decision_ids (
    decision_id     BIGINT NOT NULL REFERENCES review_decisions (id),
    mention_id      BIGINT NOT NULL,
    person_id       BIGINT,
    family_id       BIGINT,
    PRIMARY KEY (decision_id, mention_id)
);

-- Decisions recorded before this table: taken as applied, with nothing to restore.
INSERT INTO review_decisions (a, b, verdict, decided_by, decided_at, note, queued, applied_at)
    SELECT a, b, status, COALESCE(decided_by, ''), COALESCE(decided_at, raised_at), note,
           TRUE, COALESCE(decided_at, raised_at)
    FROM review_queue WHERE status IN ('accepted', 'rejected') ORDER BY a, b;

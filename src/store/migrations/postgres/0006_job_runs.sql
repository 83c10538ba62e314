-- Scheduled job runs: one row per (job, scheduled time), whichever daemon ran it.
-- The UNIQUE pair is the claim: the daemon whose INSERT … ON CONFLICT DO NOTHING
-- returns a row runs it (claims of one job are also serialised by an advisory
-- transaction lock, so the overlap check and the insert see each other). While it
-- runs, the claiming daemon pushes claimed_until forward (a heartbeat); a row whose
-- claimed_until has passed without a finish belonged to a daemon that died, and
-- another may take it over.
-- outcome: NULL while running; ok | failed | skipped_overlap (the job was still
-- running from an earlier time) | interrupted (shutdown stopped it) | abandoned
-- (its claim expired and a later run superseded it).
-- error: the failure in words (stage and cause; ids only, never personal data).
-- steps: JSON [{"step", "started_at", "ms", "ok"}] in the order they ran.
CREATE TABLE job_runs (
    id              BIGSERIAL   PRIMARY KEY,
    job             TEXT        NOT NULL,
    scheduled_for   TIMESTAMPTZ NOT NULL,
    instance        TEXT        NOT NULL,
    claimed_at      TIMESTAMPTZ NOT NULL,
    claimed_until   TIMESTAMPTZ NOT NULL,
    takeovers       BIGINT      NOT NULL DEFAULT 0,
    started_at      TIMESTAMPTZ,
    finished_at     TIMESTAMPTZ,
    outcome         TEXT        CHECK (outcome IN ('ok', 'failed', 'skipped_overlap', 'interrupted', 'abandoned')),
    error           TEXT,
    steps           TEXT        NOT NULL DEFAULT '[]',
    UNIQUE (job, scheduled_for)
);
CREATE INDEX job_runs_unfinished ON job_runs (job) WHERE finished_at IS NULL;

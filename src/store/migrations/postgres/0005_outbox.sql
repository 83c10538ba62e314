-- The mail outbox: every message is stored, fully composed, before anything is sent,
-- so a killed process loses nothing. Instants are TIMESTAMPTZ.
--
-- status: queued (due at next_attempt_at) | sending (claimed by a drain run at
-- claimed_at; a row left here by a killed process is re-queued once its lease runs
-- out) | sent | failed (permanent, or given up: never retried without `outbox retry`).
CREATE TABLE outbox (
    id                BIGSERIAL PRIMARY KEY,
    -- Given by the caller (e.g. digest:<job>:<run>:<recipient>): enqueueing twice is harmless.
    idempotency_key   TEXT    NOT NULL UNIQUE,
    -- Derived from the key, so a re-send carries the same Message-ID.
    message_id        TEXT    NOT NULL UNIQUE,
    sender            TEXT    NOT NULL,
    subject           TEXT    NOT NULL,
    -- The RFC 5322 message exactly as it goes on the wire (every attempt sends these bytes).
    raw               BYTEA   NOT NULL,
    status            TEXT    NOT NULL CHECK (status IN ('queued', 'sending', 'sent', 'failed')),
    attempts          BIGINT  NOT NULL DEFAULT 0,
    next_attempt_at   TIMESTAMPTZ NOT NULL,
    claimed_at        TIMESTAMPTZ,
    -- Attempts whose outcome is unknown: the process was killed while the row was
    -- `sending` (found when its lease runs out), or the server's reply to the end of
    -- the message never came. The first is re-queued; the second parks the row as
    -- failed, so a message the server may already have taken goes out at most twice.
    unknown_outcomes    BIGINT  NOT NULL DEFAULT 0,
    last_error        TEXT,
    server_reply      TEXT,
    created_at        TIMESTAMPTZ NOT NULL,
    sent_at           TIMESTAMPTZ
);
CREATE INDEX outbox_due ON outbox (status, next_attempt_at);

-- Each envelope recipient of a message and how far it got. status: pending (still
-- to be sent) | sent (the server accepted the message for it) | failed (permanent).
CREATE TABLE outbox_recipients (
    outbox_id         BIGINT  NOT NULL REFERENCES outbox (id) ON DELETE CASCADE,
    position          BIGINT  NOT NULL,
    address           TEXT    NOT NULL,
    status            TEXT    NOT NULL CHECK (status IN ('pending', 'sent', 'failed')),
    reply             TEXT,
    PRIMARY KEY (outbox_id, position)
);

-- Undelivered mail told to the admin list. failure_notified_at: when this recipient's
-- permanent failure (refused with a 5xx, or its message failed as a whole: given up
-- after its attempts, or parked) was reported in an admin notice; NULL while it is
-- not (or after `outbox retry` queued it again: a new failure is reported again).
-- It is set in the transaction that stores the notice, so a failure is reported once.
ALTER TABLE outbox_recipients ADD COLUMN failure_notified_at TEXT;
-- How many times `kinlink outbox retry` queued the message again: a notice's
-- idempotency key names (message, recipient, retries), so a failure after a retry
-- is a new notice.
ALTER TABLE outbox ADD COLUMN retries INTEGER NOT NULL DEFAULT 0;
-- Failures from before this version are not mailed (`kinlink send` listed them).
UPDATE outbox_recipients SET failure_notified_at = (
    SELECT o.next_attempt_at FROM outbox o WHERE o.id = outbox_recipients.outbox_id
) WHERE status = 'failed'
   OR (status = 'pending' AND outbox_id IN (SELECT id FROM outbox WHERE status = 'failed'));
-- The send step looks for failures not yet reported at every run.
CREATE INDEX outbox_recipients_unreported ON outbox_recipients (outbox_id)
    WHERE failure_notified_at IS NULL AND status <> 'sent';

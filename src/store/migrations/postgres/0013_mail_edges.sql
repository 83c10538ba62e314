-- Who holds a claim on a message in `sending`: claimed_by names the process
-- (host:pid, for people); claimed_proc identifies it on its machine
-- (boot id:pid namespace:pid:start time), so a run on the same machine can see that
-- the claimer has died and take the message back at once instead of waiting out
-- the 15-minute lease. A claim from another machine, or an older one without these,
-- waits for its lease as before.
ALTER TABLE outbox ADD COLUMN claimed_by TEXT;
ALTER TABLE outbox ADD COLUMN claimed_proc TEXT;
-- A delivery refused for good (failed) whose recipient is no longer the one the
-- config names for its role, locality or school: its alert was routed again to the
-- address the config names now (a new delivery, audited `rerouted`), at this time.
-- Its message is never retried to the old address after that.
ALTER TABLE deliveries ADD COLUMN rerouted_at TIMESTAMPTZ;

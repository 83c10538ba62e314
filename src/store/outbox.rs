//! The mail outbox: composed messages stored before anything is sent, claimed one
//! at a time by a drain run, and marked with what the server said.
//!
//! Claiming is a status flip from `queued` to `sending` that also stamps
//! `claimed_at` (the lease) and counts the attempt. On PostgreSQL the row is picked
//! with `FOR UPDATE SKIP LOCKED`, so two daemons never claim the same message; on
//! SQLite (one process) the single `UPDATE … RETURNING` statement is the claim.
//!
//! Invariant: a message is enqueued at most once per idempotency key
//! (`INSERT … ON CONFLICT DO NOTHING`), so re-running a night is harmless.
//! Invariant: a recipient marked `sent` is never sent the message again, whatever
//! happens to the other recipients.
//! Invariant: an attempt whose outcome is unknown (a row found in `sending` after its
//! lease ran out, or a reply lost after the whole message was sent) re-queues the
//! message once; the second such attempt parks it as `failed`. So a crash after the
//! server accepted a message but before it was marked sent repeats it at most once.
//! Invariant: a claim is taken back before its lease ends only when its claimer is
//! certainly dead (the caller judges, from the claim's process key: same machine,
//! process gone); that too counts as an unknown outcome.

use std::collections::HashMap;
use std::fmt;

use chrono::{DateTime, Utc};

use super::{Pool, Store, StoreError, Tx};

/// Where a message is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OutboxStatus {
    /// Waiting for `next_attempt_at`.
    Queued,
    /// Claimed by a drain run (or left by one that was killed).
    Sending,
    /// Every recipient was settled and at least one accepted it.
    Sent,
    /// Permanently refused, or given up: only `outbox retry` sends it again.
    Failed,
}

impl OutboxStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            OutboxStatus::Queued => "queued",
            OutboxStatus::Sending => "sending",
            OutboxStatus::Sent => "sent",
            OutboxStatus::Failed => "failed",
        }
    }

    fn parse(s: &str) -> Result<OutboxStatus, StoreError> {
        Ok(match s {
            "queued" => OutboxStatus::Queued,
            "sending" => OutboxStatus::Sending,
            "sent" => OutboxStatus::Sent,
            "failed" => OutboxStatus::Failed,
            other => return Err(StoreError::Corrupt(format!("outbox status {other:?}"))),
        })
    }
}

impl fmt::Display for OutboxStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where one recipient of a message is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RecipientStatus {
    /// Still to be sent (never tried, or refused for now with a 4xx).
    Pending,
    /// The server accepted the message for this recipient.
    Sent,
    /// Refused for good (5xx).
    Failed,
}

impl RecipientStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RecipientStatus::Pending => "pending",
            RecipientStatus::Sent => "sent",
            RecipientStatus::Failed => "failed",
        }
    }

    fn parse(s: &str) -> Result<RecipientStatus, StoreError> {
        Ok(match s {
            "pending" => RecipientStatus::Pending,
            "sent" => RecipientStatus::Sent,
            "failed" => RecipientStatus::Failed,
            other => return Err(StoreError::Corrupt(format!("recipient status {other:?}"))),
        })
    }
}

/// A composed message to store.
#[derive(Debug, Clone)]
pub struct NewOutboxMessage<'a> {
    pub idempotency_key: &'a str,
    pub message_id: &'a str,
    /// Envelope sender (a bare address).
    pub sender: &'a str,
    pub subject: &'a str,
    /// Envelope recipients (bare addresses), in order.
    pub recipients: &'a [String],
    /// The RFC 5322 bytes, exactly as every attempt sends them.
    pub raw: &'a [u8],
    /// Created, and first due.
    pub at: DateTime<Utc>,
}

/// What enqueueing did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Enqueued {
    pub id: i64,
    /// `false` when the key was already in the outbox (nothing changed).
    pub created: bool,
}

/// A message claimed for one attempt.
#[derive(Debug, Clone)]
pub struct ClaimedMessage {
    pub id: i64,
    pub message_id: String,
    pub sender: String,
    pub raw: Vec<u8>,
    /// Recipients still pending, in order.
    pub recipients: Vec<String>,
    /// Attempts so far, this one included.
    pub attempts: i64,
    /// Earlier attempts whose outcome is unknown (see the module invariant).
    pub unknown_outcomes: i64,
    /// Recipients already sent by earlier attempts.
    pub already_sent: i64,
}

/// What one attempt settled, written in one transaction.
#[derive(Debug, Clone)]
pub struct AttemptOutcome {
    /// Recipients whose state changed: address, new state, the server's reply.
    pub recipients: Vec<(String, RecipientStatus, Option<String>)>,
    /// `Queued` (try again at `next_attempt_at`), `Sent` or `Failed`.
    pub status: OutboxStatus,
    pub next_attempt_at: DateTime<Utc>,
    pub last_error: Option<String>,
    pub server_reply: Option<String>,
    /// This attempt's outcome is unknown for some recipient (counted, see the
    /// module invariant).
    pub unknown: bool,
    pub at: DateTime<Utc>,
}

/// One recipient as stored.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct OutboxRecipient {
    pub address: String,
    pub status: RecipientStatus,
    pub reply: Option<String>,
    /// When its permanent failure was reported to the admin list.
    pub failure_notified_at: Option<DateTime<Utc>>,
}

/// One outbox row without its bytes.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct OutboxEntry {
    pub id: i64,
    pub idempotency_key: String,
    pub message_id: String,
    pub sender: String,
    pub subject: String,
    pub status: OutboxStatus,
    pub attempts: i64,
    pub next_attempt_at: DateTime<Utc>,
    pub claimed_at: Option<DateTime<Utc>>,
    pub unknown_outcomes: i64,
    pub last_error: Option<String>,
    pub server_reply: Option<String>,
    pub created_at: DateTime<Utc>,
    pub sent_at: Option<DateTime<Utc>>,
    pub size: i64,
    /// Times `outbox retry` queued it again.
    pub retries: i64,
    pub recipients: Vec<OutboxRecipient>,
}

/// Rows found in `sending` with their lease run out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LeaseRecovery {
    /// Re-queued (their first interruption).
    pub requeued: Vec<i64>,
    /// Parked as failed (interrupted a second time: they may have gone out twice already).
    pub parked: Vec<i64>,
}

/// Who claims a message: stored with the claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Claimer<'a> {
    /// `host:pid`, for people.
    pub label: &'a str,
    /// The process key that lets another process on the machine tell whether the
    /// claimer still runs (`crate::process::ProcessKey`, encoded).
    pub key: Option<&'a str>,
}

/// What `outbox retry` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RetryOutcome {
    /// Re-queued, with this many recipients pending again.
    Requeued(usize),
    /// Nothing failed on it: it is in this state.
    NothingToRetry(OutboxStatus),
    /// Its failed recipients' alerts were routed again to the addresses the
    /// config names now: retrying would send them to the old address too, so
    /// nothing was queued. The old addresses.
    Rerouted(Vec<String>),
}

/// A recipient a message could not reach, not yet reported to the admin list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UndeliveredRecipient {
    /// Its place among the message's recipients (with the outbox id, the row's key).
    pub position: i64,
    pub address: String,
    /// The server's reply refusing it or, when the message failed as a whole (given
    /// up, parked, refused), why it did.
    pub reason: Option<String>,
}

/// A message with permanent failures not yet reported to the admin list: ids, its
/// key, states and the server's replies only — never its subject or its body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Undelivered {
    pub id: i64,
    pub idempotency_key: String,
    pub status: OutboxStatus,
    /// Times `outbox retry` queued it again.
    pub retries: i64,
    /// Recipients the server accepted it for.
    pub sent_to: i64,
    /// Recipients it is still being tried for (a message still queued).
    pub still_trying: i64,
    /// The recipients it failed for and nobody was told of yet, in order.
    pub recipients: Vec<UndeliveredRecipient>,
    /// The alerts it carried to those recipients (a digest's), by id, with their
    /// severity: what did not reach anyone through it.
    pub alerts: Vec<(i64, String)>,
}

/// What storing an undelivered-mail notice did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureNoticeStored {
    /// The failures are marked reported, and the notice (if one was given) stored.
    Stored(Option<Enqueued>),
    /// Another run reported some of them first: nothing was changed.
    Raced,
}

/// Messages per status, for `status`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct OutboxCounts {
    pub queued: i64,
    pub sending: i64,
    pub sent: i64,
    pub failed: i64,
}

type EntryTuple = (
    i64,
    String,
    String,
    String,
    String,
    String,
    i64,
    DateTime<Utc>,
    Option<DateTime<Utc>>,
    i64,
    Option<String>,
    Option<String>,
    DateTime<Utc>,
    Option<DateTime<Utc>>,
    i64,
    i64,
);

const ENTRY_COLUMNS: &str = "id, idempotency_key, message_id, sender, subject, status, attempts, \
     next_attempt_at, claimed_at, unknown_outcomes, last_error, server_reply, created_at, sent_at, \
     CAST(LENGTH(raw) AS BIGINT), retries";

const INTERRUPTED: &str = "interrupted while sending (the process stopped); \
     re-queued once: if the server had already taken it, it goes out a second time";
const INTERRUPTED_TWICE: &str = "interrupted while sending after an earlier attempt whose \
     outcome was unknown; parked so it cannot go out a third time: check whether it arrived, \
     then `kinlink outbox retry ID`";

impl Store {
    /// Stores a composed message with its recipients, unless its idempotency key
    /// is already there (then nothing changes and the existing id is returned).
    pub async fn enqueue_outbox(&self, m: &NewOutboxMessage<'_>) -> Result<Enqueued, StoreError> {
        let mut tx = Tx::begin(&self.pool).await?;
        let enqueued = insert_outbox(&mut tx, m).await?;
        tx.commit().await?;
        Ok(enqueued)
    }

    /// Finds rows left in `sending` with `claimed_at` at or before `cutoff` (a
    /// killed drain run): the first time a row is re-queued (due at `now`), the
    /// second time it is parked as failed.
    pub async fn recover_outbox_leases(
        &self,
        cutoff: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<LeaseRecovery, StoreError> {
        let mut tx = Tx::begin(&self.pool).await?;
        let park = "UPDATE outbox SET status = 'failed', claimed_at = NULL, \
                    unknown_outcomes = unknown_outcomes + 1, last_error = $2 \
                    WHERE status = 'sending' AND claimed_at <= $1 AND unknown_outcomes >= 1 \
                    RETURNING id";
        let mut parked: Vec<i64> = on_tx!(tx, t => sqlx::query_scalar(park)
            .bind(cutoff)
            .bind(INTERRUPTED_TWICE)
            .fetch_all(&mut **t)
            .await)?;
        let requeue = "UPDATE outbox SET status = 'queued', claimed_at = NULL, \
                       unknown_outcomes = unknown_outcomes + 1, next_attempt_at = $2, last_error = $3 \
                       WHERE status = 'sending' AND claimed_at <= $1 RETURNING id";
        let mut requeued: Vec<i64> = on_tx!(tx, t => sqlx::query_scalar(requeue)
            .bind(cutoff)
            .bind(now)
            .bind(INTERRUPTED)
            .fetch_all(&mut **t)
            .await)?;
        tx.commit().await?;
        parked.sort_unstable();
        requeued.sort_unstable();
        Ok(LeaseRecovery { requeued, parked })
    }

    /// Takes back messages left in `sending` by a process that is certainly dead:
    /// claims whose process key starts with `machine_prefix` (this machine's boot and
    /// pid namespace) and that `is_dead` judges gone. As with an expired lease, the
    /// first time a row is re-queued (due at `now`), the second time it is parked.
    /// Each row is changed only if it still holds that very claim.
    pub async fn recover_dead_claims(
        &self,
        machine_prefix: &str,
        is_dead: impl Fn(&str) -> bool,
        now: DateTime<Utc>,
    ) -> Result<LeaseRecovery, StoreError> {
        let find = "SELECT id, claimed_proc FROM outbox WHERE status = 'sending' \
                    AND claimed_proc LIKE $1 ORDER BY id";
        // The prefix is hex, dashes, digits and colons: nothing LIKE reads as a
        // wildcard.
        let pattern = format!("{machine_prefix}%");
        let rows: Vec<(i64, String)> = on_pool!(self, p => sqlx::query_as(find)
            .bind(pattern)
            .fetch_all(p)
            .await)?;
        let mut recovery = LeaseRecovery::default();
        for (id, key) in rows.into_iter().filter(|(_, key)| is_dead(key)) {
            let park = "UPDATE outbox SET status = 'failed', claimed_at = NULL, \
                        unknown_outcomes = unknown_outcomes + 1, last_error = $3 \
                        WHERE id = $1 AND status = 'sending' AND claimed_proc = $2 \
                        AND unknown_outcomes >= 1 RETURNING id";
            let parked: Option<i64> = on_pool!(self, p => sqlx::query_scalar(park)
                .bind(id)
                .bind(&key)
                .bind(INTERRUPTED_TWICE)
                .fetch_optional(p)
                .await)?;
            if parked.is_some() {
                recovery.parked.push(id);
                continue;
            }
            let requeue = "UPDATE outbox SET status = 'queued', claimed_at = NULL, \
                           unknown_outcomes = unknown_outcomes + 1, next_attempt_at = $3, \
                           last_error = $4 \
                           WHERE id = $1 AND status = 'sending' AND claimed_proc = $2 RETURNING id";
            let requeued: Option<i64> = on_pool!(self, p => sqlx::query_scalar(requeue)
                .bind(id)
                .bind(&key)
                .bind(now)
                .bind(INTERRUPTED)
                .fetch_optional(p)
                .await)?;
            if requeued.is_some() {
                recovery.requeued.push(id);
            }
        }
        Ok(recovery)
    }

    /// Claims the message due longest ago (`queued`, `next_attempt_at <= now`):
    /// flips it to `sending`, stamps the lease and counts the attempt. `None` when
    /// nothing is due.
    pub async fn claim_outbox(
        &self,
        now: DateTime<Utc>,
        claimer: Claimer<'_>,
    ) -> Result<Option<ClaimedMessage>, StoreError> {
        // PostgreSQL: SKIP LOCKED lets several daemons drain side by side. SQLite
        // serialises writers, so the one statement is already the claim.
        let pick = match self.pool {
            Pool::Sqlite(_) => "",
            #[cfg(feature = "postgres")]
            Pool::Postgres(_) => " FOR UPDATE SKIP LOCKED",
        };
        let sql = format!(
            "UPDATE outbox SET status = 'sending', claimed_at = $1, attempts = attempts + 1, \
             claimed_by = $2, claimed_proc = $3 \
             WHERE id = (SELECT id FROM outbox WHERE status = 'queued' AND next_attempt_at <= $1 \
                         ORDER BY next_attempt_at, id LIMIT 1{pick}) \
             AND status = 'queued' \
             RETURNING id, message_id, sender, raw, attempts, unknown_outcomes"
        );
        let row: Option<(i64, String, String, Vec<u8>, i64, i64)> = on_pool!(self, p => sqlx::query_as(&sql)
                .bind(now)
                .bind(claimer.label)
                .bind(claimer.key)
                .fetch_optional(p)
                .await)?;
        let Some((id, message_id, sender, raw, attempts, unknown_outcomes)) = row else {
            return Ok(None);
        };
        let rcpt =
            "SELECT address FROM outbox_recipients WHERE outbox_id = $1 AND status = 'pending' \
                    ORDER BY position";
        let recipients: Vec<String> =
            on_pool!(self, p => sqlx::query_scalar(rcpt).bind(id).fetch_all(p).await)?;
        let sent =
            "SELECT COUNT(*) FROM outbox_recipients WHERE outbox_id = $1 AND status = 'sent'";
        let already_sent: i64 =
            on_pool!(self, p => sqlx::query_scalar(sent).bind(id).fetch_one(p).await)?;
        Ok(Some(ClaimedMessage {
            id,
            message_id,
            sender,
            raw,
            recipients,
            attempts,
            unknown_outcomes,
            already_sent,
        }))
    }

    /// When the outbox next needs a drain run: the earliest `next_attempt_at` of a
    /// queued message, or the earliest end of a lease (`claimed_at + lease`) of one
    /// left in `sending`. `None` when neither kind is there.
    pub async fn outbox_next_wake(
        &self,
        lease: chrono::Duration,
    ) -> Result<Option<DateTime<Utc>>, StoreError> {
        let due: Option<DateTime<Utc>> = on_pool!(self, p => sqlx::query_scalar(
                "SELECT next_attempt_at FROM outbox WHERE status = 'queued' \
                 ORDER BY next_attempt_at LIMIT 1")
            .fetch_optional(p)
            .await)?;
        let claimed: Option<DateTime<Utc>> = on_pool!(self, p => sqlx::query_scalar(
                "SELECT claimed_at FROM outbox WHERE status = 'sending' AND claimed_at IS NOT NULL \
                 ORDER BY claimed_at LIMIT 1")
            .fetch_optional(p)
            .await)?;
        let lease_ends = claimed.and_then(|c| c.checked_add_signed(lease));
        Ok(match (due, lease_ends) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        })
    }

    /// Whether any message is due at `now` (a run connects only if one is).
    pub async fn outbox_has_due(&self, now: DateTime<Utc>) -> Result<bool, StoreError> {
        let sql = "SELECT id FROM outbox WHERE status = 'queued' AND next_attempt_at <= $1 LIMIT 1";
        let id: Option<i64> =
            on_pool!(self, p => sqlx::query_scalar(sql).bind(now).fetch_optional(p).await)?;
        Ok(id.is_some())
    }

    /// Writes what an attempt settled: the recipients' states and the message's,
    /// in one transaction. Only a row still `sending` is changed (a row whose lease
    /// was taken over meanwhile is left to the run that holds it).
    pub async fn finish_outbox_attempt(
        &self,
        id: i64,
        outcome: &AttemptOutcome,
    ) -> Result<(), StoreError> {
        let mut tx = Tx::begin(&self.pool).await?;
        let rcpt = "UPDATE outbox_recipients SET status = $3, reply = $4 \
                    WHERE outbox_id = $1 AND address = $2 AND status = 'pending'";
        for (address, status, reply) in &outcome.recipients {
            on_tx!(tx, t => sqlx::query(rcpt)
                .bind(id)
                .bind(address)
                .bind(status.as_str())
                .bind(reply)
                .execute(&mut **t)
                .await
                .map(|_| ()))?;
        }
        let sent_at = (outcome.status == OutboxStatus::Sent).then_some(outcome.at);
        let row = "UPDATE outbox SET status = $2, next_attempt_at = $3, claimed_at = NULL, \
                   last_error = $4, server_reply = COALESCE($5, server_reply), \
                   sent_at = COALESCE($6, sent_at), unknown_outcomes = unknown_outcomes + $7 \
                   WHERE id = $1 AND status = 'sending'";
        on_tx!(tx, t => sqlx::query(row)
            .bind(id)
            .bind(outcome.status.as_str())
            .bind(outcome.next_attempt_at)
            .bind(&outcome.last_error)
            .bind(&outcome.server_reply)
            .bind(sent_at)
            .bind(i64::from(outcome.unknown))
            .execute(&mut **t)
            .await
            .map(|_| ()))?;
        tx.commit().await?;
        Ok(())
    }

    /// Every message, oldest first, without the bytes.
    pub async fn outbox_entries(&self) -> Result<Vec<OutboxEntry>, StoreError> {
        let sql = format!("SELECT {ENTRY_COLUMNS} FROM outbox ORDER BY id");
        let rows: Vec<EntryTuple> = on_pool!(self, p => sqlx::query_as(&sql).fetch_all(p).await)?;
        self.with_recipients(rows).await
    }

    /// Messages a drain run at `now` would try, in the order it would (for `send --dry-run`).
    pub async fn outbox_due(&self, now: DateTime<Utc>) -> Result<Vec<OutboxEntry>, StoreError> {
        let sql = format!(
            "SELECT {ENTRY_COLUMNS} FROM outbox WHERE status = 'queued' AND next_attempt_at <= $1 \
             ORDER BY next_attempt_at, id"
        );
        let rows: Vec<EntryTuple> =
            on_pool!(self, p => sqlx::query_as(&sql).bind(now).fetch_all(p).await)?;
        self.with_recipients(rows).await
    }

    /// One message with its bytes.
    pub async fn outbox_message(&self, id: i64) -> Result<(OutboxEntry, Vec<u8>), StoreError> {
        let sql = format!("SELECT {ENTRY_COLUMNS} FROM outbox WHERE id = $1");
        let row: Option<EntryTuple> =
            on_pool!(self, p => sqlx::query_as(&sql).bind(id).fetch_optional(p).await)?;
        let row = row.ok_or_else(|| StoreError::NotFound(format!("outbox message {id}")))?;
        let raw: Vec<u8> = on_pool!(self, p => sqlx::query_scalar("SELECT raw FROM outbox WHERE id = $1")
            .bind(id)
            .fetch_one(p)
            .await)?;
        let mut entries = self.with_recipients(vec![row]).await?;
        let entry = entries
            .pop()
            .ok_or_else(|| StoreError::NotFound(format!("outbox message {id}")))?;
        Ok((entry, raw))
    }

    /// Re-queues a message by hand: its failed recipients become pending again (and
    /// not reported: failing again is a new failure), it is due at `now` with a fresh
    /// count of attempts, and its `retries` goes up by one. Only a message with
    /// something failed on it (status `failed`, or `sent` with a refused recipient)
    /// is changed, and never for a recipient whose alerts were routed again
    /// (`deliveries.rerouted_at`): that address is not sent them a second way.
    pub async fn retry_outbox(
        &self,
        id: i64,
        now: DateTime<Utc>,
    ) -> Result<RetryOutcome, StoreError> {
        let mut tx = Tx::begin(&self.pool).await?;
        // The row's lock first (a no-op update), as a re-route takes it: the two
        // never interleave on one message.
        let status: Option<String> = on_tx!(tx, t => sqlx::query_scalar(
                "UPDATE outbox SET status = status WHERE id = $1 RETURNING status")
            .bind(id)
            .fetch_optional(&mut **t)
            .await)?;
        let status = OutboxStatus::parse(
            &status.ok_or_else(|| StoreError::NotFound(format!("outbox message {id}")))?,
        )?;
        if matches!(status, OutboxStatus::Queued | OutboxStatus::Sending) {
            return Ok(RetryOutcome::NothingToRetry(status));
        }
        // A recipient whose alerts were routed again is never sent this message.
        let rerouted: Vec<String> = on_tx!(tx, t => sqlx::query_scalar(
                "SELECT DISTINCT r.address FROM outbox_recipients r WHERE r.outbox_id = $1 \
                 AND r.status <> 'sent' AND EXISTS (SELECT 1 FROM deliveries d WHERE d.outbox_id = $1 \
                 AND LOWER(d.recipient) = LOWER(r.address) AND d.rerouted_at IS NOT NULL) ORDER BY r.address")
            .bind(id)
            .fetch_all(&mut **t)
            .await)?;
        // A failure after the retry is a new one: reported again.
        let rcpt = "UPDATE outbox_recipients SET status = 'pending', reply = NULL \
                    WHERE outbox_id = $1 AND status = 'failed' AND NOT EXISTS \
                    (SELECT 1 FROM deliveries d WHERE d.outbox_id = $1 \
                     AND LOWER(d.recipient) = LOWER(outbox_recipients.address) AND d.rerouted_at IS NOT NULL)";
        on_tx!(tx, t => sqlx::query(rcpt).bind(id).execute(&mut **t).await.map(|_| ()))?;
        let unmark = "UPDATE outbox_recipients SET failure_notified_at = NULL \
                      WHERE outbox_id = $1 AND status = 'pending'";
        on_tx!(tx, t => sqlx::query(unmark).bind(id).execute(&mut **t).await.map(|_| ()))?;
        let pending: i64 = on_tx!(tx, t => sqlx::query_scalar(
                "SELECT COUNT(*) FROM outbox_recipients WHERE outbox_id = $1 AND status = 'pending'")
            .bind(id)
            .fetch_one(&mut **t)
            .await)?;
        // A failed message may have failed as a whole (a 5xx to MAIL or DATA, or
        // given up) with its recipients still pending; a sent one only has
        // something to retry if a recipient was refused.
        if pending == 0 {
            if !rerouted.is_empty() {
                return Ok(RetryOutcome::Rerouted(rerouted));
            }
            return Ok(RetryOutcome::NothingToRetry(status));
        }
        let row = "UPDATE outbox SET status = 'queued', attempts = 0, next_attempt_at = $2, \
                   claimed_at = NULL, last_error = NULL, retries = retries + 1 WHERE id = $1";
        on_tx!(tx, t => sqlx::query(row).bind(id).bind(now).execute(&mut **t).await.map(|_| ()))?;
        tx.commit().await?;
        Ok(RetryOutcome::Requeued(
            usize::try_from(pending).unwrap_or(0),
        ))
    }

    /// Every recipient with a permanent failure not yet reported to the admin list
    /// (refused, or its message failed as a whole), grouped by message, oldest first.
    pub async fn unreported_failures(&self) -> Result<Vec<Undelivered>, StoreError> {
        // `failure_notified_at IS NULL AND status <> 'sent'` is the partial index's
        // predicate, so only the few rows still open are read.
        let sql = "SELECT o.id, o.idempotency_key, o.status, o.retries, o.last_error, \
                   r.position, r.address, r.status, r.reply, \
                   (SELECT COUNT(*) FROM outbox_recipients s \
                    WHERE s.outbox_id = o.id AND s.status = 'sent'), \
                   (SELECT COUNT(*) FROM outbox_recipients s \
                    WHERE s.outbox_id = o.id AND s.status = 'pending') \
                   FROM outbox_recipients r JOIN outbox o ON o.id = r.outbox_id \
                   WHERE r.failure_notified_at IS NULL AND r.status <> 'sent' \
                   AND (r.status = 'failed' OR o.status = 'failed') \
                   ORDER BY o.id, r.position";
        type Row = (
            i64,
            String,
            String,
            i64,
            Option<String>,
            i64,
            String,
            String,
            Option<String>,
            i64,
            i64,
        );
        let rows: Vec<Row> = on_pool!(self, p => sqlx::query_as(sql).fetch_all(p).await)?;
        let mut out: Vec<Undelivered> = Vec::new();
        for (
            id,
            key,
            status,
            retries,
            last_error,
            position,
            address,
            rstatus,
            reply,
            sent,
            pending,
        ) in rows
        {
            let status = OutboxStatus::parse(&status)?;
            let reason = match RecipientStatus::parse(&rstatus)? {
                RecipientStatus::Failed => reply.or(last_error),
                _ => last_error.or(reply),
            };
            let recipient = UndeliveredRecipient {
                position,
                address,
                reason,
            };
            match out.last_mut() {
                Some(m) if m.id == id => m.recipients.push(recipient),
                _ => out.push(Undelivered {
                    id,
                    idempotency_key: key,
                    status,
                    retries,
                    sent_to: sent,
                    still_trying: if matches!(status, OutboxStatus::Queued | OutboxStatus::Sending)
                    {
                        pending
                    } else {
                        0
                    },
                    recipients: vec![recipient],
                    alerts: Vec::new(),
                }),
            }
        }
        let sql = "SELECT DISTINCT d.alert_id, a.severity, d.recipient FROM deliveries d \
                   JOIN alerts a ON a.id = d.alert_id WHERE d.outbox_id = $1 ORDER BY d.alert_id";
        for m in &mut out {
            let rows: Vec<(i64, String, String)> =
                on_pool!(self, p => sqlx::query_as(sql).bind(m.id).fetch_all(p).await)?;
            for (alert, severity, recipient) in rows {
                let refused = m
                    .recipients
                    .iter()
                    .any(|r| r.address.eq_ignore_ascii_case(&recipient));
                if refused && !m.alerts.iter().any(|(a, _)| *a == alert) {
                    m.alerts.push((alert, severity));
                }
            }
        }
        Ok(out)
    }

    /// Marks failures (outbox id, recipient position) reported at `now` and stores
    /// the notice that reports them, in one transaction: a failure is reported once,
    /// even when a run stops half way. With no notice the failures are only marked
    /// (a notice that could not be delivered itself is not reported by another).
    /// When another run marked any of them first, nothing changes.
    pub async fn store_failure_notice(
        &self,
        notice: Option<&NewOutboxMessage<'_>>,
        failures: &[(i64, i64)],
        now: DateTime<Utc>,
    ) -> Result<FailureNoticeStored, StoreError> {
        let mut tx = Tx::begin(&self.pool).await?;
        // Marking first takes the rows' locks (PostgreSQL) or the write lock (SQLite),
        // so a second run marks nothing and stands down; so does a run that meets an
        // `outbox retry` made since it read the failures.
        let mark = "UPDATE outbox_recipients SET failure_notified_at = $3 \
                    WHERE outbox_id = $1 AND position = $2 AND failure_notified_at IS NULL \
                    AND (status = 'failed' \
                         OR (status = 'pending' AND EXISTS \
                             (SELECT 1 FROM outbox o WHERE o.id = $1 AND o.status = 'failed')))";
        let mut marked = 0u64;
        for (id, position) in failures {
            marked += on_tx!(tx, t => sqlx::query(mark)
                .bind(id)
                .bind(position)
                .bind(now)
                .execute(&mut **t)
                .await
                .map(|r| r.rows_affected()))?;
        }
        if usize::try_from(marked).ok() != Some(failures.len()) {
            // Dropping the transaction rolls it back.
            return Ok(FailureNoticeStored::Raced);
        }
        let enqueued = match notice {
            Some(m) => Some(insert_outbox(&mut tx, m).await?),
            None => None,
        };
        tx.commit().await?;
        Ok(FailureNoticeStored::Stored(enqueued))
    }

    /// Messages per status.
    pub async fn outbox_counts(&self) -> Result<OutboxCounts, StoreError> {
        let rows: Vec<(String, i64)> = on_pool!(self, p => sqlx::query_as(
                "SELECT status, COUNT(*) FROM outbox GROUP BY status")
            .fetch_all(p)
            .await)?;
        let mut counts = OutboxCounts::default();
        for (status, n) in rows {
            match OutboxStatus::parse(&status)? {
                OutboxStatus::Queued => counts.queued = n,
                OutboxStatus::Sending => counts.sending = n,
                OutboxStatus::Sent => counts.sent = n,
                OutboxStatus::Failed => counts.failed = n,
            }
        }
        Ok(counts)
    }

    async fn with_recipients(&self, rows: Vec<EntryTuple>) -> Result<Vec<OutboxEntry>, StoreError> {
        let (Some(lo), Some(hi)) = (
            rows.iter().map(|r| r.0).min(),
            rows.iter().map(|r| r.0).max(),
        ) else {
            return Ok(Vec::new());
        };
        // One query for the id range rather than one per message.
        let sql = "SELECT outbox_id, address, status, reply, failure_notified_at \
                   FROM outbox_recipients \
                   WHERE outbox_id >= $1 AND outbox_id <= $2 ORDER BY outbox_id, position";
        type Row = (i64, String, String, Option<String>, Option<DateTime<Utc>>);
        let rcpts: Vec<Row> =
            on_pool!(self, p => sqlx::query_as(sql).bind(lo).bind(hi).fetch_all(p).await)?;
        let mut by_id: HashMap<i64, Vec<OutboxRecipient>> = HashMap::new();
        for (id, address, status, reply, failure_notified_at) in rcpts {
            by_id.entry(id).or_default().push(OutboxRecipient {
                address,
                status: RecipientStatus::parse(&status)?,
                reply,
                failure_notified_at,
            });
        }
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            out.push(OutboxEntry {
                id: r.0,
                idempotency_key: r.1,
                message_id: r.2,
                sender: r.3,
                subject: r.4,
                status: OutboxStatus::parse(&r.5)?,
                attempts: r.6,
                next_attempt_at: r.7,
                claimed_at: r.8,
                unknown_outcomes: r.9,
                last_error: r.10,
                server_reply: r.11,
                created_at: r.12,
                sent_at: r.13,
                size: r.14,
                retries: r.15,
                recipients: by_id.remove(&r.0).unwrap_or_default(),
            });
        }
        Ok(out)
    }
}

/// Inserts a message and its recipients in an open transaction, unless its
/// idempotency key is already there (then the existing id comes back). Shared by
/// [`Store::enqueue_outbox`] and the digest store, which flips deliveries in the
/// same transaction.
pub(super) async fn insert_outbox(
    tx: &mut Tx,
    m: &NewOutboxMessage<'_>,
) -> Result<Enqueued, StoreError> {
    let insert = "INSERT INTO outbox (idempotency_key, message_id, sender, subject, raw, status, \
                  attempts, next_attempt_at, created_at) \
                  VALUES ($1, $2, $3, $4, $5, 'queued', 0, $6, $6) \
                  ON CONFLICT DO NOTHING RETURNING id";
    let id: Option<i64> = on_tx!(*tx, t => sqlx::query_scalar(insert)
        .bind(m.idempotency_key)
        .bind(m.message_id)
        .bind(m.sender)
        .bind(m.subject)
        .bind(m.raw)
        .bind(m.at)
        .fetch_optional(&mut **t)
        .await)?;
    let Some(id) = id else {
        let existing = "SELECT id FROM outbox WHERE idempotency_key = $1";
        let id: i64 = on_tx!(*tx, t => sqlx::query_scalar(existing)
            .bind(m.idempotency_key)
            .fetch_one(&mut **t)
            .await)?;
        return Ok(Enqueued { id, created: false });
    };
    let rcpt = "INSERT INTO outbox_recipients (outbox_id, position, address, status) \
                VALUES ($1, $2, $3, 'pending')";
    for (position, address) in m.recipients.iter().enumerate() {
        let position = i64::try_from(position).unwrap_or(i64::MAX);
        on_tx!(*tx, t => sqlx::query(rcpt)
            .bind(id)
            .bind(position)
            .bind(address)
            .execute(&mut **t)
            .await
            .map(|_| ()))?;
    }
    Ok(Enqueued { id, created: true })
}

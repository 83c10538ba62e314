//! A drain run: re-queue abandoned claims, connect once, then claim, send and
//! record one message at a time until nothing is due.
//!
//! Each outcome is written as soon as the server has answered, one transaction per
//! message, which keeps the window in which a kill can leave a sent message
//! unrecorded down to that one write.

use chrono::{DateTime, Utc};
use tracing::{info, warn};

use super::smtp::{Attempt, RcptOutcome, Session};
use super::{file, DrainOptions, MailError, Mailer, RetryPolicy, Transport};
use crate::clock::Clock;
use crate::process::ProcessKey;
use crate::store::{AttemptOutcome, ClaimedMessage, OutboxStatus, RecipientStatus, Store};

/// What a drain run did.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct DrainReport {
    /// Messages the server took (for at least one recipient) in this run.
    pub sent: Vec<SentMessage>,
    /// Messages that will be tried again (4xx, connection lost, unknown outcome).
    pub retrying: Vec<RetryLater>,
    /// Permanent failures: refused messages and recipients, messages given up or
    /// parked. The send step tells the admin list (from the outbox, see
    /// `undelivered`); none is retried without `outbox retry`.
    pub failed: Vec<PermanentFailure>,
    /// Messages found abandoned in `sending` (a killed run) and re-queued.
    pub requeued_after_interruption: Vec<i64>,
    /// The relay could not be reached or refused the login: the run stopped
    /// before claiming anything more, and what was queued stays queued.
    pub connection_error: Option<String>,
}

impl DrainReport {
    /// Anything for the admin: a permanent failure or an unreachable relay.
    pub fn needs_attention(&self) -> bool {
        !self.failed.is_empty() || self.connection_error.is_some()
    }

    /// Adds a later drain of the same run.
    pub(super) fn absorb(&mut self, more: DrainReport) {
        self.sent.extend(more.sent);
        self.retrying.extend(more.retrying);
        self.failed.extend(more.failed);
        self.requeued_after_interruption
            .extend(more.requeued_after_interruption);
        if self.connection_error.is_none() {
            self.connection_error = more.connection_error;
        }
    }
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SentMessage {
    pub id: i64,
    pub message_id: String,
    /// Recipients the server accepted in this run.
    pub recipients: Vec<String>,
    pub reply: String,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RetryLater {
    pub id: i64,
    pub message_id: String,
    /// Recipients still pending.
    pub recipients: Vec<String>,
    pub reason: String,
    pub next_attempt_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct PermanentFailure {
    pub id: i64,
    pub message_id: String,
    /// The recipients it failed for (every one, when the message failed as a whole).
    pub recipients: Vec<String>,
    pub reason: String,
}

pub(super) async fn drain(
    mailer: &Mailer,
    store: &Store,
    clock: Clock,
    options: &DrainOptions,
) -> Result<DrainReport, MailError> {
    let mut report = DrainReport::default();
    let now = clock.now();
    let lease = chrono::Duration::from_std(options.retry.lease).unwrap_or(chrono::Duration::MAX);
    let mut recovered = store
        .recover_outbox_leases(now.checked_sub_signed(lease).unwrap_or(now), now)
        .await?;
    // A claim whose process died on this machine (a killed daemon or `kinlink
    // send`) is taken back now rather than after its lease: nobody else can be
    // sending it. Claims from other machines wait for their lease.
    if let Some(me) = &crate::process::current().key {
        let dead = store
            .recover_dead_claims(
                &me.machine_prefix(),
                |key| ProcessKey::decode(key).is_some_and(|k| k.is_dead_here()),
                now,
            )
            .await?;
        if !dead.requeued.is_empty() || !dead.parked.is_empty() {
            warn!(
                requeued = dead.requeued.len(),
                parked = dead.parked.len(),
                "Emails left in sending by a process that died on this machine were taken back"
            );
        }
        recovered.requeued.extend(dead.requeued);
        recovered.parked.extend(dead.parked);
    }
    if !recovered.requeued.is_empty() {
        warn!(
            count = recovered.requeued.len(),
            "Emails left in sending by an interrupted run were re-queued"
        );
    }
    for id in &recovered.parked {
        let (entry, _) = store.outbox_message(*id).await?;
        report.failed.push(PermanentFailure {
            id: *id,
            message_id: entry.message_id,
            recipients: entry
                .recipients
                .into_iter()
                .filter(|r| r.status == RecipientStatus::Pending)
                .map(|r| r.address)
                .collect(),
            reason: entry.last_error.unwrap_or_default(),
        });
    }
    report.requeued_after_interruption = recovered.requeued;

    let mut session: Option<Session> = None;
    let mut attempts = 0usize;
    loop {
        if options.limit.is_some_and(|limit| attempts >= limit) {
            break;
        }
        let now = clock.now();
        if let Transport::Smtp(relay) = &mailer.transport {
            if session.is_none() {
                // Connect before claiming, and only when something is due, so an
                // unreachable relay leaves every message exactly as it was.
                if !store.outbox_has_due(now).await? {
                    break;
                }
                match Session::open(relay, mailer.timeouts).await {
                    Ok(s) => session = Some(s),
                    Err(e) => {
                        warn!(error = %e, "Mail relay unavailable; the outbox stays queued");
                        report.connection_error = Some(e.to_string());
                        break;
                    }
                }
            }
        }
        let Some(claimed) = store.claim_outbox(now, super::claimer()).await? else {
            break;
        };
        attempts += 1;
        let attempt = match (&mailer.transport, session.as_mut()) {
            (Transport::File { dir }, _) => write_file(dir, &claimed).await,
            (Transport::Smtp(_), Some(s)) => {
                s.send(&claimed.sender, &claimed.recipients, &claimed.raw)
                    .await
            }
            // Unreachable: the session was opened above.
            (Transport::Smtp(_), None) => Attempt {
                recipients: claimed
                    .recipients
                    .iter()
                    .map(|a| (a.clone(), RcptOutcome::Transient("no connection".into())))
                    .collect(),
                broken: true,
            },
        };
        if attempt.broken {
            // Dropped, not reused; the next message reconnects.
            session = None;
        }
        let done_at = clock.now();
        let outcome = settle(&claimed, &attempt, &options.retry, done_at);
        store.finish_outbox_attempt(claimed.id, &outcome).await?;
        record(&mut report, &claimed, &attempt, &outcome);
    }
    if let Some(s) = session {
        s.close().await;
    }
    info!(
        sent = report.sent.len(),
        retrying = report.retrying.len(),
        failed = report.failed.len(),
        "Outbox drained"
    );
    Ok(report)
}

async fn write_file(dir: &std::path::Path, claimed: &ClaimedMessage) -> Attempt {
    let outcome = match file::write(dir, &claimed.message_id, &claimed.raw).await {
        Ok(path) => RcptOutcome::Sent(format!("written to {}", path.display())),
        // A full disk or a missing permission is fixed by someone, then retried.
        Err(e) => RcptOutcome::Transient(format!("cannot write into {}: {e}", dir.display())),
    };
    Attempt {
        recipients: claimed
            .recipients
            .iter()
            .map(|a| (a.clone(), outcome.clone()))
            .collect(),
        broken: false,
    }
}

/// Decides what one attempt means for the message: which recipients are settled,
/// and whether it is sent, failed or to be retried (and when).
pub(super) fn settle(
    claimed: &ClaimedMessage,
    attempt: &Attempt,
    policy: &RetryPolicy,
    now: DateTime<Utc>,
) -> AttemptOutcome {
    let mut recipients = Vec::with_capacity(attempt.recipients.len());
    let mut sent = claimed.already_sent;
    let mut pending = 0usize;
    let mut unknown = false;
    let mut last_problem: Option<String> = None;
    let mut reply: Option<String> = None;
    for (address, o) in &attempt.recipients {
        match o {
            RcptOutcome::Sent(r) => {
                sent += 1;
                reply = Some(r.clone());
                recipients.push((address.clone(), RecipientStatus::Sent, Some(r.clone())));
            }
            RcptOutcome::Permanent(r) => {
                last_problem = Some(r.clone());
                recipients.push((address.clone(), RecipientStatus::Failed, Some(r.clone())));
            }
            RcptOutcome::Transient(r) => {
                pending += 1;
                last_problem = Some(r.clone());
                recipients.push((address.clone(), RecipientStatus::Pending, Some(r.clone())));
            }
            RcptOutcome::Unknown(r) => {
                pending += 1;
                unknown = true;
                last_problem = Some(r.clone());
                recipients.push((address.clone(), RecipientStatus::Pending, Some(r.clone())));
            }
        }
    }
    let (status, next_attempt_at, last_error) = if pending == 0 {
        if sent > 0 {
            (OutboxStatus::Sent, now, last_problem)
        } else {
            (OutboxStatus::Failed, now, last_problem)
        }
    } else if unknown && claimed.unknown_outcomes >= 1 {
        (
            OutboxStatus::Failed,
            now,
            Some(format!(
                "{}; a second attempt with an unknown outcome: parked so it cannot go out a third time (check whether it arrived, then `kinlink outbox retry ID`)",
                last_problem.unwrap_or_default()
            )),
        )
    } else if claimed.attempts >= policy.max_attempts {
        (
            OutboxStatus::Failed,
            now,
            Some(format!(
                "gave up after {} attempts: {}",
                claimed.attempts,
                last_problem.unwrap_or_default()
            )),
        )
    } else {
        let wait = chrono::Duration::from_std(policy.backoff(claimed.attempts))
            .unwrap_or(chrono::Duration::MAX);
        (
            OutboxStatus::Queued,
            now.checked_add_signed(wait).unwrap_or(now),
            last_problem,
        )
    };
    AttemptOutcome {
        recipients,
        status,
        next_attempt_at,
        last_error,
        server_reply: reply,
        unknown,
        at: now,
    }
}

fn record(
    report: &mut DrainReport,
    claimed: &ClaimedMessage,
    attempt: &Attempt,
    outcome: &AttemptOutcome,
) {
    let of = |pick: fn(&RcptOutcome) -> bool| -> Vec<String> {
        attempt
            .recipients
            .iter()
            .filter(|(_, o)| pick(o))
            .map(|(a, _)| a.clone())
            .collect()
    };
    let sent = of(|o| matches!(o, RcptOutcome::Sent(_)));
    if !sent.is_empty() {
        report.sent.push(SentMessage {
            id: claimed.id,
            message_id: claimed.message_id.clone(),
            recipients: sent,
            reply: outcome.server_reply.clone().unwrap_or_default(),
        });
    }
    let refused = of(|o| matches!(o, RcptOutcome::Permanent(_)));
    let pending = of(|o| matches!(o, RcptOutcome::Transient(_) | RcptOutcome::Unknown(_)));
    // A refused recipient is reported in the run that learnt of it, whatever
    // becomes of the message's other recipients.
    let refusal = || -> String {
        attempt
            .recipients
            .iter()
            .find_map(|(_, o)| match o {
                RcptOutcome::Permanent(r) => Some(r.clone()),
                _ => None,
            })
            .unwrap_or_default()
    };
    match outcome.status {
        OutboxStatus::Queued => {
            if !refused.is_empty() {
                report.failed.push(PermanentFailure {
                    id: claimed.id,
                    message_id: claimed.message_id.clone(),
                    recipients: refused,
                    reason: refusal(),
                });
            }
            report.retrying.push(RetryLater {
                id: claimed.id,
                message_id: claimed.message_id.clone(),
                recipients: pending,
                reason: outcome.last_error.clone().unwrap_or_default(),
                next_attempt_at: outcome.next_attempt_at,
            })
        }
        OutboxStatus::Failed => {
            let mut recipients = refused;
            recipients.extend(pending);
            report.failed.push(PermanentFailure {
                id: claimed.id,
                message_id: claimed.message_id.clone(),
                recipients,
                reason: outcome.last_error.clone().unwrap_or_default(),
            });
        }
        OutboxStatus::Sent | OutboxStatus::Sending => {
            if !refused.is_empty() {
                report.failed.push(PermanentFailure {
                    id: claimed.id,
                    message_id: claimed.message_id.clone(),
                    recipients: refused,
                    reason: refusal(),
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use chrono::TimeZone;

    use super::*;

    fn claimed(attempts: i64, unknown_outcomes: i64, to: &[&str]) -> ClaimedMessage {
        ClaimedMessage {
            id: 1,
            message_id: "<m@x.example>".into(),
            sender: "eh@x.example".into(),
            raw: vec![],
            recipients: to.iter().map(|s| s.to_string()).collect(),
            attempts,
            unknown_outcomes,
            already_sent: 0,
        }
    }

    fn attempt(outcomes: &[(&str, RcptOutcome)]) -> Attempt {
        Attempt {
            recipients: outcomes
                .iter()
                .map(|(a, o)| (a.to_string(), o.clone()))
                .collect(),
            broken: false,
        }
    }

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2025, 3, 4, 6, 0, 0).unwrap()
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let p = RetryPolicy::default();
        assert_eq!(p.backoff(1), Duration::from_secs(300));
        assert_eq!(p.backoff(2), Duration::from_secs(600));
        assert_eq!(p.backoff(4), Duration::from_secs(2400));
        assert_eq!(p.backoff(8), Duration::from_secs(6 * 3600));
        assert_eq!(p.backoff(1000), Duration::from_secs(6 * 3600));
    }

    #[test]
    fn mixed_recipients_send_to_the_accepted_and_fail_the_refused() {
        let c = claimed(1, 0, &["a@x.example", "b@x.example"]);
        let a = attempt(&[
            ("a@x.example", RcptOutcome::Sent("250 ok".into())),
            (
                "b@x.example",
                RcptOutcome::Permanent("550 no such user".into()),
            ),
        ]);
        let o = settle(&c, &a, &RetryPolicy::default(), now());
        assert_eq!(o.status, OutboxStatus::Sent);
        assert_eq!(o.recipients[1].1, RecipientStatus::Failed);
        let mut r = DrainReport::default();
        record(&mut r, &c, &a, &o);
        assert_eq!(r.sent[0].recipients, vec!["a@x.example".to_string()]);
        assert_eq!(r.failed[0].recipients, vec!["b@x.example".to_string()]);
        assert!(r.retrying.is_empty());
    }

    #[test]
    fn transient_waits_then_gives_up() {
        let a = attempt(&[("a@x.example", RcptOutcome::Transient("451 later".into()))]);
        let p = RetryPolicy::default();
        let o = settle(&claimed(2, 0, &["a@x.example"]), &a, &p, now());
        assert_eq!(o.status, OutboxStatus::Queued);
        assert_eq!(o.next_attempt_at, now() + chrono::Duration::seconds(600));
        let o = settle(&claimed(p.max_attempts, 0, &["a@x.example"]), &a, &p, now());
        assert_eq!(o.status, OutboxStatus::Failed);
        assert!(o
            .last_error
            .unwrap()
            .starts_with("gave up after 12 attempts"));
    }

    #[test]
    fn a_second_unknown_outcome_parks_the_message() {
        let a = attempt(&[("a@x.example", RcptOutcome::Unknown("no reply".into()))]);
        let p = RetryPolicy::default();
        let o = settle(&claimed(1, 0, &["a@x.example"]), &a, &p, now());
        assert_eq!((o.status, o.unknown), (OutboxStatus::Queued, true));
        let o = settle(&claimed(2, 1, &["a@x.example"]), &a, &p, now());
        assert_eq!(o.status, OutboxStatus::Failed);
    }

    #[test]
    fn all_refused_is_a_failed_message() {
        let a = attempt(&[("a@x.example", RcptOutcome::Permanent("554 no".into()))]);
        let o = settle(
            &claimed(1, 0, &["a@x.example"]),
            &a,
            &RetryPolicy::default(),
            now(),
        );
        assert_eq!(o.status, OutboxStatus::Failed);
        assert_eq!(o.last_error.as_deref(), Some("554 no"));
    }
}

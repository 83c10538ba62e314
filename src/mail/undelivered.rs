//! The admin notice of undelivered mail. After a drain, every recipient with a
//! permanent failure nobody was told of yet — refused with a 5xx, or its message
//! failed as a whole (refused, given up after its attempts, parked) — goes into one
//! email to `[mail] admin`: per outbox message, its id, the recipients it did not
//! reach, the server's reply and what to do.
//!
//! The notice is built from outbox rows only ([`Undelivered`]: ids, the key's kind,
//! states, staff addresses and the server's replies; never a subject or a body), so
//! it carries nothing about a child.
//!
//! Invariants: the notice and its failures' `failure_notified_at` commit together,
//! so each failure is reported once, across runs and crashes; `outbox retry` clears
//! the mark, so a failure after a retry is reported again. A notice of undelivered
//! mail that cannot be delivered itself is logged (ids and counts) and marked, never
//! reported by another notice: nothing loops.

use serde::Serialize;
use sha2::{Digest as _, Sha256};
use tracing::{info, warn};

use super::digest::Renderer;
use super::{compose, MailError, Mailer, OutgoingMessage};
use crate::clock::Clock;
use crate::config::Settings;
use crate::domain::RunMode;
use crate::store::{FailureNoticeStored, OutboxStatus, Store, Undelivered};

const TEMPLATE: &str = include_str!("../../config/templates/admin_undelivered.txt");

/// The idempotency keys of these notices start so; such a message is never the
/// subject of another notice.
pub const NOTICE_KEY_PREFIX: &str = "admin:undelivered:";

/// What the notice pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct FailureNoticeRun {
    /// Messages reported (or, in a dry run, that would be).
    pub messages: usize,
    /// Recipients reported, over those messages.
    pub recipients: usize,
    /// Outbox ids of the notices stored in this run.
    pub notices: Vec<i64>,
    /// Notices of undelivered mail that could not be delivered themselves (outbox
    /// ids): logged and left failed in the outbox, never reported by another notice.
    pub notices_undelivered: Vec<i64>,
    /// Messages with failures nobody is told of because `[mail] admin` is empty
    /// (they are reported once it is set).
    pub unreported_no_admin: usize,
}

impl FailureNoticeRun {
    /// Adds a later pass of the same run.
    pub(super) fn absorb(&mut self, more: FailureNoticeRun) {
        self.messages += more.messages;
        self.recipients += more.recipients;
        self.notices.extend(more.notices);
        self.notices_undelivered.extend(more.notices_undelivered);
        self.unreported_no_admin = more.unreported_no_admin;
    }
}

/// Whether an outbox key is one of these notices'.
pub fn is_failure_notice(idempotency_key: &str) -> bool {
    idempotency_key.starts_with(NOTICE_KEY_PREFIX)
}

/// Reports every permanent failure not yet reported in one notice to the admin
/// list, stored in the outbox with the failures' marks (the caller drains it).
/// Failed notices of this kind are logged and marked instead. In a dry run nothing
/// is stored or marked.
pub async fn enqueue_failure_notice(
    mailer: &Mailer,
    store: &Store,
    clock: Clock,
    settings: &Settings,
    mode: RunMode,
) -> Result<FailureNoticeRun, MailError> {
    // A second look only when another run marked some of the failures meanwhile.
    for _ in 0..2 {
        if let Some(run) = pass(mailer, store, clock, settings, mode).await? {
            return Ok(run);
        }
    }
    warn!("Another run kept reporting the same undelivered emails; the rest wait for the next run");
    Ok(FailureNoticeRun::default())
}

/// One look at the outbox; `None` when another run got in first.
async fn pass(
    mailer: &Mailer,
    store: &Store,
    clock: Clock,
    settings: &Settings,
    mode: RunMode,
) -> Result<Option<FailureNoticeRun>, MailError> {
    let (own, failures): (Vec<Undelivered>, Vec<Undelivered>) = store
        .unreported_failures()
        .await?
        .into_iter()
        .partition(|m| is_failure_notice(&m.idempotency_key));
    let mut run = FailureNoticeRun::default();
    let now = clock.now();
    if !own.is_empty() {
        run.notices_undelivered = own.iter().map(|m| m.id).collect();
        if !mode.is_dry_run() {
            let marks: Vec<(i64, i64)> = marks(&own);
            warn!(
                outbox_ids = ?run.notices_undelivered,
                notices = own.len(),
                recipients = marks.len(),
                "The notice of undelivered emails could not be delivered itself; it stays failed in the outbox and is not reported again"
            );
            // Raced: another run logged it.
            store.store_failure_notice(None, &marks, now).await?;
        }
    }
    if failures.is_empty() {
        return Ok(Some(run));
    }
    let recipients: usize = failures.iter().map(|m| m.recipients.len()).sum();
    if settings.mail.admin.is_empty() {
        warn!(
            messages = failures.len(),
            recipients,
            "Emails could not be delivered but [mail] admin is empty: nobody is told (`kinlink outbox list`)"
        );
        run.unreported_no_admin = failures.len();
        return Ok(Some(run));
    }
    run.messages = failures.len();
    run.recipients = recipients;
    if mode.is_dry_run() {
        return Ok(Some(run));
    }
    let (subject, text) = render_notice(&failures)?;
    let message = OutgoingMessage {
        idempotency_key: notice_key(&failures),
        to: settings.mail.admin.clone(),
        subject,
        text,
        html: None,
        inline_images: vec![],
    };
    let composed = compose::compose(&mailer.from, &message, now)?;
    let sender = mailer.from.email.to_string();
    let stored = store
        .store_failure_notice(
            Some(&composed.outbox(&message, &sender, now)),
            &marks(&failures),
            now,
        )
        .await?;
    match stored {
        FailureNoticeStored::Raced => Ok(None),
        FailureNoticeStored::Stored(enqueued) => {
            if let Some(e) = enqueued.filter(|e| e.created) {
                info!(
                    outbox_id = e.id,
                    messages = run.messages,
                    recipients = run.recipients,
                    "Undelivered emails reported to the admin list"
                );
                run.notices.push(e.id);
            }
            Ok(Some(run))
        }
    }
}

fn marks(messages: &[Undelivered]) -> Vec<(i64, i64)> {
    messages
        .iter()
        .flat_map(|m| m.recipients.iter().map(|r| (m.id, r.position)))
        .collect()
}

/// `admin:undelivered:<hash>` of every (message, recipient, retries) reported:
/// the same failures give the same key; a failure after `outbox retry` another.
fn notice_key(messages: &[Undelivered]) -> String {
    let mut parts: Vec<String> = messages
        .iter()
        .flat_map(|m| {
            m.recipients
                .iter()
                .map(|r| format!("{}.{}.{}", m.id, r.position, m.retries))
        })
        .collect();
    parts.sort_unstable();
    let hash = Sha256::digest(parts.join(",").as_bytes());
    format!("{NOTICE_KEY_PREFIX}{}", hex::encode(&hash[..16]))
}

#[derive(Debug, Serialize)]
struct MessageLine {
    id: i64,
    kind: String,
    state: String,
    retry: String,
    recipients: Vec<RecipientLine>,
    /// `A3, A4 (2 alerts, 1 urgent)`, or empty for a message that carried none.
    alerts: String,
}

/// The alerts a refused digest carried: ids, a count and the urgent ones' count.
fn alerts_line(alerts: &[(i64, String)]) -> String {
    if alerts.is_empty() {
        return String::new();
    }
    let ids: Vec<String> = alerts.iter().map(|(id, _)| format!("A{id}")).collect();
    let n = i64::try_from(alerts.len()).unwrap_or(i64::MAX);
    let urgent = alerts.iter().filter(|(_, s)| s == "urgent").count();
    let mut line = format!("{} ({}", ids.join(", "), plural(n, "alert", "alerts"));
    if urgent > 0 {
        line.push_str(&format!(", {urgent} urgent"));
    }
    line.push(')');
    line
}

#[derive(Debug, Serialize)]
struct RecipientLine {
    address: String,
    reason: String,
}

/// What kind of email a key names (its first part; a digest's key goes on with the
/// recipient, which is not repeated).
fn kind(idempotency_key: &str) -> String {
    match idempotency_key.split(':').next().unwrap_or_default() {
        "digest" => "a digest".into(),
        "managers" => "a managers' weekly digest".into(),
        "admin" => "an admin notice".into(),
        "stale-feed" => "a silent-feed notice".into(),
        "job-failure" => "a job-failure notice".into(),
        other => format!("a {other} email"),
    }
}

fn plural(n: i64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// The notice's subject and text, from outbox rows only.
pub fn render_notice(messages: &[Undelivered]) -> Result<(String, String), MailError> {
    let n = i64::try_from(messages.len()).unwrap_or(i64::MAX);
    let subject = format!(
        "kinlink: {} could not be delivered",
        plural(n, "email", "emails")
    );
    let lines: Vec<MessageLine> = messages
        .iter()
        .map(|m| {
            let failed = i64::try_from(m.recipients.len()).unwrap_or(i64::MAX);
            let mut state = format!(
                "not delivered to {}",
                plural(failed, "recipient", "recipients")
            );
            if m.status == OutboxStatus::Failed
                && m.recipients.iter().all(|r| {
                    r.reason
                        .as_deref()
                        .is_some_and(|x| x.starts_with("gave up"))
                })
            {
                state.push_str(" (given up after its attempts)");
            }
            if m.sent_to > 0 {
                state.push_str(&format!(
                    "; delivered to {}",
                    plural(m.sent_to, "other", "others")
                ));
            }
            if m.still_trying > 0 {
                state.push_str(&format!(
                    "; still being tried for {}",
                    plural(m.still_trying, "other", "others")
                ));
            }
            if m.retries > 0 {
                state.push_str(&format!(
                    "; retried by hand {}",
                    plural(m.retries, "time", "times")
                ));
            }
            let again = format!(
                "`kinlink outbox retry {}` sends it again to the recipients it did not reach",
                m.id
            );
            MessageLine {
                id: m.id,
                alerts: alerts_line(&m.alerts),
                kind: kind(&m.idempotency_key),
                state,
                retry: if m.still_trying > 0 {
                    format!("once the others are settled, {again}")
                } else {
                    again
                },
                recipients: m
                    .recipients
                    .iter()
                    .map(|r| RecipientLine {
                        address: r.address.clone(),
                        reason: r
                            .reason
                            .clone()
                            .unwrap_or_else(|| "no reply recorded".into()),
                    })
                    .collect(),
            }
        })
        .collect();
    let mut renderer = Renderer::new()?;
    renderer.add("admin_undelivered.txt", TEMPLATE)?;
    #[derive(Serialize)]
    struct Ctx<'a> {
        title: &'a str,
        messages: &'a [MessageLine],
    }
    let text = renderer.render(
        "admin_undelivered.txt",
        &Ctx {
            title: &subject,
            messages: &lines,
        },
    )?;
    Ok((subject, text))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::UndeliveredRecipient;

    fn refused(id: i64, key: &str, to: &[(&str, &str)]) -> Undelivered {
        Undelivered {
            id,
            idempotency_key: key.into(),
            status: OutboxStatus::Failed,
            retries: 0,
            sent_to: 0,
            still_trying: 0,
            recipients: to
                .iter()
                .enumerate()
                .map(|(i, (a, r))| UndeliveredRecipient {
                    position: i as i64,
                    address: a.to_string(),
                    reason: Some(r.to_string()),
                })
                .collect(),
            alerts: vec![],
        }
    }

    #[test]
    fn the_notice_names_each_message_recipient_and_reply_and_what_to_do() {
        let mut partly = refused(
            12,
            "digest:dv.north@example.gov.uk:abc",
            &[(
                "gone@example.gov.uk",
                "550 5.1.1 <gone@example.gov.uk>: recipient unknown",
            )],
        );
        partly.status = OutboxStatus::Sent;
        partly.sent_to = 2;
        let mut queued = refused(
            14,
            "managers:mgr@example.gov.uk:North:2026-W47",
            &[("old@example.gov.uk", "550 no such user")],
        );
        queued.status = OutboxStatus::Queued;
        queued.still_trying = 1;
        queued.retries = 1;
        let whole = Undelivered {
            recipients: vec![UndeliveredRecipient {
                position: 0,
                address: "eh.north@example.gov.uk".into(),
                reason: Some("gave up after 12 attempts: 451 4.3.0 try later".into()),
            }],
            ..refused(13, "stale-feed:police:2026-11-20", &[])
        };
        let (subject, text) = render_notice(&[partly, whole, queued]).unwrap();
        assert_eq!(subject, "kinlink: 3 emails could not be delivered");
        let expected = "\
kinlink: 3 emails could not be delivered

The mail relay refused these emails for good, or they were given up after their
attempts. They are not tried again by themselves.

1. Outbox #12, a digest: not delivered to 1 recipient; delivered to 2 others
   Not delivered to: gone@example.gov.uk
   Server's reply:   550 5.1.1 <gone@example.gov.uk>: recipient unknown
   What to do:  `kinlink outbox show 12` shows the message and every reply.
";
        assert!(text.starts_with(expected), "{text}");
        assert!(text.contains(
            "2. Outbox #13, a silent-feed notice: not delivered to 1 recipient (given up after its attempts)\n"
        ));
        assert!(
            text.contains("   Server's reply:   gave up after 12 attempts: 451 4.3.0 try later\n")
        );
        assert!(text.contains("`kinlink outbox retry 13` sends it again"));
        assert!(text.contains(
            "3. Outbox #14, a managers' weekly digest: not delivered to 1 recipient; still being tried for 1 other; retried by hand 1 time\n"
        ));
        assert!(text.contains("once the others are settled, `kinlink outbox retry 14`"));
        // The digest's recipient is in its key; the notice names only the refused one.
        assert!(!text.contains("dv.north"), "{text}");
        assert!(!text.contains("mgr@"), "{text}");
        assert!(text.contains("correct it in the config"));
    }

    #[test]
    fn one_failure_is_one_email_and_the_key_follows_the_failures() {
        let one = refused(3, "digest:a@x.example:1", &[("a@x.example", "554 no")]);
        let (subject, _) = render_notice(std::slice::from_ref(&one)).unwrap();
        assert_eq!(subject, "kinlink: 1 email could not be delivered");
        let key = notice_key(std::slice::from_ref(&one));
        assert!(is_failure_notice(&key));
        assert_eq!(key, notice_key(std::slice::from_ref(&one)));
        // The same message failing again after `outbox retry` is a new notice.
        let again = Undelivered {
            retries: 1,
            ..one.clone()
        };
        assert_ne!(key, notice_key(&[again]));
        assert!(!is_failure_notice("admin:files:0123"));
    }
}

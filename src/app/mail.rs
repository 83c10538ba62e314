//! The mail commands: `send [--dry-run]` and `outbox list|show|retry`. Addresses
//! and subjects appear on stdout (the operator's terminal) only, never in logs.

use anyhow::Context;
use serde_json::json;

use super::{open_store, Failure, EXIT_FAILED};
use crate::cli::{OutboxCommand, OutputFormat, SendArgs};
use crate::clock::Clock;
use crate::config::Settings;
use crate::mail::{send_step, DrainOptions, DrainReport, Mailer, SendOptions, SendReport};
use crate::store::{OutboxEntry, RetryOutcome};

fn mailer(settings: &Settings) -> Result<Mailer, Failure> {
    Mailer::new(&settings.mail).map_err(|e| Failure::Config(format!("[mail]: {e}")))
}

/// `kinlink send [--dry-run] [--manager-digest]`: compose the digests (and the
/// admin's notices, and the managers' weekly digest when asked), then drain the
/// outbox. Exit 1 when the relay could not be reached (the step failed; everything
/// stays queued). Refused messages are listed, mailed to the admin list once, and
/// exit 0: the run itself worked, and the refusals are for the admin to act on.
pub(super) async fn send(
    settings: &Settings,
    clock: Clock,
    args: &SendArgs,
) -> Result<u8, Failure> {
    let mailer = mailer(settings)?;
    let store = open_store(settings).await?;
    let options = SendOptions {
        dry_run: args.dry_run,
        manager_digest: args.manager_digest,
        drain: DrainOptions::default(),
    };
    let report = send_step(&mailer, &store, clock, settings, &options).await;
    let due = if args.dry_run {
        Some(store.outbox_due(clock.now()).await)
    } else {
        None
    };
    store.close().await;
    let report = report.context("sending")?;
    if let Some(due) = due {
        let due = due?;
        match args.format {
            OutputFormat::Json => println!(
                "{}",
                serde_json::to_string_pretty(
                    &json!({ "dry_run": true, "would_compose": report, "would_send": due })
                )
                .context("writing the report")?
            ),
            OutputFormat::Table => {
                print_composed(&report);
                print_failure_notice(&report);
                for e in &due {
                    let to: Vec<&str> = e
                        .recipients
                        .iter()
                        .filter(|r| r.status == crate::store::RecipientStatus::Pending)
                        .map(|r| r.address.as_str())
                        .collect();
                    println!(
                        "would send #{} {} to {} ({} bytes): {}",
                        e.id,
                        e.message_id,
                        to.join(", "),
                        e.size,
                        e.subject
                    );
                }
                println!(
                    "dry run: {} digest(s) to compose, {} message(s) already due, via {}; nothing was sent or changed",
                    report.digests.digests,
                    due.len(),
                    mailer.describe()
                );
            }
        }
        return Ok(0);
    }
    match args.format {
        OutputFormat::Json => println!(
            "{}",
            serde_json::to_string_pretty(&report).context("writing the report")?
        ),
        OutputFormat::Table => {
            print_composed(&report);
            if let Some(d) = &report.drain {
                print_drain(d);
            }
            print_failure_notice(&report);
            println!(
                "{} deliveries sent, {} failed; {} alert(s) now sent",
                report.settled.sent, report.settled.failed, report.settled.alerts_sent
            );
        }
    }
    Ok(
        if report
            .drain
            .as_ref()
            .is_some_and(|d| d.connection_error.is_some())
        {
            EXIT_FAILED
        } else {
            0
        },
    )
}

/// What composing did: one line per digest (recipient and subject: no personal
/// details, by construction of the subject).
pub fn print_composed(r: &SendReport) {
    let rr = &r.rerouted;
    if rr.rerouted > 0 {
        let alerts: Vec<String> = rr.alerts.iter().map(|a| format!("A{a}")).collect();
        println!(
            "{} {} refused deliver(y/ies) of {} alert(s) ({}) to the addresses the config names now",
            if r.dry_run { "would route again" } else { "routed again" },
            rr.rerouted,
            alerts.len(),
            alerts.join(", ")
        );
    }
    let verb = if r.dry_run { "would compose" } else { "digest" };
    for (to, subject) in &r.digests.subjects {
        println!("{verb:<9} to {to}: {subject}");
    }
    println!(
        "{} digest(s) for {} deliveries{}",
        r.digests.digests,
        r.digests.deliveries,
        if r.dry_run {
            String::new()
        } else {
            format!(", {} newly queued", r.digests.stored)
        }
    );
    let a = &r.admin_notices;
    if a.rejected + a.quarantine > 0 {
        println!(
            "admin notice: {} rejected file(s), {} with rows quarantined",
            a.rejected, a.quarantine
        );
    }
    if r.manager_digests.digests > 0 {
        println!(
            "managers' weekly digest: {} email(s), {} newly queued",
            r.manager_digests.digests, r.manager_digests.stored
        );
    }
}

/// What the admin list is told about undelivered emails (ids and counts).
pub fn print_failure_notice(r: &SendReport) {
    let f = &r.failure_notice;
    if f.messages > 0 {
        let ids: Vec<String> = f.notices.iter().map(|id| format!("#{id}")).collect();
        if r.dry_run {
            println!(
                "would tell the admin list of {} undelivered email(s) ({} recipient(s))",
                f.messages, f.recipients
            );
        } else {
            println!(
                "admin list told of {} undelivered email(s) ({} recipient(s)) in {}",
                f.messages,
                f.recipients,
                if ids.is_empty() {
                    "a notice".to_string()
                } else {
                    format!("notice {}", ids.join(", "))
                }
            );
        }
    }
    for id in &f.notices_undelivered {
        println!(
            "NOT SENT  the notice of undelivered emails #{id} could not be delivered either; it is not reported again: `kinlink outbox show {id}`"
        );
    }
    if f.unreported_no_admin > 0 {
        println!(
            "{} undelivered email(s) are told to nobody: [mail] admin is empty",
            f.unreported_no_admin
        );
    }
}

/// What a drain run did, one line per message, failures first.
pub fn print_drain(r: &DrainReport) {
    if let Some(e) = &r.connection_error {
        println!("NOT SENT  {e}; every due message stays queued");
    }
    for f in &r.failed {
        println!(
            "FAILED    #{} to {}: {}",
            f.id,
            f.recipients.join(", "),
            f.reason
        );
    }
    for s in &r.sent {
        println!(
            "sent      #{} to {}: {}",
            s.id,
            s.recipients.join(", "),
            s.reply
        );
    }
    for q in &r.retrying {
        println!(
            "retrying  #{} to {} at {}: {}",
            q.id,
            q.recipients.join(", "),
            q.next_attempt_at.format("%Y-%m-%d %H:%M:%S UTC"),
            q.reason
        );
    }
    if !r.requeued_after_interruption.is_empty() {
        println!(
            "{} message(s) left in sending by an interrupted run were queued again (each may reach its recipients a second time)",
            r.requeued_after_interruption.len()
        );
    }
    println!(
        "{} sent, {} to retry, {} failed",
        r.sent.len(),
        r.retrying.len(),
        r.failed.len()
    );
    if !r.failed.is_empty() {
        println!("failed messages are not retried by themselves: `kinlink outbox retry ID` after fixing the cause");
    }
}

/// `kinlink outbox list|show|retry`.
pub(super) async fn outbox(
    settings: &Settings,
    clock: Clock,
    what: &OutboxCommand,
) -> Result<u8, Failure> {
    let store = open_store(settings).await?;
    let result = outbox_command(&store, settings, clock, what).await;
    store.close().await;
    result
}

async fn outbox_command(
    store: &crate::store::Store,
    settings: &Settings,
    clock: Clock,
    what: &OutboxCommand,
) -> Result<u8, Failure> {
    match what {
        OutboxCommand::List { format } => {
            let entries = store.outbox_entries().await?;
            match format {
                OutputFormat::Json => println!(
                    "{}",
                    serde_json::to_string_pretty(&entries).context("writing the list")?
                ),
                OutputFormat::Table => print_list(&entries),
            }
            Ok(0)
        }
        OutboxCommand::Show { id } => {
            let (entry, raw) = match store.outbox_message(*id).await {
                Ok(found) => found,
                Err(crate::store::StoreError::NotFound(_)) => {
                    return Err(Failure::Config(format!("no outbox message #{id}")))
                }
                Err(e) => return Err(e.into()),
            };
            print_entry(&entry);
            println!("\n{}", String::from_utf8_lossy(&raw));
            Ok(0)
        }
        OutboxCommand::Retry { id } => {
            // A recipient the config no longer names for its alerts' role is not
            // sent the old message: its alerts are routed again to the address the
            // config names now (the next `kinlink send` sends them), first.
            let rerouted = crate::mail::reroute::reroute_refused(
                store,
                settings,
                clock.now(),
                Some(*id),
                crate::domain::RunMode::Apply,
            )
            .await
            .map_err(|e| Failure::Config(format!("#{id}: {e}")))?;
            if rerouted.rerouted > 0 {
                let alerts: Vec<String> = rerouted.alerts.iter().map(|a| format!("A{a}")).collect();
                println!(
                    "#{id}: its recipient is no longer the address the config names for its alerts; {} alert(s) ({}) were routed again to the address it names now, and the next `kinlink send` sends them (`kinlink audit` shows it)",
                    alerts.len(),
                    alerts.join(", ")
                );
            }
            match store.retry_outbox(*id, clock.now()).await {
                Ok(RetryOutcome::Requeued(n)) => {
                    println!(
                        "#{id} queued again for {n} recipient(s); the next `kinlink send` tries it"
                    );
                    Ok(0)
                }
                Ok(RetryOutcome::Rerouted(old)) => {
                    println!(
                        "#{id} is not queued again: the alerts it carried to {} were routed again to the address the config names now, and the old address never gets them a second way",
                        old.join(", ")
                    );
                    Ok(0)
                }
                Ok(RetryOutcome::NothingToRetry(status)) => Err(Failure::Config(format!(
                    "#{id} is {status} with nothing failed on it: nothing to retry"
                ))),
                Err(crate::store::StoreError::NotFound(_)) => {
                    Err(Failure::Config(format!("no outbox message #{id}")))
                }
                Err(e) => Err(e.into()),
            }
        }
    }
}

fn print_list(entries: &[OutboxEntry]) {
    println!(
        "{:>6}  {:<8} {:>8}  {:<20}  {:<30}  subject",
        "id", "status", "attempts", "when (UTC)", "recipients"
    );
    for e in entries {
        let when = match e.status {
            crate::store::OutboxStatus::Sent => e.sent_at.unwrap_or(e.created_at),
            _ => e.next_attempt_at,
        };
        let sent = e
            .recipients
            .iter()
            .filter(|r| r.status == crate::store::RecipientStatus::Sent)
            .count();
        println!(
            "{:>6}  {:<8} {:>8}  {:<20}  {:<30}  {}",
            e.id,
            e.status.as_str(),
            e.attempts,
            when.format("%Y-%m-%d %H:%M:%S"),
            format!("{sent}/{} sent", e.recipients.len()),
            e.subject
        );
    }
    println!("{} message(s)", entries.len());
}

fn print_entry(e: &OutboxEntry) {
    println!("outbox #{}  {}", e.id, e.status);
    println!("  key:          {}", e.idempotency_key);
    println!("  message-id:   {}", e.message_id);
    println!("  subject:      {}", e.subject);
    println!("  attempts:     {}", e.attempts);
    if e.retries > 0 {
        println!("  retried:      {} time(s) by hand", e.retries);
    }
    println!("  created:      {}", e.created_at.to_rfc3339());
    match e.status {
        crate::store::OutboxStatus::Sent => {
            if let Some(at) = e.sent_at {
                println!("  sent:         {}", at.to_rfc3339());
            }
        }
        crate::store::OutboxStatus::Queued => {
            println!("  next attempt: {}", e.next_attempt_at.to_rfc3339())
        }
        _ => {}
    }
    if let Some(r) = &e.server_reply {
        println!("  server reply: {r}");
    }
    if let Some(err) = &e.last_error {
        println!("  last error:   {err}");
    }
    for r in &e.recipients {
        println!(
            "  to {:<40} {:<8} {}",
            r.address,
            r.status.as_str(),
            r.reply.as_deref().unwrap_or("")
        );
        if let Some(at) = r.failure_notified_at {
            println!("     admin list told {}", at.to_rfc3339());
        }
    }
}

//! The rules and alerts commands: `evaluate`, `alerts list|ack` and `audit`.
//! Tables go to stdout (the operator's terminal); logs carry ids and counts only.

use anyhow::Context;
use chrono::TimeZone;
use tracing::info;

use super::{open_store, Failure};
use crate::cli::{AlertsCommand, AuditArgs, OutputFormat};
use crate::clock::Clock;
use crate::config::Settings;
use crate::domain::rules::RuleId;
use crate::domain::EmailAddress;
use crate::link::ids::parse_display_id;
use crate::pipeline::{self, EvaluateReport};
use crate::store::{AckOutcome, AlertRow, AuditRow};

const STATUSES: [&str; 4] = ["new", "sent", "acknowledged", "resolved"];

/// `kinlink evaluate`.
pub(super) async fn evaluate(
    settings: &Settings,
    clock: Clock,
    format: OutputFormat,
) -> Result<u8, Failure> {
    let store = open_store(settings).await?;
    let report = pipeline::evaluate(settings, &store, clock).await;
    store.close().await;
    let report = report?;
    match format {
        OutputFormat::Json => println!(
            "{}",
            serde_json::to_string_pretty(&report).context("writing the report")?
        ),
        OutputFormat::Table => print_evaluate_report(&report),
    }
    Ok(0)
}

/// The figures of an evaluation, one line each.
pub fn print_evaluate_report(r: &EvaluateReport) {
    let c = &r.counts;
    println!(
        "evaluated for {}: {} finding(s); {} alert(s) raised, {} escalated, {} resolved, {} unchanged",
        r.as_of, r.findings, c.raised, c.escalated, c.resolved, c.unchanged
    );
    println!(
        "  deliveries: {} ({} alert(s) unrouted, sent to the admin list)",
        c.deliveries, c.unrouted
    );
    for (rule, locality, n) in &r.raised_by {
        println!("  {rule:<18} {locality:<16} {n}");
    }
    println!(
        "  time: read {:.2}s, rules {:.2}s, write {:.2}s",
        r.read_s, r.rules_s, r.write_s
    );
}

/// `kinlink alerts list|ack`.
pub(super) async fn alerts(
    settings: &Settings,
    clock: Clock,
    what: &AlertsCommand,
) -> Result<u8, Failure> {
    match what {
        AlertsCommand::List {
            rule,
            status,
            format,
        } => {
            if let Some(r) = rule {
                if RuleId::parse(r).is_none() {
                    let all: Vec<&str> = RuleId::ALL.iter().map(|r| r.as_str()).collect();
                    return Err(Failure::Config(format!(
                        "unknown rule {r:?}: give one of {}",
                        all.join(", ")
                    )));
                }
            }
            if let Some(s) = status {
                if !STATUSES.contains(&s.as_str()) {
                    return Err(Failure::Config(format!(
                        "unknown status {s:?}: give one of {}",
                        STATUSES.join(", ")
                    )));
                }
            }
            let store = open_store(settings).await?;
            let rows = store.alert_rows(rule.as_deref(), status.as_deref()).await;
            store.close().await;
            let rows = rows?;
            match format {
                OutputFormat::Json => println!(
                    "{}",
                    serde_json::to_string_pretty(&rows).context("writing the alerts")?
                ),
                OutputFormat::Table => print_alerts(&rows),
            }
            Ok(0)
        }
        AlertsCommand::Ack { id, by, note } => {
            let Some(n) = parse_display_id(id, 'A') else {
                return Err(Failure::Config(format!(
                    "alert id {id:?} is not valid: give it as A12 or 12"
                )));
            };
            if EmailAddress::parse(by).is_none() {
                return Err(Failure::Config(format!(
                    "--by {by:?} is not an email address: give the address of the person acknowledging"
                )));
            }
            if note.trim().is_empty() {
                return Err(Failure::Config(
                    "--note is empty: say what is being done about the alert".into(),
                ));
            }
            let store = open_store(settings).await?;
            let outcome = store.ack_alert(n, by, note.trim(), clock.now()).await;
            store.close().await;
            match outcome? {
                AckOutcome::Acknowledged => {
                    info!(alert = n, "Alert acknowledged");
                    println!("A{n} acknowledged");
                    Ok(0)
                }
                AckOutcome::AlreadyAcknowledged => {
                    println!("A{n} was already acknowledged; the first acknowledgement stands");
                    Ok(0)
                }
                AckOutcome::Resolved => Err(Failure::Config(format!(
                    "A{n} is resolved and cannot be acknowledged"
                ))),
                AckOutcome::NotFound => Err(Failure::Config(format!(
                    "there is no alert A{n}: `kinlink alerts list` shows them"
                ))),
            }
        }
    }
}

fn print_alerts(rows: &[AlertRow]) {
    if rows.is_empty() {
        println!("no alerts");
        return;
    }
    println!(
        "{:<6} {:<17} {:<8} {:<12} {:<7} {:<10} {:<7} {:<17} records / recipients",
        "id", "rule", "severity", "status", "family", "locality", "school", "raised"
    );
    for a in rows {
        let records: Vec<String> = a
            .records
            .iter()
            .map(|r| format!("{}:{}", r.kind, r.id))
            .collect();
        println!(
            "A{:<5} {:<17} {:<8} {:<12} {:<7} {:<10} {:<7} {:<17} {}",
            a.id,
            a.rule,
            a.severity,
            a.status,
            a.family_id.map(|f| format!("F{f}")).unwrap_or_default(),
            a.locality.as_deref().unwrap_or("-"),
            a.school_urn.as_deref().unwrap_or("-"),
            a.raised_at.format("%Y-%m-%d %H:%M"),
            records.join(" ")
        );
        println!(
            "{:>7} to: {}",
            "",
            if a.recipients.is_empty() {
                "nobody (no admin list configured)".to_string()
            } else {
                a.recipients.join(", ")
            }
        );
        if let Some(u) = &a.unrouted {
            println!("{:>7} unrouted: {u}", "");
        }
        if !a.undelivered.is_empty() {
            println!(
                "{:>7} UNDELIVERED to {}: refused for good (`kinlink outbox list`); correct the address in the config and `kinlink send` routes it again",
                "",
                a.undelivered.join(", ")
            );
        }
    }
}

/// `kinlink audit --family ID | --recipient EMAIL [--since DATE]`.
pub(super) async fn audit(settings: &Settings, args: &AuditArgs) -> Result<u8, Failure> {
    let since = match args.since {
        Some(d) => {
            let local = d.and_hms_opt(0, 0, 0).unwrap_or_default();
            let at = settings
                .timezone
                .from_local_datetime(&local)
                .earliest()
                .map(|t| t.with_timezone(&chrono::Utc))
                .unwrap_or_else(|| local.and_utc());
            Some(at)
        }
        None => None,
    };
    let store = open_store(settings).await?;
    let rows = match (&args.family, &args.recipient) {
        (Some(f), _) => {
            let Some(id) = parse_display_id(f, 'F') else {
                store.close().await;
                return Err(Failure::Config(format!(
                    "family id {f:?} is not valid: give it as F3 or 3"
                )));
            };
            store.audit_for_family(id).await.map(|rows| {
                rows.into_iter()
                    .filter(|r| since.is_none_or(|s| r.at >= s))
                    .collect::<Vec<_>>()
            })
        }
        (None, Some(r)) => store.audit_for_recipient(r, since).await,
        (None, None) => Ok(Vec::new()),
    };
    store.close().await;
    let rows = rows?;
    match args.format {
        OutputFormat::Json => println!(
            "{}",
            serde_json::to_string_pretty(&rows).context("writing the audit rows")?
        ),
        OutputFormat::Table => print_audit(&rows),
    }
    Ok(0)
}

fn print_audit(rows: &[AuditRow]) {
    if rows.is_empty() {
        println!("no disclosures recorded");
        return;
    }
    for r in rows {
        let records: Vec<String> = r
            .records
            .iter()
            .map(|x| format!("{}:{}", x.kind, x.id))
            .collect();
        let persons: Vec<String> = r.person_ids.iter().map(|p| format!("P{p}")).collect();
        println!(
            "{} {:<7} A{} rev {} {} → {} ({}), family {}, persons [{}], records [{}], detail {}",
            r.at.format("%Y-%m-%d %H:%M:%S"),
            r.event,
            r.alert_id,
            r.revision,
            r.rule,
            r.recipient,
            r.role,
            r.family_id
                .map(|f| format!("F{f}"))
                .unwrap_or_else(|| "-".into()),
            persons.join(" "),
            records.join(" "),
            r.detail
        );
        println!("    why: {}", r.reason);
    }
}

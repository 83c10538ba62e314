//! Admin notices about feed files: a file rejected whole (the reason, and where the
//! raw file now is) and a file kept with rows quarantined (any row of a police,
//! housing or case file; for attendance at least half of its source's
//! `max_bad_rows`, so it came close to being rejected), listing the first
//! quarantined rows by row, column and reason (never their values). One email
//! per run to the admin list; job and step failures are mailed by the scheduler.
//!
//! Invariant: the notice and the files' `notified_at` commit together, so a file is
//! reported once, even when a run stops half way.

use serde::Serialize;
use sha2::{Digest as _, Sha256};

use super::digest::{human_date, Renderer};
use super::{compose, MailError, Mailer, OutgoingMessage};
use crate::clock::Clock;
use crate::config::Settings;
use crate::domain::FeedKind;
use crate::domain::RunMode;
use crate::store::{FileNotice, Store};

const TEMPLATE: &str = include_str!("../../config/templates/admin_files.txt");

/// What the notice pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct NoticeRun {
    /// Files rejected whole that the notice reports.
    pub rejected: usize,
    /// Files kept with rows quarantined that it reports.
    pub quarantine: usize,
    /// Whether a notice was stored in the outbox.
    pub stored: bool,
}

#[derive(Debug, Serialize)]
struct FileLine {
    headline: String,
    source: String,
    name: String,
    finished: String,
    rows_read: i64,
    quarantined: i64,
    reason: Option<String>,
    raw_path: String,
    action: String,
    /// The first quarantined rows: where and why, never their values.
    rows: Vec<QuarantineLine>,
    /// Quarantined rows beyond those listed.
    more_rows: usize,
}

#[derive(Debug, Serialize)]
struct QuarantineLine {
    row: i64,
    column: String,
    reason: String,
}

/// Whether a kept file quarantined enough rows to tell the admin. A police,
/// housing or case file has no row to spare (each row is a notification, a
/// notice or a case member), so any quarantined row is worth telling; an
/// attendance file (thousands of session marks) only at half of its source's
/// `max_bad_rows` (which would have rejected it).
pub fn quarantine_worth_telling(f: &FileNotice, kind: FeedKind, max_bad_rows: f64) -> bool {
    if f.quarantined == 0 || f.rows_read <= 0 {
        return false;
    }
    if kind != FeedKind::Attendance {
        return true;
    }
    let share = f.quarantined as f64 / f.rows_read as f64;
    share >= max_bad_rows / 2.0
}

/// How many quarantined rows a notice lists per file (row, column and reason).
const LISTED_ROWS: usize = 10;

/// Tells the admin list about files rejected or heavily quarantined since the last
/// notice. Files not worth telling are marked as looked at without an email. In a
/// dry run nothing is stored or marked.
pub async fn enqueue_file_notices(
    mailer: &Mailer,
    store: &Store,
    clock: Clock,
    settings: &Settings,
    mode: RunMode,
) -> Result<NoticeRun, MailError> {
    let files = store.unnotified_files().await?;
    if files.is_empty() {
        return Ok(NoticeRun::default());
    }
    let mut run = NoticeRun::default();
    let mut lines = Vec::new();
    let mut reported = Vec::new();
    for f in &files {
        let source = settings.sources.iter().find(|s| s.name == f.source);
        let max_bad = source.map_or(0.05, |s| s.max_bad_rows);
        // A source no longer in config: treated as the strictest kind.
        let kind = source.map_or(FeedKind::PoliceDa, |s| s.kind);
        let line = if f.status == "rejected" {
            run.rejected += 1;
            FileLine {
                headline: "Rejected whole: nothing from it was stored, the previous data stays in force".into(),
                action: format!(
                    "fix the file (or the source's column map) and drop the corrected file in the inbox, or run `kinlink ingest --source {} --file PATH`",
                    f.source
                ),
                ..file_line(f)
            }
        } else if quarantine_worth_telling(f, kind, max_bad) {
            run.quarantine += 1;
            let rows = store.quarantined_rows(f.id, LISTED_ROWS).await?;
            FileLine {
                headline: format!(
                    "Kept, but {} of {} rows quarantined: those rows were not stored (the source rejects a file above {:.1}%)",
                    f.quarantined,
                    f.rows_read,
                    max_bad * 100.0
                ),
                action:
                    "ask the sender to correct the quarantined rows; a corrected file replaces them"
                        .into(),
                more_rows: (f.quarantined as usize).saturating_sub(rows.len()),
                rows: rows
                    .into_iter()
                    .map(|q| QuarantineLine {
                        row: q.row_number,
                        column: q.column.unwrap_or_else(|| "the whole row".into()),
                        reason: q.reason,
                    })
                    .collect(),
                ..file_line(f)
            }
        } else {
            continue;
        };
        reported.push(f.id);
        lines.push(line);
    }
    let ids: Vec<i64> = files.iter().map(|f| f.id).collect();
    if mode.is_dry_run() {
        return Ok(run);
    }
    let now = clock.now();
    if lines.is_empty() || settings.mail.admin.is_empty() {
        if !lines.is_empty() {
            tracing::warn!(
                files = lines.len(),
                "Feed files need the admin's attention but [mail] admin is empty"
            );
        }
        store.mark_files_notified(None, &ids, now).await?;
        return Ok(run);
    }
    let mut parts = Vec::new();
    if run.rejected > 0 {
        parts.push(format!(
            "{} feed {} rejected",
            run.rejected,
            if run.rejected == 1 { "file" } else { "files" }
        ));
    }
    if run.quarantine > 0 {
        parts.push(format!(
            "{} {} with rows quarantined",
            run.quarantine,
            if run.quarantine == 1 {
                "feed file"
            } else {
                "feed files"
            }
        ));
    }
    let subject = format!("kinlink: {}", parts.join(", "));
    let mut renderer = Renderer::new()?;
    renderer.add("admin_files.txt", TEMPLATE)?;
    #[derive(Serialize)]
    struct Ctx<'a> {
        title: &'a str,
        files: &'a [FileLine],
    }
    let text = renderer.render(
        "admin_files.txt",
        &Ctx {
            title: &subject,
            files: &lines,
        },
    )?;
    let mut ids_sorted = reported.clone();
    ids_sorted.sort_unstable();
    let hash = Sha256::digest(
        ids_sorted
            .iter()
            .map(i64::to_string)
            .collect::<Vec<_>>()
            .join(",")
            .as_bytes(),
    );
    let message = OutgoingMessage {
        idempotency_key: format!("admin:files:{}", hex::encode(&hash[..16])),
        to: settings.mail.admin.clone(),
        subject,
        text,
        html: None,
        inline_images: vec![],
    };
    let composed = compose::compose(&mailer.from, &message, now)?;
    let sender = mailer.from.email.to_string();
    let stored = store
        .mark_files_notified(Some(&composed.outbox(&message, &sender, now)), &ids, now)
        .await?;
    run.stored = stored.is_some_and(|e| e.created);
    Ok(run)
}

fn file_line(f: &FileNotice) -> FileLine {
    FileLine {
        headline: String::new(),
        source: f.source.clone(),
        name: f.original_name.clone(),
        finished: f.finished_at.map_or_else(
            || "unknown".to_string(),
            |t| format!("{} {} UTC", human_date(t.date_naive()), t.format("%H:%M")),
        ),
        rows_read: f.rows_read,
        quarantined: f.quarantined,
        reason: f.reason.clone(),
        raw_path: f.raw_path.clone(),
        action: String::new(),
        rows: Vec::new(),
        more_rows: 0,
    }
}

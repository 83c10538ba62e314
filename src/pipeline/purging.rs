//! The retention step: delete raw data past `[retention]` (or, with `dry_run`,
//! count what would go). The store deletes rows in one transaction; the raw file
//! copies are deleted after it commits, so a crash leaves at worst a file whose
//! ledger row says it was purged (removed by hand, or harmlessly left).

use anyhow::Context;
use chrono::{Duration, TimeZone};
use tracing::{info, instrument, warn};

use crate::clock::Clock;
use crate::config::Settings;
use crate::domain::RunMode;
use crate::store::{PurgeCounts, PurgeCutoffs, Store};

/// What one purge did (or would do).
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct PurgeReport {
    pub dry_run: bool,
    pub counts: PurgeCounts,
    /// Raw copies deleted from the state dir (0 on a dry run).
    pub files_deleted: usize,
    /// Raw copies that were already gone.
    pub files_missing: usize,
}

/// The cutoffs for today (Europe/London) under `[retention]`.
pub fn cutoffs(settings: &Settings, clock: Clock) -> PurgeCutoffs {
    let r = &settings.retention;
    let today = clock.today(settings.timezone);
    let day = |days: u32| today - Duration::days(i64::from(days));
    // The start of a local day, as an instant.
    let start = |date: chrono::NaiveDate| {
        let local = date.and_hms_opt(0, 0, 0).unwrap_or_default();
        settings
            .timezone
            .from_local_datetime(&local)
            .earliest()
            .map(|t| t.with_timezone(&chrono::Utc))
            .unwrap_or_else(|| local.and_utc())
    };
    PurgeCutoffs {
        raw_files_before: start(day(r.raw_files_days)),
        attendance_before: day(r.attendance_days),
        police_before: start(day(r.police_da_days)),
        housing_before: day(r.housing_days),
        cases_before: day(r.cases_days),
    }
}

/// `kinlink purge [--dry-run]`, and the `purge` step of a job.
#[instrument(skip_all, fields(stage = "purge"))]
pub async fn purge(
    settings: &Settings,
    store: &Store,
    clock: Clock,
    mode: RunMode,
) -> anyhow::Result<PurgeReport> {
    let c = cutoffs(settings, clock);
    let dry_run = mode.is_dry_run();
    let (counts, files) = store
        .purge(&c, mode, clock.now())
        .await
        .context("purging data past its retention period")?;
    let mut report = PurgeReport {
        dry_run,
        counts,
        ..PurgeReport::default()
    };
    if !dry_run {
        for f in files {
            let path = if f.is_absolute() {
                f
            } else {
                settings.state_dir.join(f)
            };
            match std::fs::remove_file(&path) {
                Ok(()) => report.files_deleted += 1,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => report.files_missing += 1,
                Err(e) => warn!(error = %e, "A raw feed copy could not be deleted"),
            }
        }
    }
    info!(
        dry_run,
        raw_files = counts.raw_files,
        attendance_marks = counts.attendance_marks,
        police_rows = counts.police_rows,
        housing_notices = counts.housing_notices,
        case_rows = counts.case_rows,
        mentions = counts.mentions,
        "Purged data past its retention period"
    );
    Ok(report)
}

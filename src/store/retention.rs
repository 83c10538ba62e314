//! Retention: deleting raw data past its period (`[retention]`), in one
//! transaction, or counting what would go.
//!
//! What goes: raw file copies (the ledger row stays, marked `purged_at`) and the
//! quarantined rows read from them; attendance marks and school days; police
//! notification rows; housing notices; the rows of closed cases; then every person
//! mention none of whose records is left (with its links and review rows, and the
//! notes of its review decisions: the personal details go with it; the decisions
//! themselves stay in the audit trail by ids).
//!
//! Invariant: alerts, their facts, deliveries and the audit log are never deleted:
//! they hold ids and record references only, so "who was told what about whom"
//! stays answerable after the data behind it is gone. Open cases are never purged.

use std::path::PathBuf;

use chrono::{DateTime, NaiveDate, Utc};

use super::{Store, StoreError, Tx};
use crate::domain::RunMode;

/// Everything older than these goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PurgeCutoffs {
    /// Raw files fetched before this instant.
    pub raw_files_before: DateTime<Utc>,
    /// Marks of school days before this date.
    pub attendance_before: NaiveDate,
    /// Incidents before this instant.
    pub police_before: DateTime<Utc>,
    /// Notices served (and with any possession date) before this date.
    pub housing_before: NaiveDate,
    /// Cases closed before this date.
    pub cases_before: NaiveDate,
}

/// Rows (and files) purged, or that would be.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct PurgeCounts {
    pub raw_files: i64,
    pub quarantined_rows: i64,
    pub attendance_marks: i64,
    pub school_days: i64,
    pub police_rows: i64,
    pub housing_notices: i64,
    pub case_rows: i64,
    pub mentions: i64,
}

/// Only settled files: a copy still waiting to be ingested is never purged.
const RAW_FILES: &str = "FROM feed_files WHERE fetched_at < $1 AND purged_at IS NULL \
     AND status IN ('ingested', 'rejected')";
const QUARANTINE: &str =
    "FROM quarantine WHERE file_id IN (SELECT id FROM feed_files WHERE fetched_at < $1 \
     AND status IN ('ingested', 'rejected'))";
const MARKS: &str = "FROM attendance_marks WHERE date < $1";
const DAYS: &str = "FROM school_days WHERE date < $1";
const PUPIL_SCHOOLS: &str = "FROM pupil_schools WHERE last_mark_on < $1";
const POLICE: &str = "FROM da_persons WHERE incident_at < $1";
const HOUSING: &str =
    "FROM housing_notices WHERE served_on < $1 AND (possession_date IS NULL OR possession_date < $1)";
const CASES: &str = "FROM case_members WHERE closed_on IS NOT NULL AND closed_on < $1";
/// Mentions none of whose records survives the purge.
const ORPHANS: &str = "SELECT m.id FROM mentions m WHERE \
     NOT EXISTS (SELECT 1 FROM attendance_marks a WHERE a.mention_id = m.id AND a.date >= $1) \
     AND NOT EXISTS (SELECT 1 FROM da_persons d WHERE d.mention_id = m.id AND d.incident_at >= $2) \
     AND NOT EXISTS (SELECT 1 FROM housing_notices h WHERE h.mention_id = m.id \
         AND (h.served_on >= $3 OR h.possession_date >= $3)) \
     AND NOT EXISTS (SELECT 1 FROM case_members c WHERE c.mention_id = m.id \
         AND (c.closed_on IS NULL OR c.closed_on >= $4))";

impl Store {
    /// Purges (or in a dry run only counts) everything past its cutoff. Returns
    /// the counts and the raw file paths whose copies the caller deletes after
    /// the commit.
    pub async fn purge(
        &self,
        c: &PurgeCutoffs,
        mode: RunMode,
        now: DateTime<Utc>,
    ) -> Result<(PurgeCounts, Vec<PathBuf>), StoreError> {
        let mut tx = Tx::begin(&self.pool).await?;
        let mut n = PurgeCounts::default();
        let raw: Vec<(i64, String)> = on_tx!(tx, t => sqlx::query_as(&format!("SELECT id, raw_path {RAW_FILES}"))
            .bind(c.raw_files_before).fetch_all(&mut **t).await)?;
        n.raw_files = raw.len() as i64;
        let orphans: Vec<i64> = on_tx!(tx, t => sqlx::query_scalar(ORPHANS)
            .bind(c.attendance_before)
            .bind(c.police_before)
            .bind(c.housing_before)
            .bind(c.cases_before)
            .fetch_all(&mut **t).await)?;
        n.mentions = orphans.len() as i64;
        macro_rules! count {
            ($from:expr, $bind:expr) => {
                on_tx!(tx, t => sqlx::query_scalar::<_, i64>(&format!("SELECT COUNT(*) {}", $from))
                    .bind($bind).fetch_one(&mut **t).await)?
            };
        }
        macro_rules! delete {
            ($from:expr, $bind:expr) => {
                on_tx!(tx, t => sqlx::query(&format!("DELETE {}", $from))
                    .bind($bind).execute(&mut **t).await.map(|r| r.rows_affected() as i64))?
            };
        }
        if mode.is_dry_run() {
            n.quarantined_rows = count!(QUARANTINE, c.raw_files_before);
            n.attendance_marks = count!(MARKS, c.attendance_before);
            n.school_days = count!(DAYS, c.attendance_before);
            n.police_rows = count!(POLICE, c.police_before);
            n.housing_notices = count!(HOUSING, c.housing_before);
            n.case_rows = count!(CASES, c.cases_before);
            // Dropping the transaction rolls it back: nothing changes.
            drop(tx);
            return Ok((n, raw.into_iter().map(|(_, p)| PathBuf::from(p)).collect()));
        }
        n.quarantined_rows = delete!(QUARANTINE, c.raw_files_before);
        n.attendance_marks = delete!(MARKS, c.attendance_before);
        n.school_days = delete!(DAYS, c.attendance_before);
        // A pupil's school whose latest mark went goes too; and the evaluate stage's
        // tallies counted marks that are gone, so the next evaluation counts afresh.
        delete!(PUPIL_SCHOOLS, c.attendance_before);
        if n.attendance_marks > 0 {
            on_tx!(tx, t => sqlx::query("DELETE FROM attendance_tally_state")
                .execute(&mut **t).await.map(|_| ()))?;
        }
        n.police_rows = delete!(POLICE, c.police_before);
        n.housing_notices = delete!(HOUSING, c.housing_before);
        n.case_rows = delete!(CASES, c.cases_before);
        for chunk in orphans.chunks(500) {
            let list = chunk
                .iter()
                .map(i64::to_string)
                .collect::<Vec<_>>()
                .join(", ");
            // Ids are integers read from the store: safe to inline.
            for sql in [
                format!("DELETE FROM links WHERE a IN ({list}) OR b IN ({list})"),
                format!("DELETE FROM review_queue WHERE a IN ({list}) OR b IN ({list})"),
                // A decision stays in the audit trail by ids; its free text may name
                // the person, so it goes with the details.
                format!(
                    "UPDATE review_decisions SET note = NULL, withdrawn_note = NULL \
                     WHERE a IN ({list}) OR b IN ({list})"
                ),
                format!("DELETE FROM review_decision_ids WHERE mention_id IN ({list})"),
                format!("DELETE FROM mention_persons WHERE mention_id IN ({list})"),
                format!("DELETE FROM pupil_schools WHERE mention_id IN ({list})"),
                format!("DELETE FROM attendance_tallies WHERE mention_id IN ({list})"),
                format!("DELETE FROM mentions WHERE id IN ({list})"),
            ] {
                on_tx!(tx, t => sqlx::query(&sql).execute(&mut **t).await.map(|_| ()))?;
            }
        }
        for (id, _) in &raw {
            on_tx!(tx, t => sqlx::query("UPDATE feed_files SET purged_at = $2 WHERE id = $1")
                .bind(*id).bind(now).execute(&mut **t).await.map(|_| ()))?;
        }
        tx.commit().await?;
        Ok((n, raw.into_iter().map(|(_, p)| PathBuf::from(p)).collect()))
    }
}

//! Job run history and run claims (migration 0006): one row per scheduled run of a
//! job, whichever daemon ran it.
//!
//! Invariants:
//! - (job, scheduled_for) is unique, so a scheduled run is claimed by exactly one
//!   daemon: the one whose `INSERT … ON CONFLICT DO NOTHING` returns the row.
//! - A run is only finished, heartbeated or marked started by the instance that
//!   holds its claim; a daemon that lost its claim (it stalled past the lease and
//!   another took the run over) cannot overwrite the new owner's record.
//! - Instants are stored to the whole second (SQLite keeps RFC 3339 text, so equal
//!   precision keeps text order equal to time order).

use chrono::{DateTime, Utc};

use super::{Pool, Store, StoreError, Tx};

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RunOutcome {
    Ok,
    Failed,
    /// The job was still running from an earlier scheduled time: not started twice.
    SkippedOverlap,
    /// Shutdown stopped it before its steps were done.
    Interrupted,
    /// Its claim expired unfinished, and a later scheduled time superseded it.
    Abandoned,
}

impl RunOutcome {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            RunOutcome::Ok => "ok",
            RunOutcome::Failed => "failed",
            RunOutcome::SkippedOverlap => "skipped_overlap",
            RunOutcome::Interrupted => "interrupted",
            RunOutcome::Abandoned => "abandoned",
        }
    }

    fn parse(s: &str) -> Option<RunOutcome> {
        [
            RunOutcome::Ok,
            RunOutcome::Failed,
            RunOutcome::SkippedOverlap,
            RunOutcome::Interrupted,
            RunOutcome::Abandoned,
        ]
        .into_iter()
        .find(|o| o.as_str() == s)
    }
}

impl std::fmt::Display for RunOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One run as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunRow {
    pub id: i64,
    pub job: String,
    pub scheduled_for: DateTime<Utc>,
    /// The daemon that holds (or held) the claim.
    pub instance: String,
    pub claimed_at: DateTime<Utc>,
    pub claimed_until: DateTime<Utc>,
    /// How often another daemon took the run over after a claim expired.
    pub takeovers: i64,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    /// `None` while it runs.
    pub outcome: Option<RunOutcome>,
    pub error: Option<String>,
    /// Per-step timings, JSON.
    pub steps: String,
}

/// What a claim attempt found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// This daemon runs it (a new row).
    Claimed(i64),
    /// This daemon runs it: the row's earlier claim expired unfinished, or the run
    /// was interrupted by a shutdown.
    TakenOver(i64),
    /// Another run of the same job is still going (here or on another daemon):
    /// recorded as `skipped_overlap`, not started.
    Overlap { running: i64 },
    /// Another daemon has claimed (or finished) this scheduled run.
    Taken,
}

/// A claim request.
#[derive(Debug, Clone, Copy)]
pub struct ClaimRequest<'a> {
    pub job: &'a str,
    pub scheduled_for: DateTime<Utc>,
    pub instance: &'a str,
    pub now: DateTime<Utc>,
    /// The claim's expiry: `now` plus the lease.
    pub until: DateTime<Utc>,
}

type RunTuple = (
    i64,
    String,
    DateTime<Utc>,
    String,
    DateTime<Utc>,
    DateTime<Utc>,
    i64,
    Option<DateTime<Utc>>,
    Option<DateTime<Utc>>,
    Option<String>,
    Option<String>,
    String,
);

/// (id, finished_at, claimed_until, outcome) of a run row being claimed.
type ExistingClaim = (i64, Option<DateTime<Utc>>, DateTime<Utc>, Option<String>);

const RUN_COLUMNS: &str =
    "id, job, scheduled_for, instance, claimed_at, claimed_until, takeovers, \
                           started_at, finished_at, outcome, error, steps";

fn run_from_tuple(t: RunTuple) -> RunRow {
    RunRow {
        id: t.0,
        job: t.1,
        scheduled_for: t.2,
        instance: t.3,
        claimed_at: t.4,
        claimed_until: t.5,
        takeovers: t.6,
        started_at: t.7,
        finished_at: t.8,
        outcome: t.9.as_deref().and_then(RunOutcome::parse),
        error: t.10,
        steps: t.11,
    }
}

/// An instant to the whole second (see the module invariants).
pub fn whole_second(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp(t.timestamp(), 0).unwrap_or(t)
}

impl Store {
    /// Claims one scheduled run of a job for `instance`, in one transaction (on
    /// PostgreSQL under an advisory lock per job, so two daemons' overlap checks
    /// and inserts do not interleave).
    pub async fn claim_run(&self, req: &ClaimRequest<'_>) -> Result<Claim, StoreError> {
        let scheduled_for = whole_second(req.scheduled_for);
        let now = whole_second(req.now);
        let until = whole_second(req.until);
        let mut tx = match &self.pool {
            // IMMEDIATE takes the write lock up front (waiting on the busy
            // timeout): a deferred transaction that read first would fail with
            // SQLITE_BUSY_SNAPSHOT when a run's finish commits in between.
            Pool::Sqlite(p) => Tx::Sqlite(p.begin_with("BEGIN IMMEDIATE").await?),
            #[cfg(feature = "postgres")]
            Pool::Postgres(p) => {
                let mut t = p.begin().await?;
                sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
                    .bind(format!("kinlink.job_runs:{}", req.job))
                    .execute(&mut *t)
                    .await?;
                Tx::Postgres(t)
            }
        };

        let existing: Option<ExistingClaim> = on_tx!(tx, t => sqlx::query_as(
            "SELECT id, finished_at, claimed_until, outcome FROM job_runs WHERE job = $1 AND scheduled_for = $2")
            .bind(req.job).bind(scheduled_for).fetch_optional(&mut **t).await)?;
        if let Some((id, finished_at, claimed_until, outcome)) = existing {
            let expired = finished_at.is_none() && claimed_until < now;
            let interrupted = outcome.as_deref() == Some(RunOutcome::Interrupted.as_str());
            let claim = if expired || interrupted {
                on_tx!(tx, t => sqlx::query(
                    "UPDATE job_runs SET instance = $2, claimed_at = $3, claimed_until = $4, takeovers = takeovers + 1, \
                     started_at = NULL, finished_at = NULL, outcome = NULL, error = NULL, steps = '[]' WHERE id = $1")
                    .bind(id).bind(req.instance).bind(now).bind(until).execute(&mut **t).await.map(|_| ()))?;
                Claim::TakenOver(id)
            } else {
                Claim::Taken
            };
            tx.commit().await?;
            return Ok(claim);
        }

        let running: Option<i64> = on_tx!(tx, t => sqlx::query_scalar(
            "SELECT id FROM job_runs WHERE job = $1 AND finished_at IS NULL AND claimed_until >= $2 ORDER BY id LIMIT 1")
            .bind(req.job).bind(now).fetch_optional(&mut **t).await)?;
        if let Some(running) = running {
            on_tx!(tx, t => sqlx::query(
                "INSERT INTO job_runs (job, scheduled_for, instance, claimed_at, claimed_until, finished_at, outcome, error) \
                 VALUES ($1, $2, $3, $4, $4, $4, 'skipped_overlap', $5) ON CONFLICT (job, scheduled_for) DO NOTHING")
                .bind(req.job).bind(scheduled_for).bind(req.instance).bind(now)
                .bind(format!("run {running} of this job was still running"))
                .execute(&mut **t).await.map(|_| ()))?;
            tx.commit().await?;
            return Ok(Claim::Overlap { running });
        }

        let id: Option<i64> = on_tx!(tx, t => sqlx::query_scalar(
            "INSERT INTO job_runs (job, scheduled_for, instance, claimed_at, claimed_until) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (job, scheduled_for) DO NOTHING RETURNING id")
            .bind(req.job).bind(scheduled_for).bind(req.instance).bind(now).bind(until)
            .fetch_optional(&mut **t).await)?;
        tx.commit().await?;
        Ok(id.map_or(Claim::Taken, Claim::Claimed))
    }

    /// Pushes a running run's claim forward. False when `instance` no longer holds
    /// it (another daemon took it over) or it has finished.
    pub async fn heartbeat_run(
        &self,
        id: i64,
        instance: &str,
        until: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let sql = "UPDATE job_runs SET claimed_until = $3 WHERE id = $1 AND instance = $2 AND finished_at IS NULL";
        let done = on_pool!(self, p => sqlx::query(sql).bind(id).bind(instance).bind(whole_second(until)).execute(p).await.map(|r| r.rows_affected()))?;
        Ok(done == 1)
    }

    /// Notes when the run's first step started.
    pub async fn mark_run_started(
        &self,
        id: i64,
        instance: &str,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let sql = "UPDATE job_runs SET started_at = $3 WHERE id = $1 AND instance = $2 AND finished_at IS NULL";
        let done = on_pool!(self, p => sqlx::query(sql).bind(id).bind(instance).bind(whole_second(at)).execute(p).await.map(|r| r.rows_affected()))?;
        Ok(done == 1)
    }

    /// Records how a run ended. False when `instance` no longer holds the claim.
    pub async fn finish_run(
        &self,
        id: i64,
        instance: &str,
        outcome: RunOutcome,
        error: Option<&str>,
        steps_json: &str,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let sql = "UPDATE job_runs SET finished_at = $3, claimed_until = $3, outcome = $4, error = $5, steps = $6 \
                   WHERE id = $1 AND instance = $2 AND finished_at IS NULL";
        let done = on_pool!(self, p => sqlx::query(sql)
            .bind(id).bind(instance).bind(whole_second(at)).bind(outcome.as_str()).bind(error).bind(steps_json)
            .execute(p).await.map(|r| r.rows_affected()))?;
        Ok(done == 1)
    }

    /// Runs whose claim expired before `now` without a finish (their daemon died
    /// or stalled), oldest first.
    pub async fn expired_runs(&self, now: DateTime<Utc>) -> Result<Vec<RunRow>, StoreError> {
        let sql = format!(
            "SELECT {RUN_COLUMNS} FROM job_runs WHERE finished_at IS NULL AND claimed_until < $1 ORDER BY scheduled_for, id"
        );
        let rows: Vec<RunTuple> =
            on_pool!(self, p => sqlx::query_as(&sql).bind(whole_second(now)).fetch_all(p).await)?;
        Ok(rows.into_iter().map(run_from_tuple).collect())
    }

    /// Takes over a run whose claim expired. False when it is no longer expired
    /// (its daemon came back, or another daemon was first).
    pub async fn take_over_run(
        &self,
        id: i64,
        instance: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let sql = "UPDATE job_runs SET instance = $2, claimed_at = $3, claimed_until = $4, takeovers = takeovers + 1, \
                   started_at = NULL, steps = '[]' WHERE id = $1 AND finished_at IS NULL AND claimed_until < $3";
        let done = on_pool!(self, p => sqlx::query(sql)
            .bind(id).bind(instance).bind(whole_second(now)).bind(whole_second(until)).execute(p).await.map(|r| r.rows_affected()))?;
        Ok(done == 1)
    }

    /// Closes a run whose claim expired and whose scheduled time a later one has
    /// superseded: it will not be run.
    pub async fn abandon_run(&self, id: i64, now: DateTime<Utc>) -> Result<bool, StoreError> {
        let sql = "UPDATE job_runs SET outcome = 'abandoned', finished_at = $2, \
                   error = 'its daemon stopped heartbeating and a later scheduled time superseded it' \
                   WHERE id = $1 AND finished_at IS NULL AND claimed_until < $2";
        let done = on_pool!(self, p => sqlx::query(sql).bind(id).bind(whole_second(now)).execute(p).await.map(|r| r.rows_affected()))?;
        Ok(done == 1)
    }

    /// The run of a job with the latest scheduled time, if it ever ran.
    pub async fn latest_run(&self, job: &str) -> Result<Option<RunRow>, StoreError> {
        let sql = format!(
            "SELECT {RUN_COLUMNS} FROM job_runs WHERE job = $1 ORDER BY scheduled_for DESC LIMIT 1"
        );
        let row: Option<RunTuple> =
            on_pool!(self, p => sqlx::query_as(&sql).bind(job).fetch_optional(p).await)?;
        Ok(row.map(run_from_tuple))
    }

    /// Each job's latest run that was not skipped for overlap, by job name.
    pub async fn last_runs(&self) -> Result<Vec<RunRow>, StoreError> {
        let sql = format!(
            "SELECT {RUN_COLUMNS} FROM job_runs r WHERE r.scheduled_for = \
               (SELECT MAX(scheduled_for) FROM job_runs x WHERE x.job = r.job \
                AND (x.outcome IS NULL OR x.outcome <> 'skipped_overlap')) \
             ORDER BY job"
        );
        let rows: Vec<RunTuple> = on_pool!(self, p => sqlx::query_as(&sql).fetch_all(p).await)?;
        Ok(rows.into_iter().map(run_from_tuple).collect())
    }

    /// Every run of a job, in scheduled order (status, tests).
    pub async fn runs_of(&self, job: &str) -> Result<Vec<RunRow>, StoreError> {
        let sql =
            format!("SELECT {RUN_COLUMNS} FROM job_runs WHERE job = $1 ORDER BY scheduled_for, id");
        let rows: Vec<RunTuple> =
            on_pool!(self, p => sqlx::query_as(&sql).bind(job).fetch_all(p).await)?;
        Ok(rows.into_iter().map(run_from_tuple).collect())
    }

    /// One run by id.
    pub async fn run(&self, id: i64) -> Result<RunRow, StoreError> {
        let sql = format!("SELECT {RUN_COLUMNS} FROM job_runs WHERE id = $1");
        let row: Option<RunTuple> =
            on_pool!(self, p => sqlx::query_as(&sql).bind(id).fetch_optional(p).await)?;
        row.map(run_from_tuple)
            .ok_or_else(|| StoreError::NotFound(format!("job run {id}")))
    }
}

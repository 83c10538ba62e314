//! What a job step does. [`PipelineSteps`] maps each [`Step`] to its pipeline
//! stage in one `match`; a stage this build does not have answers
//! [`StepError::Unavailable`] until it is wired there (one line each).
//!
//! The scheduler only sees the [`StepRunner`] trait, so its tests drive it with
//! steps that fail, panic or block on cue.

use std::future::Future;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::clock::Clock;
use crate::config::Settings;
use crate::domain::RunMode;
use crate::jobs::Step;
use crate::pipeline::{self, FileOutcome, IngestRequest, NoProgress};
use crate::store::Store;

/// What a step is given.
#[derive(Debug, Clone)]
pub struct StepContext {
    pub job: String,
    /// The job run's id (`None` for `run-once`, which is not a scheduled run).
    pub run_id: Option<i64>,
    /// The config in force when the run started (a reload does not change a
    /// running job under its feet).
    pub settings: Arc<Settings>,
    pub clock: Clock,
    /// Cancelled at shutdown. The job stops between steps; a step may also watch it.
    pub stop: CancellationToken,
}

/// Why a step did not succeed. Messages carry stage names, ids and counts only.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    /// The stage is not part of this build yet.
    #[error("step `{0}` is not available in this build")]
    Unavailable(Step),
    /// The stage ran and failed.
    #[error("{0}")]
    Failed(String),
    /// The stage saw shutdown begin and stopped early, rolling back what it had
    /// not committed; the next run picks up where it left off.
    #[error("{0}")]
    Stopped(String),
}

/// A finished step: one line of counts for logs and `run-once`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepReport {
    pub summary: String,
}

/// Runs one step of a job.
pub trait StepRunner: Send + Sync + 'static {
    /// Runs `step` to completion (each stage commits in its own transactions).
    fn run_step(
        &self,
        step: Step,
        ctx: &StepContext,
    ) -> impl Future<Output = Result<StepReport, StepError>> + Send;
}

/// The real steps: the pipeline stages on the store.
#[derive(Debug, Clone)]
pub struct PipelineSteps {
    store: Store,
}

impl PipelineSteps {
    pub fn new(store: Store) -> PipelineSteps {
        PipelineSteps { store }
    }
}

fn failed(e: anyhow::Error) -> StepError {
    if e.is::<pipeline::Stopped>() {
        return StepError::Stopped(e.to_string());
    }
    StepError::Failed(format!("{e:#}"))
}

impl StepRunner for PipelineSteps {
    async fn run_step(&self, step: Step, ctx: &StepContext) -> Result<StepReport, StepError> {
        let settings = &*ctx.settings;
        let store = &self.store;
        let clock = ctx.clock;
        // The one place a step name becomes an action.
        let summary = match step {
            Step::Ingest => {
                let report = pipeline::ingest(
                    settings,
                    store,
                    clock,
                    &IngestRequest {
                        stop: ctx.stop.clone(),
                        ..IngestRequest::default()
                    },
                    &NoProgress,
                )
                .await
                .map_err(failed)?;
                ingest_summary(&report)?
            }
            Step::Link => {
                let r = pipeline::link(settings, store, clock, pipeline::LinkScope::Incremental)
                    .await
                    .map_err(failed)?;
                format!(
                    "{} changed mention(s); {} person(s), {} famil(y/ies), {} pair(s) for review",
                    r.changed_mentions,
                    r.counts.persons,
                    r.counts.families,
                    r.counts.review_pending
                )
            }
            Step::Evaluate => {
                let r = pipeline::evaluate(settings, store, clock)
                    .await
                    .map_err(failed)?;
                format!("{} finding(s) for {}", r.findings, r.as_of)
            }
            Step::Send | Step::ManagerDigest => {
                let mailer = crate::mail::Mailer::new(&settings.mail)
                    .map_err(|e| StepError::Failed(e.to_string()))?;
                let stale =
                    crate::mail::enqueue_stale_feed_notices(&mailer, store, settings, clock)
                        .await
                        .map_err(|e| StepError::Failed(e.to_string()))?;
                if !stale.is_empty() {
                    warn!(
                        sources = stale.len(),
                        "Silent feeds: the admin list is told"
                    );
                }
                let options = crate::mail::SendOptions {
                    dry_run: false,
                    manager_digest: step == Step::ManagerDigest,
                    drain: crate::mail::DrainOptions::default(),
                };
                let r = crate::mail::send_step(&mailer, store, clock, settings, &options)
                    .await
                    .map_err(|e| StepError::Failed(e.to_string()))?;
                let drain = r.drain.unwrap_or_default();
                if let Some(e) = &drain.connection_error {
                    return Err(StepError::Failed(format!(
                        "the mail relay could not be used ({e}); every message stays queued"
                    )));
                }
                let mut summary = format!(
                    "{} digest(s) for {} deliveries; {} sent, {} to retry, {} failed",
                    r.digests.digests,
                    r.digests.deliveries,
                    drain.sent.len(),
                    drain.retrying.len(),
                    drain.failed.len()
                );
                if r.rerouted.rerouted > 0 {
                    summary.push_str(&format!(
                        "; {} refused deliver(y/ies) of {} alert(s) routed again",
                        r.rerouted.rerouted,
                        r.rerouted.alerts.len()
                    ));
                }
                let f = &r.failure_notice;
                if f.messages > 0 {
                    summary.push_str(&format!(
                        "; admin list told of {} undelivered email(s)",
                        f.messages
                    ));
                }
                // Not a step failure: that would mail the admin list again.
                for id in &f.notices_undelivered {
                    summary.push_str(&format!(
                        "; the notice of undelivered emails #{id} could not be delivered either"
                    ));
                }
                if f.unreported_no_admin > 0 {
                    summary.push_str(&format!(
                        "; {} undelivered email(s) told to nobody ([mail] admin is empty)",
                        f.unreported_no_admin
                    ));
                }
                summary
            }
            Step::Purge => {
                let r = pipeline::purge(settings, store, clock, RunMode::Apply)
                    .await
                    .map_err(failed)?;
                let c = r.counts;
                format!(
                        "{} raw file(s), {} mark(s), {} police row(s), {} notice(s), {} case row(s), {} mention(s) purged",
                        c.raw_files, c.attendance_marks, c.police_rows, c.housing_notices, c.case_rows, c.mentions
                    )
            }
        };
        Ok(StepReport { summary })
    }
}

/// A rejected file is reported and the run goes on; a source that cannot be
/// fetched fails the step (as `kinlink ingest` exits 1 for it).
fn ingest_summary(report: &pipeline::IngestReport) -> Result<String, StepError> {
    let mut unreachable = Vec::new();
    for f in &report.files {
        match f {
            FileOutcome::Rejected {
                source, file_id, ..
            } => {
                // The reason may quote rows of the file: only ids go to the log.
                warn!(source = %source, file_id, "File rejected; see `kinlink status` and the ledger");
            }
            FileOutcome::FetchFailed { source, .. } => unreachable.push(source.as_str()),
            _ => {}
        }
    }
    let (files, records, quarantined, rejected) = report.totals();
    let held = report.held_back();
    let mut held_text = String::new();
    if held.unsettled > 0 {
        held_text.push_str(&format!(
            "; {} file(s) still being written, left for the next run",
            held.unsettled
        ));
    }
    if held.changed > 0 {
        held_text.push_str(&format!(
            "; {} file(s) changed while read, left in the inbox",
            held.changed
        ));
    }
    if held.refused > 0 {
        held_text.push_str(&format!("; {} inbox entr(ies) refused", held.refused));
    }
    if !unreachable.is_empty() {
        return Err(StepError::Failed(format!(
            "{} source(s) could not be fetched: {}",
            unreachable.len(),
            unreachable.join(", ")
        )));
    }
    Ok(format!(
        "{files} file(s) ingested: {records} row(s) stored, {quarantined} quarantined; {rejected} file(s) rejected{held_text}"
    ))
}

//! `kinlink run` (the daemon) and `kinlink run-once` (every stage once, in order).
//!
//! [`build`] makes exactly what production runs — settings, the migrated store,
//! the scheduler — and [`App::run_until_stopped`] runs it until the shutdown
//! token is cancelled (docs/style.md habit 1), so the tests start the daemon the way
//! systemd does.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use tokio::sync::{mpsc, watch};
use tracing::{error, info, warn};

use crate::clock::Clock;
use crate::config::{self, Settings};
use crate::jobs::Step;
use crate::scheduler::{
    self, FailureNotifier, Notifier, PipelineSteps, Scheduler, SchedulerOptions, StepContext,
    StepError, StepRunner,
};
use crate::shutdown::{CancellationToken, Drained, Hangups};
use crate::store::Store;

/// The stages `run-once` runs, in docs/design.md's order.
pub const RUN_ONCE_STEPS: &[Step] = &[Step::Ingest, Step::Link, Step::Evaluate, Step::Send];

/// Logs a failed run: an error line (job, run id, error: no personal data), which
/// `journalctl -u kinlink` and `kinlink status` show. [`MailFailures`] adds the
/// email to the admin list on top of it.
#[derive(Debug, Clone, Copy, Default)]
pub struct LogFailures;

impl FailureNotifier for LogFailures {
    fn on_failure(&self, job: &str, run_id: i64, error: &str) {
        error!(
            job,
            run_id, error, "Job run failed; the admin is to be told"
        );
    }
}

/// Tells the admin list of a failed job run by email: logged, queued in the
/// outbox under `job-failure:<job>:<run>` (once per run, whatever happens next)
/// and sent at once. The error holds stage names, ids and counts only.
pub struct MailFailures {
    store: Store,
    mailer: Option<crate::mail::Mailer>,
    admin: Vec<String>,
    clock: Clock,
}

impl MailFailures {
    pub fn new(settings: &Settings, store: Store, clock: Clock) -> MailFailures {
        MailFailures {
            store,
            mailer: crate::mail::Mailer::new(&settings.mail).ok(),
            admin: settings.mail.admin.clone(),
            clock,
        }
    }
}

impl FailureNotifier for MailFailures {
    fn on_failure(&self, job: &str, run_id: i64, error: &str) {
        LogFailures.on_failure(job, run_id, error);
        let Some(mailer) = self.mailer.clone() else {
            return;
        };
        if self.admin.is_empty() {
            return;
        }
        let message = crate::mail::OutgoingMessage {
            idempotency_key: format!("job-failure:{job}:{run_id}"),
            to: self.admin.clone(),
            subject: format!("kinlink: job {job} failed (run {run_id})"),
            text: format!(
                "The job `{job}` (run {run_id}) failed and stopped:\n\n  {error}\n\n\
                 The steps before it committed; the ones after it did not run. Other jobs carry on.\n\
                 `kinlink status` shows the job's runs; the daemon's log (journalctl -u kinlink) has the details.\n"
            ),
            html: None,
            inline_images: Vec::new(),
        };
        let (store, clock) = (self.store.clone(), self.clock);
        tokio::spawn(async move {
            if let Err(e) = mailer.enqueue(&store, clock, &message).await {
                error!(error = %e, "The job failure could not be queued for the admin");
                return;
            }
            if let Err(e) = mailer
                .drain(&store, clock, &crate::mail::DrainOptions::default())
                .await
            {
                error!(error = %e, "The job failure email could not be sent yet; it stays queued");
            }
        });
    }
}

/// The daemon, built and ready to run.
pub struct App {
    config_path: PathBuf,
    settings: Arc<Settings>,
    store: Store,
    scheduler: Scheduler<PipelineSteps>,
    notifier: Notifier,
    clock: Clock,
    http: Option<crate::config::HttpListen>,
}

/// `/healthz` learns each job's last run from the run history.
pub fn jobs_probe() -> crate::health::JobsProbe {
    Arc::new(|store: Store| {
        Box::pin(async move {
            match store.last_runs().await {
                Ok(runs) => runs
                    .into_iter()
                    .map(|r| crate::health::JobHealth {
                        name: r.job,
                        last_outcome: r.outcome.map_or("running", |o| o.as_str()).to_string(),
                        last_finished_at: r.finished_at.map(|t| t.to_rfc3339()),
                    })
                    .collect(),
                Err(_) => Vec::new(),
            }
        })
    })
}

/// Opens (and migrates) the store and sets up the scheduler for the settings'
/// jobs. Nothing runs yet.
pub async fn build(settings: Settings, clock: Clock) -> anyhow::Result<App> {
    let config_path = settings.config_path.clone();
    let store = Store::connect(&settings.database, &settings.state_dir)
        .await
        .context("opening the store")?;
    let runner = Arc::new(PipelineSteps::new(store.clone()));
    let failures = Arc::new(MailFailures::new(&settings, store.clone(), clock));
    let http = settings.http.clone();
    let settings = Arc::new(settings);
    let scheduler = Scheduler::new(
        settings.clone(),
        store.clone(),
        runner,
        failures,
        clock,
        SchedulerOptions::new(scheduler::instance_id()),
    )
    .map_err(|errors| {
        let text: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        anyhow::anyhow!("{}", text.join("; "))
    })?;
    Ok(App {
        config_path,
        settings,
        store,
        scheduler,
        notifier: Notifier::from_env(),
        clock,
        http,
    })
}

impl App {
    /// Runs the scheduler until `shutdown` is cancelled, then drains. SIGHUPs on
    /// `hangups` reload the config and jobs (kept as they are when the new ones
    /// are invalid).
    pub async fn run_until_stopped(
        mut self,
        shutdown: CancellationToken,
        hangups: Option<Hangups>,
    ) -> anyhow::Result<()> {
        self.scheduler
            .start(self.clock.now())
            .await
            .context("reading the run history")?;
        let (reload_tx, reload_rx) = mpsc::channel(1);
        let (settings_tx, settings_rx) = watch::channel(self.settings.clone());
        if let Some(hangups) = hangups {
            tokio::spawn(reload_on_hangup(
                hangups,
                self.config_path.clone(),
                Reloaded {
                    scheduler: reload_tx,
                    mail: settings_tx,
                },
                self.notifier,
                shutdown.clone(),
            ));
        }
        // Due mail goes out now (what a killed run left behind) and between the
        // scheduled sends, not at the next night's.
        let mail = tokio::spawn(outbox_loop(
            self.store.clone(),
            settings_rx,
            self.clock,
            shutdown.clone(),
        ));
        if let Some(http) = &self.http {
            let listener = tokio::net::TcpListener::bind(http.listen)
                .await
                .with_context(|| {
                    format!("listening for /healthz and /metrics on {}", http.listen)
                })?;
            info!(listen = %http.listen, "Serving /healthz and /metrics");
            let endpoints = crate::health::Endpoints {
                store: self.store.clone(),
                jobs: Some(jobs_probe()),
            };
            let stop = shutdown.clone();
            tokio::spawn(async move {
                if let Err(e) =
                    crate::health::serve(listener, endpoints, stop.cancelled_owned()).await
                {
                    error!(error = %e, "The health endpoint stopped");
                }
            });
        }
        self.notifier.ready();
        self.notifier.status(&self.scheduler.status_line());
        info!(status = %self.scheduler.status_line(), "kinlink daemon running");
        let drained = self.scheduler.run(shutdown, reload_rx, self.notifier).await;
        // The outbox pass stops between passes; one under way finishes its
        // messages (each recorded as the server answers) up to the drain deadline.
        let abort = mail.abort_handle();
        if crate::shutdown::drain(
            async {
                let _ = mail.await;
            },
            crate::shutdown::DRAIN_DEADLINE,
        )
        .await
            == Drained::DeadlinePassed
        {
            warn!("The outbox pass was still sending at the drain deadline; aborted (a message it held is taken back at the next start)");
            abort.abort();
        }
        self.store.close().await;
        match drained {
            Drained::Finished => info!("kinlink daemon stopped"),
            Drained::DeadlinePassed => {
                warn!("kinlink daemon stopped; runs still going at the drain deadline were aborted and recorded as interrupted")
            }
        }
        Ok(())
    }
}

/// Where reloaded settings go.
struct Reloaded {
    scheduler: mpsc::Sender<Arc<Settings>>,
    mail: watch::Sender<Arc<Settings>>,
}

/// The daemon's outbox pass ([`crate::mail::outbox_pass`]): once at start, then
/// whenever the next queued message falls due or a lease runs out, and at least
/// every `[mail] retry_every_mins`, until shutdown. Several daemons on one
/// PostgreSQL may all run it: each message is claimed by one of them
/// (`FOR UPDATE SKIP LOCKED`), so none is sent twice.
async fn outbox_loop(
    store: Store,
    mut settings: watch::Receiver<Arc<Settings>>,
    clock: Clock,
    shutdown: CancellationToken,
) {
    let lease = crate::mail::RetryPolicy::default().lease;
    loop {
        let current = settings.borrow_and_update().clone();
        let mut relay_down = false;
        match crate::mail::Mailer::new(&current.mail) {
            Ok(mailer) => match crate::mail::outbox_pass(&mailer, &store, clock, &current).await {
                Ok(r) => {
                    let drain = r.drain.unwrap_or_default();
                    relay_down = drain.connection_error.is_some();
                    if !drain.sent.is_empty()
                        || !drain.failed.is_empty()
                        || !drain.requeued_after_interruption.is_empty()
                    {
                        info!(
                            sent = drain.sent.len(),
                            retrying = drain.retrying.len(),
                            failed = drain.failed.len(),
                            taken_back = drain.requeued_after_interruption.len(),
                            "Outbox pass: due mail sent"
                        );
                    }
                }
                Err(e) => {
                    error!(error = %e, "Outbox pass failed; the mail stays queued and is tried at the next pass")
                }
            },
            Err(e) => error!(error = %e, "Outbox pass: [mail] cannot be used; fix it and reload"),
        }
        let every = std::time::Duration::from_secs(60 * u64::from(current.mail.retry_every_mins));
        let lease = chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::MAX);
        let next = match store.outbox_next_wake(lease).await {
            // What is due stays queued while the relay cannot be reached: the
            // next pass is the regular one.
            _ if relay_down => every,
            Ok(Some(at)) => (at - clock.now())
                .to_std()
                .unwrap_or(std::time::Duration::ZERO)
                // A message due now that could not go (the relay down) is not
                // hammered: the next try is a second later at the soonest.
                .max(std::time::Duration::from_secs(1)),
            _ => every,
        };
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(next.min(every)) => {}
            changed = settings.changed() => if changed.is_err() { return },
        }
    }
}

/// On each SIGHUP: RELOADING=1, load and validate the config and jobs, hand them
/// to the scheduler if sound (else log the problem count and keep the old), READY=1.
async fn reload_on_hangup(
    mut hangups: Hangups,
    path: PathBuf,
    to: Reloaded,
    notifier: Notifier,
    shutdown: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            got = hangups.recv() => if got.is_none() { return },
        }
        notifier.reloading();
        match config::load(&path) {
            Ok(settings) => {
                info!(
                    jobs = settings.jobs.len(),
                    "SIGHUP: config and jobs are valid; reloading"
                );
                let settings = Arc::new(settings);
                to.mail.send_replace(settings.clone());
                if to.scheduler.send(settings).await.is_err() {
                    return;
                }
            }
            Err(problems) => {
                // The problems name files and lines, but the count is what goes
                // to the log: `kinlink check-config` prints them in full.
                error!(
                    problems = problems.0.len(),
                    "SIGHUP: the config or jobs are invalid; keeping the running ones (run `kinlink check-config`)"
                );
            }
        }
        notifier.ready();
    }
}

/// What `run-once` did with one stage.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct StageResult {
    pub step: &'static str,
    /// `ok`, `failed`, `unavailable` (not part of this build), or `stopped`
    /// (SIGTERM/SIGINT: the stage stopped early and rolled back, or did not start).
    pub outcome: &'static str,
    pub detail: String,
}

/// Runs ingest, link, evaluate and send once, in order, stopping at a stage that
/// fails. A rejected file is reported by ingest and is not a failure; a stage
/// this build does not have is reported and skipped. Once `stop` is cancelled no
/// further stage starts (reported as `stopped`), and ingest stops at its next
/// batch, rolling back the file it is storing.
pub async fn run_once(
    settings: Settings,
    store: &Store,
    clock: Clock,
    stop: CancellationToken,
) -> Vec<StageResult> {
    let runner = PipelineSteps::new(store.clone());
    let ctx = StepContext {
        job: "run-once".to_string(),
        run_id: None,
        settings: Arc::new(settings),
        clock,
        stop,
    };
    let mut results = Vec::new();
    for &step in RUN_ONCE_STEPS {
        if ctx.stop.is_cancelled() {
            results.push(StageResult {
                step: step.as_str(),
                outcome: "stopped",
                detail: "not started: stopped by shutdown".to_string(),
            });
            break;
        }
        match runner.run_step(step, &ctx).await {
            Ok(report) => results.push(StageResult {
                step: step.as_str(),
                outcome: "ok",
                detail: report.summary,
            }),
            Err(e @ StepError::Unavailable(_)) => results.push(StageResult {
                step: step.as_str(),
                outcome: "unavailable",
                detail: e.to_string(),
            }),
            Err(e @ StepError::Stopped(_)) => {
                results.push(StageResult {
                    step: step.as_str(),
                    outcome: "stopped",
                    detail: e.to_string(),
                });
                break;
            }
            Err(e) => {
                results.push(StageResult {
                    step: step.as_str(),
                    outcome: "failed",
                    detail: e.to_string(),
                });
                break;
            }
        }
    }
    results
}

//! The scheduler proper: keeps each job's next run, claims due runs in the store,
//! runs their steps in a task per run, heartbeats the claims, takes over runs a
//! dead daemon left, and drains on shutdown.
//!
//! It is driven by [`Scheduler::tick`] with the instant to act on, so tests walk
//! it through nights, restarts and dead daemons without sleeping; [`Scheduler::run`]
//! is the production loop that calls `tick` with the clock's time.
//!
//! Invariants:
//! - A scheduled run (job, instant) executes at most once across every daemon on
//!   the database: only the daemon whose claim inserted the row runs it, or the one
//!   that took it over after its claim expired unfinished.
//! - A job never runs twice at once: a due time that finds the job still running
//!   (here or elsewhere) is recorded as `skipped_overlap` and counted.
//! - A step's failure or panic ends its run as `failed` with the error; the
//!   scheduler and the other jobs carry on.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio::sync::mpsc;
use tokio::task::{AbortHandle, JoinError, JoinSet};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, info_span, warn, Instrument};

use super::notify::Notifier;
use super::schedule::{next_run, previous_run, Schedule, ScheduleError};
use super::steps::{StepContext, StepError, StepRunner};
use crate::clock::Clock;
use crate::config::Settings;
use crate::jobs::{JobSpec, Step};
use crate::shutdown::{self, Drained};
use crate::store::{Claim, ClaimRequest, RunOutcome, Store, StoreError};

/// Tells the admin that a run failed. The app wires the real one.
pub trait FailureNotifier: Send + Sync + 'static {
    /// `error` holds stage names, ids and counts only.
    fn on_failure(&self, job: &str, run_id: i64, error: &str);
}

/// How the scheduler behaves; [`SchedulerOptions::new`] has the defaults.
#[derive(Debug, Clone)]
pub struct SchedulerOptions {
    /// Names this daemon in run rows (host and process id by default).
    pub instance: String,
    /// How long a claim holds without a heartbeat. Another daemon may take a run
    /// over once it has passed.
    pub lease: chrono::Duration,
    /// How long running steps may take to finish after shutdown begins.
    pub drain_deadline: Duration,
    /// The loop wakes at least this often: heartbeats (well inside the lease),
    /// the systemd watchdog, and noticing a wall clock that jumped.
    pub max_sleep: Duration,
}

impl SchedulerOptions {
    /// Defaults: a 2-minute lease, heartbeats every 30 s, a 60 s drain.
    pub fn new(instance: impl Into<String>) -> SchedulerOptions {
        SchedulerOptions {
            instance: instance.into(),
            lease: chrono::Duration::minutes(2),
            drain_deadline: shutdown::DRAIN_DEADLINE,
            max_sleep: Duration::from_secs(30),
        }
    }
}

/// This daemon's name in run rows: `host:pid`.
pub fn instance_id() -> String {
    crate::process::current().label.clone()
}

/// One job as scheduled.
struct JobState {
    spec: JobSpec,
    schedule: Schedule,
    next_at: Option<DateTime<Utc>>,
    overlaps: u64,
}

/// A run executing in this daemon.
struct Running {
    run_id: i64,
    /// The steps' task; aborted when the drain deadline passes.
    steps: AbortHandle,
}

/// How a run came about, for the log.
#[derive(Debug, Clone, Copy)]
enum Trigger {
    Scheduled,
    CatchUp,
    TakeOver,
}

impl Trigger {
    fn as_str(self) -> &'static str {
        match self {
            Trigger::Scheduled => "scheduled",
            Trigger::CatchUp => "catch-up",
            Trigger::TakeOver => "take-over",
        }
    }
}

/// One step's timing, stored as JSON with the run.
#[derive(Debug, Clone, Serialize)]
struct StepTiming {
    step: &'static str,
    started_at: DateTime<Utc>,
    ms: u64,
    ok: bool,
}

/// What a run's steps have done so far, shared with the task that records it so
/// a panic or an abort still leaves the timings.
#[derive(Default)]
struct Progress {
    done: Vec<StepTiming>,
    current: Option<(Step, DateTime<Utc>, Instant)>,
}

/// How the steps ended.
enum StepsEnd {
    Done,
    Failed {
        step: Step,
        error: StepError,
    },
    /// Shutdown began; the steps after `after` were not started.
    Stopped {
        after: Step,
    },
    /// Shutdown began while `step` ran; it stopped early and rolled back.
    StoppedDuring {
        step: Step,
        error: StepError,
    },
}

/// The scheduler of one daemon.
pub struct Scheduler<R: StepRunner> {
    store: Store,
    runner: Arc<R>,
    settings: Arc<Settings>,
    failures: Arc<dyn FailureNotifier>,
    clock: Clock,
    options: SchedulerOptions,
    jobs: Vec<JobState>,
    running: HashMap<String, Running>,
    /// The tasks that wait for a run and record it; each yields its job's name.
    tasks: JoinSet<String>,
    /// Cancelled at shutdown: runs stop between steps.
    stop: CancellationToken,
}

impl<R: StepRunner> Scheduler<R> {
    /// A scheduler for the settings' jobs. Nothing runs until [`Scheduler::start`].
    pub fn new(
        settings: Arc<Settings>,
        store: Store,
        runner: Arc<R>,
        failures: Arc<dyn FailureNotifier>,
        clock: Clock,
        options: SchedulerOptions,
    ) -> Result<Scheduler<R>, Vec<ScheduleError>> {
        let jobs = job_states(&settings.jobs)?;
        Ok(Scheduler {
            store,
            runner,
            settings,
            failures,
            clock,
            options,
            jobs,
            running: HashMap::new(),
            tasks: JoinSet::new(),
            stop: CancellationToken::new(),
        })
    }

    /// Works out each job's next run after `now`, and catches up: a job with
    /// `catch_up = true` whose latest scheduled time before `now` has no run (it
    /// passed while no daemon was running) runs once for that time. A job with no
    /// run history at all is not caught up: a new install does not replay the past.
    pub async fn start(&mut self, now: DateTime<Utc>) -> Result<(), StoreError> {
        let tz = self.settings.timezone;
        for job in &mut self.jobs {
            job.next_at = next_run(&job.schedule, tz, now);
            if job.next_at.is_none() {
                warn!(job = %job.spec.name, "Job's schedule never matches; it will not run");
            }
        }
        for i in 0..self.jobs.len() {
            if !self.jobs[i].spec.catch_up {
                continue;
            }
            let Some(latest) = previous_run(&self.jobs[i].schedule, tz, now) else {
                continue;
            };
            let name = self.jobs[i].spec.name.clone();
            let missed = match self.store.latest_run(&name).await? {
                None => {
                    debug!(job = %name, "No run history; nothing to catch up");
                    false
                }
                Some(last) => {
                    last.scheduled_for < latest
                        || (last.scheduled_for == latest
                            && last.outcome == Some(RunOutcome::Interrupted))
                }
            };
            if missed {
                info!(job = %name, scheduled_for = %latest, "Catching up a run missed while the daemon was down");
                self.claim_and_spawn(i, latest, now, Trigger::CatchUp)
                    .await?;
            }
        }
        Ok(())
    }

    /// Does what is due at `now`: records runs that finished, heartbeats the
    /// claims of running ones, takes over runs whose daemon died, and claims and
    /// starts due runs.
    pub async fn tick(&mut self, now: DateTime<Utc>) -> Result<(), StoreError> {
        while let Some(done) = self.tasks.try_join_next() {
            self.reaped(done);
        }
        let until = now + self.options.lease;
        for (job, run) in &self.running {
            if !self
                .store
                .heartbeat_run(run.run_id, &self.options.instance, until)
                .await?
            {
                warn!(job = %job, run_id = run.run_id, "Lost the claim on a running run (another daemon took it over after a stall); its result will not be recorded here");
            }
        }
        self.take_over_expired(now).await?;

        let tz = self.settings.timezone;
        for i in 0..self.jobs.len() {
            let job = &self.jobs[i];
            let Some(next_at) = job.next_at else { continue };
            if next_at > now {
                continue;
            }
            // The latest due time: after a stall (a suspended machine) the times
            // in between are not run one after another.
            let scheduled_for = previous_run(&job.schedule, tz, now)
                .filter(|t| *t >= next_at)
                .unwrap_or(next_at);
            if scheduled_for > next_at {
                warn!(job = %job.spec.name, due_since = %next_at, "Scheduled times passed while the scheduler was held up; running the latest once");
            }
            self.claim_and_spawn(i, scheduled_for, now, Trigger::Scheduled)
                .await?;
            self.jobs[i].next_at = next_run(&self.jobs[i].schedule, tz, now);
        }
        Ok(())
    }

    /// Runs whose claim expired unfinished: taken over while they are still their
    /// job's latest scheduled time, otherwise closed as `abandoned`.
    async fn take_over_expired(&mut self, now: DateTime<Utc>) -> Result<(), StoreError> {
        let tz = self.settings.timezone;
        for row in self.store.expired_runs(now).await? {
            let Some(i) = self.jobs.iter().position(|j| j.spec.name == row.job) else {
                continue;
            };
            if self.running.contains_key(&row.job) {
                continue;
            }
            let current = previous_run(&self.jobs[i].schedule, tz, now);
            if current.is_some_and(|c| row.scheduled_for >= c) {
                let until = now + self.options.lease;
                if self
                    .store
                    .take_over_run(row.id, &self.options.instance, now, until)
                    .await?
                {
                    info!(job = %row.job, run_id = row.id, from = %row.instance, "Taking over a run whose daemon stopped heartbeating");
                    self.spawn_run(i, row.id, row.scheduled_for, Trigger::TakeOver);
                }
            } else if self.store.abandon_run(row.id, now).await? {
                warn!(job = %row.job, run_id = row.id, from = %row.instance, "Closed a run whose daemon stopped heartbeating; a later scheduled time superseded it");
            }
        }
        Ok(())
    }

    async fn claim_and_spawn(
        &mut self,
        i: usize,
        scheduled_for: DateTime<Utc>,
        now: DateTime<Utc>,
        trigger: Trigger,
    ) -> Result<(), StoreError> {
        let name = self.jobs[i].spec.name.clone();
        let claim = self
            .store
            .claim_run(&ClaimRequest {
                job: &name,
                scheduled_for,
                instance: &self.options.instance,
                now,
                until: now + self.options.lease,
            })
            .await?;
        match claim {
            Claim::Claimed(id) | Claim::TakenOver(id) => {
                self.spawn_run(i, id, scheduled_for, trigger);
            }
            Claim::Overlap { running } => {
                let job = &mut self.jobs[i];
                job.overlaps += 1;
                warn!(job = %name, running_run_id = running, skipped_overlaps = job.overlaps, scheduled_for = %scheduled_for,
                      "Job still running at its next scheduled time; not started twice");
            }
            Claim::Taken => {
                debug!(job = %name, scheduled_for = %scheduled_for, "Run claimed by another daemon");
            }
        }
        Ok(())
    }

    fn spawn_run(&mut self, i: usize, run_id: i64, scheduled_for: DateTime<Utc>, trigger: Trigger) {
        let spec = self.jobs[i].spec.clone();
        let name = spec.name.clone();
        let ctx = StepContext {
            job: name.clone(),
            run_id: Some(run_id),
            settings: self.settings.clone(),
            clock: self.clock,
            stop: self.stop.clone(),
        };
        let progress = Arc::new(Mutex::new(Progress::default()));
        let span = info_span!("job", job = %name, run_id);
        info!(parent: &span, trigger = trigger.as_str(), scheduled_for = %scheduled_for, steps = spec.steps.len(), "Job run starting");
        let steps = tokio::spawn(
            run_steps(
                self.runner.clone(),
                self.store.clone(),
                self.options.instance.clone(),
                spec.steps.clone(),
                ctx,
                progress.clone(),
            )
            .instrument(span.clone()),
        );
        let abort = steps.abort_handle();
        let store = self.store.clone();
        let instance = self.options.instance.clone();
        let failures = self.failures.clone();
        let clock = self.clock;
        let job = name.clone();
        self.tasks.spawn(
            async move {
                let joined = steps.await;
                let (outcome, error) = outcome_of(joined, &progress);
                let timings = steps_json(&progress);
                match store
                    .finish_run(
                        run_id,
                        &instance,
                        outcome,
                        error.as_deref(),
                        &timings,
                        clock.now(),
                    )
                    .await
                {
                    Ok(true) => {}
                    Ok(false) => {
                        warn!(outcome = %outcome, "Run finished after another daemon took it over; its result is not recorded")
                    }
                    Err(e) => error!(error = %e, outcome = %outcome, "Cannot record how the run ended"),
                }
                match (&error, outcome) {
                    (Some(e), RunOutcome::Failed) => {
                        error!(error = %e, "Job run failed");
                        failures.on_failure(&job, run_id, e);
                    }
                    _ => info!(outcome = %outcome, "Job run finished"),
                }
                job
            }
            .instrument(span),
        );
        self.running.insert(
            name,
            Running {
                run_id,
                steps: abort,
            },
        );
    }

    fn reaped(&mut self, done: Result<String, JoinError>) {
        match done {
            Ok(job) => {
                self.running.remove(&job);
            }
            Err(e) => {
                // The recording task itself only awaits and writes; this is an
                // abort at shutdown. Forget runs whose tasks are gone.
                debug!(error = %e, "A run's recording task ended early");
                self.running.retain(|_, r| !r.steps.is_finished());
            }
        }
    }

    /// Waits until every run in progress has finished and been recorded.
    pub async fn wait_idle(&mut self) {
        while let Some(done) = self.tasks.join_next().await {
            self.reaped(done);
        }
    }

    /// Swaps in reloaded settings and jobs. Every schedule is read first: on any
    /// error the running jobs stay as they are. Running runs keep the settings they
    /// started with.
    pub fn reload(
        &mut self,
        settings: Arc<Settings>,
        now: DateTime<Utc>,
    ) -> Result<(), Vec<ScheduleError>> {
        let mut jobs = job_states(&settings.jobs)?;
        if settings.database != self.settings.database
            || settings.state_dir != self.settings.state_dir
        {
            warn!("database_url and state_dir changes take effect at the next restart");
        }
        for job in &mut jobs {
            job.next_at = next_run(&job.schedule, settings.timezone, now);
            if let Some(old) = self.jobs.iter().find(|o| o.spec.name == job.spec.name) {
                job.overlaps = old.overlaps;
            }
        }
        info!(jobs = jobs.len(), "Config and jobs reloaded");
        self.jobs = jobs;
        self.settings = settings;
        Ok(())
    }

    /// The earliest next run of any job.
    pub fn next_wake(&self) -> Option<DateTime<Utc>> {
        self.jobs.iter().filter_map(|j| j.next_at).min()
    }

    /// A job's next run, as scheduled now.
    pub fn next_run_of(&self, job: &str) -> Option<DateTime<Utc>> {
        self.jobs
            .iter()
            .find(|j| j.spec.name == job)
            .and_then(|j| j.next_at)
    }

    /// How often a job was found still running at its next time since start.
    pub fn overlaps(&self, job: &str) -> u64 {
        self.jobs
            .iter()
            .find(|j| j.spec.name == job)
            .map_or(0, |j| j.overlaps)
    }

    /// Names of the jobs running in this daemon.
    pub fn running_jobs(&self) -> Vec<String> {
        let mut names: Vec<String> = self.running.keys().cloned().collect();
        names.sort();
        names
    }

    /// One line for `systemctl status`: job names, run ids and times only.
    pub fn status_line(&self) -> String {
        let mut running: Vec<String> = self
            .running
            .iter()
            .map(|(job, r)| format!("{job} (run {})", r.run_id))
            .collect();
        running.sort();
        let next = self
            .jobs
            .iter()
            .filter_map(|j| j.next_at.map(|t| (t, j.spec.name.as_str())))
            .min();
        let next = match next {
            Some((t, name)) => format!(
                "next: {name} at {}",
                t.with_timezone(&self.settings.timezone)
                    .format("%Y-%m-%d %H:%M:%S %Z")
            ),
            None => "nothing scheduled".to_string(),
        };
        if running.is_empty() {
            format!("idle; {next}")
        } else {
            format!("running: {}; {next}", running.join(", "))
        }
    }

    /// The daemon loop: ticks with the clock's time until `shutdown` is
    /// cancelled, applies reloaded settings as they arrive, sends systemd its
    /// watchdog and status, then drains. Call [`Scheduler::start`] first.
    pub async fn run(
        mut self,
        shutdown: CancellationToken,
        mut reloads: mpsc::Receiver<Arc<Settings>>,
        notifier: Notifier,
    ) -> Drained {
        let max_sleep = match notifier.watchdog_interval() {
            Some(w) => self.options.max_sleep.min(w),
            None => self.options.max_sleep,
        };
        let mut last_status = String::new();
        loop {
            let now = self.clock.now();
            if let Err(e) = self.tick(now).await {
                // The database may be restarting: the same due time is tried again
                // on the next tick.
                error!(error = %e, "Scheduler cannot reach the store; trying again");
            }
            notifier.watchdog();
            let status = self.status_line();
            if status != last_status {
                notifier.status(&status);
                last_status = status;
            }
            let until_next = self
                .next_wake()
                .map(|t| (t - self.clock.now()).to_std().unwrap_or(Duration::ZERO))
                .unwrap_or(max_sleep);
            let sleep = until_next.min(max_sleep);
            tokio::select! {
                _ = shutdown.cancelled() => break,
                Some(settings) = reloads.recv() => {
                    if let Err(errors) = self.reload(settings, self.clock.now()) {
                        error!(problems = errors.len(), "Reloaded jobs have unreadable schedules; keeping the running ones");
                    }
                }
                Some(done) = self.tasks.join_next() => self.reaped(done),
                _ = tokio::time::sleep(sleep) => {}
            }
        }
        notifier.stopping();
        notifier.status("stopping: letting running steps finish");
        self.shutdown().await
    }

    /// Stops: no new runs, running ones stop after their current step; what is
    /// still running at the drain deadline is aborted (its transaction rolls back)
    /// and recorded as `interrupted`.
    pub async fn shutdown(&mut self) -> Drained {
        self.stop.cancel();
        let running = self.running_jobs();
        if !running.is_empty() {
            info!(jobs = %running.join(", "), "Waiting for running steps to finish");
        }
        let deadline = self.options.drain_deadline;
        let drained = {
            let tasks = &mut self.tasks;
            let running = &mut self.running;
            shutdown::drain(
                async move {
                    while let Some(done) = tasks.join_next().await {
                        if let Ok(job) = done {
                            running.remove(&job);
                        }
                    }
                },
                deadline,
            )
            .await
        };
        if drained == Drained::DeadlinePassed {
            let forced = self.running_jobs();
            warn!(jobs = %forced.join(", "), "Drain deadline passed; aborting the steps still running");
            for run in self.running.values() {
                run.steps.abort();
            }
            // The recording tasks now write `interrupted`; that takes moments.
            let _ = shutdown::drain(self.wait_idle(), Duration::from_secs(10)).await;
        }
        drained
    }
}

impl<R: StepRunner> Drop for Scheduler<R> {
    fn drop(&mut self) {
        // Steps run in their own tasks: a dropped scheduler must not leave them
        // running unrecorded.
        for run in self.running.values() {
            run.steps.abort();
        }
    }
}

fn job_states(specs: &[JobSpec]) -> Result<Vec<JobState>, Vec<ScheduleError>> {
    let mut jobs = Vec::new();
    let mut errors = Vec::new();
    for spec in specs {
        match Schedule::parse(&spec.schedule) {
            Ok(schedule) => jobs.push(JobState {
                spec: spec.clone(),
                schedule,
                next_at: None,
                overlaps: 0,
            }),
            Err(e) => errors.push(e),
        }
    }
    if errors.is_empty() {
        Ok(jobs)
    } else {
        Err(errors)
    }
}

/// Runs a job's steps in order; the first failure stops the job.
async fn run_steps<R: StepRunner>(
    runner: Arc<R>,
    store: Store,
    instance: String,
    steps: Vec<Step>,
    ctx: StepContext,
    progress: Arc<Mutex<Progress>>,
) -> StepsEnd {
    if let Some(run_id) = ctx.run_id {
        if let Err(e) = store
            .mark_run_started(run_id, &instance, ctx.clock.now())
            .await
        {
            warn!(error = %e, "Cannot note the run's start");
        }
    }
    let mut previous: Option<Step> = None;
    for step in steps {
        if let Some(after) = previous {
            if ctx.stop.is_cancelled() {
                return StepsEnd::Stopped { after };
            }
        }
        if let Ok(mut p) = progress.lock() {
            p.current = Some((step, ctx.clock.now(), Instant::now()));
        }
        let result = runner
            .run_step(step, &ctx)
            .instrument(info_span!("step", step = step.as_str()))
            .await;
        if let Ok(mut p) = progress.lock() {
            if let Some((_, started_at, t0)) = p.current.take() {
                p.done.push(StepTiming {
                    step: step.as_str(),
                    started_at,
                    ms: millis(t0.elapsed()),
                    ok: result.is_ok(),
                });
            }
        }
        match result {
            Ok(report) => info!(step = step.as_str(), summary = %report.summary, "Step done"),
            Err(error @ StepError::Stopped(_)) => return StepsEnd::StoppedDuring { step, error },
            Err(error) => return StepsEnd::Failed { step, error },
        }
        previous = Some(step);
    }
    StepsEnd::Done
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The outcome and error text of a run's task.
fn outcome_of(
    joined: Result<StepsEnd, JoinError>,
    progress: &Mutex<Progress>,
) -> (RunOutcome, Option<String>) {
    let current = progress
        .lock()
        .ok()
        .and_then(|p| p.current.map(|(step, _, _)| step.as_str()))
        .unwrap_or("?");
    match joined {
        Ok(StepsEnd::Done) => (RunOutcome::Ok, None),
        Ok(StepsEnd::Failed { step, error }) => (
            RunOutcome::Failed,
            Some(format!("step `{step}` failed: {error}")),
        ),
        Ok(StepsEnd::StoppedDuring { step, error }) => (
            RunOutcome::Interrupted,
            Some(format!("step `{step}` {error}; later steps did not run")),
        ),
        Ok(StepsEnd::Stopped { after }) => (
            RunOutcome::Interrupted,
            Some(format!(
                "stopped by shutdown after step `{after}`; later steps did not run"
            )),
        ),
        // The panic message is not kept: it could quote data.
        Err(e) if e.is_panic() => (
            RunOutcome::Failed,
            Some(format!("step `{current}` panicked")),
        ),
        Err(_) => (
            RunOutcome::Interrupted,
            Some(format!(
                "step `{current}` was aborted at the drain deadline; its transaction rolled back"
            )),
        ),
    }
}

/// The timings as JSON; a step cut short by a panic or an abort is included, not ok.
fn steps_json(progress: &Mutex<Progress>) -> String {
    let mut timings = Vec::new();
    if let Ok(p) = progress.lock() {
        timings = p.done.clone();
        if let Some((step, started_at, t0)) = p.current {
            timings.push(StepTiming {
                step: step.as_str(),
                started_at,
                ms: millis(t0.elapsed()),
                ok: false,
            });
        }
    }
    serde_json::to_string(&timings).unwrap_or_else(|_| "[]".to_string())
}

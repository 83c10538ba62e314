//! The scheduler against real stores, with injected time: every test drives
//! `Scheduler::tick(now)` with the instants it wants, and waits for runs to be
//! recorded rather than sleeping.
//!
//! - both DST nights: a 01:30 job runs once each night;
//! - catch-up after downtime: once, for the latest missed time, only with
//!   `catch_up = true` and run history;
//! - no overlap: a job still running at its next time is recorded as
//!   `skipped_overlap` and counted, not started twice;
//! - a failed step stops its job and is recorded, a panicking step too; other jobs
//!   carry on and the admin callback hears of each failure;
//! - two daemons on one PostgreSQL database: each scheduled run executes once;
//! - a dead daemon's claim expires and another daemon takes the run over, while
//!   a live daemon's heartbeat keeps its claim;
//! - a step still running at the drain deadline is aborted, logged as forced, its
//!   transaction rolled back, and its run recorded as interrupted.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Duration, TimeZone, Utc};
use kinlink::clock::Clock;
use kinlink::config::{Settings, SourceSettings};
use kinlink::domain::{FeedKind, Format, Record};
use kinlink::jobs::{JobSpec, Step};
use kinlink::scheduler::{
    FailureNotifier, Scheduler, SchedulerOptions, StepContext, StepError, StepReport, StepRunner,
};
use kinlink::shutdown::Drained;
use kinlink::store::{FileCounts, NewFile, RunOutcome, RunRow, Store};
use tokio::sync::Semaphore;

use crate::backends::{fresh_postgres, postgres_url};
use crate::helpers::{csv_source, settings, within};

fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, mo, d, h, mi, s).unwrap()
}

fn job(name: &str, schedule: &str, steps: &[Step], catch_up: bool) -> JobSpec {
    JobSpec {
        name: name.to_string(),
        schedule: schedule.to_string(),
        steps: steps.to_vec(),
        catch_up,
        file: PathBuf::from(format!("jobs/{name}.toml")),
    }
}

fn settings_with(dir: &Path, jobs: Vec<JobSpec>) -> Arc<Settings> {
    let mut s = settings(dir, vec![]);
    s.jobs = jobs;
    Arc::new(s)
}

/// What a scripted step does.
#[derive(Clone)]
enum Act {
    Fail,
    Panic,
    /// Waits for a permit (the test releases it).
    Block(Arc<Semaphore>),
}

/// Steps that succeed unless scripted otherwise, counting every call.
#[derive(Default)]
struct Scripted {
    acts: HashMap<(String, Step), Act>,
    calls: Mutex<Vec<(String, Step)>>,
    total: AtomicUsize,
}

impl Scripted {
    fn with(mut self, job: &str, step: Step, act: Act) -> Self {
        self.acts.insert((job.to_string(), step), act);
        self
    }

    fn calls_of(&self, job: &str) -> Vec<Step> {
        self.calls
            .lock()
            .unwrap()
            .iter()
            .filter(|(j, _)| j == job)
            .map(|(_, s)| *s)
            .collect()
    }
}

impl StepRunner for Scripted {
    async fn run_step(&self, step: Step, ctx: &StepContext) -> Result<StepReport, StepError> {
        self.calls.lock().unwrap().push((ctx.job.clone(), step));
        self.total.fetch_add(1, Ordering::SeqCst);
        match self.acts.get(&(ctx.job.clone(), step)).cloned() {
            Some(Act::Fail) => Err(StepError::Failed(
                "source police could not be fetched".into(),
            )),
            Some(Act::Panic) => panic!("a bug in the step"),
            Some(Act::Block(gate)) => {
                let _permit = gate.acquire().await.unwrap();
                Ok(StepReport {
                    summary: "released".into(),
                })
            }
            None => Ok(StepReport {
                summary: "done".into(),
            }),
        }
    }
}

/// Remembers the failures the admin would be told about.
#[derive(Default)]
struct Failures(Mutex<Vec<(String, i64, String)>>);

impl FailureNotifier for Failures {
    fn on_failure(&self, job: &str, run_id: i64, error: &str) {
        self.0
            .lock()
            .unwrap()
            .push((job.to_string(), run_id, error.to_string()));
    }
}

struct Daemon<R: StepRunner> {
    scheduler: Scheduler<R>,
    failures: Arc<Failures>,
}

fn daemon<R: StepRunner>(
    store: &Store,
    settings: Arc<Settings>,
    runner: Arc<R>,
    instance: &str,
) -> Daemon<R> {
    let failures = Arc::new(Failures::default());
    let scheduler = Scheduler::new(
        settings,
        store.clone(),
        runner,
        failures.clone(),
        Clock::system(),
        SchedulerOptions::new(instance),
    )
    .unwrap();
    Daemon {
        scheduler,
        failures,
    }
}

/// Ticks at `now` and waits until what it started has been recorded.
async fn tick_and_settle<R: StepRunner>(s: &mut Scheduler<R>, now: DateTime<Utc>) {
    s.tick(now).await.unwrap();
    within(30, s.wait_idle()).await;
}

fn outcomes(rows: &[RunRow]) -> Vec<Option<RunOutcome>> {
    rows.iter().map(|r| r.outcome).collect()
}

#[tokio::test]
async fn a_0130_job_runs_once_on_each_dst_night_through_the_scheduler() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_sqlite(&dir.path().join("k.db")).await.unwrap();
    let runner = Arc::new(Scripted::default());
    let s = settings_with(
        dir.path(),
        vec![job("nightly", "0 30 1 * * *", &[Step::Link], false)],
    );
    // Each night from 22:00 to 04:00 UTC, a tick every 5 minutes (and one on
    // each exact instant a run is due).
    for (start, expected) in [
        // Forward: 01:30 does not exist on 29 March; the run is at 02:00 BST.
        (utc(2026, 3, 28, 22, 0, 0), utc(2026, 3, 29, 1, 0, 0)),
        // Back: 01:30 BST (00:30 UTC), not again at 01:30 GMT (01:30 UTC).
        (utc(2026, 10, 24, 22, 0, 0), utc(2026, 10, 25, 0, 30, 0)),
    ] {
        let mut d = daemon(&store, s.clone(), runner.clone(), "a");
        d.scheduler.start(start).await.unwrap();
        assert_eq!(d.scheduler.next_run_of("nightly"), Some(expected));
        let mut t = start;
        while t < start + Duration::hours(6) {
            tick_and_settle(&mut d.scheduler, t).await;
            t += Duration::minutes(5);
        }
    }
    let rows = store.runs_of("nightly").await.unwrap();
    let times: Vec<DateTime<Utc>> = rows.iter().map(|r| r.scheduled_for).collect();
    assert_eq!(
        times,
        vec![utc(2026, 3, 29, 1, 0, 0), utc(2026, 10, 25, 0, 30, 0)]
    );
    assert!(rows.iter().all(|r| r.outcome == Some(RunOutcome::Ok)));
    assert_eq!(runner.total.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_missed_run_is_caught_up_once_on_start_and_only_where_asked() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_sqlite(&dir.path().join("k.db")).await.unwrap();
    let runner = Arc::new(Scripted::default());
    let jobs = vec![
        job("nightly", "0 30 1 * * *", &[Step::Ingest, Step::Link], true),
        job("dv-morning", "0 0 7 * * *", &[Step::Send], false),
    ];
    let s = settings_with(dir.path(), jobs.clone());

    // Monday 1 June: the daemon runs both jobs at their times.
    let mut d = daemon(&store, s.clone(), runner.clone(), "a");
    d.scheduler.start(utc(2026, 6, 1, 0, 0, 0)).await.unwrap();
    tick_and_settle(&mut d.scheduler, utc(2026, 6, 1, 0, 30, 0)).await;
    tick_and_settle(&mut d.scheduler, utc(2026, 6, 1, 6, 0, 0)).await;
    drop(d);
    assert_eq!(store.runs_of("nightly").await.unwrap().len(), 1);
    assert_eq!(store.runs_of("dv-morning").await.unwrap().len(), 1);

    // Down from then until Wednesday 09:00: two nightly runs and two mornings missed.
    let mut d = daemon(&store, s.clone(), runner.clone(), "a");
    d.scheduler.start(utc(2026, 6, 3, 8, 0, 0)).await.unwrap();
    within(30, d.scheduler.wait_idle()).await;
    drop(d);
    let nightly = store.runs_of("nightly").await.unwrap();
    // Once, for the latest missed time (Wednesday 01:30 BST), not for Tuesday too.
    let times: Vec<DateTime<Utc>> = nightly.iter().map(|r| r.scheduled_for).collect();
    assert_eq!(
        times,
        vec![utc(2026, 6, 1, 0, 30, 0), utc(2026, 6, 3, 0, 30, 0)]
    );
    assert_eq!(nightly[1].outcome, Some(RunOutcome::Ok));
    assert_eq!(runner.calls_of("nightly").len(), 4, "two steps, twice");
    // catch_up = false: nothing for the missed mornings.
    assert_eq!(store.runs_of("dv-morning").await.unwrap().len(), 1);

    // A restart soon after: the catch-up is not repeated.
    let mut d = daemon(&store, s.clone(), runner.clone(), "a");
    d.scheduler.start(utc(2026, 6, 3, 8, 5, 0)).await.unwrap();
    within(30, d.scheduler.wait_idle()).await;
    drop(d);
    assert_eq!(store.runs_of("nightly").await.unwrap().len(), 2);

    // A job with no history at all (a new install, a new job file) is not caught up.
    let fresh = tempfile::tempdir().unwrap();
    let fresh_store = Store::open_sqlite(&fresh.path().join("k.db"))
        .await
        .unwrap();
    let mut d = daemon(&fresh_store, s, runner.clone(), "a");
    d.scheduler.start(utc(2026, 6, 3, 8, 0, 0)).await.unwrap();
    within(30, d.scheduler.wait_idle()).await;
    assert!(fresh_store.runs_of("nightly").await.unwrap().is_empty());
}

#[tokio::test]
async fn a_job_still_running_at_its_next_time_is_not_started_twice() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_sqlite(&dir.path().join("k.db")).await.unwrap();
    let gate = Arc::new(Semaphore::new(0));
    let runner =
        Arc::new(Scripted::default().with("every-minute", Step::Ingest, Act::Block(gate.clone())));
    let s = settings_with(
        dir.path(),
        vec![job(
            "every-minute",
            "0 * * * * *",
            &[Step::Ingest, Step::Link],
            false,
        )],
    );
    let mut d = daemon(&store, s, runner.clone(), "a");
    let t0 = utc(2026, 6, 1, 10, 0, 0);
    d.scheduler.start(t0 - Duration::seconds(1)).await.unwrap();
    d.scheduler.tick(t0).await.unwrap();
    // The ingest step blocks: at 10:01 and 10:02 the job is still running.
    d.scheduler.tick(t0 + Duration::minutes(1)).await.unwrap();
    d.scheduler.tick(t0 + Duration::minutes(2)).await.unwrap();
    assert_eq!(d.scheduler.overlaps("every-minute"), 2);
    assert_eq!(d.scheduler.running_jobs(), vec!["every-minute".to_string()]);
    gate.add_permits(1);
    within(30, d.scheduler.wait_idle()).await;
    // Free again: the 10:03 run starts (and is let through).
    gate.add_permits(1);
    tick_and_settle(&mut d.scheduler, t0 + Duration::minutes(3)).await;

    let rows = store.runs_of("every-minute").await.unwrap();
    assert_eq!(
        outcomes(&rows),
        vec![
            Some(RunOutcome::Ok),
            Some(RunOutcome::SkippedOverlap),
            Some(RunOutcome::SkippedOverlap),
            Some(RunOutcome::Ok),
        ]
    );
    assert!(rows[1]
        .error
        .as_deref()
        .unwrap()
        .contains(&rows[0].id.to_string()));
    assert_eq!(
        runner.calls_of("every-minute"),
        vec![Step::Ingest, Step::Link, Step::Ingest, Step::Link]
    );
    // Per-step timings are kept with the run.
    let steps: serde_json::Value = serde_json::from_str(&rows[0].steps).unwrap();
    let names: Vec<&str> = steps
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["step"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["ingest", "link"]);
    assert!(steps[0]["ok"].as_bool().unwrap());
}

#[tokio::test]
async fn a_failed_or_panicking_step_ends_its_job_and_the_others_carry_on() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_sqlite(&dir.path().join("k.db")).await.unwrap();
    let runner = Arc::new(
        Scripted::default()
            .with("fails", Step::Ingest, Act::Fail)
            .with("panics", Step::Link, Act::Panic),
    );
    let steps = [Step::Ingest, Step::Link, Step::Evaluate];
    let s = settings_with(
        dir.path(),
        vec![
            job("fails", "0 0 * * * *", &steps, false),
            job("panics", "0 0 * * * *", &steps, false),
            job("fine", "0 0 * * * *", &steps, false),
        ],
    );
    let mut d = daemon(&store, s, runner.clone(), "a");
    let t0 = utc(2026, 6, 1, 10, 0, 0);
    d.scheduler.start(t0 - Duration::seconds(1)).await.unwrap();
    tick_and_settle(&mut d.scheduler, t0).await;

    let fails = store.runs_of("fails").await.unwrap();
    assert_eq!(fails[0].outcome, Some(RunOutcome::Failed));
    let error = fails[0].error.as_deref().unwrap();
    assert!(
        error.contains("step `ingest` failed") && error.contains("could not be fetched"),
        "{error}"
    );
    assert_eq!(
        runner.calls_of("fails"),
        vec![Step::Ingest],
        "the failed step stops its job"
    );

    let panics = store.runs_of("panics").await.unwrap();
    assert_eq!(panics[0].outcome, Some(RunOutcome::Failed));
    assert_eq!(panics[0].error.as_deref(), Some("step `link` panicked"));
    assert_eq!(runner.calls_of("panics"), vec![Step::Ingest, Step::Link]);
    let timings: serde_json::Value = serde_json::from_str(&panics[0].steps).unwrap();
    assert_eq!(timings[1]["step"], "link");
    assert_eq!(timings[1]["ok"], false);

    let fine = store.runs_of("fine").await.unwrap();
    assert_eq!(fine[0].outcome, Some(RunOutcome::Ok));
    assert_eq!(runner.calls_of("fine"), steps.to_vec());

    let mut told: Vec<(String, i64)> = d
        .failures
        .0
        .lock()
        .unwrap()
        .iter()
        .map(|(j, id, _)| (j.clone(), *id))
        .collect();
    told.sort();
    assert_eq!(
        told,
        vec![
            ("fails".to_string(), fails[0].id),
            ("panics".to_string(), panics[0].id)
        ]
    );

    // The daemon lives on: the next hour every job runs again.
    tick_and_settle(&mut d.scheduler, t0 + Duration::hours(1)).await;
    for name in ["fails", "panics", "fine"] {
        assert_eq!(store.runs_of(name).await.unwrap().len(), 2, "{name}");
    }
}

/// Two stores on one fresh PostgreSQL database, as two daemons would have.
async fn two_postgres_stores(test: &str) -> Option<(Store, Store)> {
    let a = fresh_postgres(test).await?;
    let name = format!(
        "kinlink_it_{}",
        test.replace(|c: char| !c.is_ascii_alphanumeric(), "_")
    );
    let url = kinlink_test_support::with_database(&postgres_url(), &name);
    let b = Store::open_postgres(&url).await.unwrap();
    Some((a, b))
}

#[tokio::test]
async fn two_daemons_on_one_postgres_database_run_each_scheduled_run_once() {
    let Some((store_a, store_b)) = two_postgres_stores("sched_two_daemons").await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let runner = Arc::new(Scripted::default());
    let s = settings_with(
        dir.path(),
        vec![
            job(
                "every-minute",
                "0 * * * * *",
                &[Step::Ingest, Step::Link],
                true,
            ),
            job("hourly", "0 0 * * * *", &[Step::Evaluate], false),
        ],
    );
    let mut a = daemon(&store_a, s.clone(), runner.clone(), "daemon-a");
    let mut b = daemon(&store_b, s, runner.clone(), "daemon-b");
    let t0 = utc(2026, 6, 1, 9, 30, 30);
    a.scheduler.start(t0).await.unwrap();
    b.scheduler.start(t0).await.unwrap();
    // An hour, minute by minute, both daemons ticking at the same instants.
    for m in 1..=60 {
        let now = t0 + Duration::minutes(m);
        let (ra, rb) = tokio::join!(a.scheduler.tick(now), b.scheduler.tick(now));
        ra.unwrap();
        rb.unwrap();
        tokio::join!(
            within(30, a.scheduler.wait_idle()),
            within(30, b.scheduler.wait_idle())
        );
    }
    let every = store_a.runs_of("every-minute").await.unwrap();
    assert_eq!(every.len(), 60);
    assert!(every.iter().all(|r| r.outcome == Some(RunOutcome::Ok)));
    let hourly = store_a.runs_of("hourly").await.unwrap();
    assert_eq!(hourly.len(), 1);
    // Each run's steps executed once: 60 × 2 + 1.
    assert_eq!(runner.total.load(Ordering::SeqCst), 121);
    assert_eq!(runner.calls_of("every-minute").len(), 120);
    let instances: std::collections::BTreeSet<&str> =
        every.iter().map(|r| r.instance.as_str()).collect();
    assert!(instances
        .iter()
        .all(|i| *i == "daemon-a" || *i == "daemon-b"));

    // Both restart at once after a missed minute: one catch-up between them.
    drop(a);
    drop(b);
    let mut a = daemon(
        &store_a,
        settings_with(
            dir.path(),
            vec![job("every-minute", "0 * * * * *", &[Step::Link], true)],
        ),
        runner.clone(),
        "daemon-a",
    );
    let mut b = daemon(
        &store_b,
        settings_with(
            dir.path(),
            vec![job("every-minute", "0 * * * * *", &[Step::Link], true)],
        ),
        runner.clone(),
        "daemon-b",
    );
    let later = t0 + Duration::minutes(62);
    let (ra, rb) = tokio::join!(a.scheduler.start(later), b.scheduler.start(later));
    ra.unwrap();
    rb.unwrap();
    tokio::join!(
        within(30, a.scheduler.wait_idle()),
        within(30, b.scheduler.wait_idle())
    );
    assert_eq!(store_a.runs_of("every-minute").await.unwrap().len(), 61);
    assert_eq!(runner.total.load(Ordering::SeqCst), 122);
}

async fn claim_expiry(store_a: Store, store_b: Store, backend: &str) {
    let dir = tempfile::tempdir().unwrap();
    let gate = Arc::new(Semaphore::new(0));
    let blocking = Arc::new(Scripted::default().with("hourly", Step::Ingest, Act::Block(gate)));
    let runner_b = Arc::new(Scripted::default());
    let s = settings_with(
        dir.path(),
        vec![job(
            "hourly",
            "0 0 * * * *",
            &[Step::Ingest, Step::Link],
            false,
        )],
    );
    let mut a = daemon(&store_a, s.clone(), blocking.clone(), "daemon-a");
    let mut b = daemon(&store_b, s, runner_b.clone(), "daemon-b");
    let t0 = utc(2026, 6, 1, 10, 0, 0);
    a.scheduler.start(t0 - Duration::seconds(1)).await.unwrap();
    b.scheduler.start(t0 - Duration::seconds(1)).await.unwrap();

    // A claims the 10:00 run and is stuck in it; B finds it taken. (A's step runs
    // in a task of its own: wait until it has started, or dropping A below could
    // abort it before it ever ran.)
    a.scheduler.tick(t0).await.unwrap();
    within(30, async {
        while blocking.calls_of("hourly").is_empty() {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    })
    .await;
    tick_and_settle(&mut b.scheduler, t0).await;
    assert_eq!(runner_b.total.load(Ordering::SeqCst), 0, "{backend}");

    // A is alive and heartbeats at 10:01:30: at 10:02:01 its claim still holds.
    a.scheduler.tick(t0 + Duration::seconds(90)).await.unwrap();
    tick_and_settle(&mut b.scheduler, t0 + Duration::seconds(121)).await;
    assert_eq!(runner_b.total.load(Ordering::SeqCst), 0, "{backend}");

    // A dies (its steps are aborted, nothing more is written). Its lease runs to
    // 10:03:30; just before, B leaves the run alone; after, B takes it over.
    drop(a);
    tick_and_settle(&mut b.scheduler, t0 + Duration::seconds(209)).await;
    assert_eq!(runner_b.total.load(Ordering::SeqCst), 0, "{backend}");
    tick_and_settle(&mut b.scheduler, t0 + Duration::seconds(211)).await;

    let rows = store_b.runs_of("hourly").await.unwrap();
    assert_eq!(rows.len(), 1, "{backend}: one row for the 10:00 run");
    assert_eq!(rows[0].outcome, Some(RunOutcome::Ok), "{backend}");
    assert_eq!(rows[0].instance, "daemon-b", "{backend}");
    assert_eq!(rows[0].takeovers, 1, "{backend}");
    assert_eq!(
        runner_b.calls_of("hourly"),
        vec![Step::Ingest, Step::Link],
        "{backend}"
    );
    assert_eq!(blocking.calls_of("hourly"), vec![Step::Ingest], "{backend}");

    // An expired run whose time a later run has superseded is closed, not run.
    let mut c = daemon(
        &store_a,
        settings_with(
            dir.path(),
            vec![job("hourly", "0 0 * * * *", &[Step::Ingest], false)],
        ),
        Arc::new(Scripted::default().with(
            "hourly",
            Step::Ingest,
            Act::Block(Arc::new(Semaphore::new(0))),
        )),
        "daemon-c",
    );
    c.scheduler.start(t0 + Duration::minutes(59)).await.unwrap();
    c.scheduler.tick(t0 + Duration::hours(1)).await.unwrap();
    drop(c);
    // B was not ticking in between; it wakes at 12:00:30, after 11:00's claim
    // expired and when 12:00 is due.
    let before = runner_b.total.load(Ordering::SeqCst);
    tick_and_settle(
        &mut b.scheduler,
        t0 + Duration::minutes(120) + Duration::seconds(30),
    )
    .await;
    let rows = store_b.runs_of("hourly").await.unwrap();
    assert_eq!(
        outcomes(&rows),
        vec![
            Some(RunOutcome::Ok),
            Some(RunOutcome::Abandoned),
            Some(RunOutcome::Ok)
        ],
        "{backend}"
    );
    assert_eq!(rows[2].scheduled_for, t0 + Duration::hours(2), "{backend}");
    assert_eq!(
        runner_b.total.load(Ordering::SeqCst),
        before + 2,
        "{backend}"
    );
}

#[tokio::test]
async fn a_dead_daemons_claim_expires_and_another_daemon_takes_the_run_over() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("k.db");
    let a = Store::open_sqlite(&path).await.unwrap();
    let b = Store::open_sqlite(&path).await.unwrap();
    claim_expiry(a, b, "sqlite").await;
    if let Some((a, b)) = two_postgres_stores("sched_claim_expiry").await {
        claim_expiry(a, b, "postgres").await;
    }
}

/// A step that writes rows into a file's transaction and then never finishes:
/// a step stuck in a long statement at shutdown. It adds a permit to `writing`
/// once its rows are in the transaction.
struct Stuck {
    store: Store,
    source: SourceSettings,
    raw: PathBuf,
    file_id: i64,
    writing: Arc<Semaphore>,
}

impl StepRunner for Stuck {
    async fn run_step(&self, _: Step, _: &StepContext) -> Result<StepReport, StepError> {
        let failed = |e: String| StepError::Failed(e);
        let rows = kinlink::ingest::open(&self.source, &self.raw, "marks.csv")
            .and_then(|mut reader| reader.next_batch(1000))
            .map_err(|e| failed(e.to_string()))?;
        let records: Vec<&Record> = rows.iter().filter_map(|r| r.as_ref().ok()).collect();
        let mut tx = self
            .store
            .begin_file(self.file_id)
            .await
            .map_err(|e| failed(e.to_string()))?;
        tx.add_records(&records)
            .await
            .map_err(|e| failed(e.to_string()))?;
        self.writing.add_permits(1);
        std::future::pending::<()>().await;
        Ok(StepReport {
            summary: "never reached".into(),
        })
    }
}

/// Log output of the current thread, as text.
#[derive(Clone, Default)]
struct LogBuf(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogBuf {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl LogBuf {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

#[tokio::test]
async fn a_step_still_running_at_the_drain_deadline_is_aborted_rolled_back_and_recorded_as_interrupted(
) {
    // The test runtime is single-threaded: the scheduler's log lines are all
    // written on this thread.
    let logs = LogBuf::default();
    let sink = logs.clone();
    let _logging = tracing::subscriber::set_default(
        tracing_subscriber::fmt()
            .with_writer(move || sink.clone())
            .with_ansi(false)
            .finish(),
    );
    let dir = tempfile::tempdir().unwrap();
    let inbox = dir.path().join("inbox");
    std::fs::create_dir_all(&inbox).unwrap();
    let raw = inbox.join("marks.csv");
    let columns = kinlink::demo::write_attendance(&raw, Format::Csv, 500, 3).unwrap();
    let columns: Vec<(&str, &str)> = columns
        .iter()
        .map(|(c, h)| (c.as_str(), h.as_str()))
        .collect();
    let source = csv_source("schools", FeedKind::Attendance, &inbox, &columns);
    let store = Store::open_sqlite(&dir.path().join("k.db")).await.unwrap();
    let t0 = utc(2025, 3, 3, 1, 29, 0);
    let file_id = store
        .record_fetched(&NewFile {
            source: "schools",
            kind: FeedKind::Attendance,
            original_name: "marks.csv",
            raw_path: &raw,
            origin: "test",
            sha256: "stuck",
            size: 1,
            fetched_at: t0,
        })
        .await
        .unwrap();
    let writing = Arc::new(Semaphore::new(0));
    let runner = Arc::new(Stuck {
        store: store.clone(),
        source,
        raw,
        file_id,
        writing: writing.clone(),
    });
    let mut options = SchedulerOptions::new("daemon-a");
    options.drain_deadline = std::time::Duration::from_millis(300);
    let failures = Arc::new(Failures::default());
    let mut s = Scheduler::new(
        settings_with(
            dir.path(),
            vec![job(
                "nightly",
                "0 30 1 * * *",
                &[Step::Ingest, Step::Link],
                false,
            )],
        ),
        store.clone(),
        runner,
        failures.clone(),
        Clock::system(),
        options,
    )
    .unwrap();
    s.start(t0).await.unwrap();
    s.tick(t0 + Duration::minutes(1)).await.unwrap();
    within(30, writing.acquire()).await.unwrap().forget();

    let began = std::time::Instant::now();
    assert_eq!(within(30, s.shutdown()).await, Drained::DeadlinePassed);
    assert!(
        began.elapsed() < std::time::Duration::from_secs(10),
        "{:?}",
        began.elapsed()
    );

    // Recorded as interrupted (not ok, not failed: nobody is emailed), with the
    // step cut short in its timings.
    let rows = store.runs_of("nightly").await.unwrap();
    assert_eq!(outcomes(&rows), vec![Some(RunOutcome::Interrupted)]);
    let error = rows[0].error.clone().unwrap_or_default();
    assert!(
        error.contains("step `ingest` was aborted at the drain deadline"),
        "{error}"
    );
    assert!(rows[0].finished_at.is_some());
    let steps: serde_json::Value = serde_json::from_str(&rows[0].steps).unwrap();
    assert_eq!(steps[0]["step"], "ingest", "{steps}");
    assert_eq!(steps[0]["ok"], false, "{steps}");
    assert_eq!(steps.as_array().unwrap().len(), 1, "{steps}");
    assert!(failures.0.lock().unwrap().is_empty());

    // Logged as forced, naming the job.
    let log = logs.text();
    let forced = log
        .lines()
        .find(|l| l.contains("Drain deadline passed; aborting the steps still running"))
        .unwrap_or_else(|| panic!("{log}"));
    assert!(forced.contains("nightly"), "{forced}");

    // Rolled back: none of its rows are stored, the file still waits, and the
    // write lock it held is free again.
    let counts = store.table_counts().await.unwrap();
    assert_eq!((counts.attendance_marks, counts.mentions), (0, 0));
    assert_eq!(store.ledger_file(file_id).await.unwrap().status, "fetched");
    let tx = within(10, store.begin_file(file_id)).await.unwrap();
    within(10, tx.commit(FileCounts::default(), t0))
        .await
        .unwrap();
    assert_eq!(store.ledger_file(file_id).await.unwrap().status, "ingested");
}

//! The application: builds what a command needs (settings, store, clock) exactly as
//! production does, runs it, and maps the outcome to an exit code:
//! 0 ok, 1 a job or step failed, 2 bad usage or config.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use anyhow::Context;
use chrono::{NaiveTime, TimeZone};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;
use tracing::info;

mod alerts;
mod daemon;
mod identity;
mod mail;
mod review;

pub use daemon::{build, run_once, App, LogFailures, StageResult, RUN_ONCE_STEPS};
pub use identity::{describe_evidence, export_csv, print_link_report, EXPORT_HEADER};

use crate::cli::{Cli, Command, DemoArgs, IngestArgs, OutputFormat};
use crate::clock::Clock;
use crate::config::{self, Settings};
use crate::domain::RunMode;
use crate::pipeline::{self, FileOutcome, IngestReport, IngestRequest, Progress};
use crate::store::Store;

/// Exit code for a failed job or step.
pub const EXIT_FAILED: u8 = 1;
/// Exit code for bad usage or a bad config.
pub const EXIT_CONFIG: u8 = 2;

/// Why a command stopped.
#[derive(Debug)]
pub enum Failure {
    /// The config (or the command line) is wrong: exit 2.
    Config(String),
    /// A step failed: exit 1.
    Step(anyhow::Error),
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        Failure::Step(e)
    }
}

impl From<crate::store::StoreError> for Failure {
    fn from(e: crate::store::StoreError) -> Self {
        Failure::Step(e.into())
    }
}

/// Runs one command line to its exit code.
pub async fn run(cli: Cli) -> ExitCode {
    match dispatch(cli).await {
        Ok(code) => ExitCode::from(code),
        Err(Failure::Config(msg)) => {
            eprintln!("{msg}");
            ExitCode::from(EXIT_CONFIG)
        }
        Err(Failure::Step(e)) => {
            eprintln!("error: {e:#}");
            ExitCode::from(EXIT_FAILED)
        }
    }
}

async fn dispatch(cli: Cli) -> Result<u8, Failure> {
    let clock = clock_for(cli.as_of);
    match &cli.command {
        Command::CheckConfig => check_config(&config_path(&cli)),
        Command::Ingest(args) => {
            let settings = load_settings(&config_path(&cli))?;
            ingest(&settings, clock, args).await
        }
        Command::Status { format } => {
            let settings = load_settings(&config_path(&cli))?;
            status(&settings, clock, *format).await
        }
        Command::Run => {
            let settings = load_settings(&config_path(&cli))?;
            daemon_command(settings, clock).await
        }
        Command::RunOnce { format } => {
            let settings = load_settings(&config_path(&cli))?;
            run_once_command(settings, clock, *format).await
        }
        Command::Link(args) => {
            let settings = load_settings(&config_path(&cli))?;
            identity::link(&settings, clock, args).await
        }
        Command::Explain { what } => {
            let settings = load_settings(&config_path(&cli))?;
            identity::explain(&settings, what).await
        }
        Command::Review { what } => {
            let settings = load_settings(&config_path(&cli))?;
            review::review(&settings, clock, what).await
        }
        Command::Persons { what } => {
            let settings = load_settings(&config_path(&cli))?;
            identity::persons(&settings, what).await
        }
        Command::Evaluate { format } => {
            let settings = load_settings(&config_path(&cli))?;
            alerts::evaluate(&settings, clock, *format).await
        }
        Command::Alerts { what } => {
            let settings = load_settings(&config_path(&cli))?;
            alerts::alerts(&settings, clock, what).await
        }
        Command::Purge { dry_run, format } => {
            let settings = load_settings(&config_path(&cli))?;
            purge(&settings, clock, *dry_run, *format).await
        }
        Command::Audit(args) => {
            let settings = load_settings(&config_path(&cli))?;
            alerts::audit(&settings, args).await
        }
        Command::Send(args) => {
            let settings = load_settings(&config_path(&cli))?;
            mail::send(&settings, clock, args).await
        }
        Command::Outbox { what } => {
            let settings = load_settings(&config_path(&cli))?;
            mail::outbox(&settings, clock, what).await
        }
        Command::Demo(args) => demo(args, cli.as_of, clock).await,
    }
}

/// `--as-of D` fixes "now" at noon London time on D; otherwise the system clock.
pub fn clock_for(as_of: Option<chrono::NaiveDate>) -> Clock {
    match as_of {
        Some(date) => {
            let local = date.and_time(NaiveTime::from_hms_opt(12, 0, 0).unwrap_or_default());
            match chrono_tz::Europe::London
                .from_local_datetime(&local)
                .earliest()
            {
                Some(t) => Clock::fixed(t.with_timezone(&chrono::Utc)),
                None => Clock::fixed(local.and_utc()),
            }
        }
        None => Clock::system(),
    }
}

fn config_path(cli: &Cli) -> PathBuf {
    cli.config
        .clone()
        .unwrap_or_else(|| PathBuf::from("config/kinlink.toml"))
}

/// Loads the config, or the full list of problems as a config failure.
pub fn load_settings(path: &Path) -> Result<Settings, Failure> {
    config::load(path).map_err(|problems| {
        Failure::Config(format!(
            "{problems}\n{} problem(s) in the configuration; nothing was run",
            problems.0.len()
        ))
    })
}

fn check_config(path: &Path) -> Result<u8, Failure> {
    let settings = load_settings(path)?;
    let secret_problems = config::check_secrets(&settings);
    print!("{}", config::summary(&settings));
    if !secret_problems.is_empty() {
        for p in &secret_problems {
            eprintln!("{p}");
        }
        return Err(Failure::Config(format!(
            "{} secret(s) cannot be read; the config is otherwise valid",
            secret_problems.len()
        )));
    }
    println!("\nconfig OK: {}", path.display());
    Ok(0)
}

async fn open_store(settings: &Settings) -> Result<Store, Failure> {
    Store::connect(&settings.database, &settings.state_dir)
        .await
        .context("opening the store")
        .map_err(Failure::Step)
}

/// Printed when SIGTERM or SIGINT stopped `ingest` (exit 0, as the daemon: nothing
/// failed and nothing is half-committed).
const INGEST_STOPPED: &str = "stopped by SIGTERM/SIGINT: the file in progress was rolled back \
     and stays waiting; the next run ingests it";
/// Printed when SIGTERM or SIGINT stopped `run-once` (exit 0).
const RUN_ONCE_STOPPED: &str = "stopped by SIGTERM/SIGINT: no further stage was started; \
     a file being ingested was rolled back and the next run ingests it";

async fn ingest(settings: &Settings, clock: Clock, args: &IngestArgs) -> Result<u8, Failure> {
    // Before anything else, so a signal during migrations is not lost.
    let stop = crate::shutdown::on_terminate().context("setting up signal handling")?;
    let store = open_store(settings).await?;
    let request = IngestRequest {
        source: args.source.clone(),
        file: args.file.clone(),
        stop,
    };
    let progress = TerminalProgress::new();
    let report = pipeline::ingest(settings, &store, clock, &request, &progress).await;
    store.close().await;
    let report = match report {
        Err(e) if e.is::<pipeline::Stopped>() => {
            progress.file_done();
            eprintln!("{INGEST_STOPPED}");
            return Ok(0);
        }
        other => other?,
    };
    match args.format {
        OutputFormat::Json => println!(
            "{}",
            serde_json::to_string_pretty(&report).context("writing the report")?
        ),
        OutputFormat::Table => print_report(&report),
    }
    Ok(if report.fetch_failed() {
        EXIT_FAILED
    } else {
        0
    })
}

/// Prints what an ingest run did, one line per file, then the totals.
pub fn print_report(report: &IngestReport) {
    for f in &report.files {
        match f {
            FileOutcome::Ingested {
                source,
                file,
                counts,
                ..
            } => println!(
                "ingested  {source:<22} {file}: {} rows, {} stored, {} quarantined",
                counts.rows_read, counts.records, counts.quarantined
            ),
            FileOutcome::Rejected {
                source,
                file,
                reason,
                moved_to,
                ..
            } => {
                println!("REJECTED  {source:<22} {file}: {reason}");
                if let Some(p) = moved_to {
                    println!("          the file is now {}", p.display());
                }
            }
            FileOutcome::Duplicate { source, file } => {
                println!("unchanged {source:<22} {file}: ingested before, nothing to do")
            }
            FileOutcome::NotModified { source } => {
                println!("unchanged {source:<22} not modified since the last fetch")
            }
            FileOutcome::FetchFailed { source, error } => {
                println!("FAILED    {source:<22} {error}")
            }
            FileOutcome::Unsettled {
                source,
                files,
                settle_secs,
            } => println!(
                "waiting   {source:<22} {files} file(s) modified in the last {settle_secs} s, probably still being written: left for the next run"
            ),
            FileOutcome::Refused {
                source,
                file,
                reason,
                moved_to,
            } => {
                println!("REFUSED   {source:<22} {file}: {reason}");
                if let Some(p) = moved_to {
                    println!("          the file is now {}", p.display());
                }
            }
            FileOutcome::Changed {
                source, file, reason, ..
            } => println!("CHANGED   {source:<22} {file}: {reason}"),
        }
    }
    let (files, records, quarantined, rejected) = report.totals();
    println!(
        "{files} file(s) ingested: {records} rows stored, {quarantined} quarantined; {rejected} file(s) rejected"
    );
    let held = report.held_back();
    if held != pipeline::HeldBack::default() {
        println!(
            "held back: {} file(s) still being written, {} changed while read (left in the inbox), {} inbox entr(ies) refused",
            held.unsettled, held.changed, held.refused
        );
    }
}

/// `kinlink run`: signals first (so a SIGTERM during migrations is not lost), then
/// the app, then run it until SIGTERM/SIGINT.
async fn daemon_command(settings: Settings, clock: Clock) -> Result<u8, Failure> {
    let shutdown = crate::shutdown::on_terminate().context("setting up signal handling")?;
    let hangups = crate::shutdown::Hangups::listen().context("setting up signal handling")?;
    let app = build(settings, clock).await?;
    app.run_until_stopped(shutdown, Some(hangups)).await?;
    Ok(0)
}

async fn run_once_command(
    settings: Settings,
    clock: Clock,
    format: OutputFormat,
) -> Result<u8, Failure> {
    let stop = crate::shutdown::on_terminate().context("setting up signal handling")?;
    let store = open_store(&settings).await?;
    let results = run_once(settings, &store, clock, stop).await;
    store.close().await;
    match format {
        OutputFormat::Json => println!(
            "{}",
            serde_json::to_string_pretty(&json!({ "stages": results }))
                .context("writing the report")?
        ),
        OutputFormat::Table => {
            for r in &results {
                println!("{:<9} {:<12} {}", r.step, r.outcome, r.detail);
            }
        }
    }
    if results.iter().any(|r| r.outcome == "stopped") {
        eprintln!("{RUN_ONCE_STOPPED}");
    }
    Ok(if results.iter().any(|r| r.outcome == "failed") {
        EXIT_FAILED
    } else {
        0
    })
}

async fn status(settings: &Settings, clock: Clock, format: OutputFormat) -> Result<u8, Failure> {
    let store = open_store(settings).await?;
    let stats = store.source_stats().await;
    let alerts = store.alert_summary().await;
    let outbox = store.outbox_counts().await;
    let last_runs = store.last_runs().await;
    store.close().await;
    let stats = stats?;
    let alerts = alerts?;
    let outbox = outbox?;
    let last_runs = last_runs?;
    let now = clock.now();
    let sources = source_status(settings, &stats, clock);
    let jobs = job_status(settings, &last_runs, now);
    let doc = json!({
        "sources": sources,
        "jobs": jobs,
        "outbox": outbox,
        "alerts": alerts,
    });
    match format {
        OutputFormat::Json => println!(
            "{}",
            serde_json::to_string_pretty(&doc).context("writing status")?
        ),
        OutputFormat::Table => print_status(settings, &sources, &jobs, &alerts, &outbox),
    }
    Ok(0)
}

/// Each configured source's files, rows, last success and whether it has gone quiet.
fn source_status(
    settings: &Settings,
    stats: &[crate::store::SourceStats],
    clock: Clock,
) -> Vec<serde_json::Value> {
    settings
        .sources
        .iter()
        .map(|s| {
            let st = stats.iter().find(|x| x.name == s.name);
            json!({
                "name": s.name,
                "kind": s.kind.as_str(),
                "files_ingested": st.map_or(0, |x| x.files_ingested),
                "files_rejected": st.map_or(0, |x| x.files_rejected),
                "files_waiting": st.map_or(0, |x| x.files_waiting),
                "rows": st.map_or(0, |x| x.rows),
                "quarantined": st.map_or(0, |x| x.quarantined),
                "last_success_at": st.and_then(|x| x.last_success_at),
                "stale_after_hours": s.stale_after_hours,
                // A silent feed is the most dangerous failure: no file for longer
                // than the source's `stale_after_hours` (never a file counts too).
                "stale": s.stale_after_hours.is_some_and(|h| {
                    st.and_then(|x| x.last_success_at).is_none_or(|at| {
                        clock.now() - at > chrono::Duration::hours(i64::from(h))
                    })
                }),
            })
        })
        .collect()
}

/// Each job's schedule, last run and next run.
fn job_status(
    settings: &Settings,
    last_runs: &[crate::store::RunRow],
    now: chrono::DateTime<chrono::Utc>,
) -> Vec<serde_json::Value> {
    settings
        .jobs
        .iter()
        .map(|j| {
            let last = last_runs.iter().find(|r| r.job == j.name);
            let next = crate::scheduler::Schedule::parse(&j.schedule)
                .ok()
                .and_then(|s| crate::scheduler::next_run(&s, settings.timezone, now));
            json!({
                "name": j.name,
                "schedule": j.schedule,
                "steps": j.steps.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
                "catch_up": j.catch_up,
                "last_run": last.map(|r| json!({
                    "run_id": r.id,
                    "scheduled_for": r.scheduled_for,
                    "finished_at": r.finished_at,
                    "outcome": r.outcome.map_or("running", |o| o.as_str()),
                    "error": r.error,
                })),
                "next_run": next,
            })
        })
        .collect()
}

/// `status` as tables.
fn print_status(
    settings: &Settings,
    sources: &[serde_json::Value],
    jobs: &[serde_json::Value],
    alerts: &crate::store::AlertSummary,
    outbox: &crate::store::OutboxCounts,
) {
    println!(
        "{:<24} {:<11} {:>8} {:>8} {:>12} {:>11}  last success",
        "source", "kind", "files", "rejected", "rows", "quarantined"
    );
    for s in sources {
        println!(
            "{:<24} {:<11} {:>8} {:>8} {:>12} {:>11}  {}",
            s["name"].as_str().unwrap_or_default(),
            s["kind"].as_str().unwrap_or_default(),
            s["files_ingested"],
            s["files_rejected"],
            s["rows"],
            s["quarantined"],
            s["last_success_at"].as_str().unwrap_or("never"),
        );
        if s["stale"] == true {
            println!(
                "{:<24} STALE: nothing for more than {} hours",
                "", s["stale_after_hours"]
            );
        }
    }
    println!("\njobs:");
    let local = |v: &serde_json::Value| {
        v.as_str()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .map(|t| {
                t.with_timezone(&settings.timezone)
                    .format("%Y-%m-%d %H:%M %Z")
                    .to_string()
            })
    };
    for j in jobs {
        let steps: Vec<_> = j["steps"]
            .as_array()
            .map(|a| a.iter().filter_map(|s| s.as_str()).collect())
            .unwrap_or_default();
        let last = &j["last_run"];
        let last = match local(&last["scheduled_for"]) {
            Some(at) => format!("{at} {}", last["outcome"].as_str().unwrap_or("?")),
            None => "never".to_string(),
        };
        let next = local(&j["next_run"]).unwrap_or_else(|| "never".to_string());
        println!(
            "  {:<20} {:<18} last: {:<30} next: {:<22} {}",
            j["name"].as_str().unwrap_or_default(),
            j["schedule"].as_str().unwrap_or_default(),
            last,
            next,
            steps.join(" → ")
        );
    }
    println!(
        "\nalerts: {} new, {} sent, {} acknowledged, {} resolved; {} open unrouted; {} deliveries waiting for mail",
        alerts.new,
        alerts.sent,
        alerts.acknowledged,
        alerts.resolved,
        alerts.unrouted_open,
        alerts.pending_deliveries
    );
    if alerts.undelivered_open > 0 {
        println!(
            "UNDELIVERED: {} open alert(s) refused for good at an address (`kinlink alerts list` names it): correct the address in the config and the next `kinlink send` sends them to the new one, or `kinlink outbox retry ID` once the fault at that address is fixed",
            alerts.undelivered_open
        );
    }
    println!(
        "outbox: {} queued, {} sending, {} sent, {} failed",
        outbox.queued, outbox.sending, outbox.sent, outbox.failed
    );
}

async fn purge(
    settings: &Settings,
    clock: Clock,
    dry_run: bool,
    format: OutputFormat,
) -> Result<u8, Failure> {
    let store = open_store(settings).await?;
    let report = pipeline::purge(settings, &store, clock, RunMode::from_dry_run(dry_run)).await;
    store.close().await;
    let r = report?;
    if format == OutputFormat::Json {
        println!(
            "{}",
            serde_json::to_string_pretty(&r).context("writing the report")?
        );
        return Ok(0);
    }
    let c = &r.counts;
    let verb = if dry_run { "would purge" } else { "purged" };
    let ret = &settings.retention;
    println!("{verb}:");
    println!(
        "  {:>9} raw feed copies and {} quarantined rows (kept {} days)",
        c.raw_files, c.quarantined_rows, ret.raw_files_days
    );
    println!(
        "  {:>9} attendance marks, {} school days (kept {} days)",
        c.attendance_marks, c.school_days, ret.attendance_days
    );
    println!(
        "  {:>9} people in police notifications (kept {} days)",
        c.police_rows, ret.police_da_days
    );
    println!(
        "  {:>9} housing notices (kept {} days)",
        c.housing_notices, ret.housing_days
    );
    println!(
        "  {:>9} rows of closed cases (kept {} days after closing)",
        c.case_rows, ret.cases_days
    );
    println!(
        "  {:>9} person mentions with no record left (their details go with them)",
        c.mentions
    );
    if !dry_run {
        println!(
            "  files deleted: {} ({} already gone)",
            r.files_deleted, r.files_missing
        );
    }
    println!("alerts, deliveries and the audit trail are kept (they hold ids only)");
    Ok(0)
}

async fn demo(
    args: &DemoArgs,
    as_of: Option<chrono::NaiveDate>,
    clock: Clock,
) -> Result<u8, Failure> {
    let as_of = as_of.unwrap_or_else(|| clock.today(chrono_tz::Europe::London));
    println!(
        "Generating a fictional borough of about {} families (seed {}) in {} …",
        args.families,
        args.seed,
        args.dir.display()
    );
    let options = crate::demo::DemoOptions {
        families: args.families,
        seed: args.seed,
        as_of,
        out_dir: args.dir.clone(),
    };
    let summary = tokio::task::spawn_blocking(move || crate::demo::generate(&options))
        .await
        .context("the generator stopped unexpectedly")?
        .with_context(|| format!("writing the demo borough into {}", args.dir.display()))?;
    println!(
        "  {} persons in {} families; {} files:",
        summary.persons,
        summary.families,
        summary.files.len()
    );
    for f in &summary.files {
        println!(
            "    {:<22} {} ({} rows)",
            f.source,
            f.path.strip_prefix(&args.dir).unwrap_or(&f.path).display(),
            f.rows
        );
    }
    let config_path = args.dir.join("kinlink.toml");
    let settings = load_settings(&config_path)?;
    let store = open_store(&settings).await?;
    println!(
        "\nIngesting every source into {} …",
        settings.state_dir.display()
    );
    let progress = TerminalProgress::new();
    let report = pipeline::ingest(
        &settings,
        &store,
        clock,
        &IngestRequest::default(),
        &progress,
    )
    .await;
    let counts = store.table_counts().await;
    let report = match report {
        Ok(r) => r,
        Err(e) => {
            store.close().await;
            return Err(e.into());
        }
    };
    print_report(&report);
    println!("\nLinking person mentions into persons, households and families …");
    let linked = pipeline::link(&settings, &store, clock, pipeline::LinkScope::Incremental).await;
    let linked = match linked {
        Ok(l) => l,
        Err(e) => {
            store.close().await;
            return Err(e.into());
        }
    };
    print_link_report(&linked);
    println!("\nEvaluating the rules for {as_of} …");
    let evaluated = pipeline::evaluate(&settings, &store, clock).await;
    let evaluated = match evaluated {
        Ok(e) => e,
        Err(e) => {
            store.close().await;
            return Err(e.into());
        }
    };
    alerts::print_evaluate_report(&evaluated);
    println!("\nSending the digests (and the managers' weekly digest) …");
    let sent = match crate::mail::Mailer::new(&settings.mail) {
        Ok(mailer) => {
            let options = crate::mail::SendOptions {
                manager_digest: true,
                ..Default::default()
            };
            let report = crate::mail::send_step(&mailer, &store, clock, &settings, &options)
                .await
                .context("sending the digests");
            report.map(|r| (r, mailer.describe()))
        }
        Err(e) => Err(anyhow::anyhow!("[mail]: {e}")),
    };
    store.close().await;
    let (sent, via) = sent?;
    let written = sent.drain.as_ref().map_or(0, |d| d.sent.len());
    println!(
        "  {} digest(s) for {} deliveries, {} managers' digest(s), {} admin notice(s); {written} email(s) written as {via}",
        sent.digests.digests,
        sent.digests.deliveries,
        sent.manager_digests.digests,
        usize::from(sent.admin_notices.stored),
    );
    let counts = counts?;
    println!(
        "\nStore: {} person mentions, {} attendance marks, {} people in DA notifications, {} housing notices, {} case members, {} quarantined rows",
        counts.mentions,
        counts.attendance_marks,
        counts.da_persons,
        counts.housing_notices,
        counts.case_members,
        counts.quarantined
    );
    println!(
        "\nPersons: {}, families: {}, review queue: {} pending.",
        linked.counts.persons, linked.counts.families, linked.counts.review_pending
    );
    println!(
        "\nNext: `kinlink --config {0} status` shows the sources; \
         `kinlink --config {0} alerts list` the alerts and who was told; \
         `kinlink --config {0} outbox list` the emails; \
         `kinlink --config {0} persons export --format csv` lists every person.",
        config_path.display()
    );
    info!(files = report.files.len(), "Demo finished");
    Ok(if report.fetch_failed() {
        EXIT_FAILED
    } else {
        0
    })
}

/// A progress bar on a terminal; plain log lines every million rows otherwise.
pub struct TerminalProgress {
    bar: Option<ProgressBar>,
    current: Mutex<Option<ProgressBar>>,
    rows: AtomicU64,
}

impl TerminalProgress {
    /// Chooses the bar or the log lines by whether stderr is a terminal.
    pub fn new() -> TerminalProgress {
        TerminalProgress {
            bar: std::io::stderr().is_terminal().then(ProgressBar::hidden),
            current: Mutex::new(None),
            rows: AtomicU64::new(0),
        }
    }
}

impl Default for TerminalProgress {
    fn default() -> Self {
        Self::new()
    }
}

impl Progress for TerminalProgress {
    fn file_started(&self, source: &str, file_name: &str, _bytes: u64) {
        self.rows.store(0, Ordering::Relaxed);
        if self.bar.is_some() {
            let bar = ProgressBar::new_spinner();
            bar.set_style(
                ProgressStyle::with_template(
                    "{spinner} {prefix} {msg} [{elapsed}] {human_pos} rows ({per_sec})",
                )
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            bar.set_prefix(source.to_string());
            bar.set_message(file_name.to_string());
            bar.enable_steady_tick(std::time::Duration::from_millis(120));
            if let Ok(mut c) = self.current.lock() {
                *c = Some(bar);
            }
        }
    }

    fn rows(&self, rows: u64) {
        let before = self.rows.fetch_add(rows, Ordering::Relaxed);
        if let Ok(c) = self.current.lock() {
            if let Some(bar) = c.as_ref() {
                bar.inc(rows);
                return;
            }
        }
        if (before + rows) / 1_000_000 > before / 1_000_000 {
            info!(rows = before + rows, "Rows read");
        }
    }

    fn file_done(&self) {
        if let Ok(mut c) = self.current.lock() {
            if let Some(bar) = c.take() {
                bar.finish_and_clear();
            }
        }
    }
}

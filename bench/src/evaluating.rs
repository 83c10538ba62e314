//! `kinlink-bench evaluate`: the rules over a large borough: its feeds
//! (`borough`) ingested and linked by the real pipeline into SQLite (and a fresh
//! PostgreSQL database when a URL is given), then timed: a first full
//! `pipeline::evaluate` on the last school day, a second one on the same data (which
//! must raise nothing), and a nightly run — one more school day of marks and a
//! day's notifications, notices and case changes ingested and linked, evaluated on
//! the next day.
//!
//! Each step runs in a child process of its own (`--phase`), so that its peak
//! memory (VmHWM) is its own; the store carries the state from one to the next.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context};
use chrono::{NaiveDate, TimeZone, Utc};
use serde::{Deserialize, Serialize};

use kinlink::clock::Clock;
use kinlink::config::Settings;
use kinlink::pipeline::{self, FileOutcome, IngestRequest, NoProgress};
use kinlink::store::Store;
use kinlink_test_support::{drop_postgres, fresh_postgres, with_database};

use crate::borough::{self, Borough, BoroughSize};
use crate::cli::BenchEvaluateArgs;
use crate::peak_rss_kib;

/// The PostgreSQL database the benchmark creates on the server and drops after.
const PG_DATABASE: &str = "kinlink_bench_evaluate";

/// The figures of one step on one store.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct StepFigures {
    /// `sqlite` or `postgres`.
    pub store: String,
    /// `setup`, `first`, `second` or `nightly`.
    pub step: String,
    pub as_of: Option<NaiveDate>,
    /// Ingest of the step's files (setup, nightly).
    pub ingest_s: Option<f64>,
    pub ingested_rows: Option<i64>,
    /// `pipeline::link` wall time (setup: full; nightly: incremental).
    pub link_s: Option<f64>,
    pub linked_mentions: Option<i64>,
    pub changed_mentions: Option<usize>,
    pub persons: Option<i64>,
    pub families: Option<i64>,
    /// `pipeline::evaluate` wall time and its parts.
    pub evaluate_s: Option<f64>,
    pub read_s: f64,
    pub rules_s: f64,
    pub write_s: f64,
    pub findings: usize,
    pub raised: usize,
    pub escalated: usize,
    pub resolved: usize,
    pub deliveries: usize,
    pub unrouted: usize,
    /// Alerts raised per rule.
    pub raised_by_rule: BTreeMap<String, usize>,
    pub peak_rss_mib: f64,
}

/// Everything measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EvaluateBench {
    pub borough: Borough,
    pub steps: Vec<StepFigures>,
}

/// Runs the benchmark (or, with `--phase`, one step of it).
pub async fn run(args: &BenchEvaluateArgs) -> anyhow::Result<u8> {
    let temp;
    let dir = match &args.dir {
        Some(d) => d.clone(),
        None => {
            temp = tempfile::tempdir().context("creating a temporary folder")?;
            temp.path().to_path_buf()
        }
    };
    if let Some(phase) = &args.phase {
        let figures = step(phase, &dir, args.postgres.as_deref()).await?;
        println!("{}", serde_json::to_string(&figures)?);
        return Ok(0);
    }
    std::fs::create_dir_all(&dir)?;
    let size = BoroughSize {
        mentions: args.mentions,
        marks: args.marks,
        notifications: args.notifications,
        notices: args.notices,
        case_rows: args.cases,
        schools: args.schools.max(1),
        days: args.days.max(1),
        seed: args.seed,
        as_of: args.last_day,
    };
    if !args.json {
        eprintln!("writing the borough's feeds in {} …", dir.display());
    }
    let borough = {
        let dir = dir.clone();
        tokio::task::spawn_blocking(move || borough::build(&size, &dir))
            .await?
            .context("writing the bench borough")?
    };
    std::fs::write(dir.join("borough.json"), serde_json::to_string(&borough)?)?;
    if !args.json {
        let c = &borough.counts;
        eprintln!(
            "  {} mentions, {} marks, {} notifications, {} notices, {} case rows in {:.1} s",
            c.mentions, c.marks, c.notifications, c.notices, c.case_rows, borough.generate_s
        );
    }
    if let Some(other) = args
        .stores
        .iter()
        .find(|s| !matches!(s.as_str(), "sqlite" | "postgres"))
    {
        bail!("unknown store {other:?} in --stores: expected sqlite or postgres");
    }
    let wants = |s: &str| args.stores.iter().any(|x| x == s);
    let mut stores = Vec::new();
    if wants("sqlite") {
        stores.push("sqlite");
    }
    if wants("postgres") && args.postgres.is_some() {
        stores.push("postgres");
    } else if wants("postgres") && !args.json {
        eprintln!("  (PostgreSQL skipped: pass --postgres URL or set KINLINK_BENCH_POSTGRES)");
    }
    let exe = std::env::current_exe().context("finding the kinlink-bench binary")?;
    let mut steps = Vec::new();
    for store in stores {
        for name in ["setup", "first", "second", "nightly"] {
            let phase = format!("{name}-{store}");
            if !args.json {
                eprintln!("  {phase} …");
            }
            let mut cmd = std::process::Command::new(&exe);
            cmd.args(["evaluate", "--phase", &phase, "--dir"]).arg(&dir);
            if let Some(url) = &args.postgres {
                cmd.env("KINLINK_BENCH_POSTGRES", url);
            }
            let out = cmd
                .output()
                .with_context(|| format!("running phase {phase}"))?;
            if !out.status.success() {
                bail!(
                    "phase {phase} failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            let text = String::from_utf8_lossy(&out.stdout);
            let line = text.lines().last().unwrap_or("");
            let figures: StepFigures = serde_json::from_str(line.trim())
                .with_context(|| format!("reading the figures of phase {phase}"))?;
            if !args.json {
                // As each step ends, so that a long run's figures are never lost.
                eprintln!("    {}", line.trim());
            }
            steps.push(figures);
        }
    }
    if let Some(url) = &args.postgres {
        drop_postgres(url, PG_DATABASE).await?;
    }
    let bench = EvaluateBench { borough, steps };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&bench)?);
    } else {
        print!("{}", markdown(&bench));
    }
    Ok(0)
}

/// The bench borough's settings, with the state of `store` in a folder of its own.
fn settings(dir: &Path, borough: &Borough, store: &str) -> anyhow::Result<Settings> {
    let text = std::fs::read_to_string(&borough.config)?;
    let mut settings = kinlink::config::load_str(&text, &borough.config)
        .map_err(|p| anyhow::anyhow!("the bench config does not load: {p:?}"))?;
    settings.state_dir = dir.join(format!("state-{store}"));
    std::fs::create_dir_all(&settings.state_dir)?;
    Ok(settings)
}

/// Evening of `day`: the nightly job's time, "today" in Europe/London.
fn clock_on(day: NaiveDate) -> Clock {
    let at = day.and_hms_opt(19, 0, 0).unwrap_or_default();
    Clock::fixed(Utc.from_utc_datetime(&at))
}

async fn open(dir: &Path, store: &str, fresh: bool, url: Option<&str>) -> anyhow::Result<Store> {
    match store {
        "sqlite" => {
            let db: PathBuf = dir.join("kinlink-bench.db");
            if fresh {
                for suffix in ["", "-wal", "-shm"] {
                    let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
                }
            }
            Ok(Store::open_sqlite(&db).await?)
        }
        "postgres" => {
            let url = url.context("no PostgreSQL URL")?;
            if fresh {
                fresh_postgres(url, PG_DATABASE).await
            } else {
                Ok(Store::open_postgres(&with_database(url, PG_DATABASE)).await?)
            }
        }
        other => bail!("unknown store {other:?}"),
    }
}

/// Ingests `files` through the pipeline; returns (seconds, rows stored).
async fn ingest_files(
    settings: &Settings,
    store: &Store,
    clock: Clock,
    files: &[(String, PathBuf)],
) -> anyhow::Result<(f64, i64)> {
    let t = Instant::now();
    let mut rows = 0;
    for (source, file) in files {
        let request = IngestRequest {
            source: Some(source.clone()),
            file: Some(file.clone()),
            ..IngestRequest::default()
        };
        let report = pipeline::ingest(settings, store, clock, &request, &NoProgress).await?;
        for f in &report.files {
            match f {
                FileOutcome::Ingested { counts, .. } => rows += counts.records,
                other => bail!("a bench file was not ingested: {other:?}"),
            }
        }
    }
    Ok((t.elapsed().as_secs_f64(), rows))
}

/// One step on one store, e.g. `first-sqlite`.
async fn step(phase: &str, dir: &Path, url: Option<&str>) -> anyhow::Result<StepFigures> {
    let Some((name, store_kind)) = phase.split_once('-') else {
        bail!("unknown phase {phase:?}");
    };
    let borough: Borough =
        serde_json::from_str(&std::fs::read_to_string(dir.join("borough.json"))?)
            .context("reading borough.json (run without --phase first)")?;
    let settings = settings(dir, &borough, store_kind)?;
    let store_dir = dir.join(format!("state-{store_kind}"));
    let store = open(&store_dir, store_kind, name == "setup", url).await?;
    let mut f = StepFigures {
        store: store_kind.to_string(),
        step: name.to_string(),
        ..StepFigures::default()
    };
    let day = match name {
        "nightly" => borough.next_day,
        _ => borough.as_of,
    };
    let clock = clock_on(day);
    if matches!(name, "setup" | "nightly") {
        let files = if name == "setup" {
            &borough.base
        } else {
            &borough.nightly
        };
        let (s, rows) = ingest_files(&settings, &store, clock, files).await?;
        f.ingest_s = Some(s);
        f.ingested_rows = Some(rows);
        let t = Instant::now();
        let report =
            pipeline::link(&settings, &store, clock, pipeline::LinkScope::Incremental).await?;
        f.link_s = Some(t.elapsed().as_secs_f64());
        f.linked_mentions = Some(report.counts.mentions);
        f.changed_mentions = Some(report.changed_mentions);
        f.persons = Some(report.counts.persons);
        f.families = Some(report.counts.families);
    }
    if name != "setup" {
        let t = Instant::now();
        let report = pipeline::evaluate(&settings, &store, clock).await?;
        f.evaluate_s = Some(t.elapsed().as_secs_f64());
        f.as_of = Some(report.as_of);
        f.read_s = report.read_s;
        f.rules_s = report.rules_s;
        f.write_s = report.write_s;
        f.findings = report.findings;
        f.raised = report.counts.raised;
        f.escalated = report.counts.escalated;
        f.resolved = report.counts.resolved;
        f.deliveries = report.counts.deliveries;
        f.unrouted = report.counts.unrouted;
        for (rule, _, n) in &report.raised_by {
            *f.raised_by_rule.entry(rule.clone()).or_default() += n;
        }
    }
    store.close().await;
    f.peak_rss_mib = peak_rss_kib() as f64 / 1024.0;
    Ok(f)
}

/// The rules, in the order of docs/design.md.
const RULES: &[&str] = &[
    "da_notification",
    "attendance_drop",
    "eviction_risk",
    "emerging_risk",
    "closed_too_early",
];

/// The figures as markdown tables, with the evaluate targets.
pub fn markdown(b: &EvaluateBench) -> String {
    let c = &b.borough.counts;
    let n = &b.borough.nightly_counts;
    let mut out = format!(
        "\nBorough: {} mentions ({} pupils with marks this term, {} former pupils), {} attendance \
         marks at {} schools over {} school days to {}, {} DA notifications ({} person rows), {} housing \
         notices, {} cases ({} case rows). Nightly: {} marks ({} next), {} notifications, {} \
         notices, {} case changes ({} rows). Generated in {:.1} s.\n",
        thousands(c.mentions),
        thousands(c.current_pupils),
        thousands(c.former_pupils),
        thousands(c.marks),
        b.borough.schools,
        b.borough.days,
        b.borough.as_of,
        thousands(c.notifications),
        thousands(c.da_rows),
        thousands(c.notices),
        thousands(c.cases),
        thousands(c.case_rows),
        thousands(n.marks),
        b.borough.next_day,
        thousands(n.notifications),
        thousands(n.notices),
        thousands(n.cases),
        thousands(n.case_rows),
        b.borough.generate_s,
    );
    out.push_str("\n### Setup (not the measured figure)\n\n");
    out.push_str(
        "| store | ingest s | rows | link s | mentions | persons | families | peak MiB |\n",
    );
    out.push_str("|---|---:|---:|---:|---:|---:|---:|---:|\n");
    for f in b.steps.iter().filter(|f| f.step == "setup") {
        out.push_str(&format!(
            "| {} | {:.1} | {} | {:.1} | {} | {} | {} | {:.0} |\n",
            f.store,
            f.ingest_s.unwrap_or_default(),
            thousands(f.ingested_rows.unwrap_or_default() as usize),
            f.link_s.unwrap_or_default(),
            thousands(f.linked_mentions.unwrap_or_default() as usize),
            thousands(f.persons.unwrap_or_default() as usize),
            thousands(f.families.unwrap_or_default() as usize),
            f.peak_rss_mib,
        ));
    }
    out.push_str("\n### Evaluate\n\n");
    out.push_str(
        "| store | run | as of | evaluate s | read s | rules s | write s | findings | raised \
         | escalated | resolved | deliveries | peak MiB | nightly ingest s | nightly link s |\n",
    );
    out.push_str("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for f in b.steps.iter().filter(|f| f.step != "setup") {
        let opt = |v: Option<f64>| v.map_or("—".to_string(), |v| format!("{v:.2}"));
        out.push_str(&format!(
            "| {} | {} | {} | **{:.2}** | {:.2} | {:.2} | {:.2} | {} | {} | {} | {} | {} | {:.0} | {} | {} |\n",
            f.store,
            f.step,
            f.as_of.map(|d| d.to_string()).unwrap_or_default(),
            f.evaluate_s.unwrap_or_default(),
            f.read_s,
            f.rules_s,
            f.write_s,
            thousands(f.findings),
            thousands(f.raised),
            thousands(f.escalated),
            thousands(f.resolved),
            thousands(f.deliveries),
            f.peak_rss_mib,
            opt(f.ingest_s),
            opt(f.link_s),
        ));
    }
    out.push_str("\n### Alerts raised per rule\n\n| store | run |");
    for r in RULES {
        out.push_str(&format!(" {r} |"));
    }
    out.push_str("\n|---|---|");
    out.push_str(&"---:|".repeat(RULES.len()));
    out.push('\n');
    for f in b.steps.iter().filter(|f| f.step != "setup") {
        out.push_str(&format!("| {} | {} |", f.store, f.step));
        for r in RULES {
            out.push_str(&format!(
                " {} |",
                thousands(f.raised_by_rule.get(*r).copied().unwrap_or(0))
            ));
        }
        out.push('\n');
    }
    out.push_str(
        "\nTargets: all rules over 1,000,000 mentions, 20,000,000 marks, 20,000 \
         notifications, 5,000 notices and 100,000 case rows in ≤ 30 s on SQLite (PostgreSQL \
         reported); the nightly evaluation of one day of new data in ≤ 5 s. A second run on \
         the same data must raise nothing.\n",
    );
    out
}

fn thousands(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, ch) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_small_borough_alerts_once_and_then_nightly() {
        let dir = tempfile::tempdir().unwrap();
        let size = BoroughSize {
            mentions: 6_000,
            marks: 300_000,
            notifications: 200,
            notices: 60,
            case_rows: 900,
            schools: 12,
            days: 100,
            seed: 5,
            as_of: NaiveDate::from_ymd_opt(2025, 3, 14).unwrap(),
        };
        let borough = borough::build(&size, dir.path()).unwrap();
        std::fs::write(
            dir.path().join("borough.json"),
            serde_json::to_string(&borough).unwrap(),
        )
        .unwrap();
        let mut steps = Vec::new();
        for name in ["setup", "first", "second", "nightly"] {
            steps.push(
                step(&format!("{name}-sqlite"), dir.path(), None)
                    .await
                    .unwrap(),
            );
        }
        let setup = &steps[0];
        assert_eq!(setup.linked_mentions, Some(6_000));
        assert!(setup.ingested_rows.unwrap() > 300_000);
        let first = &steps[1];
        assert_eq!(first.as_of, Some(size.as_of));
        assert!(first.raised > 0 && first.deliveries >= first.raised);
        for rule in ["da_notification", "attendance_drop", "eviction_risk"] {
            assert!(
                first.raised_by_rule.get(rule).copied().unwrap_or(0) > 0,
                "{rule}: {:?}",
                first.raised_by_rule
            );
        }
        // The same data on the same day: nothing new.
        let second = &steps[2];
        assert_eq!(
            (second.raised, second.escalated, second.deliveries),
            (0, 0, 0)
        );
        assert_eq!(second.findings, first.findings);
        let nightly = &steps[3];
        assert_eq!(nightly.as_of, Some(borough.next_day));
        assert_eq!(
            nightly.ingested_rows,
            Some(
                (borough.nightly_counts.marks
                    + borough.nightly_counts.da_rows
                    + borough.nightly_counts.notices
                    + borough.nightly_counts.case_rows) as i64
            )
        );
        assert!(nightly.changed_mentions.unwrap() < 6_000);
        let table = markdown(&EvaluateBench { borough, steps });
        assert!(
            table.contains("| sqlite | second | 2025-03-14 |"),
            "{table}"
        );
    }
}

//! `kinlink bench ingest`: throughput of the attendance ingest path, measured the
//! way the nightly job runs it; `kinlink bench link` (in `linking`): identity
//! resolution at scale against ground truth; `kinlink bench mail` (in `mail`): digests
//! composed and sent through the file transport and a loopback SMTP server. Each phase runs in a child process of
//! its own so that its peak memory (VmHWM) is its own, not the sum of earlier phases.
//! `kinlink bench evaluate` (in `evaluating`, with its borough in `borough`): the
//! rules over a large borough, first run, re-run and nightly.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};

use crate::cli::{BenchCommand, BenchIngestArgs};
use crate::clock::Clock;
use crate::config::{DirTransport, SourceSettings, TextEncoding, Transport};
use crate::domain::{FeedKind, Format};
use crate::pipeline::{self, FileOutcome, NoProgress};
use crate::store::{NewFile, Store};

mod borough;
mod evaluating;
mod linking;
mod mail;

/// One phase's figures.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PhaseResult {
    pub phase: String,
    pub rows: u64,
    pub seconds: f64,
    pub rows_per_sec: f64,
    pub peak_rss_mib: f64,
}

/// Runs a bench command.
pub async fn run(cmd: &BenchCommand) -> anyhow::Result<u8> {
    match cmd {
        BenchCommand::Ingest(args) => ingest(args).await,
        BenchCommand::Link(args) => linking::run(args).await,
        BenchCommand::Evaluate(args) => evaluating::run(args).await,
        BenchCommand::Mail(args) => mail::run(args).await,
    }
}

async fn ingest(args: &BenchIngestArgs) -> anyhow::Result<u8> {
    let temp;
    let dir = match &args.dir {
        Some(d) => d.clone(),
        None => {
            temp = tempfile::tempdir().context("creating a temporary folder")?;
            temp.path().to_path_buf()
        }
    };
    if let Some(phase) = &args.phase {
        let result = run_phase(phase, &dir, args).await?;
        println!("{}", serde_json::to_string(&result)?);
        return Ok(0);
    }
    std::fs::create_dir_all(&dir)?;
    println!(
        "Generating {} CSV and {} XLSX attendance marks in {} …",
        args.csv_rows,
        args.xlsx_rows,
        dir.display()
    );
    let t = Instant::now();
    let csv_columns =
        crate::demo::write_attendance(&dir.join("marks.csv"), Format::Csv, args.csv_rows, 7)?;
    let xlsx_columns =
        crate::demo::write_attendance(&dir.join("marks.xlsx"), Format::Xlsx, args.xlsx_rows, 7)?;
    std::fs::write(
        dir.join("columns.json"),
        serde_json::to_string(&(csv_columns, xlsx_columns))?,
    )?;
    println!("  generated in {:.1} s", t.elapsed().as_secs_f64());

    let mut phases = vec!["csv-parse", "csv-sqlite", "xlsx-parse", "xlsx-sqlite"];
    if args.postgres.is_some() {
        phases.extend(["csv-postgres", "xlsx-postgres"]);
    } else {
        println!(
            "  (PostgreSQL phases skipped: pass --postgres URL or set KINLINK_BENCH_POSTGRES)"
        );
    }
    let exe = std::env::current_exe().context("finding the kinlink binary")?;
    let mut results = Vec::new();
    for phase in phases {
        let mut cmd = std::process::Command::new(&exe);
        cmd.args(["bench", "ingest", "--phase", phase, "--dir"])
            .arg(&dir);
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
        let line = String::from_utf8_lossy(&out.stdout);
        let result: PhaseResult = serde_json::from_str(line.trim())
            .with_context(|| format!("reading the figures of phase {phase}"))?;
        println!(
            "  {:<14} {:>9} rows in {:>6.2} s = {:>9.0} rows/s, peak memory {:>6.1} MiB",
            result.phase, result.rows, result.seconds, result.rows_per_sec, result.peak_rss_mib
        );
        results.push(result);
    }
    let rate = |name: &str| {
        results
            .iter()
            .find(|r| r.phase == name)
            .map(|r| r.rows_per_sec)
    };
    if let (Some(store), Some(parse)) = (rate("csv-sqlite"), rate("csv-parse")) {
        println!(
            "  CSV parse+store on SQLite is {:.0}% of the parse-only rate",
            store / parse * 100.0
        );
    }
    Ok(0)
}

fn bench_source(format: Format, columns: BTreeMap<String, String>, dir: &Path) -> SourceSettings {
    SourceSettings {
        name: format!("bench-{}", format.as_str()),
        kind: FeedKind::Attendance,
        format,
        // The bench writes its files whole before ingesting them.
        transport: Transport::Dir(DirTransport {
            settle_secs: 0,
            ..DirTransport::new(dir.join("inbox"))
        }),
        max_bad_rows: 0.05,
        sheet: None,
        delimiter: b',',
        encoding: TextEncoding::Utf8,
        records_path: None,
        next_path: None,
        stale_after_hours: None,
        columns,
        limits: Default::default(),
    }
}

async fn run_phase(phase: &str, dir: &Path, args: &BenchIngestArgs) -> anyhow::Result<PhaseResult> {
    let (csv_columns, xlsx_columns): (BTreeMap<String, String>, BTreeMap<String, String>) =
        serde_json::from_str(&std::fs::read_to_string(dir.join("columns.json"))?)?;
    let (format, columns, file) = if phase.starts_with("csv") {
        (Format::Csv, csv_columns, dir.join("marks.csv"))
    } else {
        (Format::Xlsx, xlsx_columns, dir.join("marks.xlsx"))
    };
    let source = bench_source(format, columns, dir);
    let start = Instant::now();
    let rows = if phase.ends_with("-parse") {
        let source = source.clone();
        tokio::task::spawn_blocking(move || -> anyhow::Result<u64> {
            let mut reader = crate::ingest::open(&source, &file, &file.display().to_string())?;
            let mut rows = 0u64;
            loop {
                let batch = reader.next_batch(4096)?;
                if batch.is_empty() {
                    return Ok(rows);
                }
                rows += batch.len() as u64;
            }
        })
        .await??
    } else {
        let store = if phase.ends_with("-postgres") {
            let url = args.postgres.clone().context("no PostgreSQL URL")?;
            fresh_postgres(&url, "kinlink_bench").await?
        } else {
            let db: PathBuf = dir.join(format!("{phase}.db"));
            for suffix in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
            }
            Store::open_sqlite(&db).await?
        };
        let sha = format!(
            "bench-{phase}-{}",
            Clock::system()
                .now()
                .timestamp_nanos_opt()
                .unwrap_or_default()
        );
        let file_id = store
            .record_fetched(&NewFile {
                source: &source.name,
                kind: source.kind,
                original_name: "marks",
                raw_path: &file,
                origin: "bench",
                sha256: &sha,
                size: std::fs::metadata(&file)?.len(),
                fetched_at: Clock::system().now(),
            })
            .await?;
        let outcome = pipeline::store_file(
            &store,
            &source,
            file_id,
            "marks",
            &file,
            Clock::system(),
            &NoProgress,
        )
        .await?;
        store.close().await;
        match outcome {
            FileOutcome::Ingested { counts, .. } => counts.rows_read as u64,
            other => bail!("the benchmark file was not ingested: {other:?}"),
        }
    };
    let seconds = start.elapsed().as_secs_f64();
    Ok(PhaseResult {
        phase: phase.to_string(),
        rows,
        seconds,
        rows_per_sec: rows as f64 / seconds.max(1e-9),
        peak_rss_mib: peak_rss_kib() as f64 / 1024.0,
    })
}

/// Drops and re-creates a database on the server at `url` and opens it.
#[cfg(feature = "postgres")]
pub async fn fresh_postgres(url: &str, name: &str) -> anyhow::Result<Store> {
    use sqlx::Connection;
    let mut admin = sqlx::PgConnection::connect(url)
        .await
        .context("connecting to PostgreSQL")?;
    let drop = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
    sqlx::query(&drop).execute(&mut admin).await?;
    let create = format!("CREATE DATABASE {name}");
    sqlx::query(&create).execute(&mut admin).await?;
    admin.close().await?;
    let db_url = with_database(url, name);
    Ok(Store::open_postgres(&db_url).await?)
}

/// Without PostgreSQL support there is no PostgreSQL phase.
#[cfg(not(feature = "postgres"))]
pub async fn fresh_postgres(_url: &str, _name: &str) -> anyhow::Result<Store> {
    bail!("built without the postgres feature")
}

/// The same server URL with another database name.
pub fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let after_scheme = base.find("://").map_or(0, |i| i + 3);
    let path_start = base[after_scheme..].find('/').map(|i| i + after_scheme);
    let mut out = match path_start {
        Some(i) => format!("{}/{name}", &base[..i]),
        None => format!("{base}/{name}"),
    };
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

/// Peak resident memory of this process, from /proc (0 where there is none).
pub fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn database_name_is_replaced() {
        assert_eq!(
            with_database("postgres://127.0.0.1:5432/test", "x"),
            "postgres://127.0.0.1:5432/x"
        );
        assert_eq!(
            with_database("postgres://u@h/test?sslmode=disable", "x"),
            "postgres://u@h/x?sslmode=disable"
        );
        assert_eq!(
            with_database("postgres://h:5432", "x"),
            "postgres://h:5432/x"
        );
    }
}

//! `kinlink-bench ingest`: throughput of the attendance ingest path, measured the
//! way the nightly job runs it: parse-only and parse+store, CSV and XLSX, SQLite and
//! (with a URL) PostgreSQL. Each phase runs in a child process of its own so that its
//! peak memory (VmHWM) is its own, not the sum of earlier phases.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context};

use kinlink::clock::Clock;
use kinlink::config::{DirTransport, SourceSettings, TextEncoding, Transport};
use kinlink::domain::{FeedKind, Format};
use kinlink::pipeline::{self, FileOutcome, NoProgress};
use kinlink::store::{NewFile, Store};
use kinlink_test_support::fresh_postgres;

use crate::cli::BenchIngestArgs;
use crate::{peak_rss_kib, PhaseResult};

/// Runs the benchmark (or, with `--phase`, one phase of it).
pub async fn run(args: &BenchIngestArgs) -> anyhow::Result<u8> {
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
        kinlink::demo::write_attendance(&dir.join("marks.csv"), Format::Csv, args.csv_rows, 7)?;
    let xlsx_columns =
        kinlink::demo::write_attendance(&dir.join("marks.xlsx"), Format::Xlsx, args.xlsx_rows, 7)?;
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
    let exe = std::env::current_exe().context("finding the kinlink-bench binary")?;
    let mut results = Vec::new();
    for phase in phases {
        let mut cmd = std::process::Command::new(&exe);
        cmd.args(["ingest", "--phase", phase, "--dir"]).arg(&dir);
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
            let mut reader = kinlink::ingest::open(&source, &file, &file.display().to_string())?;
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

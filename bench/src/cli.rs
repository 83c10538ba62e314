//! The command line of `kinlink-bench`, as clap types.

use std::path::PathBuf;

use chrono::NaiveDate;
use clap::{Args, Parser, Subcommand};

/// kinlink-bench: kinlink's throughput benchmarks (README "Performance"). Not part of
/// the daemon: the PostgreSQL figures create and drop a database of their own.
#[derive(Debug, Parser)]
#[command(name = "kinlink-bench", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: BenchCommand,
}

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Attendance ingest: parse-only and parse+store, CSV and XLSX, SQLite and PostgreSQL.
    Ingest(BenchIngestArgs),
    /// Identity resolution on synthetic mentions with ground truth: speed, memory and
    /// quality per size, and an incremental run.
    Link(BenchLinkArgs),
    /// The rules over a large synthetic borough, ingested and linked by the real
    /// pipeline: a first evaluation, a re-run and a nightly one, on SQLite and PostgreSQL.
    Evaluate(BenchEvaluateArgs),
    /// Digests: compose, store and send N through the file transport and a loopback
    /// SMTP server; messages/s and peak memory.
    Mail(BenchMailArgs),
    /// Linkage quality on the public FEBRL data (bench/data/febrl) through the real
    /// pipeline: precision, recall and F1 over the final persons, the review queue,
    /// and every missed true pair by cause.
    Febrl(BenchFebrlArgs),
    /// A million person rows from several agencies as feed CSV files, ingested and
    /// linked through the pipeline with the store; then a night's new rows.
    E2e(BenchE2eArgs),
}

#[derive(Debug, Args)]
pub struct BenchE2eArgs {
    /// Person rows in the first files.
    #[arg(long, default_value_t = 1_000_000)]
    pub rows: usize,
    /// New person rows of the night after.
    #[arg(long, default_value_t = 20_000)]
    pub new_rows: usize,
    /// Random seed of the synthetic people.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Which stores, comma-separated (`sqlite`, `postgres`).
    #[arg(long, value_delimiter = ',', default_value = "sqlite")]
    pub stores: Vec<String>,
    /// PostgreSQL URL (a database `kinlink_bench_e2e` is created there and dropped).
    #[arg(long, env = "KINLINK_BENCH_POSTGRES")]
    pub postgres: Option<String>,
    /// Working folder (default: a temporary folder).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Print the figures as JSON instead of a markdown table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct BenchFebrlArgs {
    /// Folder holding dataset3.csv, dataset4a.csv and dataset4b.csv (default: the
    /// copy shipped in the repository).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Example pairs printed for each cause of a miss.
    #[arg(long, default_value_t = 3)]
    pub examples: usize,
    /// Print the figures as JSON instead of markdown.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct BenchEvaluateArgs {
    /// Person mentions in the store (pupils make up what the other feeds leave).
    #[arg(long, default_value_t = 1_000_000)]
    pub mentions: usize,
    /// Attendance marks (a current pupil has two a school day).
    #[arg(long, default_value_t = 20_000_000)]
    pub marks: usize,
    /// Police domestic-abuse notifications.
    #[arg(long, default_value_t = 20_000)]
    pub notifications: usize,
    /// Housing notices.
    #[arg(long, default_value_t = 5_000)]
    pub notices: usize,
    /// Case rows (one per person per case).
    #[arg(long, default_value_t = 100_000)]
    pub cases: usize,
    /// Schools.
    #[arg(long, default_value_t = 400)]
    pub schools: usize,
    /// School days of marks for the pupils on roll.
    #[arg(long, default_value_t = 100)]
    pub days: usize,
    /// The last school day of the data: the first evaluation's date.
    #[arg(long, default_value = "2025-03-14", value_name = "YYYY-MM-DD")]
    pub last_day: NaiveDate,
    /// Random seed of the synthetic borough.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// PostgreSQL URL for the PostgreSQL figures (default: $KINLINK_BENCH_POSTGRES;
    /// skipped when neither is set). A database `kinlink_bench_evaluate` is created
    /// on that server and dropped after.
    #[arg(long, env = "KINLINK_BENCH_POSTGRES")]
    pub postgres: Option<String>,
    /// Which stores to measure, comma-separated (`sqlite`, `postgres`; PostgreSQL
    /// only with a URL).
    #[arg(long, value_delimiter = ',', default_value = "sqlite,postgres")]
    pub stores: Vec<String>,
    /// Working folder (default: a temporary folder).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Print the figures as JSON instead of markdown tables.
    #[arg(long)]
    pub json: bool,
    /// Internal: run one step in this process and print its figures as JSON.
    #[arg(long, hide = true)]
    pub phase: Option<String>,
}

#[derive(Debug, Args)]
pub struct BenchMailArgs {
    /// How many digests (one recipient each, two alerts per digest).
    #[arg(long, default_value_t = 5000)]
    pub digests: usize,
    /// Send to this SMTP relay (HOST:PORT, plain text, loopback) instead of starting
    /// the tests' aiosmtpd fixture.
    #[arg(long)]
    pub relay: Option<String>,
    /// Internal: run one transport (`file` or `smtp`) in this process and print its
    /// figures as JSON.
    #[arg(long, hide = true)]
    pub phase: Option<String>,
}

#[derive(Debug, Args)]
pub struct BenchLinkArgs {
    /// Sizes of the full runs, in mentions, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "100000,1000000,3000000")]
    pub mentions: Vec<usize>,
    /// Existing mentions of the incremental run (0 skips it).
    #[arg(long, default_value_t = 1_000_000)]
    pub incremental_base: usize,
    /// New mentions of the incremental run.
    #[arg(long, default_value_t = 20_000)]
    pub incremental_new: usize,
    /// Random seed of the synthetic borough.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// The `[linkage] auto_link` band to measure with (default: the built-in default).
    #[arg(long)]
    pub auto_link: Option<f64>,
    /// The `[linkage] review` band to measure with (default: the built-in default).
    #[arg(long)]
    pub review: Option<f64>,
    /// Print the figures as JSON instead of markdown tables.
    #[arg(long)]
    pub json: bool,
    /// Internal: run one phase (`full` or `incremental`) in this process and print its
    /// figures as JSON.
    #[arg(long, hide = true)]
    pub phase: Option<String>,
}

#[derive(Debug, Args)]
pub struct BenchIngestArgs {
    /// Session marks in the CSV file.
    #[arg(long, default_value_t = 2_000_000)]
    pub csv_rows: usize,
    /// Session marks in the XLSX file (a sheet holds at most 1,048,575 data rows).
    #[arg(long, default_value_t = 1_000_000)]
    pub xlsx_rows: usize,
    /// PostgreSQL URL for the PostgreSQL figures (default: $KINLINK_BENCH_POSTGRES;
    /// skipped when neither is set).
    #[arg(long, env = "KINLINK_BENCH_POSTGRES")]
    pub postgres: Option<String>,
    /// Working folder (default: a temporary folder).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Internal: run one phase in this process and print its figures as JSON.
    #[arg(long, hide = true)]
    pub phase: Option<String>,
}

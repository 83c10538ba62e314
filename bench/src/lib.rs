//! kinlink-bench: kinlink's benchmarks and the generators of large synthetic boroughs
//! (README "Performance"), kept out of the daemon. Each command of the
//! `kinlink-bench` binary lives in a module of its own:
//!
//! - `ingest` (`ingesting`): attendance ingest throughput, parse-only and parse+store;
//! - `link` (`linking`): identity resolution at scale against ground truth (`synth`
//!   makes the mentions, `quality` scores the result);
//! - `evaluate` (`evaluating`, with its borough's feed files in `borough`): the rules
//!   over a large borough, first run, re-run and nightly;
//! - `e2e` (`endtoend`): a million person rows as feed files, `ingest` + `link` with
//!   the store, then a night's new rows;
//! - `febrl` (`febrl`): linkage quality on public data this project did not generate;
//! - `mail` (`mail`): digests composed and sent through the file transport and a
//!   loopback SMTP server.
//!
//! Each phase runs in a child process of its own (`--phase`) so that its peak memory
//! (VmHWM) is its own, not the sum of earlier phases. Everything goes through
//! kinlink's public API; the only SQL of the crate's own is the creation and removal
//! of PostgreSQL databases, in `kinlink-test-support`.
#![forbid(unsafe_code)]

use serde::{Deserialize, Serialize};

pub mod borough;
pub mod cli;
pub mod endtoend;
pub mod evaluating;
pub mod febrl;
pub mod ingesting;
pub mod linking;
pub mod mail;
pub mod quality;
pub mod synth;

use cli::BenchCommand;

/// One phase's figures (`ingest`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PhaseResult {
    pub phase: String,
    pub rows: u64,
    pub seconds: f64,
    pub rows_per_sec: f64,
    pub peak_rss_mib: f64,
}

/// Runs a bench command to its exit code.
pub async fn run(cmd: &BenchCommand) -> anyhow::Result<u8> {
    match cmd {
        BenchCommand::Ingest(args) => ingesting::run(args).await,
        BenchCommand::Link(args) => linking::run(args).await,
        BenchCommand::Evaluate(args) => evaluating::run(args).await,
        BenchCommand::Mail(args) => mail::run(args).await,
        BenchCommand::Febrl(args) => febrl::run(args).await,
        BenchCommand::E2e(args) => endtoend::run(args).await,
    }
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

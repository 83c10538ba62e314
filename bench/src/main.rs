//! The `kinlink-bench` binary: `cargo run --release -p kinlink-bench -- <ingest | link |
//! evaluate | mail>` (README "Performance").
#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;

/// The daemon's allocator (see the note on `mimalloc` in kinlink's Cargo.toml), so
/// that the figures are those of the daemon.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = kinlink_bench::cli::Cli::parse();
    kinlink::telemetry::init(
        kinlink::telemetry::default_filter(),
        kinlink::telemetry::LogFormat::Plain,
        std::io::stderr,
    );
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(kinlink_bench::run(&cli.command)) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

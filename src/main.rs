//! The `kinlink` binary: parse the command line, set up logging, hand over to the app.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;

/// See the note on `mimalloc` in Cargo.toml: glibc's allocator made cross-thread
/// frees (rows from sqlx's SQLite worker, cells from calamine's reader) expensive.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = kinlink::cli::Cli::parse();
    kinlink::telemetry::init(
        kinlink::telemetry::default_filter(),
        cli.log_format(),
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
    runtime.block_on(kinlink::app::run(cli))
}

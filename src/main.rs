//! The `kinlink` binary: parse the command line, set up logging, hand over to the app.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;

/// See the note on `mimalloc` in Cargo.toml: glibc's allocator made cross-thread
/// frees (rows from sqlx's SQLite worker, cells from calamine's reader) expensive.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    quiet_on_closed_stdout();
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

/// `kinlink alerts list | head`: once `head` has what it wants it closes the pipe,
/// and the next `println!` fails with a broken pipe and panics. The command's
/// output is no longer wanted, so that one panic ends the process quietly with
/// exit 0; any other panic goes to the default hook. (Rust ignores SIGPIPE, so the
/// write fails instead of the signal ending the process as it would a C program;
/// restoring the signal would need `unsafe`, which the crate forbids.)
fn quiet_on_closed_stdout() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let message = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or("");
        if message.starts_with("failed printing to stdout") && message.contains("Broken pipe") {
            std::process::exit(0);
        }
        default(info);
    }));
}

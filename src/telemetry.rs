//! Logging set-up: one place decides the format and the filter.
//!
//! Log lines carry ids and counts, never personal data (names, dates of birth,
//! addresses, postcodes): the tests grep a demo run's debug log for generated
//! names to hold that line.

use std::io::IsTerminal;

use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

/// How log lines look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines (terminals, `journalctl`).
    Plain,
    /// One JSON object per line, for log shippers.
    Json,
}

/// Installs the global subscriber. The filter comes from `KINLINK_LOG` (e.g.
/// `debug`, `kinlink=debug,sqlx=warn`), else `default_filter`. Returns false if a
/// subscriber was already installed (tests).
pub fn init<W>(default_filter: &str, format: LogFormat, writer: W) -> bool
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let filter =
        EnvFilter::try_from_env("KINLINK_LOG").unwrap_or_else(|_| EnvFilter::new(default_filter));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_target(false);
    match format {
        LogFormat::Plain => builder
            .with_ansi(std::io::stderr().is_terminal())
            .try_init()
            .is_ok(),
        LogFormat::Json => builder.json().try_init().is_ok(),
    }
}

/// The default filter for a command: quiet on a terminal, where a progress bar and
/// the printed summary say what happened; informative when logged by a service.
pub fn default_filter() -> &'static str {
    if std::io::stderr().is_terminal() {
        "warn"
    } else {
        "info,sqlx=warn"
    }
}

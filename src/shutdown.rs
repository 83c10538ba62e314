//! Signals, as values the daemon is handed (docs/style.md habit 2: shutdown is an
//! argument, not a global): SIGTERM and SIGINT cancel a [`CancellationToken`];
//! SIGHUP arrives on a [`Hangups`] stream; [`drain`] waits for in-flight work until
//! a deadline.
//!
//! Nothing here knows what is being stopped: the scheduler stops starting runs
//! when the token is cancelled, lets the current step finish within the drain
//! deadline, and aborts what is left (each step commits in its own transactions,
//! so an aborted step rolls back and leaves nothing half-committed).

use std::future::Future;
use std::time::Duration;

use tokio::signal::unix::{signal, Signal, SignalKind};
pub use tokio_util::sync::CancellationToken;
use tracing::info;

/// How long in-flight runs may take to finish after SIGTERM. systemd's
/// `TimeoutStopSec` (90 s in kinlink.service) must stay above it.
pub const DRAIN_DEADLINE: Duration = Duration::from_secs(60);

/// Errors setting up signal handling.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen for {signal}: {source}")]
pub struct SignalError {
    signal: &'static str,
    #[source]
    source: std::io::Error,
}

fn listen(kind: SignalKind, name: &'static str) -> Result<Signal, SignalError> {
    signal(kind).map_err(|source| SignalError {
        signal: name,
        source,
    })
}

/// A token that is cancelled on the first SIGTERM or SIGINT. The listeners are
/// installed before this returns, so a signal that arrives right after is not lost.
pub fn on_terminate() -> Result<CancellationToken, SignalError> {
    let mut term = listen(SignalKind::terminate(), "SIGTERM")?;
    let mut int = listen(SignalKind::interrupt(), "SIGINT")?;
    let token = CancellationToken::new();
    let cancel = token.clone();
    tokio::spawn(async move {
        let which = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
            _ = cancel.cancelled() => return,
        };
        info!(
            signal = which,
            "Stopping: no new runs; running steps may finish"
        );
        cancel.cancel();
    });
    Ok(token)
}

/// SIGHUP, one `recv` per signal.
pub struct Hangups(Signal);

impl Hangups {
    /// Starts listening for SIGHUP (from here on the default action, which would
    /// end the process, is replaced).
    pub fn listen() -> Result<Hangups, SignalError> {
        listen(SignalKind::hangup(), "SIGHUP").map(Hangups)
    }

    /// The next SIGHUP; `None` if signals can no longer be received.
    pub async fn recv(&mut self) -> Option<()> {
        self.0.recv().await
    }
}

/// What a drain came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drained {
    /// Everything finished in time.
    Finished,
    /// The deadline passed first; the caller aborts what is left.
    DeadlinePassed,
}

/// Waits for `in_flight` to complete, at most `deadline`.
pub async fn drain(in_flight: impl Future<Output = ()>, deadline: Duration) -> Drained {
    match tokio::time::timeout(deadline, in_flight).await {
        Ok(()) => Drained::Finished,
        Err(_) => Drained::DeadlinePassed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn drain_reports_whether_work_finished_before_the_deadline() {
        let quick = async {};
        assert_eq!(drain(quick, DRAIN_DEADLINE).await, Drained::Finished);
        let never = std::future::pending::<()>();
        assert_eq!(
            drain(never, Duration::from_millis(20)).await,
            Drained::DeadlinePassed
        );
    }
}

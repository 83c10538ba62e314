//! systemd's sd-notify protocol (kinlink.service is `Type=notify`): READY,
//! RELOADING, STOPPING, STATUS and WATCHDOG messages over `$NOTIFY_SOCKET`.
//! Everything is a no-op when the variable is unset (a terminal, the tests).
//!
//! Sends are blocking datagrams, as in libsystemd: systemd reads its socket at
//! once, and a systemd that stopped reading would also stop honouring the watchdog.
//!
//! STATUS lines carry job names, run ids and counts only, never personal data:
//! they show in `systemctl status`.

use std::time::Duration;

use sd_notify::NotifyState;
use tracing::debug;

/// Sends service-state messages to systemd.
#[derive(Debug, Clone, Copy, Default)]
pub struct Notifier {
    watchdog: Option<Duration>,
}

impl Notifier {
    /// Reads `$WATCHDOG_USEC` (set when the unit has `WatchdogSec=`).
    pub fn from_env() -> Notifier {
        Notifier {
            watchdog: sd_notify::watchdog_enabled(),
        }
    }

    /// How often to send WATCHDOG=1: half of systemd's timeout, as sd_watchdog_enabled(3) advises.
    pub fn watchdog_interval(&self) -> Option<Duration> {
        self.watchdog.map(|d| d / 2)
    }

    /// Config, jobs and migrations are done and the scheduler runs.
    pub fn ready(&self) {
        send(&[NotifyState::Ready]);
    }

    /// A reload (SIGHUP) has begun; [`Notifier::ready`] ends it.
    pub fn reloading(&self) {
        match NotifyState::monotonic_usec_now() {
            Ok(now) => send(&[NotifyState::Reloading, now]),
            Err(_) => send(&[NotifyState::Reloading]),
        }
    }

    /// Shutdown has begun.
    pub fn stopping(&self) {
        send(&[NotifyState::Stopping]);
    }

    /// One line for `systemctl status`: ids and counts only.
    pub fn status(&self, line: &str) {
        send(&[NotifyState::Status(line)]);
    }

    /// "Still alive", from the scheduler loop.
    pub fn watchdog(&self) {
        if self.watchdog.is_some() {
            send(&[NotifyState::Watchdog]);
        }
    }
}

fn send(states: &[NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(states) {
        // systemd going away must not stop the daemon; the watchdog will say so.
        debug!(error = %e, "Cannot notify systemd");
    }
}

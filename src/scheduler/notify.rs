//! systemd's sd-notify protocol (kinlink.service is `Type=notify`): READY,
//! RELOADING, STOPPING, STATUS and WATCHDOG messages over `$NOTIFY_SOCKET`.
//! Everything is a no-op when the variable is unset (a terminal, the tests).
//!
//! Sends never wait: they are made from the scheduler loop on the async runtime,
//! so a socket whose reader is slow or gone (its queue full) loses the message
//! instead of stalling runs, heartbeats and shutdown. A systemd that stopped
//! reading would stop honouring the watchdog anyway.
//!
//! STATUS lines carry job names, run ids and counts only, never personal data:
//! they show in `systemctl status`.

use std::ffi::OsStr;
use std::io;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
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
    let Some(socket) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    if let Err(e) = send_to(&socket, states) {
        // systemd going away must not stop the daemon; the watchdog will say so.
        debug!(error = %e, "Cannot notify systemd");
    }
}

/// Sends one datagram to the socket at `path` without waiting: a full queue is
/// an error (`WouldBlock`) at once, and the message is dropped.
fn send_to(path: &OsStr, states: &[NotifyState<'_>]) -> io::Result<()> {
    let mut message = String::new();
    for state in states {
        message.push_str(&state.to_string());
        message.push('\n');
    }
    let socket = UnixDatagram::unbound()?;
    socket.set_nonblocking(true)?;
    let sent = socket.send_to(message.as_bytes(), Path::new(path))?;
    if sent != message.len() {
        return Err(io::Error::new(io::ErrorKind::WriteZero, "incomplete write"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn a_socket_nobody_reads_does_not_hold_up_the_sender() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        // Bound and never read: its queue fills after a few datagrams
        // (net.unix.max_dgram_qlen), after which a blocking send would wait forever.
        let reader = UnixDatagram::bind(&path).unwrap();
        let t0 = Instant::now();
        let mut dropped = 0;
        for i in 0..500 {
            let line = format!("running: nightly (run {i})");
            if send_to(path.as_os_str(), &[NotifyState::Status(&line)]).is_err() {
                dropped += 1;
            }
        }
        assert!(dropped > 0, "the queue never filled");
        assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());

        // What was queued arrived whole.
        let mut buf = [0u8; 256];
        let n = reader.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"STATUS=running: nightly (run 0)\n");
    }
}

//! Mail: the only module that knows lettre and SMTP. `send_step` composes the
//! digests ([`digest`]), the admin's file notices ([`admin`]) and, weekly, the
//! managers' digest ([`managers`]) from the store, then drains, then tells the
//! admin list what could not be delivered ([`undelivered`]) and drains that too. A composed message goes into
//! the outbox first ([`Mailer::enqueue`]); a drain run ([`Mailer::drain`]) then
//! sends what is due, over SMTP or as `.eml` files, and marks each message with
//! what the server said.
//!
//! Delivery rules, in the order a message meets them:
//! - Enqueueing is idempotent: the caller's key (`digest:<recipient>:<hash of its deliveries>`)
//!   decides the Message-ID and a key already in the outbox changes nothing.
//! - A relay that cannot be reached (refused, timed out, TLS or login failure)
//!   stops the run before anything is claimed: every message stays queued, untouched.
//! - Per recipient: 2xx → sent, 4xx → stays pending (retried later), 5xx → failed
//!   for good. The message goes to the accepted recipients even when others are refused.
//! - A message with recipients pending is retried with exponential backoff across
//!   runs ([`RetryPolicy`]) and given up (failed) after `max_attempts`.
//! - Failed messages and refused recipients come back in [`DrainReport::failed`];
//!   the send step reports each to the admin list once, in one notice per run
//!   ([`undelivered`]), and nothing failed is ever retried without
//!   `kinlink outbox retry ID`.
//!
//! Invariant: a message may go out twice only when an attempt's outcome is unknown —
//! the process was killed between the server taking it and the outbox recording
//! that (its lease runs out and it is re-queued), or the server's reply to the end
//! of the message never arrived. The second unknown outcome parks the message as
//! failed, so it is never sent more than twice.

pub mod admin;
mod chart;
mod compose;
pub mod digest;
mod drain;
mod file;
pub mod managers;
pub mod reroute;
mod send;
mod smtp;
mod stale;
pub mod undelivered;

use std::path::PathBuf;
use std::time::Duration;

use lettre::message::Mailbox;

pub use compose::message_id_for;
pub use drain::{DrainReport, PermanentFailure, RetryLater, SentMessage};
pub use send::{outbox_pass, send_step, SendOptions, SendReport};
pub use stale::enqueue_stale_feed_notices;

use crate::clock::Clock;
use crate::config::{MailSettings, MailTransport, SecretError, SecretRef, SmtpTls};
use crate::store::{Claimer, Enqueued, Store, StoreError};

/// This process as the outbox's claims name it (see [`crate::process`]).
pub fn claimer() -> Claimer<'static> {
    let me = crate::process::current();
    Claimer {
        label: &me.label,
        key: me.key_text.as_deref(),
    }
}

/// Errors callers act on.
#[derive(Debug, thiserror::Error)]
pub enum MailError {
    /// The message itself is wrong (a bad address, images without HTML): a bug in
    /// the caller, never retried.
    #[error("cannot compose the message: {0}")]
    Compose(String),
    #[error("the `from` address {0:?} is not a mailbox")]
    From(String),
    #[error("cannot read smtp_ca_file {path}: {reason}")]
    CaFile { path: PathBuf, reason: String },
    #[error(transparent)]
    Secret(#[from] SecretError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// One composed email, as the caller hands it over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingMessage {
    /// Unique per message, stable across re-runs, e.g. `digest:<recipient>:<hash of its deliveries>`.
    pub idempotency_key: String,
    /// Plain addresses; each gets the message (and is listed in `To`).
    pub to: Vec<String>,
    /// Never carries personal data.
    pub subject: String,
    pub text: String,
    /// With HTML the message is multipart/alternative (text, then HTML).
    pub html: Option<String>,
    /// PNG images the HTML shows through `cid:<content_id>` (multipart/related).
    pub inline_images: Vec<InlineImage>,
}

/// A PNG shown inline by the HTML body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InlineImage {
    /// Referenced from the HTML as `cid:<content_id>`.
    pub content_id: String,
    pub png: Vec<u8>,
}

/// How long each SMTP step may take before the attempt counts as a transient failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// TCP connect.
    pub connect: Duration,
    /// Each command (greeting, EHLO, STARTTLS and the TLS handshake, AUTH, MAIL, RCPT, DATA).
    pub command: Duration,
    /// The server's reply after the whole message was sent (RFC 5321 suggests 10 minutes).
    pub data_end: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(10),
            command: Duration::from_secs(60),
            data_end: Duration::from_secs(600),
        }
    }
}

/// When transient failures are retried, and when a claim counts as abandoned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Wait after the first failed attempt; doubles with every further one.
    pub first_backoff: Duration,
    /// The wait never grows past this.
    pub max_backoff: Duration,
    /// After this many attempts a message still pending is failed (given up).
    pub max_attempts: i64,
    /// A message claimed longer ago than this by a run that never finished it (a
    /// killed process) is re-queued. Must exceed the longest attempt
    /// ([`Timeouts`]: connect + commands + `data_end`).
    pub lease: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        // 5 min, 10, 20, … capped at 6 h: twelve attempts span about 38 hours, so a
        // relay down for a day and a night still gets every digest.
        RetryPolicy {
            first_backoff: Duration::from_secs(5 * 60),
            max_backoff: Duration::from_secs(6 * 3600),
            max_attempts: 12,
            lease: Duration::from_secs(15 * 60),
        }
    }
}

impl RetryPolicy {
    /// The wait after attempt number `attempts` (1 for the first) failed.
    pub fn backoff(&self, attempts: i64) -> Duration {
        let doublings = u32::try_from(attempts.saturating_sub(1)).unwrap_or(u32::MAX);
        let factor = 2u32.checked_pow(doublings.min(30)).unwrap_or(u32::MAX);
        self.first_backoff
            .checked_mul(factor)
            .unwrap_or(self.max_backoff)
            .min(self.max_backoff)
    }
}

/// What a drain run may do.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DrainOptions {
    pub retry: RetryPolicy,
    /// Stop after this many attempts (`None`: until nothing is due).
    pub limit: Option<usize>,
}

/// SMTP relay settings, with the CA file read and the secrets still unresolved
/// (they are read at each connect, so a rotated password needs no restart).
#[derive(Debug, Clone)]
pub(crate) struct Relay {
    pub host: String,
    pub port: u16,
    pub tls: SmtpTls,
    pub credentials: Option<(SecretRef, SecretRef)>,
    pub ca_pem: Option<Vec<u8>>,
}

#[derive(Debug, Clone)]
enum Transport {
    File { dir: PathBuf },
    Smtp(Relay),
}

/// Sends the outbox through the configured transport.
#[derive(Debug, Clone)]
pub struct Mailer {
    from: Mailbox,
    transport: Transport,
    timeouts: Timeouts,
}

impl Mailer {
    /// Builds the mailer `[mail]` describes. Reads `smtp_ca_file` now; secrets are
    /// read when a run connects.
    pub fn new(settings: &MailSettings) -> Result<Mailer, MailError> {
        let from: Mailbox = settings
            .from
            .parse()
            .map_err(|_| MailError::From(settings.from.clone()))?;
        let transport = match &settings.transport {
            MailTransport::File { dir } => Transport::File { dir: dir.clone() },
            MailTransport::Smtp(smtp) => {
                let ca_pem = match &smtp.ca_file {
                    Some(path) => Some(std::fs::read(path).map_err(|e| MailError::CaFile {
                        path: path.clone(),
                        reason: e.to_string(),
                    })?),
                    None => None,
                };
                let credentials = match (&smtp.user, &smtp.password) {
                    (Some(u), Some(p)) => Some((u.clone(), p.clone())),
                    _ => None,
                };
                Transport::Smtp(Relay {
                    host: smtp.host.clone(),
                    port: smtp.port,
                    tls: smtp.tls,
                    credentials,
                    ca_pem,
                })
            }
        };
        Ok(Mailer {
            from,
            transport,
            timeouts: Timeouts::default(),
        })
    }

    /// The same mailer with other timeouts (tests use short ones).
    pub fn with_timeouts(mut self, timeouts: Timeouts) -> Mailer {
        self.timeouts = timeouts;
        self
    }

    /// Composes the message and stores it in the outbox, due now. Enqueueing a key
    /// that is already there changes nothing and returns the existing id.
    pub async fn enqueue(
        &self,
        store: &Store,
        clock: Clock,
        message: &OutgoingMessage,
    ) -> Result<Enqueued, MailError> {
        let now = clock.now();
        let composed = compose::compose(&self.from, message, now)?;
        let sender = self.from.email.to_string();
        let enqueued = store
            .enqueue_outbox(&composed.outbox(message, &sender, now))
            .await?;
        if enqueued.created {
            tracing::info!(
                outbox_id = enqueued.id,
                recipients = composed.recipients.len(),
                bytes = composed.raw.len(),
                "Email queued"
            );
        }
        Ok(enqueued)
    }

    /// Sends everything due: re-queues abandoned claims, connects once, sends each
    /// due message on that one connection, and records every outcome.
    pub async fn drain(
        &self,
        store: &Store,
        clock: Clock,
        options: &DrainOptions,
    ) -> Result<DrainReport, MailError> {
        drain::drain(self, store, clock, options).await
    }

    /// Where the file transport writes, if that is the transport.
    pub fn file_dir(&self) -> Option<&std::path::Path> {
        match &self.transport {
            Transport::File { dir } => Some(dir),
            Transport::Smtp(_) => None,
        }
    }

    /// A short description of the transport, for messages.
    pub fn describe(&self) -> String {
        match &self.transport {
            Transport::File { dir } => format!(".eml files in {}", dir.display()),
            Transport::Smtp(r) => format!("SMTP {}:{}", r.host, r.port),
        }
    }
}

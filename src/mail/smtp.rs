//! One SMTP connection, kept for a whole drain run: connect (implicit TLS, STARTTLS
//! or plain to loopback), log in, then one transaction per message.
//!
//! lettre's low-level connection is used rather than its transport because the
//! transport gives up on a message when any one recipient is refused; here each
//! `RCPT TO` is judged on its own, and the message goes to those accepted.
//!
//! Every step runs under a timeout; a timed-out or broken connection is dropped
//! (not reused) and the message counts as a transient failure.

use std::future::Future;
use std::time::Duration;

use lettre::address::Address;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{AsyncSmtpConnection, Certificate, TlsParameters};
use lettre::transport::smtp::commands::{Data, Mail, Rcpt, Rset};
use lettre::transport::smtp::extension::ClientId;
use lettre::transport::smtp::response::Response;
use lettre::transport::smtp::Error as SmtpError;

use super::{Relay, Timeouts};
use crate::config::SmtpTls;

/// Why no connection could be had. Nothing was claimed: every message stays queued.
#[derive(Debug, thiserror::Error)]
pub(super) enum ConnectError {
    #[error("cannot reach the mail relay {target}: {reason}")]
    Unreachable { target: String, reason: String },
    #[error("TLS with the mail relay {target} failed: {reason}")]
    Tls { target: String, reason: String },
    #[error("the mail relay {target} refused the login: {reason}")]
    Auth { target: String, reason: String },
    #[error("cannot read the SMTP credentials: {0}")]
    Secret(#[from] crate::config::SecretError),
}

/// The outcome for one recipient of one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum RcptOutcome {
    /// The server took the message for this recipient; its reply.
    Sent(String),
    /// Refused for now (4xx, or the connection failed before the end): retry.
    Transient(String),
    /// Refused for good (5xx).
    Permanent(String),
    /// The whole message was sent but the server's reply never came: it may or
    /// may not have been taken.
    Unknown(String),
}

/// An attempt on one message: one outcome per recipient, in order.
#[derive(Debug, Clone)]
pub(super) struct Attempt {
    pub recipients: Vec<(String, RcptOutcome)>,
    /// The connection cannot be used again.
    pub broken: bool,
}

pub(super) struct Session {
    conn: AsyncSmtpConnection,
    timeouts: Timeouts,
}

fn reply_text(r: &Response) -> String {
    let code: u16 = r.code().into();
    let lines: Vec<&str> = r.message().collect();
    format!("{code} {}", lines.join(" ")).trim_end().to_string()
}

/// A negative reply's text, or `None` when the error is not a reply (network,
/// timeout, parse): then the connection is unusable.
fn negative(e: &SmtpError) -> Option<(bool, String)> {
    if e.is_transient() || e.is_permanent() {
        let text = e.to_string();
        // "permanent error (550): 5.1.1 no such user" → "550 5.1.1 no such user".
        let code = e.status().map(u16::from).unwrap_or_default();
        let detail = text.split_once("): ").map_or("", |(_, d)| d);
        Some((
            e.is_permanent(),
            format!("{code} {detail}").trim_end().to_string(),
        ))
    } else {
        None
    }
}

async fn timed<T>(
    limit: Duration,
    what: &str,
    fut: impl Future<Output = Result<T, SmtpError>>,
) -> Result<T, String> {
    match tokio::time::timeout(limit, fut).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("{what}: no answer within {}s", limit.as_secs_f64())),
    }
}

fn tls_parameters(relay: &Relay) -> Result<TlsParameters, String> {
    let mut builder = TlsParameters::builder(relay.host.clone());
    if let Some(pem) = &relay.ca_pem {
        let cert = Certificate::from_pem(pem).map_err(|e| format!("smtp_ca_file: {e}"))?;
        builder = builder.add_root_certificate(cert);
    }
    builder.build_rustls().map_err(|e| e.to_string())
}

impl Session {
    /// Connects, secures and logs in.
    pub async fn open(relay: &Relay, timeouts: Timeouts) -> Result<Session, ConnectError> {
        let target = format!("{}:{}", relay.host, relay.port);
        let hello = ClientId::default();
        let tls_err = |reason: String| ConnectError::Tls {
            target: target.clone(),
            reason,
        };
        let implicit = match relay.tls {
            SmtpTls::Tls => Some(tls_parameters(relay).map_err(tls_err)?),
            SmtpTls::Starttls | SmtpTls::None => None,
        };
        let connect = AsyncSmtpConnection::connect_tokio1(
            (relay.host.as_str(), relay.port),
            Some(timeouts.connect),
            &hello,
            implicit,
            None,
        );
        // The connect timeout covers TCP; the greeting, EHLO and an implicit TLS
        // handshake get a command's time on top.
        let mut conn =
            match tokio::time::timeout(timeouts.connect + timeouts.command, connect).await {
                Ok(Ok(c)) => c,
                Ok(Err(e)) if e.is_tls() => return Err(tls_err(e.to_string())),
                Ok(Err(e)) => {
                    return Err(ConnectError::Unreachable {
                        target,
                        reason: e.to_string(),
                    })
                }
                Err(_) => {
                    return Err(ConnectError::Unreachable {
                        target,
                        reason: "no greeting in time".into(),
                    })
                }
            };
        if relay.tls == SmtpTls::Starttls {
            // Never fall back to plain text: the messages carry personal data.
            if !conn.can_starttls() {
                conn.abort().await;
                return Err(tls_err("the server does not offer STARTTLS".into()));
            }
            let params = tls_parameters(relay).map_err(tls_err)?;
            timed(timeouts.command, "STARTTLS", conn.starttls(params, &hello))
                .await
                .map_err(tls_err)?;
        }
        if let Some((user, password)) = &relay.credentials {
            let credentials = Credentials::new(
                user.resolve()?.expose().to_string(),
                password.resolve()?.expose().to_string(),
            );
            let mechanisms = [Mechanism::Plain, Mechanism::Login];
            if let Err(reason) = timed(
                timeouts.command,
                "AUTH",
                conn.auth(&mechanisms, &credentials),
            )
            .await
            {
                conn.abort().await;
                return Err(ConnectError::Auth { target, reason });
            }
        }
        Ok(Session { conn, timeouts })
    }

    /// One transaction: MAIL, RCPT per recipient, DATA for those accepted.
    pub async fn send(&mut self, from: &str, to: &[String], raw: &[u8]) -> Attempt {
        let command = self.timeouts.command;
        let all = |outcome: RcptOutcome| -> Vec<(String, RcptOutcome)> {
            to.iter().map(|a| (a.clone(), outcome.clone())).collect()
        };
        let broken = |recipients| Attempt {
            recipients,
            broken: true,
        };
        let from_address: Address = match from.parse() {
            Ok(a) => a,
            Err(_) => {
                return Attempt {
                    recipients: all(RcptOutcome::Permanent(
                        "the sender is not an address".into(),
                    )),
                    broken: false,
                }
            }
        };
        match self
            .step(command, Mail::new(Some(from_address), vec![]))
            .await
        {
            Ok(_) => {}
            Err(Step::Refused(permanent, reply)) => {
                self.reset().await;
                let outcome = if permanent {
                    RcptOutcome::Permanent(reply)
                } else {
                    RcptOutcome::Transient(reply)
                };
                return Attempt {
                    recipients: all(outcome),
                    broken: false,
                };
            }
            Err(Step::Broken(reason)) => return broken(all(RcptOutcome::Transient(reason))),
        }

        let mut outcomes: Vec<(String, Option<RcptOutcome>)> = Vec::with_capacity(to.len());
        for address in to {
            let Ok(parsed) = address.parse::<Address>() else {
                outcomes.push((
                    address.clone(),
                    Some(RcptOutcome::Permanent("not an email address".into())),
                ));
                continue;
            };
            match self.step(command, Rcpt::new(parsed, vec![])).await {
                // Accepted: decided after DATA.
                Ok(_) => outcomes.push((address.clone(), None)),
                Err(Step::Refused(true, reply)) => {
                    outcomes.push((address.clone(), Some(RcptOutcome::Permanent(reply))))
                }
                Err(Step::Refused(false, reply)) => {
                    outcomes.push((address.clone(), Some(RcptOutcome::Transient(reply))))
                }
                Err(Step::Broken(reason)) => {
                    return broken(settle_rest(to, outcomes, RcptOutcome::Transient(reason)))
                }
            }
        }
        if outcomes.iter().all(|(_, o)| o.is_some()) {
            // Nobody accepted: nothing to send in this transaction.
            self.reset().await;
            return Attempt {
                recipients: settle_rest(to, outcomes, RcptOutcome::Transient(String::new())),
                broken: false,
            };
        }
        match self.step(command, Data).await {
            Ok(_) => {}
            Err(Step::Refused(permanent, reply)) => {
                self.reset().await;
                let o = if permanent {
                    RcptOutcome::Permanent(reply)
                } else {
                    RcptOutcome::Transient(reply)
                };
                return Attempt {
                    recipients: settle_rest(to, outcomes, o),
                    broken: false,
                };
            }
            Err(Step::Broken(reason)) => {
                return broken(settle_rest(to, outcomes, RcptOutcome::Transient(reason)))
            }
        }
        // From here on the server may have the whole message: a lost reply is an
        // unknown outcome, not a plain failure.
        let result = match dot_stuffed(raw) {
            // One write for the whole body and its terminator: lettre's `message`
            // writes the terminator separately, and that second small write waits
            // for the server's delayed ACK (Nagle), about 40 ms per message.
            Some(body) => {
                tokio::time::timeout(self.timeouts.data_end, self.conn.command(body)).await
            }
            None => tokio::time::timeout(self.timeouts.data_end, self.conn.message(raw)).await,
        };
        match result {
            Ok(Ok(reply)) => Attempt {
                recipients: settle_rest(to, outcomes, RcptOutcome::Sent(reply_text(&reply))),
                broken: false,
            },
            Ok(Err(e)) => match negative(&e) {
                Some((permanent, reply)) => {
                    let o = if permanent {
                        RcptOutcome::Permanent(reply)
                    } else {
                        RcptOutcome::Transient(reply)
                    };
                    Attempt {
                        recipients: settle_rest(to, outcomes, o),
                        broken: false,
                    }
                }
                None => broken(settle_rest(
                    to,
                    outcomes,
                    RcptOutcome::Unknown(format!("no reply after the message was sent: {e}")),
                )),
            },
            Err(_) => broken(settle_rest(
                to,
                outcomes,
                RcptOutcome::Unknown(format!(
                    "no reply within {}s after the message was sent",
                    self.timeouts.data_end.as_secs()
                )),
            )),
        }
    }

    /// Says goodbye (best effort: the run is over either way).
    pub async fn close(mut self) {
        let _ = tokio::time::timeout(
            self.timeouts.command,
            self.conn.command(lettre::transport::smtp::commands::Quit),
        )
        .await;
    }

    async fn step<C: std::fmt::Display>(
        &mut self,
        limit: Duration,
        command: C,
    ) -> Result<Response, Step> {
        match tokio::time::timeout(limit, self.conn.command(command)).await {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(e)) => match negative(&e) {
                Some((permanent, reply)) => Err(Step::Refused(permanent, reply)),
                None => Err(Step::Broken(e.to_string())),
            },
            Err(_) => Err(Step::Broken(format!(
                "no answer within {}s",
                limit.as_secs_f64()
            ))),
        }
    }

    /// Ends a refused transaction so the connection can carry the next message.
    async fn reset(&mut self) {
        let _ = self.step(self.timeouts.command, Rset).await;
    }
}

/// The DATA payload of an ASCII message (lettre encodes every body and header, so
/// composed messages are): lines starting with `.` get a second one (RFC 5321
/// 4.5.2), then the `.` line that ends it. `None` for anything else.
fn dot_stuffed(raw: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(raw).ok().filter(|t| t.is_ascii())?;
    let mut out = String::with_capacity(text.len() + 64);
    if text.starts_with('.') {
        out.push('.');
    }
    out.push_str(&text.replace("\r\n.", "\r\n.."));
    if !out.ends_with("\r\n") {
        out.push_str("\r\n");
    }
    out.push_str(".\r\n");
    Some(out)
}

enum Step {
    /// A 4xx (`false`) or 5xx (`true`) reply.
    Refused(bool, String),
    /// No usable reply: the connection is gone.
    Broken(String),
}

/// Fills every recipient still undecided (accepted at RCPT, or not reached) with
/// `rest`; recipients already decided keep their outcome.
fn settle_rest(
    to: &[String],
    decided: Vec<(String, Option<RcptOutcome>)>,
    rest: RcptOutcome,
) -> Vec<(String, RcptOutcome)> {
    let mut out: Vec<(String, RcptOutcome)> = decided
        .into_iter()
        .map(|(a, o)| (a, o.unwrap_or_else(|| rest.clone())))
        .collect();
    for address in to.iter().skip(out.len()) {
        out.push((address.clone(), rest.clone()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_is_dot_stuffed_and_terminated_once() {
        assert_eq!(
            dot_stuffed(b".top\r\nmid\r\n.dot\r\n").as_deref(),
            Some("..top\r\nmid\r\n..dot\r\n.\r\n")
        );
        assert_eq!(
            dot_stuffed(b"no newline").as_deref(),
            Some("no newline\r\n.\r\n")
        );
        assert_eq!(dot_stuffed("caf\u{e9}".as_bytes()), None);
    }
}

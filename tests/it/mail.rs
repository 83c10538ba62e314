//! The outbox and the mailer against a real SMTP server on loopback (aiosmtpd,
//! see `smtp_server`): recipients, STARTTLS and implicit TLS with a self-signed
//! certificate the test trusts, AUTH, a relay down then up, 4xx then success, 5xx,
//! a refused recipient among accepted ones, an interrupted send, the file transport
//! and the outbox store on SQLite and PostgreSQL.

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use kinlink::clock::Clock;
use kinlink::config::{MailSettings, MailTransport, SecretRef, SmtpSettings, SmtpTls};
use kinlink::mail::{DrainOptions, DrainReport, InlineImage, Mailer, OutgoingMessage, Timeouts};
use kinlink::store::{OutboxStatus, RecipientStatus, RetryOutcome, Store};

use crate::backends::stores;
use crate::helpers::within;
use crate::smtp_server::{free_port, self_signed, SmtpOptions, SmtpServer};

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 3, 4, 6, 0, 0).unwrap()
}

fn at(minutes: i64) -> Clock {
    Clock::fixed(t0() + chrono::Duration::minutes(minutes))
}

fn message(key: &str, to: &[&str]) -> OutgoingMessage {
    OutgoingMessage {
        idempotency_key: key.into(),
        to: to.iter().map(|s| s.to_string()).collect(),
        subject: format!("Digest {key}"),
        text: "2 DA notifications for North.\n".into(),
        html: None,
        inline_images: vec![],
    }
}

/// SMTP settings for the loopback server; credentials from files in `dir`.
fn smtp_settings(
    dir: &Path,
    port: u16,
    tls: SmtpTls,
    login: Option<(&str, &str)>,
    ca_file: Option<PathBuf>,
) -> MailSettings {
    let (user, password) = match login {
        Some((u, p)) => {
            std::fs::write(dir.join("smtp-user"), format!("{u}\n")).unwrap();
            std::fs::write(dir.join("smtp-password"), format!("{p}\n")).unwrap();
            (
                Some(SecretRef::File(dir.join("smtp-user"))),
                Some(SecretRef::File(dir.join("smtp-password"))),
            )
        }
        None => (None, None),
    };
    MailSettings {
        transport: MailTransport::Smtp(SmtpSettings {
            host: "127.0.0.1".into(),
            port,
            tls,
            user,
            password,
            ca_file,
        }),
        from: "Early Help Alerts <eh-alerts@example.gov.uk>".into(),
        detail: kinlink::config::DetailLevel::Minimal,
        admin: vec!["admin@example.gov.uk".into()],
        retry_every_mins: kinlink::config::DEFAULT_RETRY_EVERY_MINS,
    }
}

fn short_timeouts() -> Timeouts {
    Timeouts {
        connect: Duration::from_secs(5),
        command: Duration::from_secs(10),
        data_end: Duration::from_secs(20),
    }
}

fn mailer(settings: &MailSettings) -> Mailer {
    Mailer::new(settings)
        .unwrap()
        .with_timeouts(short_timeouts())
}

async fn sqlite(dir: &Path) -> Store {
    Store::open_sqlite(&dir.join("kinlink.db")).await.unwrap()
}

async fn drain(mailer: &Mailer, store: &Store, clock: Clock) -> DrainReport {
    mailer
        .drain(store, clock, &DrainOptions::default())
        .await
        .unwrap()
}

async fn status_of(store: &Store, id: i64) -> OutboxStatus {
    store.outbox_message(id).await.unwrap().0.status
}

#[tokio::test]
async fn smtp_delivers_to_the_right_recipients_only_on_one_connection() {
    within(60, async {
        let dir = tempfile::tempdir().unwrap();
        let name = "smtp_delivers_to_the_right_recipients_only";
        let Some(server) =
            SmtpServer::start(name, &dir.path().join("smtp"), &SmtpOptions::default()).await
        else {
            return;
        };
        let store = sqlite(dir.path()).await;
        let m = mailer(&smtp_settings(
            dir.path(),
            server.port,
            SmtpTls::None,
            None,
            None,
        ));
        let a = m
            .enqueue(
                &store,
                at(0),
                &message("digest:nightly:1:north", &["dv.north@example.gov.uk"]),
            )
            .await
            .unwrap();
        let b = m
            .enqueue(
                &store,
                at(0),
                &message(
                    "digest:nightly:1:south",
                    &["dv.south@example.gov.uk", "eh.south@example.gov.uk"],
                ),
            )
            .await
            .unwrap();
        // Enqueueing the same key again is harmless.
        let again = m
            .enqueue(
                &store,
                at(0),
                &message("digest:nightly:1:north", &["dv.north@example.gov.uk"]),
            )
            .await
            .unwrap();
        assert_eq!((again.id, again.created), (a.id, false));

        let report = drain(&m, &store, at(1)).await;
        assert_eq!(report.sent.len(), 2, "{report:?}");
        assert!(report.failed.is_empty() && report.retrying.is_empty());
        let got = server.messages();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].rcpt_tos, vec!["dv.north@example.gov.uk"]);
        assert_eq!(
            got[1].rcpt_tos,
            vec!["dv.south@example.gov.uk", "eh.south@example.gov.uk"]
        );
        assert_eq!(got[0].mail_from, "eh-alerts@example.gov.uk");
        assert!(got[0].data.contains("To: dv.north@example.gov.uk\r\n"));
        assert!(
            !got[0].data.contains("south"),
            "a recipient sees only their message"
        );
        // Connection reuse: both messages on one connection.
        assert_eq!(server.connections(), 1);
        assert_eq!(got[0].connection, got[1].connection);

        let (entry, raw) = store.outbox_message(a.id).await.unwrap();
        assert_eq!(entry.status, OutboxStatus::Sent);
        assert_eq!(entry.sent_at, Some(t0() + chrono::Duration::minutes(1)));
        assert!(entry.server_reply.as_deref().unwrap().starts_with("250"));
        assert_eq!(entry.recipients[0].status, RecipientStatus::Sent);
        // The server received exactly the stored bytes.
        assert_eq!(got[0].data.as_bytes(), &raw[..]);
        assert!(got[0]
            .data
            .contains(&format!("Message-ID: {}", entry.message_id)));
        assert_eq!(status_of(&store, b.id).await, OutboxStatus::Sent);

        // Nothing is due any more: another run neither connects nor sends.
        let report = drain(&m, &store, at(2)).await;
        assert!(report.sent.is_empty());
        assert_eq!(server.connections(), 1);
        assert_eq!(server.messages().len(), 2);
    })
    .await;
}

#[tokio::test]
async fn starttls_with_a_self_signed_certificate_the_test_trusts() {
    within(60, async {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = self_signed(&dir.path().join("tls"));
        let options = SmtpOptions {
            starttls: Some((cert.clone(), key)),
            ..SmtpOptions::default()
        };
        let Some(server) = SmtpServer::start("starttls", &dir.path().join("smtp"), &options).await
        else {
            return;
        };
        let store = sqlite(dir.path()).await;
        // Without the certificate trusted, TLS fails and nothing is touched.
        let untrusted = mailer(&smtp_settings(
            dir.path(),
            server.port,
            SmtpTls::Starttls,
            None,
            None,
        ));
        let id = untrusted
            .enqueue(
                &store,
                at(0),
                &message("digest:nightly:2:north", &["a@example.gov.uk"]),
            )
            .await
            .unwrap()
            .id;
        let report = drain(&untrusted, &store, at(0)).await;
        let err = report.connection_error.expect("TLS must fail");
        assert!(err.contains("TLS"), "{err}");
        let (entry, _) = store.outbox_message(id).await.unwrap();
        assert_eq!((entry.status, entry.attempts), (OutboxStatus::Queued, 0));
        assert!(server.messages().is_empty());

        let trusted = mailer(&smtp_settings(
            dir.path(),
            server.port,
            SmtpTls::Starttls,
            None,
            Some(cert),
        ));
        let report = drain(&trusted, &store, at(0)).await;
        assert_eq!(report.sent.len(), 1, "{report:?}");
        assert_eq!(server.messages().len(), 1);
    })
    .await;
}

#[tokio::test]
async fn implicit_tls_with_a_self_signed_certificate() {
    within(60, async {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = self_signed(&dir.path().join("tls"));
        let options = SmtpOptions {
            tls: Some((cert.clone(), key)),
            ..SmtpOptions::default()
        };
        let Some(server) =
            SmtpServer::start("implicit_tls", &dir.path().join("smtp"), &options).await
        else {
            return;
        };
        let store = sqlite(dir.path()).await;
        let m = mailer(&smtp_settings(
            dir.path(),
            server.port,
            SmtpTls::Tls,
            None,
            Some(cert),
        ));
        m.enqueue(
            &store,
            at(0),
            &message("digest:nightly:3:north", &["a@example.gov.uk"]),
        )
        .await
        .unwrap();
        let report = drain(&m, &store, at(0)).await;
        assert_eq!(report.sent.len(), 1, "{report:?}");
        assert_eq!(server.messages()[0].rcpt_tos, vec!["a@example.gov.uk"]);
    })
    .await;
}

#[tokio::test]
async fn auth_success_and_failure() {
    within(60, async {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = self_signed(&dir.path().join("tls"));
        let options = SmtpOptions {
            starttls: Some((cert.clone(), key)),
            auth: Some("kinlink:s3cret-pass".into()),
            ..SmtpOptions::default()
        };
        let Some(server) = SmtpServer::start("auth", &dir.path().join("smtp"), &options).await
        else {
            return;
        };
        let store = sqlite(dir.path()).await;
        let wrong = mailer(&smtp_settings(
            dir.path(),
            server.port,
            SmtpTls::Starttls,
            Some(("kinlink", "wrong")),
            Some(cert.clone()),
        ));
        let id = wrong
            .enqueue(
                &store,
                at(0),
                &message("digest:nightly:4:north", &["a@example.gov.uk"]),
            )
            .await
            .unwrap()
            .id;
        let report = drain(&wrong, &store, at(0)).await;
        let err = report.connection_error.expect("login must fail");
        assert!(err.contains("refused the login"), "{err}");
        assert!(
            !err.contains("wrong") && !err.contains("s3cret"),
            "no secret in errors: {err}"
        );
        let (entry, _) = store.outbox_message(id).await.unwrap();
        assert_eq!((entry.status, entry.attempts), (OutboxStatus::Queued, 0));
        assert!(server.messages().is_empty());

        let right = mailer(&smtp_settings(
            dir.path(),
            server.port,
            SmtpTls::Starttls,
            Some(("kinlink", "s3cret-pass")),
            Some(cert),
        ));
        let report = drain(&right, &store, at(0)).await;
        assert_eq!(report.sent.len(), 1, "{report:?}");
        assert_eq!(server.messages().len(), 1);
    })
    .await;
}

#[tokio::test]
async fn relay_down_at_send_time_then_up_delivers_exactly_once() {
    within(60, async {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let store = sqlite(dir.path()).await;
        let m = mailer(&smtp_settings(dir.path(), port, SmtpTls::None, None, None));
        let id = m
            .enqueue(
                &store,
                at(0),
                &message("digest:nightly:5:north", &["a@example.gov.uk"]),
            )
            .await
            .unwrap()
            .id;
        let report = drain(&m, &store, at(0)).await;
        assert!(report.connection_error.is_some(), "{report:?}");
        let (entry, _) = store.outbox_message(id).await.unwrap();
        assert_eq!((entry.status, entry.attempts), (OutboxStatus::Queued, 0));

        let options = SmtpOptions {
            port: Some(port),
            ..SmtpOptions::default()
        };
        let Some(server) =
            SmtpServer::start("relay_down", &dir.path().join("smtp"), &options).await
        else {
            return;
        };
        let report = drain(&m, &store, at(1)).await;
        assert_eq!(report.sent.len(), 1, "{report:?}");
        let report = drain(&m, &store, at(2)).await;
        assert!(report.sent.is_empty());
        assert_eq!(server.messages().len(), 1);
        assert_eq!(status_of(&store, id).await, OutboxStatus::Sent);
    })
    .await;
}

#[tokio::test]
async fn a_4xx_is_retried_after_the_backoff_then_sent_once() {
    within(60, async {
        let dir = tempfile::tempdir().unwrap();
        let options = SmtpOptions {
            tempfail_data: 1,
            ..SmtpOptions::default()
        };
        let Some(server) = SmtpServer::start("4xx", &dir.path().join("smtp"), &options).await
        else {
            return;
        };
        let store = sqlite(dir.path()).await;
        let m = mailer(&smtp_settings(
            dir.path(),
            server.port,
            SmtpTls::None,
            None,
            None,
        ));
        let id = m
            .enqueue(
                &store,
                at(0),
                &message("digest:nightly:6:north", &["a@example.gov.uk"]),
            )
            .await
            .unwrap()
            .id;
        let report = drain(&m, &store, at(0)).await;
        assert_eq!(report.retrying.len(), 1, "{report:?}");
        assert!(report.retrying[0].reason.starts_with("451"), "{report:?}");
        assert_eq!(
            report.retrying[0].next_attempt_at,
            t0() + chrono::Duration::minutes(5)
        );
        assert!(report.failed.is_empty());
        // Not due yet: nothing tried.
        let report = drain(&m, &store, at(4)).await;
        assert!(report.sent.is_empty() && report.retrying.is_empty());
        assert_eq!(server.connections(), 1);
        let report = drain(&m, &store, at(5)).await;
        assert_eq!(report.sent.len(), 1, "{report:?}");
        let (entry, _) = store.outbox_message(id).await.unwrap();
        assert_eq!((entry.status, entry.attempts), (OutboxStatus::Sent, 2));
        assert_eq!(server.messages().len(), 1);
    })
    .await;
}

#[tokio::test]
async fn a_5xx_is_a_permanent_failure_reported_and_never_retried_by_itself() {
    within(60, async {
        let dir = tempfile::tempdir().unwrap();
        let options = SmtpOptions {
            reject_data: true,
            ..SmtpOptions::default()
        };
        let Some(server) = SmtpServer::start("5xx", &dir.path().join("smtp"), &options).await
        else {
            return;
        };
        let store = sqlite(dir.path()).await;
        let m = mailer(&smtp_settings(
            dir.path(),
            server.port,
            SmtpTls::None,
            None,
            None,
        ));
        let id = m
            .enqueue(
                &store,
                at(0),
                &message("digest:nightly:7:north", &["a@example.gov.uk"]),
            )
            .await
            .unwrap()
            .id;
        let report = drain(&m, &store, at(0)).await;
        assert!(report.needs_attention());
        assert_eq!(report.failed.len(), 1, "{report:?}");
        assert_eq!(report.failed[0].id, id);
        assert_eq!(report.failed[0].recipients, vec!["a@example.gov.uk"]);
        assert!(report.failed[0].reason.starts_with("554"), "{report:?}");
        let (entry, _) = store.outbox_message(id).await.unwrap();
        assert_eq!(entry.status, OutboxStatus::Failed);
        assert_eq!(entry.recipients[0].status, RecipientStatus::Failed);

        // A day later: still failed, nothing tried, no connection made.
        let report = drain(&m, &store, at(24 * 60)).await;
        assert!(report.sent.is_empty() && report.failed.is_empty());
        assert_eq!(server.connections(), 1);
        assert_eq!(status_of(&store, id).await, OutboxStatus::Failed);

        // By hand it goes again (and fails again at this server).
        assert_eq!(
            store.retry_outbox(id, t0()).await.unwrap(),
            RetryOutcome::Requeued(1)
        );
        assert_eq!(status_of(&store, id).await, OutboxStatus::Queued);
        let report = drain(&m, &store, at(24 * 60)).await;
        assert_eq!(report.failed.len(), 1);
        assert_eq!(server.connections(), 2);
    })
    .await;
}

#[tokio::test]
async fn a_refused_recipient_does_not_stop_the_others() {
    within(60, async {
        let dir = tempfile::tempdir().unwrap();
        let options = SmtpOptions {
            reject_rcpt: vec!["gone@example.gov.uk".into()],
            tempfail_rcpt: vec!["busy@example.gov.uk".into()],
            ..SmtpOptions::default()
        };
        let Some(server) = SmtpServer::start("rcpt", &dir.path().join("smtp"), &options).await
        else {
            return;
        };
        let store = sqlite(dir.path()).await;
        let m = mailer(&smtp_settings(
            dir.path(),
            server.port,
            SmtpTls::None,
            None,
            None,
        ));
        let id = m
            .enqueue(
                &store,
                at(0),
                &message(
                    "digest:nightly:8:north",
                    &[
                        "one@example.gov.uk",
                        "gone@example.gov.uk",
                        "busy@example.gov.uk",
                        "two@example.gov.uk",
                    ],
                ),
            )
            .await
            .unwrap()
            .id;
        let report = drain(&m, &store, at(0)).await;
        let got = server.messages();
        assert_eq!(got.len(), 1);
        assert_eq!(
            got[0].rcpt_tos,
            vec!["one@example.gov.uk", "two@example.gov.uk"]
        );
        assert_eq!(
            report.sent[0].recipients,
            vec!["one@example.gov.uk", "two@example.gov.uk"]
        );
        assert_eq!(report.failed.len(), 1, "{report:?}");
        assert_eq!(report.failed[0].recipients, vec!["gone@example.gov.uk"]);
        assert!(report.failed[0].reason.starts_with("550"));
        assert_eq!(report.retrying[0].recipients, vec!["busy@example.gov.uk"]);

        let (entry, _) = store.outbox_message(id).await.unwrap();
        assert_eq!(entry.status, OutboxStatus::Queued);
        let states: Vec<RecipientStatus> = entry.recipients.iter().map(|r| r.status).collect();
        assert_eq!(
            states,
            vec![
                RecipientStatus::Sent,
                RecipientStatus::Failed,
                RecipientStatus::Pending,
                RecipientStatus::Sent
            ]
        );
        // The retry goes to the busy recipient only: the others never get it twice.
        let report = drain(&m, &store, at(5)).await;
        assert_eq!(report.retrying.len(), 1, "still busy: {report:?}");
        let got = server.messages();
        assert_eq!(got.len(), 1, "nothing resent to the accepted recipients");
        assert_eq!(server.connections(), 2);
    })
    .await;
}

#[tokio::test]
async fn an_interrupted_send_is_requeued_after_the_lease_and_sent_once() {
    within(60, async {
        let dir = tempfile::tempdir().unwrap();
        let Some(server) = SmtpServer::start(
            "interrupted",
            &dir.path().join("smtp"),
            &SmtpOptions::default(),
        )
        .await
        else {
            return;
        };
        let store = sqlite(dir.path()).await;
        let m = mailer(&smtp_settings(
            dir.path(),
            server.port,
            SmtpTls::None,
            None,
            None,
        ));
        let id = m
            .enqueue(
                &store,
                at(0),
                &message("digest:nightly:9:north", &["a@example.gov.uk"]),
            )
            .await
            .unwrap()
            .id;
        // A run claims it and is killed before recording anything.
        let claimed = store
            .claim_outbox(t0(), kinlink::mail::claimer())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(claimed.id, id);
        assert_eq!(status_of(&store, id).await, OutboxStatus::Sending);

        // Within the lease (15 minutes) nobody touches it.
        let report = drain(&m, &store, at(10)).await;
        assert!(report.sent.is_empty() && report.requeued_after_interruption.is_empty());
        assert_eq!(status_of(&store, id).await, OutboxStatus::Sending);
        assert_eq!(server.connections(), 0);

        // After the lease it is queued again and sent, once.
        let report = drain(&m, &store, at(15)).await;
        assert_eq!(report.requeued_after_interruption, vec![id]);
        assert_eq!(report.sent.len(), 1, "{report:?}");
        let report = drain(&m, &store, at(60)).await;
        assert!(report.sent.is_empty());
        assert_eq!(server.messages().len(), 1);
        let (entry, _) = store.outbox_message(id).await.unwrap();
        assert_eq!(
            (entry.status, entry.unknown_outcomes),
            (OutboxStatus::Sent, 1)
        );
    })
    .await;
}

#[tokio::test]
async fn an_email_interrupted_twice_is_parked_not_sent_a_third_time() {
    within(60, async {
        let dir = tempfile::tempdir().unwrap();
        let store = sqlite(dir.path()).await;
        let settings = MailSettings {
            transport: MailTransport::File {
                dir: dir.path().join("outbox"),
            },
            from: "eh@example.gov.uk".into(),
            detail: kinlink::config::DetailLevel::Minimal,
            admin: vec![],
            retry_every_mins: kinlink::config::DEFAULT_RETRY_EVERY_MINS,
        };
        let m = mailer(&settings);
        let id = m
            .enqueue(&store, at(0), &message("k:twice", &["a@example.gov.uk"]))
            .await
            .unwrap()
            .id;
        store
            .claim_outbox(t0(), kinlink::mail::claimer())
            .await
            .unwrap()
            .unwrap();
        let recovered = store
            .recover_outbox_leases(t0(), t0() + chrono::Duration::minutes(15))
            .await
            .unwrap();
        assert_eq!(recovered.requeued, vec![id]);
        store
            .claim_outbox(at(15).now(), kinlink::mail::claimer())
            .await
            .unwrap()
            .unwrap();
        let report = drain(&m, &store, at(31)).await;
        assert!(report.sent.is_empty(), "{report:?}");
        assert_eq!(report.failed.len(), 1);
        assert!(report.failed[0].reason.contains("parked"), "{report:?}");
        assert_eq!(status_of(&store, id).await, OutboxStatus::Failed);
        assert!(!dir.path().join("outbox").exists());
    })
    .await;
}

#[tokio::test]
async fn file_transport_writes_one_eml_per_message_on_both_backends() {
    within(120, async {
        let dir = tempfile::tempdir().unwrap();
        for (backend, store) in stores("file_transport_writes_one_eml", dir.path()).await {
            let out = dir.path().join(format!("outbox-{backend}"));
            let settings = MailSettings {
                transport: MailTransport::File { dir: out.clone() },
                from: "Early Help <eh@example.gov.uk>".into(),
                detail: kinlink::config::DetailLevel::Minimal,
                admin: vec![],
                retry_every_mins: kinlink::config::DEFAULT_RETRY_EVERY_MINS,
            };
            let m = mailer(&settings);
            let mut with_chart = message("digest:weekly:1:managers", &["mgr@example.gov.uk"]);
            with_chart.html =
                Some("<p>Re-referrals</p><img src=\"cid:chart\" alt=\"chart\">".into());
            with_chart.inline_images = vec![InlineImage {
                content_id: "chart".into(),
                png: vec![0x89, b'P', b'N', b'G', 13, 10, 26, 10],
            }];
            let a = m.enqueue(&store, at(0), &with_chart).await.unwrap();
            let b = m
                .enqueue(
                    &store,
                    at(0),
                    &message("digest:nightly:1:north", &["x@example.gov.uk"]),
                )
                .await
                .unwrap();
            let report = drain(&m, &store, at(0)).await;
            assert_eq!(report.sent.len(), 2, "{backend}: {report:?}");
            let mut files: Vec<PathBuf> = std::fs::read_dir(&out)
                .unwrap()
                .map(|e| e.unwrap().path())
                .collect();
            files.sort();
            assert_eq!(files.len(), 2, "{backend}: {files:?}");
            for id in [a.id, b.id] {
                let (entry, raw) = store.outbox_message(id).await.unwrap();
                let name = format!(
                    "{}.eml",
                    entry
                        .message_id
                        .trim_start_matches('<')
                        .trim_end_matches('>')
                );
                let path = out.join(&name);
                assert_eq!(std::fs::read(&path).unwrap(), raw, "{backend}");
                #[cfg(unix)]
                {
                    use std::os::unix::fs::PermissionsExt;
                    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
                    assert_eq!(mode & 0o777, 0o600, "{backend}");
                }
                assert_eq!(entry.status, OutboxStatus::Sent, "{backend}");
                assert!(entry.server_reply.unwrap().contains(&name));
            }
            let eml = String::from_utf8(
                std::fs::read(
                    out.join(
                        store
                            .outbox_message(a.id)
                            .await
                            .unwrap()
                            .0
                            .message_id
                            .trim_matches(['<', '>'])
                            .to_string()
                            + ".eml",
                    ),
                )
                .unwrap(),
            )
            .unwrap();
            assert!(eml.contains("multipart/related") && eml.contains("Content-ID: <chart>"));

            // Enqueued again (a re-run of the night) and drained again: still two files.
            m.enqueue(&store, at(1), &with_chart).await.unwrap();
            let report = drain(&m, &store, at(2)).await;
            assert!(report.sent.is_empty(), "{backend}");
            assert_eq!(std::fs::read_dir(&out).unwrap().count(), 2, "{backend}");

            // An interrupted write (claimed, process killed) is written again after
            // the lease: the same file is replaced, not a third one added.
            let c = m
                .enqueue(
                    &store,
                    at(3),
                    &message("digest:nightly:2:north", &["x@example.gov.uk"]),
                )
                .await
                .unwrap();
            let claimed = store
                .claim_outbox(at(3).now(), kinlink::mail::claimer())
                .await
                .unwrap()
                .unwrap();
            assert_eq!(claimed.id, c.id);
            // The killed run had written its file already.
            let name = format!("{}.eml", claimed.message_id.trim_matches(['<', '>']));
            std::fs::write(out.join(&name), &claimed.raw).unwrap();
            let report = drain(&m, &store, at(20)).await;
            assert_eq!(report.requeued_after_interruption, vec![c.id], "{backend}");
            assert_eq!(report.sent.len(), 1, "{backend}");
            assert_eq!(std::fs::read_dir(&out).unwrap().count(), 3, "{backend}");
            store.close().await;
        }
    })
    .await;
}

#[tokio::test]
async fn outbox_store_on_both_backends() {
    within(120, async {
        let dir = tempfile::tempdir().unwrap();
        for (backend, store) in stores("outbox_store_on_both_backends", dir.path()).await {
            let settings = MailSettings {
                transport: MailTransport::File {
                    dir: dir.path().join("unused"),
                },
                from: "eh@example.gov.uk".into(),
                detail: kinlink::config::DetailLevel::Minimal,
                admin: vec![],
                retry_every_mins: kinlink::config::DEFAULT_RETRY_EVERY_MINS,
            };
            let m = mailer(&settings);
            let first = m
                .enqueue(
                    &store,
                    at(0),
                    &message("k:1", &["a@example.gov.uk", "b@example.gov.uk"]),
                )
                .await
                .unwrap();
            assert!(first.created, "{backend}");
            let dup = m
                .enqueue(
                    &store,
                    at(5),
                    &message("k:1", &["someone-else@example.gov.uk"]),
                )
                .await
                .unwrap();
            assert_eq!((dup.id, dup.created), (first.id, false), "{backend}");
            let second = m
                .enqueue(&store, at(1), &message("k:2", &["c@example.gov.uk"]))
                .await
                .unwrap();
            let entries = store.outbox_entries().await.unwrap();
            assert_eq!(entries.len(), 2, "{backend}");
            assert_eq!(entries[0].recipients.len(), 2, "{backend}");
            assert_eq!(entries[0].recipients[1].address, "b@example.gov.uk");

            // Nothing is due before it was queued; then the oldest due first.
            assert!(store
                .claim_outbox(
                    t0() - chrono::Duration::minutes(1),
                    kinlink::mail::claimer()
                )
                .await
                .unwrap()
                .is_none());
            assert_eq!(
                store.outbox_due(at(0).now()).await.unwrap().len(),
                1,
                "{backend}"
            );
            let c1 = store
                .claim_outbox(at(2).now(), kinlink::mail::claimer())
                .await
                .unwrap()
                .unwrap();
            assert_eq!((c1.id, c1.attempts), (first.id, 1), "{backend}");
            assert_eq!(c1.recipients, vec!["a@example.gov.uk", "b@example.gov.uk"]);
            let c2 = store
                .claim_outbox(at(2).now(), kinlink::mail::claimer())
                .await
                .unwrap()
                .unwrap();
            assert_eq!(c2.id, second.id, "{backend}");
            assert!(
                store
                    .claim_outbox(at(2).now(), kinlink::mail::claimer())
                    .await
                    .unwrap()
                    .is_none(),
                "{backend}"
            );
            let counts = store.outbox_counts().await.unwrap();
            assert_eq!((counts.sending, counts.queued), (2, 0), "{backend}");

            // Retrying something not failed changes nothing.
            assert_eq!(
                store.retry_outbox(first.id, at(3).now()).await.unwrap(),
                RetryOutcome::NothingToRetry(OutboxStatus::Sending),
                "{backend}"
            );
            assert!(store.retry_outbox(999, at(3).now()).await.is_err());

            // Lease recovery: first interruption re-queues, the second parks.
            let r = store
                .recover_outbox_leases(at(2).now(), at(20).now())
                .await
                .unwrap();
            assert_eq!(r.requeued, vec![first.id, second.id], "{backend}");
            let again = store
                .claim_outbox(at(20).now(), kinlink::mail::claimer())
                .await
                .unwrap()
                .unwrap();
            assert_eq!(again.unknown_outcomes, 1, "{backend}");
            let r = store
                .recover_outbox_leases(at(20).now(), at(40).now())
                .await
                .unwrap();
            assert_eq!(r.parked, vec![again.id], "{backend}");
            assert_eq!(status_of(&store, again.id).await, OutboxStatus::Failed);
            assert_eq!(
                store.retry_outbox(again.id, at(41).now()).await.unwrap(),
                RetryOutcome::Requeued(if again.id == first.id { 2 } else { 1 }),
                "{backend}"
            );
            let entry = store.outbox_message(again.id).await.unwrap().0;
            assert_eq!((entry.status, entry.attempts), (OutboxStatus::Queued, 0));
            store.close().await;
        }
    })
    .await;
}

/// Two drain runs claiming at once on PostgreSQL never get the same message.
#[tokio::test]
async fn postgres_claims_skip_locked_rows() {
    within(120, async {
        let Some(store) = crate::backends::fresh_postgres("postgres_claims_skip_locked").await
        else {
            return;
        };
        let settings = MailSettings {
            transport: MailTransport::File {
                dir: PathBuf::from("/nonexistent"),
            },
            from: "eh@example.gov.uk".into(),
            detail: kinlink::config::DetailLevel::Minimal,
            admin: vec![],
            retry_every_mins: kinlink::config::DEFAULT_RETRY_EVERY_MINS,
        };
        let m = mailer(&settings);
        for i in 0..40 {
            m.enqueue(
                &store,
                at(0),
                &message(&format!("k:{i}"), &["a@example.gov.uk"]),
            )
            .await
            .unwrap();
        }
        let mut tasks = Vec::new();
        for _ in 0..4 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                let mut ids = Vec::new();
                while let Some(c) = store
                    .claim_outbox(at(1).now(), kinlink::mail::claimer())
                    .await
                    .unwrap()
                {
                    ids.push(c.id);
                }
                ids
            }));
        }
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await.unwrap());
        }
        all.sort_unstable();
        let before = all.len();
        all.dedup();
        assert_eq!((before, all.len()), (40, 40));
        store.close().await;
    })
    .await;
}

/// `send --dry-run`, `send`, `outbox list|show|retry` through the built binary.
#[tokio::test]
async fn the_send_and_outbox_commands_through_the_binary() {
    within(120, async {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("jobs")).unwrap();
        let config = dir.path().join("kinlink.toml");
        std::fs::write(
            &config,
            "state_dir = \"state\"\n[mail]\ntransport = \"file\"\nfile_dir = \"mail\"\nfrom = \"Early Help <eh@example.gov.uk>\"\n",
        )
        .unwrap();
        let settings = kinlink::config::load(&config).unwrap();
        let store = Store::connect(&settings.database, &settings.state_dir)
            .await
            .unwrap();
        let m = Mailer::new(&settings.mail).unwrap();
        let id = m
            .enqueue(&store, at(0), &message("digest:nightly:1:north", &["dv.north@example.gov.uk"]))
            .await
            .unwrap()
            .id;
        store.close().await;
        let run = |args: &[&str]| {
            std::process::Command::new(env!("CARGO_BIN_EXE_kinlink"))
                .arg("--config")
                .arg(&config)
                .args(args)
                .env_remove("KINLINK_CONFIG")
                .output()
                .unwrap()
        };
        let out_dir = dir.path().join("state/mail");

        let dry = run(&["send", "--dry-run"]);
        let stdout = String::from_utf8_lossy(&dry.stdout);
        assert!(dry.status.success(), "{stdout}");
        assert!(stdout.contains(&format!("would send #{id}")), "{stdout}");
        assert!(stdout.contains("dv.north@example.gov.uk"), "{stdout}");
        assert!(!out_dir.exists(), "a dry run writes nothing");

        let sent = run(&["send", "--format", "json"]);
        assert!(sent.status.success());
        let report: serde_json::Value = serde_json::from_slice(&sent.stdout).unwrap();
        assert_eq!(report["drain"]["sent"][0]["id"], id);
        assert_eq!(std::fs::read_dir(&out_dir).unwrap().count(), 1);

        let list = run(&["outbox", "list", "--format", "json"]);
        let list: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
        assert_eq!(list[0]["status"], "sent");
        assert_eq!(list[0]["recipients"][0]["status"], "sent");

        let show = run(&["outbox", "show", &id.to_string()]);
        let stdout = String::from_utf8_lossy(&show.stdout);
        assert!(show.status.success());
        assert!(stdout.contains("outbox #1  sent") && stdout.contains("Message-ID: <kinlink."), "{stdout}");

        // Nothing failed: retry refuses, with exit 2.
        let retry = run(&["outbox", "retry", &id.to_string()]);
        assert_eq!(retry.status.code(), Some(2));
        assert!(String::from_utf8_lossy(&retry.stderr).contains("nothing to retry"));
        let missing = run(&["outbox", "show", "99"]);
        assert_eq!(missing.status.code(), Some(2));
    })
    .await;
}
